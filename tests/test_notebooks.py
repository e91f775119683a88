"""The notebooks are the study: a person steps through them in a kernel of their own, as JupyterLab
runs them (from notebooks/), and finds the objects each one made; every step is a short cell; a
notebook hands nothing to a module."""

import json

import nbformat
import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CORE = [nb for nb in NOTEBOOKS if nb.stem[:2] <= "04"]


def _code_cells(notebook):
    return [
        c
        for c in nbformat.read(notebook, as_version=4).cells
        if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])
    ]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_hands_its_namespace_to_a_module_and_every_cell_is_short(notebook):
    cells = _code_cells(notebook)
    assert not any("globals()" in c.source or "locals()" in c.source for c in cells)
    assert all(len(c.source.splitlines()) <= 12 for c in cells), [
        c.source for c in cells if len(c.source.splitlines()) > 12
    ]


@pytest.mark.parametrize("notebook", CORE, ids=lambda p: p.stem)
def test_the_core_notebooks_show_their_steps_as_cells(notebook):
    assert len(_code_cells(notebook)) >= 6


def _step_through(notebook, parameters: dict, probe: str) -> dict:
    """Execute the notebook cell by cell in a new kernel started in notebooks/, with the parameters
    cell set to `parameters`, then one more cell that prints json of `probe` (an expression over the
    notebook's namespace)."""
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    nb.cells.append(nbformat.v4.new_code_cell(f"import json\nprint(json.dumps({probe}))"))
    NotebookClient(
        nb, timeout=600, kernel_name="ct2-detector", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    return json.loads(nb.cells[-1].outputs[0]["text"])


@pytest.mark.slow
def test_stepping_through_02_03_and_an_analysis_leaves_the_objects_they_made(tmp_path):
    parameters = {
        "profile": "smoke",
        "overrides": {"work_dir": str(tmp_path / "runs"), "report_dir": str(tmp_path / "reports")},
    }
    notebooks = {nb.stem[:2]: nb for nb in NOTEBOOKS}
    probe = (
        "{'profile': cfg.profile, 'module': isinstance(model, __import__('torch').nn.Module), "
        "'splits': sorted(splits), 'trained_rows': len(caches['train'])}"
    )
    after_02 = _step_through(notebooks["02"], parameters, probe)
    assert after_02 == {
        "profile": "smoke",
        "module": True,
        "splits": ["test", "train", "unlabelled", "validation"],
        "trained_rows": 96,
    }
    after_03 = _step_through(
        notebooks["03"],
        parameters,
        probe + " | {'to_train': int(selected.stats['to_train']), 'train_plus': len(train_plus)}",
    )
    assert after_03["profile"] == "smoke" and after_03["module"]
    assert after_03["train_plus"] == 96 + after_03["to_train"]
    calibration = _step_through(
        notebooks["09"],
        parameters,
        "{'profile': cfg.profile, 'split': context.split_name, 'scored': len(eval_preds.prob_ai), "
        "'numbers': sorted(numbers), 'figures': figures}",
    )
    assert (
        calibration["profile"] == "smoke" and calibration["scored"] > 0 and calibration["figures"][0] == "reliability"
    )
    assert {"temperature", "ece_before", "ece_after", "threshold"} <= set(calibration["numbers"])


@pytest.mark.slow
def test_a_notebook_that_needs_an_earlier_one_names_it(tmp_path):
    from nbclient.exceptions import CellExecutionError

    parameters = {
        "profile": "smoke",
        "overrides": {"work_dir": str(tmp_path / "runs"), "report_dir": str(tmp_path / "reports")},
    }
    with pytest.raises(
        CellExecutionError, match="holds no trained model: run the notebook that trains the 'before' model"
    ):
        _step_through(next(nb for nb in NOTEBOOKS if nb.stem.startswith("03")), parameters, "{}")


def test_the_spectra_of_notebook_01_are_drawn_at_the_towers_input_size():
    """image_size: 0 (paper, gpu) means the tower's own size: the spectra use it (224 for CLIP
    ViT-B/32), not a small default that hides the high frequencies they exist to show."""
    import json

    from helpers.config import load_config
    from helpers.modeling.building import preprocessing

    notebook = json.loads((ROOT / "notebooks" / "01_explore_data.ipynb").read_text())
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    assert "_, size = preprocessing(cfg.model_spec)" in code and "64" not in code.split("def mean_power_spectrum")[1]
    cfg = load_config(ROOT / "params" / "gpu.yaml")
    assert cfg.image_size == 0 and preprocessing(cfg.model_spec)[1] == 224
