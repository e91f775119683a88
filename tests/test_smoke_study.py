"""The one smoke study the slow tests read, run once: the whole study through the runner, its two
training stages under torchrun in two processes, with a test image that does not decode under
bad_images: zero. make test gives this module to one test process (--dist loadfile), so the study
runs once per session."""

import html
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import ROOT, write_profile
from helpers.config import ANALYSES, load_config
from helpers.run import run_study

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@dataclass
class SmokeStudy:
    """The shared smoke study: its profile, config, the runner's record and where it wrote."""

    profile: Path
    cfg: object
    record: dict
    runs: Path
    reports: Path


@pytest.fixture(scope="module")
def smoke_study(smoke_cfg, smoke_splits, tmp_path_factory) -> SmokeStudy:
    """The whole smoke study through the runner, once, under the conditions the slow tests each
    guard: its two training stages under torchrun in two processes (processes: 2, an override), and
    a test image that does not decode under bad_images: zero (every notebook must apply the rule).
    The notebooks from 04 run two at a time in warm kernels (the smoke profile's lanes)."""
    import datasets

    base = tmp_path_factory.mktemp("smoke_study")
    parts = dict(smoke_splits)
    stored = datasets.Image(decode=False)
    test = parts["test"].cast_column("Image", stored)
    rows = test.to_dict()
    rows["Image"][0] = {"bytes": b"this is not an image", "path": None}
    parts["test"] = datasets.Dataset.from_dict(rows, features=test.features).cast_column("Image", datasets.Image())
    datasets.DatasetDict(parts).save_to_disk(str(base / "data"))
    values = {
        **smoke_cfg.to_dict(),
        "dataset": str(base / "data"),
        "bad_images": "zero",
        "work_dir": str(base / "runs"),
        "report_dir": str(base / "reports"),
    }
    profile = write_profile(base / "smoke.yaml", values)
    record = run_study(profile, root=ROOT, overrides={"processes": 2})
    cfg = load_config({**values, "processes": 2})
    return SmokeStudy(profile, cfg, record, cfg.run_dir, cfg.reports)


@pytest.mark.slow
def test_smoke_profile_through_the_runner(smoke_study):
    """The whole study; its two training stages run under torchrun in two processes (processes: 2),
    the notebooks loading what those saved (CI's `make smoke` covers the in-process path)."""
    record, cfg = smoke_study.record, smoke_study.cfg
    assert [s["status"] for s in record["stages"]] == ["ok"] * len(NOTEBOOKS)
    assert record["overrides"] == {"processes": 2} and record["params"]["processes"] == 2
    trained = json.loads((smoke_study.runs / "model_after" / "training_meta.json").read_text())
    assert trained["processes"] == 2
    reports = smoke_study.reports
    for notebook in NOTEBOOKS:
        assert (reports / notebook.name).is_file() and (reports / f"{notebook.stem}.html").is_file()
    metrics = json.loads((reports / "metrics.json").read_text())
    for split in ("validation", "test"):
        for stage in ("before", "after"):
            assert {
                "acc_a",
                "precision_a",
                "recall_a",
                "f1_a",
                "acc_b",
                "precision_b_weighted",
                "recall_b_weighted",
                "f1_b_weighted",
            } <= set(metrics[split][stage])
    assert metrics["pseudo"]["pool"] > 0
    provenance = json.loads((reports / "provenance.json").read_text())
    assert provenance["params"]["profile"] == "smoke" and provenance["git_sha"] and provenance["versions"]["torch"]
    assert all(s["seconds"] > 0 for s in provenance["stages"])
    index = html.unescape((reports / "index.html").read_text())
    assert "cm_test_after.png" in index and "F1 A" in index
    assert set(metrics["analyses"]) == set(ANALYSES)
    for name, item in metrics["analyses"].items():
        assert item["conclusion"] in index and f'href="{item["html"]}"' in index, name
    assert "<h3>" in index and (reports / "figures" / "cm_test_after.png").is_file()
    beyond = metrics["analyses"]["beyond"]["numbers"]
    assert "Beyond the paper" in index and "attention fusion" in index and "class quota" in index
    assert {r["variant"] for r in beyond["rows"]} >= {"attention fusion", "pseudo-labels: class quota"}
    assert metrics["caption_groups"]["groups"]["test"]["groups"]["complete"] == cfg.synthetic_captions["test"]
    outside = metrics["external"]["outside"]
    assert "Outside the training distribution" in index and outside["conclusion"] in index
    assert set(outside["views"]) == {"as the files are", "neutral view"} and (reports / outside["figure"]).is_file()
    assert "unseen_vq" in outside["views"]["neutral view"]["recall_per_generator"]


