import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.analyses import common, verdicts
from helpers.cache.dataset import CachedSplit
from helpers.evaluation import calibration
from helpers.evaluation import perturbations as perturb
from study import analysis, conclusions


def _image(w=40, h=30, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_perturbations_leave_the_image_alone_at_their_unchanged_level_which_comes_first():
    image = _image()
    assert set(perturb.UNCHANGED) == set(perturb.LEVELS) - {"jpeg_quality"}  # JPEG at 100 still re-encodes
    for name, level in perturb.UNCHANGED.items():
        assert perturb.LEVELS[name][0] == level
        out = perturb.PERTURBATIONS[name](image, level)
        assert np.array_equal(np.asarray(out), np.asarray(image)), name


def test_perturbations_do_what_they_say():
    image = _image(80, 60)
    assert perturb.downscale(image, 0.5).size == (40, 30)
    assert perturb.centre_crop(image, 0.5).size == (40, 30)
    assert np.array_equal(np.asarray(perturb.centre_crop(image, 0.5)), np.asarray(image)[15:45, 20:60])
    blurred = np.asarray(perturb.blur(image, 2.0), float)
    assert blurred.std() < np.asarray(image, float).std() / 2
    low, high = perturb.jpeg(image, 30), perturb.jpeg(image, 100)
    error = lambda im: np.abs(np.asarray(im, float) - np.asarray(image, float)).mean()  # noqa: E731
    assert low.size == image.size and error(low) > error(high)


def test_ece_matches_a_hand_computation():
    prob = np.array([0.05, 0.15, 0.12, 0.85, 0.95, 0.91, 0.55, 0.45])
    label = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    # bins: [0,.1): {0.05}->acc 0; [.1,.2): {0.15, 0.12}->acc .5; [.4,.5): {0.45}->0; [.5,.6): {0.55}->1;
    # [.8,.9): {0.85}->1; [.9,1]: {0.95, 0.91}->.5
    expected = (
        1 * abs(0.05 - 0)
        + 2 * abs(0.135 - 0.5)
        + 1 * abs(0.45 - 0)
        + 1 * abs(0.55 - 1)
        + 1 * abs(0.85 - 1)
        + 2 * abs(0.93 - 0.5)
    ) / 8
    assert np.isclose(calibration.ece(prob, label), expected)
    assert calibration.ece(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-true_logits))).astype(int)
    assert np.isclose(calibration.fit_temperature(3.0 * true_logits, labels), 3.0, rtol=0.05)


def test_best_threshold_beats_or_equals_one_half():
    prob = np.array([0.3, 0.35, 0.4, 0.45, 0.6, 0.1])
    label = np.array([1, 1, 1, 1, 1, 0])
    threshold, f1 = calibration.best_threshold(prob, label)
    assert threshold == 0.2 and np.isclose(f1, 1.0)  # halfway between the real image's 0.1 and 0.3
    # Saturated scores (the demo's residual tower): not 1.0, which a new AI image at 0.9999 would miss.
    threshold, f1 = calibration.best_threshold(np.array([1.0, 1.0, 1.0, 2e-6, 1e-6]), np.array([1, 1, 1, 0, 0]))
    assert np.isclose(threshold, 0.500001) and f1 == 1.0
    threshold, _ = calibration.best_threshold(np.array([0.2, 0.9]), np.array([1, 1]))
    assert threshold == 0.2  # nothing below the lowest AI score: the score itself


def _cached(labels_b):
    n = len(labels_b)
    labels_b = np.asarray(labels_b)
    return CachedSplit(
        np.zeros((n, 3, 2, 2), np.uint8),
        np.zeros((n, 3), np.int32),
        np.ones(n, np.int32),
        (labels_b != 0).astype(np.int64),
        labels_b.astype(np.int64),
        np.arange(n),
    )


def test_leave_one_generator_out_split():
    from study.stages import without_classes

    cached = _cached([0, 1, 2, 3, 4, 5] * 3)
    held = without_classes(cached, [3])
    assert 3 not in held.label_b and len(held) == 15 and set(held.label_b) == {0, 1, 2, 4, 5}
    assert held.rows.tolist() == [r for r in range(18) if r % 6 != 3]


