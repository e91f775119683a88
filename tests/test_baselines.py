"""The baselines of notebook 12 on tiny data: frozen features extracted once, each linear probe's
fit and predict, and the table's scores against hand-computed values."""

import numpy as np
import pytest

from helpers.analyses.baselines import scores
from helpers.evaluation import probes


def _separable(n=60, seed=0):
    rng = np.random.default_rng(seed)
    label = np.repeat([0, 1], n // 2)
    features = rng.normal(0, 1, (n, 8)) + 6.0 * label[:, None] * np.eye(8)[0]
    return features, label


def test_the_logistic_probe_and_the_few_pair_svm_separate_separable_features():
    features, label = _separable()
    test, truth = _separable(40, seed=1)
    assert (probes.logistic_probe(features, label, 0).predict(test) == truth).mean() >= 0.95
    svm, used = probes.few_shot_svm(features, label, pairs=10, seed=0)
    assert used == 10 and (svm.predict(test) == truth).mean() >= 0.9
    assert probes.few_shot_svm(features, label, pairs=1000, seed=0)[1] == 30  # all of the smaller class


def test_frozen_features_are_extracted_once_per_split_and_tower(
    tmp_path, smoke_cfg, smoke_splits, smoke_model, monkeypatch
):
    from study import stages

    model, tokenizer = smoke_model
    cached = stages.caches_for(smoke_cfg, smoke_splits, tokenizer, model.config.image_size, ["test"])["test"]
    first = probes.cached_features(model, cached, tmp_path)
    assert first.shape == (len(cached), model.vision_encoder.config.hidden_size)
    monkeypatch.setattr(probes, "vision_features", lambda *a, **k: pytest.fail("features extracted twice"))
    assert np.array_equal(probes.cached_features(model, cached, tmp_path), first)


def test_frozen_features_see_what_the_profiles_tower_sees_and_are_kept_apart_per_input(
    tmp_path, smoke_cfg, smoke_splits, smoke_model
):
    """Under vision_input: npr the probes read the residuals the detector's tower reads, and features
    of the same weights on raw pixels are never taken for them."""
    import torch

    from helpers.modeling.detector import npr_residual
    from study import stages

    model, tokenizer = smoke_model
    cached = stages.caches_for(smoke_cfg, smoke_splits, tokenizer, model.config.image_size, ["test"])["test"]
    on_pixels = probes.cached_features(model, cached, tmp_path)
    model.config.vision_input = "npr"
    try:
        on_residuals = probes.cached_features(model, cached, tmp_path)
        with torch.inference_mode():
            pixels = model.normalise(torch.from_numpy(np.asarray(cached.pixels[np.arange(4)])))
            out = model.vision_encoder(pixel_values=npr_residual(pixels))
        expected = out.pooler_output.flatten(1) if out.pooler_output.dim() > 2 else out.pooler_output
    finally:
        model.config.vision_input = "pixels"
    assert not np.allclose(on_residuals, on_pixels)
    assert np.allclose(on_residuals[:4], expected.float().numpy(), atol=1e-5)


def test_baseline_scores_against_hand_computed_values():
    label_a, label_b = np.array([0, 0, 1, 1, 1, 1]), np.array([0, 0, 2, 2, 5, 5])
    row = scores(label_a, label_b, np.array([1, 0, 1, 0, 1, 1]), np.array([2, 0, 2, 0, 5, 3]))
    assert row["real_called_ai"] == 0.5 and row["recall SDXL"] == 0.5 and row["recall Midjourney 6"] == 1.0
    assert np.isclose(row["f1_a"], 2 * 0.75 * 0.75 / 1.5)  # TP 3, FP 1, FN 1
    assert "f1_b_weighted" in row and "f1_b_weighted" not in scores(label_a, label_b, np.ones(6, int))


def test_the_reports_index_names_each_baselines_source_and_the_paper(tmp_path):
    from report import write_index

    entry = {"title": "Baselines", "conclusion": "c", "html": "12_baselines.html", "figures": [], "numbers": {}}
    page = write_index(tmp_path, {"params": {"profile": "x"}, "stages": []}, {"analyses": {"baselines": entry}})
    for author, link in (
        ("Moskowitz", "2404.08788"),
        ("Ojha", "2302.10174"),
        ("Cozzolino", "2312.00195"),
        ("Guo &amp; Zubiaga", "2602.23863"),
    ):
        assert author in page.read_text() and f"https://arxiv.org/abs/{link}" in page.read_text()
    assert "Moskowitz" not in write_index(tmp_path, {"params": {"profile": "x"}, "stages": []}, {}).read_text()
