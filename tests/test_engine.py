"""The engine (workflow/Snakefile): the study's notebooks as its rules, their parameters, what the
graph holds for a profile, and a failing notebook. The smoke study through it, what makes a result
stale and the study on SLURM: tests/test_smoke_study.py."""

import ast
import os
import sys

import nbformat
import pytest

from conftest import ROOT, copy_project, planned_jobs, snakemake, write_profile
from helpers.config import load_config

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _parameters(notebook):
    nb = nbformat.read(notebook, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{notebook.name} needs exactly one cell tagged 'parameters'"
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert first_code is cells[0], f"{notebook.name}: the parameters cell must be the first code cell"
    tree = ast.parse(cells[0].source)
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_parameters_name_the_run_and_nothing_more(notebook):
    assert _parameters(notebook) == {"profile": "demo", "overrides": {}}


def test_setup_reads_the_profile_file_and_applies_overrides(tmp_path, monkeypatch):
    from helpers.config import ConfigError
    from study import setup

    monkeypatch.chdir(tmp_path)
    cfg = setup.load(
        "smoke", {"epochs": 5, "work_dir": str(tmp_path / "runs"), "report_dir": str(tmp_path / "reports")}
    )
    assert cfg.profile == "smoke" and cfg.epochs == 5 and cfg.learning_rate == 1e-3
    with pytest.raises(ConfigError, match="epochs"):
        setup.load("smoke", {"epochs": "five"})


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_without_outputs(notebook):
    nb = nbformat.read(notebook, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


NOTEBOOK_RULES = {
    "01_explore_data": "explore",
    "02_train": "train",
    "03_pseudo_label": "pseudo_label",
    "04_evaluate": "evaluate",
    "05_shortcut_audit": "shortcut_audit",
    "06_robustness": "robustness",
    "07_modality_ablation": "modality_ablation",
    "08_unseen_generators": "unseen_generators",
    "09_calibration": "calibration",
    "10_seeds": "seeds",
    "11_external": "external",
    "12_baselines": "baselines",
    "13_beyond_the_paper": "beyond_the_paper",
}


def _plan(tmp_path, *config):
    done = snakemake(ROOT, ROOT / "params" / "smoke.yaml", "-n", "--quiet", "rules", config=config, directory=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return planned_jobs(done)


@pytest.mark.slow
def test_the_engine_runs_every_notebook_as_a_rule_of_its_own_then_the_index(tmp_path):
    """The Snakefile is the table of stages: every notebook has its rule, the index comes last."""
    assert sorted(n.stem for n in NOTEBOOKS) == sorted(NOTEBOOK_RULES)
    rules = (ROOT / "workflow" / "Snakefile").read_text()
    for notebook, rule in NOTEBOOK_RULES.items():
        assert f"rule {rule}:" in rules and f'notebook("{notebook}")' in rules, notebook
    assert _plan(tmp_path) == {**dict.fromkeys(NOTEBOOK_RULES.values(), 1), "train_model": 15, "index": 1, "all": 1}


ANALYSIS_NOTEBOOKS = [n for n in NOTEBOOKS if n.stem >= "05"]


@pytest.mark.slow
def test_every_training_is_a_job_and_the_analysis_notebooks_train_nothing(tmp_path):
    """The analyses' models (variants.py) are the train_model rule's jobs, one per model, a model two
    analyses read trained once; with processes > 1 the study's two models are jobs too (under
    torchrun), which notebooks 02 and 03 load. No analysis notebook trains."""
    from study import variants

    cfg = load_config(ROOT / "params" / "smoke.yaml")
    needed = [v for name in cfg.analyses for v in variants.of_analysis(cfg, name)]
    # Seed 0's recipe is the study's own two models; the rest, less those two analyses share, are jobs.
    own = {variants.own(cfg, "before"), variants.own(cfg, "after")}
    assert own <= set(needed) and len(needed) > len(set(needed)) == 17 and len(variants.to_train(cfg)) == 15
    assert _plan(tmp_path, "analyses=[ablation]")["train_model"] == 4
    assert _plan(tmp_path, "analyses=[ablation,baselines]")["train_model"] == 4  # the baselines' two are the ablation's
    # Given as --config, typed as --set types it (numbers, not text), and kept only while read.
    plan = snakemake(
        ROOT,
        ROOT / "params" / "smoke.yaml",
        "-n",
        config=("analyses=[seeds]", "seeds=[0,3]", "keep_analysis_models=false"),
        directory=tmp_path,
    )
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert planned_jobs(plan)["train_model"] == 2 and "models/seed3_epochs2_both_concat_pseudo_none" in plan.stdout
    assert "Would remove temporary output runs/smoke/models/seed3_epochs2_both_concat/model.safetensors" in plan.stdout
    assert "Would remove temporary output runs/smoke/model_" not in plan.stdout
    assert _plan(tmp_path, "analyses=[]", "processes=2") == {
        "explore": 1,
        "train_study_model": 2,
        "train": 1,
        "pseudo_label": 1,
        "evaluate": 1,
        "external": 1,
        "index": 1,
        "all": 1,
    }
    for notebook in ANALYSIS_NOTEBOOKS:
        code = "\n".join(c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code")
        assert not any(call in code for call in ("train_stage", "stage_trainer", "training.train", ".train(")), notebook


def _fake_gpus(folder, listing: str) -> dict:
    """The environment of a machine whose nvidia-smi lists `listing`, with its own lock folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nvidia-smi").write_text(f"#!/bin/sh\nprintf '{listing}'\n")
    (folder / "nvidia-smi").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return {**env, "PATH": f"{folder}:{os.environ['PATH']}", "TMPDIR": str(folder)}


TWO_GPUS = "GPU 0: NVIDIA H100 (UUID: GPU-a)\\nGPU 1: NVIDIA H100 (UUID: GPU-b)\\n"


@pytest.mark.slow
def test_on_a_machine_with_gpus_the_trainings_share_them_out_and_a_cluster_gives_each_its_own(tmp_path):
    """Snakemake hands out no devices: every job that trains holds local_gpus (its processes'
    count), a training job starts under gpus.py, and make passes the machine's GPU count where
    nvidia-smi lists GPUs, not on a cpu-only machine, nor on a cluster."""
    import re
    import subprocess

    plan = snakemake(
        ROOT, ROOT / "params" / "smoke.yaml", "-n", "-p", "--resources", "local_gpus=2", directory=tmp_path
    )
    assert plan.returncode == 0, plan.stderr[-2000:]
    held = {}
    for rule, resources in re.findall(r"^(?:local)?rule (\w+):.*?^    resources: ([^\n]*)", plan.stdout, re.M | re.S):
        held.setdefault(rule, set()).add("local_gpus=1" in resources)
    assert {rule for rule, holds in held.items() if True in holds} == {"train", "pseudo_label", "train_model"}
    assert all(holds == {True} or holds == {False} for holds in held.values()), held
    trainings = [line for line in plan.stdout.splitlines() if "study.train" in line]
    assert trainings and all("scripts/gpus.py 1 " in line for line in trainings)

    def make_paper(gpus: str, *args):
        env = _fake_gpus(tmp_path / f"bin{len(gpus)}", gpus)
        done = subprocess.run(["make", "-n", "-C", str(ROOT), "paper", *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return next(line for line in done.stdout.splitlines() if "snakemake --snakefile" in line)

    assert "--resources local_gpus=2" in make_paper(TWO_GPUS)
    assert "--resources" not in make_paper("")
    assert "--resources" not in make_paper(TWO_GPUS, "SNAKEMAKE_ARGS=--workflow-profile workflow/profiles/slurm")
    assert "--resources" not in make_paper(TWO_GPUS, "SNAKEMAKE_ARGS=--executor slurm")
    # The study's own profile among the arguments is no cluster.
    assert "--resources local_gpus=2" in make_paper(
        TWO_GPUS, "SNAKEMAKE_ARGS=--config profile=params/paper.yaml epochs=2"
    )


def test_each_training_takes_gpus_no_other_holds_and_waits_while_none_is_free(tmp_path):
    """gpus.py on a machine of two GPUs: two trainings get one each, a third waits until one ends
    and then takes the freed one; a training of two takes both; GPUs already named are left alone."""
    import select
    import subprocess

    env = _fake_gpus(tmp_path / "machine", TWO_GPUS)
    shows = "import os, sys; print(os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True); sys.stdin.read()"

    def training(count: int, **extra):
        return subprocess.Popen(
            [sys.executable, str(ROOT / "workflow" / "scripts" / "gpus.py"), str(count), sys.executable, "-c", shows],
            env={**env, **extra},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(job) -> str:
        out, err = job.communicate("", timeout=60)
        assert job.returncode == 0, err
        return out.strip()

    first = training(1)
    assert first.stdout.readline().strip() == "0"
    second = training(1)
    assert second.stdout.readline().strip() == "1"
    third = training(1)
    assert select.select([third.stdout], [], [], 1.0)[0] == []  # both GPUs are held: it waits
    assert "waiting for 1 free GPU(s) of 2" in third.stderr.readline()
    finish(first)
    assert third.stdout.readline().strip() == "0"
    finish(second), finish(third)
    assert finish(training(2)) == "0,1"
    assert finish(training(1, CUDA_VISIBLE_DEVICES="5")) == "5"  # a cluster's allocation, say
    too_many = training(3)
    _, err = too_many.communicate("", timeout=60)
    assert too_many.returncode != 0 and "asks for 3 GPUs and this machine has 2" in err


@pytest.mark.slow
def test_a_profile_that_switches_a_stage_off_leaves_it_out_of_the_graph(tmp_path):
    """No analyses, no outside sets, no pool: the core notebooks and the index only."""
    plan = _plan(tmp_path, "analyses=[]", "external=[]", "unlabelled_split=")
    assert plan == {"explore": 1, "train": 1, "evaluate": 1, "index": 1, "all": 1}


@pytest.mark.slow
def test_the_engine_refuses_a_bad_setting_before_any_work(tmp_path):
    for bad, named in (("batch_size=big", "'batch_size'"), ("batchsize=8", "batchsize")):
        done = snakemake(ROOT, ROOT / "params" / "smoke.yaml", config=(bad,), directory=tmp_path)
        assert done.returncode != 0 and named in done.stdout + done.stderr, bad
    assert not (tmp_path / "runs").exists() and not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_with_several_processes_the_engine_starts_torchrun_and_the_notebook_shows_what_it_saved(tmp_path):
    """processes: 2 — the engine's train_study_model job runs torchrun (the library launches nothing), and
    notebook 02, its rule reading that model, loads it instead of training."""
    import json

    done = snakemake(
        ROOT,
        ROOT / "params" / "smoke.yaml",
        config=("processes=2", "analyses=[]"),
        targets=("train",),
        directory=tmp_path,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    meta = json.loads((tmp_path / "runs" / "smoke" / "model_before" / "training_meta.json").read_text())
    assert meta["processes"] == 2 and meta["per_device_batch"] == 8
    log = (tmp_path / "reports" / "smoke" / "logs" / "model_before.log").read_text()
    assert "train_before_s" in log
    executed = nbformat.read(tmp_path / "reports" / "smoke" / "02_train.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "stage 'before' already finished for this run" in printed


@pytest.mark.slow
def test_a_failing_notebook_stops_the_study_keeps_its_traceback_and_writes_no_index(tmp_path):
    """A data source that does not exist: the training notebook fails; its executed copy with the
    traceback stays in the rule's log, where Snakemake's error points; no index is written."""
    profile = write_profile(
        tmp_path / "smoke.yaml",
        {
            **load_config(ROOT / "params" / "smoke.yaml").to_dict(),
            "dataset": str(tmp_path / "nowhere"),
            "analyses": [],
            "work_dir": "runs",
            "report_dir": "reports",
        },
    )
    done = snakemake(ROOT, profile, directory=tmp_path)
    assert done.returncode != 0
    log = tmp_path / "reports" / "smoke" / "logs" / "02_train.ipynb"
    assert str(log.relative_to(tmp_path)) in done.stdout + done.stderr
    executed = nbformat.read(log, as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and errors[0]["ename"] == "DataError" and "nowhere" in errors[0]["evalue"]
    assert not (tmp_path / "reports" / "smoke" / "index.html").exists()
    assert not (tmp_path / "reports" / "smoke" / "02_train.ipynb").exists()


# What the science library never touches: the study above it, the notebook and engine machinery,
# and starting processes.
NOT_SCIENCE = ("study", "papermill", "nbclient", "nbformat", "jupyter_client", "snakemake", "subprocess")


def _imported(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


@pytest.mark.slow
def test_the_science_library_imports_nothing_of_the_study_the_notebooks_or_the_engine_and_launches_nothing():
    """Every module of src/helpers names none of NOT_SCIENCE in its imports, and each one imports
    in a process where the study package and the notebook and engine packages cannot be found."""
    import subprocess
    import sys

    package = ROOT / "src" / "helpers"
    found = {
        f"{path.relative_to(package)}: {name}"
        for path in package.rglob("*.py")
        for name in _imported(path)
        if name.split(".")[0] in NOT_SCIENCE
    }
    assert not found, f"orchestration in the science library: {sorted(found)}"
    blocked = [name for name in NOT_SCIENCE if name != "subprocess"]
    script = (
        "import importlib, pkgutil, sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import helpers\n"
        "for module in pkgutil.walk_packages(helpers.__path__, 'helpers.'): importlib.import_module(module.name)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]


# The typed profile itself, and the entry point shipped with the library (ct2-predict checks its --set
# values as a profile's): the only modules of src/helpers that may hold the whole profile.
PROFILE_LAYER = {"config.py", "profiles.py", "overrides.py", "predict.py"}


def test_science_functions_take_what_they_use_never_the_whole_profile():
    """Outside PROFILE_LAYER no function of src/helpers has a parameter named cfg or typed Config,
    and no module imports the profile: the model factory, the data loading and the training set-up
    take their spec (cfg.model_spec, cfg.data_spec, cfg.training_spec)."""
    package = ROOT / "src" / "helpers"
    found = []
    for path in package.rglob("*.py"):
        if path.name in PROFILE_LAYER and path.parent == package:
            continue
        tree = ast.parse(path.read_text())
        found += [
            f"{path.relative_to(package)}: {name}"
            for name in _imported(path)
            if name in ("helpers.config", "helpers.profiles")
        ]
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
                found += [
                    f"{path.relative_to(package)}: {node.name}({arg.arg})"
                    for arg in arguments
                    if arg.arg == "cfg" or (arg.annotation is not None and ast.unparse(arg.annotation) == "Config")
                ]
    assert not found, f"science functions given the whole profile: {sorted(found)}"


@pytest.mark.slow
def test_the_science_library_installs_from_a_wheel_and_scores_images_outside_the_checkout(tmp_path, trained_dir):
    """src/helpers is a library: built as a wheel, installed apart from the checkout, imported from
    another folder (no notebooks/, no workflow/ beside it), its ct2-predict scores a folder of images
    with a saved model."""
    import subprocess
    import sys

    from conftest import png_bytes

    dist, site, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    source = copy_project(tmp_path / "source")  # setuptools builds in the source folder (build/)
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(dist.glob("ct2_detector-*.whl"))
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    (elsewhere / "images").mkdir(parents=True)
    for i, color in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        (elsewhere / "images" / f"{i}.png").write_bytes(png_bytes(size=(40, 30), color=color))
    env = {**__import__("os").environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import helpers.config, helpers.predict; print(helpers.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0 and where.stdout.strip().startswith(str(site)), where.stderr[-2000:]
    scored = subprocess.run(
        [
            sys.executable,
            str(site / "bin" / "ct2-predict"),
            "--model",
            str(trained_dir),
            "--images",
            "images",
            "--out",
            "p.csv",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert len((elsewhere / "p.csv").read_text().splitlines()) == 1 + 3
