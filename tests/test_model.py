import torch

from helpers.cache import collate
from helpers.model import load_detector, save_detector


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