@pytest.mark.slow
def test_the_smoke_study_runs_to_the_end_with_an_unreadable_test_image_under_bad_images_zero(smoke_study):
    """Every notebook applies the profile's bad-image rule: the unreadable image is the all-zero
    input everywhere, the perturbed and neutral views of notebooks 05, 06 and 11 included."""
    assert smoke_study.cfg.bad_images == "zero"
    stages = smoke_study.record["stages"]
    assert all(s["status"] == "ok" for s in stages), [s for s in stages if s["status"] != "ok"]
    metrics = json.loads((smoke_study.reports / "metrics.json").read_text())
    assert {"audit", "robustness"} <= set(metrics["analyses"])
    # Scored, not left out: every test row is in the predictions, the unreadable one marked.
    scored = pd.read_csv(smoke_study.reports / "predictions" / "test_after.csv")
    assert len(scored) == 6 * smoke_study.cfg.synthetic_captions["test"]
    assert scored.loc[scored.unreadable_image, "source_row"].tolist() == [0]


@pytest.mark.slow
def test_the_warm_kernel_gives_the_numbers_a_kernel_per_notebook_gives(smoke_study, tmp_path):
    """What a notebook trains does not depend on what ran before it in the same kernel: notebook 10
    trained its seed-1 models in a lane's warm kernel after other notebooks; run again on a copy of
    that study, in kernels of their own (09 beside it, so with the same torch threads), it trains
    models that score the same."""
    copy = tmp_path / "copy"
    shutil.copytree(smoke_study.runs, copy / "runs" / "smoke", ignore=shutil.ignore_patterns("analysis_models"))
    shutil.copytree(smoke_study.reports, copy / "reports" / "smoke")
    values = {**smoke_study.cfg.to_dict(), "work_dir": str(copy / "runs"), "report_dir": str(copy / "reports")}
    profile = write_profile(tmp_path / "smoke.yaml", values)
    record = run_study(profile, only=["09", "10"], root=ROOT, kernel_per_notebook=True)
    assert [(s["notebook"], s["status"]) for s in record["stages"] if s["notebook"][:2] in {"09", "10"}] == [
        ("09_calibration", "ok"),
        ("10_seeds", "ok"),
    ]
    executed = nbformat.read(copy / "reports" / "smoke" / "10_seeds.ipynb", as_version=4)
    loaded = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    # Seed 0 is the study's own two models, loaded; seed 1's two were trained here.
    assert loaded.count("the same training was done before") == 2, loaded
    per_seed = [
        json.loads((folder / "smoke" / "metrics.json").read_text())["seeds"]["per_seed"]
        for folder in (smoke_study.reports.parent, copy / "reports")
    ]
    assert per_seed[0] == per_seed[1] and set(per_seed[0]) == {"0", "1"}


@pytest.mark.slow
def test_each_conclusion_names_the_models_it_read_and_a_card_carries_only_its_own(smoke_study):
    """The ablation, the held-out generators, the seeds and the variants score models they trained:
    their conclusions say so, not 'the study's final model', and none of them lands in the final
    model's card, which carries the conclusions about itself (the audit, robustness, calibration)."""
    analyses = json.loads((smoke_study.reports / "metrics.json").read_text())["analyses"]
    for name in ("ablation", "unseen", "seeds", "beyond", "baselines"):
        assert "the study's final model" not in analyses[name]["conclusion"], name
        assert analyses[name]["model"] is None, name
    for name in ("audit", "robustness", "calibration"):
        assert "Model read: the study's final model (after pseudo-labels)" in analyses[name]["conclusion"], name
        assert analyses[name]["model"] == "after", name
    card = (smoke_study.runs / "model_after" / "README.md").read_text()
    assert analyses["unseen"]["title"] not in card and analyses["ablation"]["title"] not in card
    assert all(analyses[name]["title"] in card for name in ("audit", "robustness", "calibration"))
