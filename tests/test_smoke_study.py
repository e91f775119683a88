"""The one smoke study the slow tests read, run once through the engine (workflow/Snakefile) on a
copy of the project, so that the tests may change its code and settings and ask the engine what
that makes stale: every training a job of its own (the analyses' models too), a test image that does
not decode under bad_images: zero, and every analysis but calibration (added later, by a test).
make test gives this module to one test process (--dist loadfile), so the study runs once."""

import html
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, copy_project, planned_jobs, snakemake, write_profile
from helpers.config import ANALYSES, load_config

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# Left out of the study at first: adding it must run it and the index only.
ADDED_LATER = "calibration"
STUDIED = [name for name in ANALYSES if name != ADDED_LATER]
AS_STUDIED = (f"analyses=[{','.join(STUDIED)}]",)


@dataclass
class SmokeStudy:
    """The shared smoke study: the project copy it ran in, its profile and config, where it wrote."""

    project: Path
    profile: Path
    cfg: object
    runs: Path
    reports: Path

    def plan(self, *config) -> dict[str, int]:
        """The jobs a dry run of the study with these overrides (on top of AS_STUDIED) would run."""
        done = snakemake(self.project, self.profile, "-n", "--quiet", "rules", config=(*AS_STUDIED, *config))
        assert done.returncode == 0, done.stderr[-3000:]
        return planned_jobs(done)


@pytest.fixture(scope="module")
def smoke_study(smoke_cfg, smoke_splits, tmp_path_factory) -> SmokeStudy:
    import datasets

    project = copy_project(tmp_path_factory.mktemp("smoke_study") / "project")
    parts = dict(smoke_splits)
    stored = datasets.Image(decode=False)
    test = parts["test"].cast_column("Image", stored)
    rows = test.to_dict()
    rows["Image"][0] = {"bytes": b"this is not an image", "path": None}
    parts["test"] = datasets.Dataset.from_dict(rows, features=test.features).cast_column("Image", datasets.Image())
    datasets.DatasetDict(parts).save_to_disk(str(project / "data"))
    values = {
        **smoke_cfg.to_dict(),
        "dataset": str(project / "data"),
        "bad_images": "zero",
        "work_dir": "runs",
        "report_dir": "reports",
    }
    profile = write_profile(project / "smoke.yaml", values)
    done = snakemake(project, profile, config=AS_STUDIED)
    assert done.returncode == 0, done.stderr[-5000:]
    cfg = load_config({**values, "analyses": STUDIED})
    return SmokeStudy(project, profile, cfg, project / cfg.run_dir, project / cfg.reports)


@pytest.mark.slow
def test_smoke_profile_through_the_engine(smoke_study):
    """The whole study: notebooks 02 and 03 train the study's models, each of the analyses' models is
    a training job of its own (its log beside the notebooks'), which the analyses load."""
    from study import variants

    cfg, reports = smoke_study.cfg, smoke_study.reports
    trained = json.loads((smoke_study.runs / "model_after" / "training_meta.json").read_text())
    assert trained["processes"] == 1
    jobs = variants.to_train(cfg)
    assert len(jobs) == 15  # 4 ablation + 5 held out + 2 for seed 1 + 2 fusions of seed 1 + 2 rules, less shared ones
    for name in jobs:
        assert (smoke_study.runs / "models" / name / "model.safetensors").is_file(), name
        assert (
            "train_before_s" in (reports / "logs" / "models" / f"{name}.log").read_text()
            or "train_after_s" in (reports / "logs" / "models" / f"{name}.log").read_text()
        )
    ran = [n for n in NOTEBOOKS if n.stem != "09_calibration"]
    for notebook in ran:
        assert (reports / notebook.name).is_file() and (reports / f"{notebook.stem}.html").is_file()
    assert not (reports / "09_calibration.ipynb").exists()
    metrics = json.loads((reports / "metrics.json").read_text())
    for split in ("validation", "test"):
        for stage in ("before", "after"):
            assert {"acc_a", "precision_a", "recall_a", "f1_a", "acc_b", "f1_b_weighted"} <= set(metrics[split][stage])
    assert metrics["pseudo"]["pool"] > 0
    provenance = json.loads((reports / "provenance.json").read_text())
    assert provenance["params"]["profile"] == "smoke" and provenance["params"]["processes"] == 1
    assert provenance["git_sha"] and provenance["versions"]["torch"] and provenance["total_seconds"] > 0
    assert [s["notebook"] for s in provenance["stages"]] == [n.stem for n in ran] and all(
        s["seconds"] > 0 for s in provenance["stages"]
    )
    assert load_config(reports / "profile.yaml") == cfg
    index = html.unescape((reports / "index.html").read_text())
    assert "cm_test_after.png" in index and "F1 A" in index
    assert set(metrics["analyses"]) == set(STUDIED)
    for name, item in metrics["analyses"].items():
        assert item["conclusion"] in index and f'href="{item["html"]}"' in index, name
    assert "Shortcut audit" in index and (reports / "figures" / "cm_test_after.png").is_file()
    beyond = metrics["analyses"]["beyond"]["numbers"]
    assert "Beyond the paper" in index and "attention fusion" in index and "class quota" in index
    assert {r["variant"] for r in beyond["rows"]} >= {"attention fusion", "pseudo-labels: class quota"}
    assert metrics["caption_groups"]["groups"]["test"]["groups"]["complete"] == cfg.synthetic_captions["test"]
    outside = metrics["external"]["outside"]
    assert "Outside the training distribution" in index and outside["conclusion"] in index
    assert set(outside["views"]) == {"as the files are", "neutral view"} and (reports / outside["figure"]).is_file()


