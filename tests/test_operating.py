"""What detector users ask for: operating thresholds stored with the model and chosen at prediction
time, a warning when the model was trained on the synthetic set, and a model card."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import pattern
from helpers.evaluation.thresholds import at_false_positive_rate, operating_thresholds, resolve
from helpers.inference.cached import predict
from study import saved


def test_false_positive_thresholds_cut_at_exactly_the_allowed_share_of_real_images():
    real = np.arange(100) / 100  # 0.00 .. 0.99
    for rate, flagged in ((0.01, 1), (0.05, 5), (0.10, 10), (0.0, 0)):
        threshold = at_false_positive_rate(real, rate)
        assert (real >= threshold).sum() == flagged, rate
        assert threshold > real[-flagged - 1]  # the next real image down is not called AI
    assert at_false_positive_rate(real, 1.0) == 0.0 and at_false_positive_rate([], 0.05) == 0.5


def test_tied_scores_are_never_split_by_a_threshold():
    real = np.array([0.9] * 3 + [0.1] * 97)
    assert (real >= at_false_positive_rate(real, 0.02)).sum() == 0  # 2 allowed, but the three 0.9s go together
    assert (real >= at_false_positive_rate(real, 0.03)).sum() == 3


def test_operating_thresholds_name_each_cut_and_what_it_was_set_on():
    prob = np.array([0.2, 0.3, 0.6, 0.1, 0.7, 0.8, 0.9, 0.4])
    label = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    found = operating_thresholds(prob, label)
    assert found["0.5"] == 0.5 and (found["set_on_real_images"], found["set_on_ai_images"]) == (4, 4)
    assert (prob[label == 0] >= found["fpr5"]).sum() == 0 and found["fpr5"] > 0.6  # 5 % of 4 allows none
    # AI from 0.4 on: TP 4, FP 1 -> F1 8/9, the best; the cut halfway to the next score down, 0.3.
    assert np.isclose(found["f1"], 0.35)


def test_a_threshold_is_a_stored_name_or_a_number():
    stored = {"fpr1": 0.97, "fpr5": 0.8, "f1": 0.4}
    assert resolve("fpr5", stored) == ("fpr5", 0.8) and resolve("0.5", None) == ("0.5", 0.5)
    assert resolve("0.65", None) == ("0.65", 0.65)
    with pytest.raises(ValueError, match="stores no operating thresholds"):
        resolve("f1", None)
    with pytest.raises(ValueError, match="between 0 and 1"):
        resolve("1.5", stored)
    with pytest.raises(ValueError, match="give one of 0.5, fpr1, fpr5, f1"):
        resolve("strict", stored)


def _patterns(folder):
    folder.mkdir()
    for label_b in range(6):
        for seed in range(2):
            pattern(label_b, seed=90 + 10 * label_b + seed).save(folder / f"{label_b}_{seed}.png")
    return folder


def test_predict_applies_the_named_threshold_says_which_and_marks_the_uncertain(tmp_path, learned_dir):
    from helpers.predict import main

    model = tmp_path / "model"
    shutil.copytree(learned_dir, model)
    config = json.loads((model / "config.json").read_text())
    folder = _patterns(tmp_path / "patterns")
    assert main(["--model", str(model), "--images", str(folder), "--out", str(tmp_path / "a.csv")]) == 0
    plain = pd.read_csv(tmp_path / "a.csv")
    assert (plain["threshold"] == "0.5 (0.5)").all()
    scores = np.sort(plain["p_ai"].unique())
    cut = float(scores[len(scores) // 2])  # a threshold that calls some AI images real
    expected = int((plain["p_ai"] >= cut).sum())
    assert 0 < expected < plain["Label_A"].sum()
    config["operating_thresholds"] = {"0.5": 0.5, "fpr1": cut, "fpr5": 0.5, "f1": 0.5}
    (model / "config.json").write_text(json.dumps(config))
    assert (
        main(
            [
                "--model",
                str(model),
                "--images",
                str(folder),
                "--out",
                str(tmp_path / "b.csv"),
                "--threshold",
                "fpr1",
                "--uncertain-band",
                "0.2",
            ]
        )
        == 0
    )
    strict = pd.read_csv(tmp_path / "b.csv")
    assert (strict["threshold"] == f"fpr1 ({cut:.6g})").all() and strict["Label_A"].sum() == expected
    assert strict["uncertain"].tolist() == (np.abs(strict["p_ai"] - cut) < 0.2).tolist()


def test_predict_refuses_a_stored_threshold_the_model_does_not_have(tmp_path, learned_dir, capsys):
    from helpers.predict import main

    folder = _patterns(tmp_path / "patterns")
    assert (
        main(
            [
                "--model",
                str(learned_dir),
                "--images",
                str(folder),
                "--out",
                str(tmp_path / "p.csv"),
                "--threshold",
                "fpr5",
            ]
        )
        == 2
    )
    assert "stores no operating thresholds" in capsys.readouterr().err


@pytest.fixture()
def trained_stage(smoke_cfg, smoke_splits, tmp_path):
    """A 'before' stage trained by the study's own path (thresholds, card) in a fresh work dir."""
    from helpers.config import load_config
    from helpers.modeling.building import build_model
    from study import setup, stages

    cfg = load_config({**smoke_cfg.to_dict(), "work_dir": str(tmp_path / "runs")})
    model, tokenizer = build_model(cfg.model_spec)
    caches = stages.caches_for(cfg, smoke_splits, tokenizer, model.config.image_size, ["train", "validation"])
    stages.train_stage(cfg, "before", model, tokenizer, caches["train"], caches["validation"])
    return cfg, setup.model_dir(cfg, "before"), caches["validation"]


