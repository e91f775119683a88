"""The stage table (notebooks/stages.yaml): the one place that says what each notebook reads, runs
after, trains and what switches it off."""

import shutil

import pytest
import yaml

from conftest import ROOT
from helpers.stage_table import StageTableError, load_table, read_table


def _copy_of_the_study(tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return notebooks, yaml.safe_load((notebooks / "stages.yaml").read_text())


def _write(notebooks, table):
    (notebooks / "stages.yaml").write_text(yaml.safe_dump(table, sort_keys=False))
    read_table.cache_clear()
    return load_table(notebooks / "stages.yaml")


def test_the_table_lists_every_notebook_of_the_study_in_its_order():
    table = load_table()
    assert [s.notebook for s in table.to_run(ROOT / "notebooks")] == sorted(
        p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
    )
    assert (table.trained_by("before").notebook, table.trained_by("after").notebook) == ("02_train", "03_pseudo_label")


def test_a_notebook_without_an_entry_or_an_entry_without_its_notebook_is_named(tmp_path):
    notebooks, entries = _copy_of_the_study(tmp_path)
    (notebooks / "14_new.ipynb").write_text((notebooks / "01_explore_data.ipynb").read_text())
    with pytest.raises(StageTableError, match=r"\['14_new'\].*no entry in .*stages.yaml: add one"):
        _write(notebooks, entries).to_run(notebooks)
    (notebooks / "14_new.ipynb").unlink()
    (notebooks / "09_calibration.ipynb").unlink()
    with pytest.raises(StageTableError, match=r"lists \['09_calibration'\], which .* does not hold"):
        _write(notebooks, entries).to_run(notebooks)


@pytest.mark.parametrize(
    "entry,message",
    [
        ({"title": "x", "reads": ["dta"]}, "unknown section 'dta'"),
        ({"title": "x", "reads": ["data"], "after": ["99_later"]}, "runs after '99_later', which is not an earlier"),
        ({"title": "x", "reads": ["data"], "on_when": "pool"}, "switched by 'pool', which is not a profile key"),
        ({"title": "x", "reads": ["data"], "trains": "before"}, "two stages train the 'before' model"),
        ({"title": "x", "reads": ["data"], "needs": ["01_explore_data"]}, "(?s)stage 14_x.*needs"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_stage_and_the_fault(tmp_path, entry, message):
    notebooks, entries = _copy_of_the_study(tmp_path)
    with pytest.raises(StageTableError, match=message):
        _write(notebooks, {**entries, "14_x": entry})


@pytest.mark.slow
def test_a_notebook_added_to_a_copy_of_the_table_is_run_indexed_and_kept_current_with_no_other_edit(tmp_path):
    """Only the table and the new notebook change: the runner runs it, the index lists it by its
    title, and a resume keeps it until a section it reads changes."""
    import nbformat

    from helpers.config import load_config
    from helpers.profiles import write_resolved
    from helpers.run import run_study

    notebooks, entries = _copy_of_the_study(tmp_path)
    log = tmp_path / "ran.txt"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell("profile = 'demo'\noverrides = {}")
    parameters.metadata["tags"] = ["parameters"]
    # It reads its own entry: the kernel's table is the run's, not the repository's.
    reads_its_entry = "from helpers.stage_table import load_table\ntitle = load_table()['14_colour_check'].title"
    nb.cells = [
        parameters,
        nbformat.v4.new_code_cell(reads_its_entry),
        nbformat.v4.new_code_cell(f"open({str(log)!r}, 'a').write(title + '\\n')"),
    ]
    nbformat.write(nb, notebooks / "14_colour_check.ipynb")
    _write(
        notebooks,
        {**entries, "14_colour_check": {"title": "Colour check", "reads": ["data", "analyses"], "after": ["02_train"]}},
    )
    profile = write_resolved(
        load_config(ROOT / "params" / "smoke.yaml", {"report_dir": str(tmp_path / "reports")}), tmp_path / "p.yaml"
    )

    def run(**overrides):
        return run_study(profile, only=["14"], root=tmp_path, resume=True, overrides=overrides)

    try:
        record = run()
        assert [(s["notebook"], s["status"], s["title"]) for s in record["stages"]] == [
            ("14_colour_check", "ok", "Colour check")
        ]
        assert "14_colour_check · Colour check" in (tmp_path / "reports" / "smoke" / "index.html").read_text()
        assert run(external=[])["stages"][0].get("kept_from_earlier_run")  # a section it does not read
        assert log.read_text().splitlines() == ["Colour check"]
        run(seeds=[5])  # its analyses section changed: run again
        assert log.read_text().splitlines() == ["Colour check"] * 2
    finally:
        read_table.cache_clear()