@pytest.mark.slow
def test_the_smoke_study_runs_to_the_end_with_an_unreadable_test_image_under_bad_images_zero(smoke_study):
    """Every notebook applies the profile's bad-image rule: the unreadable image is the all-zero
    input everywhere, the perturbed and neutral views of notebooks 05, 06 and 11 included."""
    assert smoke_study.cfg.bad_images == "zero"
    metrics = json.loads((smoke_study.reports / "metrics.json").read_text())
    assert {"audit", "robustness"} <= set(metrics["analyses"])
    # Scored, not left out: every test row is in the predictions, the unreadable one marked.
    scored = pd.read_csv(smoke_study.reports / "predictions" / "test_after.csv")
    assert len(scored) == 6 * smoke_study.cfg.synthetic_captions["test"]
    assert scored.loc[scored.unreadable_image, "source_row"].tolist() == [0]


@pytest.mark.slow
def test_each_conclusion_names_the_models_it_read_and_a_card_carries_only_its_own(smoke_study):
    """The ablation, the held-out generators, the seeds and the variants score models they trained:
    their conclusions say so, not 'the study's final model', and none of them lands in the final
    model's card, which carries the conclusions about itself (the audit, robustness)."""
    analyses = json.loads((smoke_study.reports / "metrics.json").read_text())["analyses"]
    for name in ("ablation", "unseen", "seeds", "beyond", "baselines"):
        assert "the study's final model" not in analyses[name]["conclusion"], name
        assert analyses[name]["model"] is None, name
    for name in ("audit", "robustness"):
        assert "Model read: the study's final model (after pseudo-labels)" in analyses[name]["conclusion"], name
        assert analyses[name]["model"] == "after", name
    card = (smoke_study.runs / "model_after" / "README.md").read_text()
    assert analyses["unseen"]["title"] not in card and analyses["ablation"]["title"] not in card
    assert all(analyses[name]["title"] in card for name in ("audit", "robustness"))


CORE_AFTER_POOL = {"pseudo_label", "evaluate", "external", "index", "all"}
TRAINING_ANALYSES = {"modality_ablation", "unseen_generators", "seeds", "baselines", "beyond_the_paper"}
SCORING_ANALYSES = {"shortcut_audit", "robustness"}


@pytest.mark.slow
def test_the_engine_reruns_what_a_setting_it_reads_changes_and_nothing_else(smoke_study):
    """Staleness is the engine's: each rule reruns when the values it reads or its input files change."""
    from study import variants

    assert smoke_study.plan() == {}
    # The second training and all that reads it, never the first training or the data notebook.
    # Of the analyses' models, those trained after a pseudo-label round only.
    planned = smoke_study.plan("pseudo_threshold=0.9")
    assert set(planned) == CORE_AFTER_POOL | TRAINING_ANALYSES | SCORING_ANALYSES | {"train_model"}
    after = [name for name, v in variants.to_train(smoke_study.cfg).items() if v.pseudo is not None]
    assert planned["train_model"] == len(after) == 3
    assert smoke_study.plan("eval_batch_size=32") == {}  # how many rows are scored at once
    # The outside sets: the notebooks that score them, and the index.
    outside = "external=[{name: other, source: synthetic, captions: 2}]"
    assert set(smoke_study.plan(outside)) == {"external", "baselines", "beyond_the_paper", "index", "all"}
    # An analysis added: it and the index only.
    assert smoke_study.plan(f"analyses=[{','.join(ANALYSES)}]") == {"calibration": 1, "index": 1, "all": 1}