def test_a_trained_model_stores_its_thresholds_and_carries_a_card(trained_stage):
    from huggingface_hub import ModelCard

    from helpers.modeling.card import write_card

    cfg, folder, validation = trained_stage
    assert not (cfg.run_dir / "model_before.checkpoints").exists()  # a finished stage keeps its model, not checkpoints
    stored = json.loads((folder / "config.json").read_text())["operating_thresholds"]
    from helpers.modeling.checkpoints import load_detector

    model, _ = load_detector(folder)
    real = predict(model, validation, 64, desc=None).prob_ai[validation.label_a == 0]
    for name, rate in (("fpr1", 0.01), ("fpr5", 0.05)):
        assert (real >= stored[name]).mean() <= rate  # at most that share of validation's real photos called AI
        lower = real[real < stored[name]]
        assert not len(lower) or (real >= lower.max()).mean() > rate  # and no lower threshold keeps to it
    assert stored["set_on_real_images"] == int((validation.label_a == 0).sum())
    card = ModelCard.load(folder / "README.md")
    assert card.data.datasets == ["synthetic"] and "ai-generated-image-detection" in card.data.tags
    assert card.data.base_model is None  # random towers: no hub model to name
    assert card.text.index("Trained on the embedded synthetic demo set") < card.text.index("## Intended use")
    assert card.data.eval_results is None  # no report yet
    metrics = {
        "validation": {"before": {"f1_a": 0.91234, "acc_a": 0.8, "f1_b_weighted": 0.5}},
        "analyses": {
            "audit": {
                "title": "Shortcut audit",
                "conclusion": "Metadata alone goes most of the way.",
                "model": "before",
            },
            # scored models it trained itself: a conclusion about none of the saved stages
            "unseen": {"title": "Unseen generators", "conclusion": "Held-out SDXL is caught.", "model": None},
        },
    }
    card = ModelCard.load(write_card(folder, metrics, "before"))
    results = {(r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert results[("validation", "f1_a")] == 91.23 and results[("validation", "acc_a")] == 80.0
    assert "Metadata alone goes most of the way." in card.text.split("## Limitations")[1]
    assert "Held-out SDXL" not in card.text
    # At the study's end the cards are rewritten: the analyses scored the final model (after
    # pseudo-labels on this profile), so model_before's card carries none of their conclusions.
    assert saved.final_stage(cfg) == "after"
    assert saved.refresh_cards(cfg, metrics) == [folder / "README.md"]
    limitations = ModelCard.load(folder / "README.md").text.split("## Limitations")[1]
    assert "Metadata alone" not in limitations and "on the final model's card" in limitations


def test_predict_warns_that_a_synthetic_model_means_nothing_on_real_images(trained_stage, tmp_path, capsys):
    from helpers.predict import main

    _, folder, _ = trained_stage
    images = _patterns(tmp_path / "patterns")
    assert main(["--model", str(folder), "--images", str(images), "--out", str(tmp_path / "p.csv")]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("WARNING: this model was trained on the embedded synthetic demo set")
    assert (pd.read_csv(tmp_path / "p.csv")["model_trained_on"] == "synthetic").all()


def test_predict_decodes_complete_caption_groups_jointly_and_says_which_rows(tmp_path, learned_dir, capsys):
    from conftest import pattern
    from helpers.predict import main

    folder = tmp_path / "images"
    folder.mkdir()
    # A complete group of six whose images show class 2 twice and class 3 never, and a partial group.
    rows = [("six", b) for b in (0, 1, 2, 2, 4, 5)] + [("three", b) for b in (0, 2, 5)]
    for i, (_, b) in enumerate(rows):
        pattern(b, seed=100 + i).save(folder / f"{i:02d}.png")
    table = pd.DataFrame({"image": [f"images/{i:02d}.png" for i in range(len(rows))], "caption": [c for c, _ in rows]})
    table.to_csv(tmp_path / "inputs.csv", index=False)
    assert (
        main(["--model", str(learned_dir), "--images", str(tmp_path / "inputs.csv"), "--out", str(tmp_path / "a.csv")])
        == 0
    )
    plain = pd.read_csv(tmp_path / "a.csv")
    assert plain["Label_B"][:6].tolist() == [0, 1, 2, 2, 4, 5]  # per image, the model reads each pattern
    assert (
        main(
            [
                "--model",
                str(learned_dir),
                "--images",
                str(tmp_path / "inputs.csv"),
                "--out",
                str(tmp_path / "b.csv"),
                "--caption-groups",
            ]
        )
        == 0
    )
    grouped = pd.read_csv(tmp_path / "b.csv")
    assert sorted(grouped["Label_B"][:6]) == [0, 1, 2, 3, 4, 5]
    assert grouped["Label_B"][6:].tolist() == plain["Label_B"][6:].tolist()
    assert grouped["decoding"].tolist() == ["caption group"] * 6 + ["per image"] * 3
    assert (grouped["Label_A"] == (grouped["Label_B"] != 0)).all()
    assert (
        "1 complete caption groups (6 images) decoded jointly; per-image decoding for 1 partial group (3 images)"
        in capsys.readouterr().out
    )
    assert (
        main(
            ["--model", str(learned_dir), "--images", str(folder), "--out", str(tmp_path / "c.csv"), "--caption-groups"]
        )
        == 2
    )
    assert "--caption-groups needs captions" in capsys.readouterr().err
