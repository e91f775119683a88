"""Labelled sets from outside the training distribution, and the folders people really have."""

import json
import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import ROOT, pattern


def _image(path, seed=0, size=(48, 40), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def test_a_labelled_folder_gets_metrics_per_generator_and_its_bad_rows_listed(tmp_path, learned_dir, capsys):
    from helpers.predict import main

    folder = tmp_path / "set"
    for i in range(3):
        for sub, label_b in (("real", 0), ("ai/sdxl", 2), ("ai/brand_new_model", 4)):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            pattern(label_b, seed=50 + i).save(folder / sub / f"{label_b}_{i}.png")
    _image(folder / "loose.png", 30)  # no label: listed, not dropped
    (folder / "ai" / "sdxl" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out" / "p.csv"
    assert main(["--model", str(learned_dir), "--images", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    # The model tells these patterns apart: every real photo called real, every generator caught.
    assert metrics["false_positive_rate_real"] == 0.0 and metrics["f1_a"] == 1.0
    assert metrics["recall_per_generator"] == {"sdxl": 1.0, "brand_new_model": 1.0}
    assert metrics["rows"] == 11 and metrics["rows_scored"] == 9 and metrics["rows_unreadable"] == 1
    assert metrics["rows_without_label"] == 1 and (metrics["real_images"], metrics["ai_images"]) == (3, 6)
    assert set(metrics["recall_per_generator"]) == {"sdxl", "brand_new_model"}
    assert {"acc_a", "precision_a", "recall_a", "f1_a", "false_positive_rate_real"} <= set(metrics)
    assert "f1_b_weighted" not in metrics  # brand_new_model is no CT2 class
    errors = pd.read_csv(out.with_suffix(".errors.csv"))
    reasons = dict(zip(errors["path"].str.rsplit("/", n=1).str[-1], errors["reason"]))
    assert reasons["loose.png"] == "not under real/ or ai/: no label" and "broken.png" in reasons
    assert "false positives on real" in printed and "recall sdxl" in printed
    frame = pd.read_csv(out)
    assert len(frame) == 11 and set(frame["true_generator"].fillna("")) == {"real", "sdxl", "brand_new_model", ""}


def test_a_labelled_csv_with_ct2_generators_gets_task_b_and_refuses_unknown_labels(tmp_path, trained_dir):
    from helpers.predict import run

    rows = []
    for i, (label, generator) in enumerate(
        [("real", ""), ("0", ""), ("ai", "SD 3"), ("1", "dall-e-3"), ("AI", "SDXL")]
    ):
        rows.append(
            {
                "image": str(_image(tmp_path / "imgs" / f"{i}.png", i).relative_to(tmp_path)),
                "label_a": label,
                "generator": generator,
                "caption": f"caption {i}",
            }
        )
    rows.append({"image": "imgs/0.png", "label_a": "maybe", "generator": "", "caption": ""})
    rows.append({"image": "imgs/missing.png", "label_a": "1", "generator": "SD 3", "caption": ""})
    pd.DataFrame(rows).to_csv(tmp_path / "set.csv", index=False)
    prediction = run(str(trained_dir), str(tmp_path / "set.csv"), str(tmp_path / "p.csv"), workers=0)
    metrics = prediction.metrics
    assert metrics["rows_scored"] == 5 and metrics["rows_without_label"] == 1 and metrics["rows_unreadable"] == 1
    assert "f1_b_weighted" in metrics and set(metrics["recall_per_generator"]) == {"SD 3", "dall-e-3", "SDXL"}
    errors = pd.read_csv(tmp_path / "p.errors.csv")
    assert "label_a 'maybe' is not 0/1 or real/ai" in errors["reason"].tolist()
    assert any("not found" in r for r in errors["reason"])
    assert prediction.duplicates and len(prediction.duplicates[0]) == 2  # imgs/0.png listed twice


def test_folders_as_people_have_them(tmp_path, trained_dir):
    """Upper-case extensions, a name that is not UTF-8, a link to a folder and a link loop (each
    folder read once), hidden files and folders (skipped and counted), and copies of one file."""
    from helpers.predict import run

    folder = tmp_path / "mess"
    _image(folder / "UPPER.JPG", 1, fmt="JPEG")
    _image(folder / "photos" / "a.png", 2)
    shutil.copy(folder / "photos" / "a.png", folder / "photos" / "copy_of_a.png")
    _image(folder / ".thumbnails" / "t.png", 3)
    (folder / ".DS_Store").write_bytes(b"\0\0")
    os.symlink(folder / "photos", folder / "linked_photos")
    os.symlink(folder, folder / "photos" / "loop")
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    with open(odd, "wb") as handle:
        Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(handle, format="PNG")
    prediction = run(str(trained_dir), str(folder), str(tmp_path / "p.csv"), workers=2)
    frame = prediction.frame
    names = sorted(p.rsplit("/", 1)[-1] for p in frame["path"])
    assert names == sorted(["UPPER.JPG", "a.png", "copy_of_a.png", "caf\\xe9.png"])
    assert (frame["status"] == "ok").sum() == 4
    assert prediction.hidden_skipped == 2
    assert [sorted(n.rsplit("/", 1)[-1] for n in group) for group in prediction.duplicates] == [
        ["a.png", "copy_of_a.png"]
    ]
    assert pd.read_csv(tmp_path / "p.csv")["path"].str.contains("caf").sum() == 1


def test_worker_processes_give_the_same_answers_as_decoding_in_process(tmp_path, trained_dir):
    from helpers.predict import run

    folder = tmp_path / "many"
    for i in range(70):  # more than two decode chunks
        _image(folder / f"{i:03d}.png", i, size=(30 + i % 7, 41))
    one = run(str(trained_dir), str(folder), str(tmp_path / "a.csv"), workers=0).frame
    two = run(str(trained_dir), str(folder), str(tmp_path / "b.csv"), workers=2).frame
    assert one["path"].tolist() == two["path"].tolist()
    assert np.allclose(one["p_ai"], two["p_ai"], atol=1e-6) and one["Label_B"].tolist() == two["Label_B"].tolist()


def test_the_synthetic_outside_set_is_labelled_and_holds_an_unseen_generator(tmp_path):
    from helpers.data.inputs import read_inputs
    from helpers.data.synthetic_outside import OUTSIDE_FOLDERS, UNSEEN_GENERATOR, write_outside

    folder = write_outside(tmp_path / "outside", 3, 48, seed=0)
    inputs = read_inputs(folder)
    assert inputs.labelled and len(inputs) == 3 * 7 and not len(inputs.bad_rows)
    assert set(inputs.generator) == {"real", *OUTSIDE_FOLDERS, UNSEEN_GENERATOR}
    sizes = {Image.open(path).size for path in inputs.cells}
    assert all(w != h for w, h in sizes) and {Image.open(p).format for p in inputs.cells} == {"JPEG"}
    assert (inputs.label_b[np.asarray(inputs.generator) == UNSEEN_GENERATOR] == -1).all()
    assert (inputs.label_b[np.asarray(inputs.generator) == "sdxl"] == 2).all()


def test_predict_speed_benchmark_reports_rates(tmp_path, trained_dir):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import predict_speed

    out = tmp_path / "speed.json"
    assert (
        predict_speed.main(
            [
                "--model",
                str(trained_dir),
                "--photos",
                "6",
                "--pngs",
                "2",
                "--work",
                str(tmp_path / "w"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads(out.read_text())
    assert results["images"] == 8 and results["workers_1"] > 0 and results["workers_default"] > 0
    assert results["bare_decode"] > 0
    assert np.isclose(results["share_of_decode_limit"], results["workers_default"] / results["bare_decode"])


@pytest.mark.parametrize("bad", [[{"name": "x"}], [{"name": "x", "source": "y", "colour": "red"}], ["a folder"]])
def test_the_external_key_is_validated(bad):
    from helpers.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="'external'"):
        load_config({"profile": "x", "external": bad})


def test_a_labelled_data_set_gets_task_b_metrics(tmp_path, trained_dir, smoke_cfg):
    from helpers.data.sources import ensure_synthetic
    from helpers.predict import run

    saved = ensure_synthetic(tmp_path / "data", {"test": 2}, 32, seed=5)
    prediction = run(str(trained_dir), str(saved), str(tmp_path / "p.csv"), split="test", workers=0)
    metrics = prediction.metrics
    assert metrics["rows_scored"] == 12 and (metrics["real_images"], metrics["ai_images"]) == (2, 10)
    assert "f1_b_weighted" in metrics and len(metrics["recall_per_generator"]) == 5


def test_the_try_it_export_reproduces_the_studys_predictions_with_captions(tmp_path, smoke_cfg):
    """Notebook 04's export (data.inputs.write_samples) reads images given as paths (CSV and folder
    data sets) as well as embedded bytes, and lists each with its caption: the prediction command
    on that list answers what the study's cached prediction answers for those rows, and differs
    from scoring the same files without their captions."""
    import datasets
    import pandas as pd
    import torch

    from conftest import png_bytes
    from helpers.cache.store import build_cache
    from helpers.data.inputs import write_samples
    from helpers.data.schema import FEATURES
    from helpers.inference.cached import predict
    from helpers.modeling.building import build_model
    from helpers.modeling.checkpoints import save_detector
    from helpers.predict import run

    torch.manual_seed(0)
    model, tokenizer = build_model(smoke_cfg.model_spec)
    saved = save_detector(model, tokenizer, tmp_path / "model")
    files = tmp_path / "source"
    files.mkdir()
    cells = []
    for i in range(12):
        raw = png_bytes((24, 20), (20 * i, 90, 30))
        if i % 2:  # every other image only as a path, as CSV and folder data sets give them
            (files / f"{i}.png").write_bytes(raw)
            cells.append({"bytes": None, "path": str(files / f"{i}.png")})
        else:
            cells.append({"bytes": raw, "path": None})
    labels_b = [i % 6 for i in range(12)]
    split = datasets.Dataset.from_dict(
        {
            "Caption": [f"a photo of thing number {i}" for i in range(12)],
            "Image": cells,
            "Label_A": [int(b != 0) for b in labels_b],
            "Label_B": labels_b,
        },
        features=FEATURES,
    )
    listing = write_samples(split, tmp_path / "run" / "sample_images")
    table = pd.read_csv(listing)
    assert len(table) == 12 and table["caption"].tolist() == [split[int(r)]["Caption"] for r in table["row"]]
    answered = run(str(saved), str(listing), str(tmp_path / "preds.csv"), workers=0).frame
    assert (answered["status"] == "ok").all() and not answered["caption_missing"].any()
    cached = build_cache(
        split.select(table["row"].tolist()),
        "s",
        tmp_path / "cache",
        model.config.image_size,
        tokenizer,
        model.config.max_caption_length,
    )
    study = predict(model, cached, desc=None)
    np.testing.assert_allclose(answered["p_ai"], study.prob_ai, rtol=1e-4, atol=1e-5)
    blind = run(str(saved), str(listing.parent / "sample_images"), str(tmp_path / "blind.csv"), workers=0).frame
    assert blind["caption_missing"].all()
    # An untrained model barely reads the caption, but it reads it.
    assert (
        np.abs(blind.sort_values("path")["p_ai"].to_numpy() - answered.sort_values("path")["p_ai"].to_numpy()).max()
        > 1e-7
    )