def test_the_conclusions_decide_from_the_numbers():
    table = pd.DataFrame(
        {"f1_a": [0.909, 0.99, 0.995], "f1_b_weighted": [0.05, 0.9, 0.91]}, index=["text", "image", "both"]
    )
    assert conclusions.text_at_chance(table)  # 'all AI' and a guessed generator: no leak
    assert not conclusions.text_at_chance(table.assign(f1_b_weighted=[0.7, 0.9, 0.91]))  # text above chance: a leak
    curves = pd.DataFrame(
        {
            "perturbation": ["jpeg_quality"] * 3 + ["blur_sigma"] * 2,
            "level": [100, 50, 30, 0.0, 2.0],
            "f1_a": [0.99, 0.9, 0.7, 0.99, 0.98],
            "f1_b_weighted": [0.9, 0.6, 0.4, 0.9, 0.88],
        }
    )
    assert conclusions.drops(curves) == pytest.approx({"jpeg_quality": 0.29, "blur_sigma": 0.01})
    assert "jpeg quality alone costs it 29.0 points of F1-A" in conclusions.robustness_conclusion(curves)
    assert "jpeg quality costs 50.0 points of weighted F1-B" in conclusions.robustness_conclusion(curves)
    # F1-A holds within 10 points while F1-B collapses (the demo's NPR tower under blur): both are said.
    blurred = curves.assign(f1_a=[0.99, 0.98, 0.95, 0.99, 0.98], f1_b_weighted=[0.9, 0.85, 0.8, 0.9, 0.1])
    text = conclusions.robustness_conclusion(blurred)
    assert "keeps F1-A within 10 points" in text and "blur sigma costs 80.0 points of weighted F1-B" in text
    assert "weighted F1-B" not in conclusions.robustness_conclusion(blurred.assign(f1_b_weighted=0.9)).split(". ")[-1]


def test_the_unseen_verdict_refuses_to_read_recall_when_real_photos_are_not_recognised():
    table = pd.DataFrame(
        {"recall_held_out": [1.0, 0.99], "recall_seen": [1.0, 1.0], "real_specificity": [0.02, 0.0]},
        index=["SD 2.1", "SDXL"],
    )
    assert conclusions.transfer_verdict(table) == "unreadable"
    table["real_specificity"] = 0.97
    assert conclusions.transfer_verdict(table) == "transfers"
    table["recall_held_out"] = [0.5, 0.6]
    assert conclusions.transfer_verdict(table) == "does not transfer"


def test_beyond_calls_a_variant_a_gain_only_past_the_seed_noise():
    import numpy as np

    def rows(variant, f1_b):
        return [
            {"variant": variant, "seed": seed, "test F1-A": 0.9, "test F1-B (weighted)": b, "outside F1-A": np.nan}
            for seed, b in zip((1, 2), f1_b)
        ]

    b = "test F1-B (weighted)"
    # The paper's row spreads by 2 points (std 1.41): +2 is noise, +5 is past twice the std.
    table = pd.DataFrame(
        rows("paper", (0.70, 0.72))
        + rows("small", (0.72, 0.74))
        + rows("large", (0.75, 0.77))
        + rows("worse", (0.60, 0.62))
    )
    assert verdicts.variant_verdicts(table) == {
        "small": ("paper", [], [], "own"),
        "large": ("paper", [b], [], "own"),
        "worse": ("paper", [], [b], "own"),
    }
    # One-seed pseudo-label rows: +5 points is within twice the paper row's seed std (here 7.07),
    # and past one point when no row has a second seed.
    single = [
        {"variant": v, "seed": 1, "test F1-A": 0.9, b: f1, "outside F1-A": np.nan}
        for v, f1 in (("pseudo-labels: rule", 0.75), ("pseudo-labels: quota", 0.80))
    ]
    noisy = verdicts.variant_verdicts(pd.DataFrame(rows("paper", (0.60, 0.70)) + single))
    assert noisy["pseudo-labels: quota"] == ("pseudo-labels: rule", [], [], "borrowed")
    alone = verdicts.variant_verdicts(pd.DataFrame(rows("paper", (0.70, 0.70))[:1] + single))
    assert alone["pseudo-labels: quota"] == ("pseudo-labels: rule", [b], [], "none")
    rules = pd.DataFrame(
        {"kept": [53, 4, 52], "right (%)": [98.1, 100.0, 100.0]}, index=["paper", "quota", "group check"]
    )
    assert verdicts.most_often_right(rules) == ["group check", "quota"]


