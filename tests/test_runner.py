import ast
import json

import nbformat
import pytest
import yaml

from conftest import ROOT
from helpers.config import ANALYSES
from helpers.run import main, run_study

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
    from helpers import study
    from helpers.config import ConfigError

    monkeypatch.chdir(tmp_path)
    cfg = study.setup({"profile": "smoke", "overrides": {"epochs": 5, "work_dir": str(tmp_path / "runs"),
                                                        "report_dir": str(tmp_path / "reports")}})
    assert cfg.profile == "smoke" and cfg.epochs == 5 and cfg.learning_rate == 1e-3
    with pytest.raises(ConfigError, match="epochs"):
        study.setup({"profile": "smoke", "overrides": {"epochs": "five"}})


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_without_outputs(notebook):
    nb = nbformat.read(notebook, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_smoke_profile_through_the_runner(tmp_path, smoke_cfg):
    profile = tmp_path / "smoke.yaml"
    profile.write_text(yaml.safe_dump(smoke_cfg.to_dict()))
    record = run_study(profile, root=ROOT)
    assert [s["status"] for s in record["stages"]] == ["ok"] * len(NOTEBOOKS)
    reports = ROOT / smoke_cfg.reports
    for notebook in NOTEBOOKS:
        assert (reports / notebook.name).is_file() and (reports / f"{notebook.stem}.html").is_file()
    metrics = json.loads((reports / "metrics.json").read_text())
    for split in ("validation", "test"):
        for stage in ("before", "after"):
            assert {"acc_a", "precision_a", "recall_a", "f1_a", "acc_b", "precision_b_weighted", "recall_b_weighted",
                    "f1_b_weighted"} <= set(metrics[split][stage])
    assert metrics["pseudo"]["pool"] > 0
    provenance = json.loads((reports / "provenance.json").read_text())
    assert provenance["params"]["profile"] == "smoke" and provenance["git_sha"] and provenance["versions"]["torch"]
    assert all(s["seconds"] > 0 for s in provenance["stages"])
    index = (reports / "index.html").read_text()
    assert "cm_test_after.png" in index and "F1 A" in index
    assert set(metrics["analyses"]) == set(ANALYSES)
    for name, item in metrics["analyses"].items():
        assert item["conclusion"] in index.replace("&#x27;", "'") and f"href='{item['html']}'" in index, name
    assert "<h3>" in index and (reports / "figures" / "cm_test_after.png").is_file()


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("profile = 'x'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(s) for s in sources)]
    nbformat.write(nb, path)


def test_a_failing_notebook_stops_the_run_and_names_the_error(tmp_path, capsys):
    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "01_fine.ipynb", "print('fine')")
    _notebook(tmp_path / "notebooks" / "02_broken.ipynb", "x = 1", "raise ValueError('the data went missing')")
    _notebook(tmp_path / "notebooks" / "03_never.ipynb", "print('never')")
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump({"profile": "broken", "report_dir": str(tmp_path / "reports"), "notebook_timeout": 120}))
    record = run_study(profile, root=tmp_path)
    assert [s["status"] for s in record["stages"]] == ["ok", "failed"]
    assert "ValueError: the data went missing" in record["stages"][1]["error"]
    out = tmp_path / "reports" / "broken"
    assert (out / "02_broken.ipynb").is_file() and (out / "02_broken.html").is_file() and not (out / "03_never.ipynb").exists()
    assert "the data went missing" in (out / "index.html").read_text()


def test_config_errors_stop_the_runner_before_any_work(tmp_path, capsys):
    profile = tmp_path / "bad.yaml"
    profile.write_text("profile: bad\nepochs: many\n")
    assert main([str(profile)]) == 2
    assert "'epochs'" in capsys.readouterr().err