@pytest.mark.slow
def test_a_change_to_the_training_code_reruns_every_training_and_a_new_option_at_its_default_none(smoke_study):
    """The modeling, training and data sources are inputs of every rule that trains: a change to the
    loss retrains the models (and reruns what reads them). A new profile key at its default changes
    no rule's values, so everything stays current."""
    loss = smoke_study.project / "src" / "helpers" / "modeling" / "loss.py"
    original = loss.read_text()
    loss.write_text(original + "\n# a change\n")
    try:
        planned = smoke_study.plan()
    finally:
        loss.write_text(original)
    assert {"train", "pseudo_label"} | TRAINING_ANALYSES <= set(planned) and "explore" not in planned
    assert planned["train_model"] == 15  # every analysis model
    config, profiles = (smoke_study.project / "src" / "helpers" / f"{name}.py" for name in ("config", "profiles"))
    before = config.read_text(), profiles.read_text()
    config.write_text(before[0].replace("    epochs: Count = 8\n", "    epochs: Count = 8\n    new_option: int = 0\n"))
    profiles.write_text(before[1].replace('        "epochs",\n', '        "epochs",\n        "new_option",\n'))
    try:
        assert "new_option" in config.read_text() and "new_option" in profiles.read_text()
        assert smoke_study.plan() == {}
    finally:
        config.write_text(before[0])
        profiles.write_text(before[1])


@pytest.mark.slow
def test_the_study_on_a_slurm_cluster_gives_the_figures_of_the_local_run(smoke_study, tmp_path):
    """The training and evaluation stages (02, 03, 04: each a SLURM job, each reading the files the
    one before wrote) through Snakemake's SLURM executor and the project's SLURM profile, on a
    one-node cluster started here, with the settings of the shared study: the same scores."""
    started = subprocess.run(["bash", str(ROOT / "tests" / "start_local_slurm.sh")], capture_output=True, text=True)
    if started.returncode != 0 and "root" in started.stderr:
        pytest.skip(f"SLURM cannot be started here: {started.stderr[-300:]}")
    assert started.returncode == 0, started.stderr[-2000:]
    partition = started.stdout.split()[-1]
    project = copy_project(tmp_path / "project")
    profile = shutil.copy(smoke_study.profile, project / "smoke.yaml")
    done = snakemake(
        project,
        profile,
        "--workflow-profile",
        str(project / "workflow" / "profiles" / "slurm"),
        # Polled every 2 s, not every 10: the jobs here last seconds.
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--seconds-between-status-checks",
        "2",
        # The cluster here: its partition, two CPUs and no GPU to ask for.
        "--default-resources",
        f"slurm_partition={partition}",
        "mem_mb=4000",
        "runtime=30",
        "cpus_per_task=2",
        "--set-resources",
        *(f"{rule}:slurm_extra=''" for rule in ("train", "pseudo_label")),
        config=AS_STUDIED,
        targets=("evaluate",),
        timeout=1200,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    submitted = done.stdout + done.stderr
    assert all(f"rule {rule}:" in submitted for rule in ("train", "pseudo_label", "evaluate"))
    assert submitted.count("has been submitted with SLURM jobid") == 3
    cluster = json.loads((project / "reports" / "smoke" / "records" / "evaluation.json").read_text())
    local = json.loads((smoke_study.reports / "metrics.json").read_text())
    assert cluster["validation"] == local["validation"] and cluster["test"] == local["test"]


@pytest.mark.slow
def test_an_analysis_taken_off_the_profile_is_taken_off_the_index(smoke_study):
    """Run last: it changes the shared study's report. Only the index reruns, without the analysis."""
    shutil.rmtree(smoke_study.project / ".snakemake" / "locks", ignore_errors=True)
    kept = [name for name in STUDIED if name != "robustness"]
    done = snakemake(smoke_study.project, smoke_study.profile, config=(f"analyses=[{','.join(kept)}]",))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Rule: index" in done.stderr + done.stdout and "Rule: robustness" not in done.stderr + done.stdout
    index = html.unescape((smoke_study.reports / "index.html").read_text())
    metrics = json.loads((smoke_study.reports / "metrics.json").read_text())
    assert "robustness" not in metrics["analyses"] and "06_robustness.html" not in index
    assert "Robustness" not in index and "05_shortcut_audit.html" in index