def test_conclusions_say_no_change_where_every_seed_gives_the_same_scores():
    """At the ceiling (the demo on NPR residuals: 100 on every seed) a zero spread is not read as
    'within noise' and a difference of zero is no gain, no loss and no noise."""
    import numpy as np

    from helpers.analyses import seeds

    rows = pd.DataFrame(
        [{"seed": s, "model": m, "f1_a": 1.0, "f1_b_weighted": 1.0} for s in (42, 7, 1) for m in ("before", "after")]
    )
    text = conclusions.seeds_conclusion(seeds.spread(rows), seeds.pseudo_label_effect(rows), [42, 7, 1])
    assert text.count("no change on any seed") == 2 and "within the seed noise" not in text
    assert "Every seed gives the same figures" in text and "about 0.0 points" not in text
    varied = rows.assign(f1_b_weighted=[1.0, 0.9, 0.96, 0.98, 0.93, 0.9])
    text = conclusions.seeds_conclusion(seeds.spread(varied), seeds.pseudo_label_effect(varied), [42, 7, 1])
    assert "within the seed noise" in text and "twice the largest standard deviation" in text
    assert "less than a point either way" not in text  # weighted F1-B's interval is wider than +-1 here
    close = rows.assign(f1_b_weighted=[0.99, 0.995, 0.98, 0.986, 0.97, 0.977])
    text = conclusions.seeds_conclusion(seeds.spread(close), seeds.pseudo_label_effect(close), [42, 7, 1])
    assert "weighted F1-B by +0.6 points seed for seed" in text and "less than a point either way" in text

    class Report:
        def summary(self):
            return "96 complete caption groups"

    same = [
        {"variant": v, "seed": s, "test F1-A": 1.0, "test F1-B (weighted)": 1.0, "outside F1-A": np.nan}
        for v in ("paper", "attention")
        for s in (42, 7, 1)
    ]
    assert (
        "Attention: F1-A 100.0 and weighted F1-B 100.0 against 100.0 and 100.0 (paper); it gives the same scores."
        in verdicts.beyond_conclusion(pd.DataFrame(same), None, Report())
    )


def test_the_calibration_conclusion_reads_no_correction_into_an_error_of_zero():
    result = {
        "ece_before": 0.0,
        "ece_after": 0.0,
        "temperature": 0.05,
        "threshold": 0.503,
        "f1_at_best": 1.0,
        "f1_at_half": 1.0,
    }
    text = conclusions.calibration_conclusion(result)
    assert "nothing for scaling to correct" in text and "under-confident" not in text
    text = conclusions.calibration_conclusion({**result, "ece_before": 0.08, "ece_after": 0.01, "temperature": 1.8})
    assert "over-confident; P(AI) = 0.9 should be read after scaling. The F1-maximising" in text


def test_every_analysis_says_which_model_it_reads(smoke_cfg):
    """The recorded conclusion names the model read; a final model whose pool may hold the scored
    images (pool_overlap: keep, the paper's transductive setup) says it has seen them."""
    import dataclasses
    import json

    cfg = dataclasses.replace(smoke_cfg, unlabelled_split="unlabelled", pool_overlap="drop")
    text = analysis.record(cfg, "audit", "Shortcuts: none.", {})
    assert text.startswith("Shortcuts: none. Model read: the study's final model (after pseudo-labels).")
    assert "scored images themselves" not in text
    paper_like = dataclasses.replace(cfg, pool_overlap="keep")
    assert "scored images themselves" in analysis.record(paper_like, "audit", "x", {})
    own = analysis.record(cfg, "baselines", "x", {}, reads="every method trained alike")
    assert own == "x Model read: every method trained alike."
    recorded = json.loads((cfg.reports / "records" / "baselines.json").read_text())["analyses"]["baselines"][
        "conclusion"
    ]
    assert recorded == own


def test_the_baselines_notebook_compares_the_dual_encoder_trained_as_the_baselines_are():
    """Notebook 12's dual-encoder row is trained on the same split with the same budget as the
    image-only baseline (variants.baselines), not the final model after pseudo-labels."""
    import json
    from pathlib import Path

    notebook = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "12_baselines.ipynb").read_text())
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    assert "context.model" not in code
    assert 'variants.load(cfg, trained["dual"])' in code and 'variants.load(cfg, trained["image"])' in code
    from helpers.config import load_config
    from study import variants

    cfg = load_config(Path(__file__).resolve().parents[1] / "params" / "smoke.yaml")
    trained = variants.baselines(cfg)
    assert trained["dual"] == variants.ablation(cfg)["both"] and trained["image"] == variants.ablation(cfg)["image"]
    assert trained["dual"].epochs == cfg.analysis_epochs and trained["dual"].pseudo is None


def test_resampled_scores_under_unit_weights_are_scikit_learns():
    import numpy as np

    from helpers.evaluation.metrics import all_metrics, resampled_headline

    rng = np.random.default_rng(3)
    truth_b = rng.integers(0, 6, 300)
    pred_b = np.where(rng.random(300) < 0.6, truth_b, rng.integers(0, 5, 300))
    truth_a, pred_a = (truth_b != 0).astype(int), (pred_b != 0).astype(int)
    counts = rng.integers(0, 3, 300)
    resampled = resampled_headline(np.stack([np.ones(300), counts]), truth_a, truth_b, pred_a, pred_b)
    plain = all_metrics(truth_a, truth_b, pred_a, pred_b)
    repeated = all_metrics(*(np.repeat(v, counts) for v in (truth_a, truth_b, pred_a, pred_b)))
    for metric in ("f1_a", "f1_b_weighted"):
        assert np.allclose(resampled[metric], [plain[metric], repeated[metric]]), metric


def test_the_bootstrap_interval_covers_the_test_splits_sampling_error_the_seed_interval_leaves_out():
    """Every seed gives the same answers, so the interval over the seeds has no width; the round
    still changes a few test images, and redrawing the test captions shows how unsure that is."""
    import numpy as np

    from helpers.analyses import seeds
    from helpers.inference.cached import decode

    truth = np.tile(np.arange(6), 40)
    captions = np.repeat([f"c{i}" for i in range(40)], 6)
    evaluated = _cached(truth)
    before_b = np.where(np.arange(len(truth)) % 7 == 0, 4, truth)
    after_b = np.where(np.arange(len(truth)) % 11 == 0, 4, truth)

    def answers(label_b):
        probs = np.eye(6)[label_b] * 0.9 + 0.02
        return decode((label_b != 0).astype(float), probs)

    pairs = {seed: {"before": answers(before_b), "after": answers(after_b)} for seed in (1, 2, 3)}
    rows = pd.DataFrame(
        [
            {"seed": seed, "model": model, **common.scores(evaluated, pair[model])}
            for seed, pair in pairs.items()
            for model in ("before", "after")
        ]
    )
    over_seeds = seeds.pseudo_label_effect(rows).loc[("after - before", "f1_b_weighted")]
    resampled = seeds.bootstrap_effect(evaluated, captions, pairs, draws=500).loc[("after - before", "f1_b_weighted")]
    assert over_seeds["ci95_high"] - over_seeds["ci95_low"] < 1e-9 and over_seeds["mean"] > 0
    assert resampled["ci95_low"] < over_seeds["mean"] < resampled["ci95_high"]
    assert resampled["ci95_high"] - resampled["ci95_low"] > 1.0
    text = conclusions.seeds_conclusion(
        seeds.spread(rows),
        seeds.pseudo_label_effect(rows),
        [1, 2, 3],
        resampled=seeds.bootstrap_effect(evaluated, captions, pairs, draws=500),
    )
    assert "training noise alone on this data draw and test split" in text and "500 paired bootstrap draws" in text


def test_a_seed_listed_twice_is_refused_by_name():
    from helpers.analyses import seeds
    from helpers.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"key 'seeds' lists \[7\] more than once"):
        load_config({"profile": "x", "seeds": [42, 7, 7]})
    rows = pd.DataFrame(
        [{"seed": s, "model": m, "f1_a": 1.0, "f1_b_weighted": 1.0} for s in (42, 7, 7) for m in ("before", "after")]
    )
    with pytest.raises(ValueError, match=r"seeds \[7\] have more than one row per model"):
        seeds.pseudo_label_effect(rows)
