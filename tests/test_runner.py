import ast
import json

import nbformat
import pytest
import yaml

from conftest import ROOT, write_profile
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
    from helpers.config import ConfigError
    from helpers.study import setup

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


def _profile(path, **values):
    return write_profile(path, values)


def _table(folder, entries):
    """notebooks/stages.yaml for a test's notebooks: {notebook: its entry}; an entry may be empty."""
    folder.mkdir(exist_ok=True)
    table = {name: {"title": name, "reads": ["data"], **entry} for name, entry in entries.items()}
    (folder / "stages.yaml").write_text(yaml.safe_dump(table, sort_keys=False))


def _notebook(path, *sources, params="profile = 'x'"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(params)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(s) for s in sources)]
    nbformat.write(nb, path)


@pytest.mark.slow
def test_a_failing_notebook_stops_the_run_and_names_the_error(tmp_path, capsys):
    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "01_fine.ipynb", "print('fine')")
    _notebook(tmp_path / "notebooks" / "02_broken.ipynb", "x = 1", "raise ValueError('the data went missing')")
    _notebook(tmp_path / "notebooks" / "03_never.ipynb", "print('never')")
    _table(tmp_path / "notebooks", {"01_fine": {}, "02_broken": {}, "03_never": {}})
    profile = _profile(
        tmp_path / "p.yaml", profile="broken", report_dir=str(tmp_path / "reports"), notebook_timeout=120
    )
    record = run_study(profile, root=tmp_path)
    assert [s["status"] for s in record["stages"]] == ["ok", "failed"]
    assert "ValueError: the data went missing" in record["stages"][1]["error"]
    out = tmp_path / "reports" / "broken"
    assert (
        (out / "02_broken.ipynb").is_file()
        and (out / "02_broken.html").is_file()
        and not (out / "03_never.ipynb").exists()
    )
    assert "the data went missing" in (out / "index.html").read_text()


def test_config_errors_stop_the_runner_before_any_work(tmp_path, capsys):
    profile = tmp_path / "bad.yaml"
    profile.write_text("profile: bad\ntraining:\n  epochs: many\n")
    assert main([str(profile)]) == 2
    assert "'epochs'" in capsys.readouterr().err
    profile.write_text("profile: bad\nepochs: 2\n")
    assert main([str(profile)]) == 2
    assert "key 'epochs' belongs in section 'training:'" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_keeps_finished_notebooks_and_reruns_from_the_start_when_parameters_change(tmp_path):
    (tmp_path / "notebooks").mkdir()
    log, gate = tmp_path / "ran.txt", tmp_path / "gate"
    count = f"open({str(log)!r}, 'a').write(__NAME__ + ' ' + repr(overrides.get('resume')) + '\\n')"
    params = "profile = 'x'\noverrides = {}"
    _notebook(tmp_path / "notebooks" / "01_a.ipynb", count.replace("__NAME__", "'01'"), params=params)
    _notebook(
        tmp_path / "notebooks" / "02_b.ipynb",
        count.replace("__NAME__", "'02'"),
        f"import os\nassert os.path.exists({str(gate)!r}), 'gate closed'",
        params=params,
    )
    _notebook(tmp_path / "notebooks" / "03_c.ipynb", count.replace("__NAME__", "'03'"), params=params)
    _table(
        tmp_path / "notebooks",
        {
            "01_a": {},
            "02_b": {"reads": ["data", "training"], "trains": "before", "after": ["01_a"]},
            "03_c": {"reads": ["data", "training", "pseudo_labels"], "trains": "after", "on_when": "unlabelled_split"},
        },
    )
    # 03 runs: the profile has a pool
    profile = _profile(
        tmp_path / "p.yaml",
        profile="r",
        report_dir=str(tmp_path / "reports"),
        notebook_timeout=120,
        unlabelled_split="unlabelled",
    )

    first = run_study(profile, root=tmp_path)
    assert [s["status"] for s in first["stages"]] == ["ok", "failed"]
    gate.touch()
    resumed = run_study(profile, root=tmp_path, resume=True)
    assert [(s["notebook"], s["status"], s.get("kept_from_earlier_run", False)) for s in resumed["stages"]] == [
        ("01_a", "ok", True),
        ("02_b", "ok", False),
        ("03_c", "ok", False),
    ]
    # 01 ran once; the notebooks that ran on resume were told to resume their training stages.
    assert log.read_text().splitlines() == ["01 None", "02 None", "02 'auto'", "03 'auto'"]

    changed = run_study(profile, root=tmp_path, resume=True, overrides={"seed": 7})
    assert all(not s.get("kept_from_earlier_run") for s in changed["stages"]) and len(changed["stages"]) == 3
    assert log.read_text().splitlines()[-3:] == ["01 None", "02 None", "03 None"]


@pytest.mark.slow
@pytest.mark.parametrize("per_notebook", [False, True], ids=["shared kernel", "kernel per notebook"])
def test_each_notebook_starts_from_an_empty_namespace_in_the_shared_kernel(tmp_path, per_notebook):
    (tmp_path / "notebooks").mkdir()
    log = tmp_path / "pids.txt"
    write_pid = f"import os\nopen({str(log)!r}, 'a').write(str(os.getpid()) + '\\n')"
    _notebook(tmp_path / "notebooks" / "01_a.ipynb", write_pid, "left_behind = 1\nimport colorsys")
    _notebook(
        tmp_path / "notebooks" / "02_b.ipynb",
        write_pid,
        "import sys\nassert 'left_behind' not in globals() and 'colorsys' not in globals()\n"
        "print('warm' if 'colorsys' in sys.modules else 'cold')",
    )
    _table(tmp_path / "notebooks", {"01_a": {}, "02_b": {}})
    profile = _profile(tmp_path / "p.yaml", profile="k", report_dir=str(tmp_path / "reports"), notebook_timeout=120)
    record = run_study(profile, root=tmp_path, kernel_per_notebook=per_notebook)
    assert [s["status"] for s in record["stages"]] == ["ok", "ok"], record["stages"]
    first, second = log.read_text().split()
    assert (first != second) == per_notebook
    executed = nbformat.read(tmp_path / "reports" / "k" / "02_b.ipynb", as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    # Numbering starts again at 1; modules imported before stay loaded only in the shared kernel.
    assert code[0].execution_count == 1
    assert code[-1].outputs[0]["text"].strip() == ("cold" if per_notebook else "warm")


@pytest.mark.slow
def test_notebooks_from_04_run_side_by_side_in_lanes_and_a_failure_starts_no_more(tmp_path):
    from helpers.execution import cores

    (tmp_path / "notebooks").mkdir()
    log = tmp_path / "ran.txt"

    def note(name):
        return (
            f"import os, torch\nopen({str(log)!r}, 'a').write(f'{name} {{os.getpid()}} {{torch.get_num_threads()}}\\n')\n"
            f"open({str(tmp_path / name)!r} + '.started', 'w').close()"
        )

    def wait_for(name):  # passes only while the other notebook runs at the same time
        return (
            f"import os, time\ndeadline = time.time() + 90\nwhile not os.path.exists({str(tmp_path / name)!r} + '.started'):\n"
            f"    assert time.time() < deadline, '{name} did not start beside this notebook'\n    time.sleep(0.2)"
        )

    _notebook(tmp_path / "notebooks" / "01_core.ipynb", note("01"))
    _notebook(tmp_path / "notebooks" / "04_a.ipynb", note("04"), wait_for("05"))
    _notebook(tmp_path / "notebooks" / "05_b.ipynb", note("05"), wait_for("04"))
    _notebook(tmp_path / "notebooks" / "06_c.ipynb", note("06"))
    # 01 runs first, in order (the others run after it); the other three side by side.
    after_01 = {"after": ["01_core"]}
    _table(tmp_path / "notebooks", {"01_core": {}, "04_a": after_01, "05_b": after_01, "06_c": after_01})
    profile = _profile(
        tmp_path / "p.yaml", profile="l", report_dir=str(tmp_path / "reports"), notebook_timeout=120, notebook_lanes=2
    )
    record = run_study(profile, root=tmp_path)
    assert [(s["notebook"], s["status"]) for s in record["stages"]] == [
        ("01_core", "ok"),
        ("04_a", "ok"),
        ("05_b", "ok"),
        ("06_c", "ok"),
    ], record["stages"]
    ran = {name: (pid, int(threads)) for name, pid, threads in (line.split() for line in log.read_text().splitlines())}
    assert ran["04"][0] != ran["05"][0] and ran["01"][0] in {ran["04"][0], ran["05"][0]}
    assert {ran[n][1] for n in ("04", "05", "06")} == {max(1, cores() // 2)}
    assert (tmp_path / "reports" / "l" / "06_c.html").is_file()

    # A failure: the notebook beside it finishes, no further one starts.
    log.unlink()
    for flag in tmp_path.glob("*.started"):
        flag.unlink()
    _notebook(tmp_path / "notebooks" / "04_a.ipynb", note("04"), wait_for("05"), "raise ValueError('broken')")
    failed_page = tmp_path / "reports" / "l" / "04_a.html"
    failed_page.unlink()
    _notebook(
        tmp_path / "notebooks" / "05_b.ipynb",
        note("05"),
        wait_for("04"),  # ends once 04 has failed
        f"while not os.path.exists({str(failed_page)!r}):\n    time.sleep(0.2)\ntime.sleep(2)",
    )
    record = run_study(profile, root=tmp_path)
    assert [(s["notebook"], s["status"]) for s in record["stages"]] == [
        ("01_core", "ok"),
        ("04_a", "failed"),
        ("05_b", "ok"),
    ], record["stages"]
    # The notebook's name is the line's first field: a process id may contain "06" too.
    assert sorted(line.split()[0] for line in log.read_text().splitlines()) == ["01", "04", "05"]


def _merge_sections(report_dir, name, count):
    from helpers.config import load_config
    from helpers.study.records import update_metrics

    cfg = load_config({"profile": "m", "report_dir": str(report_dir)})
    for i in range(count):
        update_metrics(cfg, {f"{name}-{i}": i}, section="analyses")


def test_notebooks_side_by_side_never_lose_each_others_metrics(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_merge_sections, args=(tmp_path, name, 40)) for name in ("a", "b", "c")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert [w.exitcode for w in writers] == [0, 0, 0]
    merged = json.loads((tmp_path / "m" / "metrics.json").read_text())["analyses"]
    assert merged == {f"{name}-{i}": i for name in "abc" for i in range(40)}


def test_side_by_side_notebooks_start_with_those_that_train_most():
    from helpers.config import load_config
    from helpers.execution import heaviest_first
    from helpers.stage_table import load_table

    table = load_table()
    side_by_side = [s for s in table.stages if not table.runs_in_order(s)]
    cfg = load_config(ROOT / "params" / "demo.yaml")
    order = [s.notebook for s in heaviest_first(cfg, side_by_side)]
    # 13: an attention and a concat model per seed, the quota retraining; 10: a 'before' and an
    # 'after' model per seed; 08: one model per generator held out (5); 07: text-only, image-only,
    # attention; then the table's order.
    assert order[:4] == ["13_beyond_the_paper", "10_seeds", "08_unseen_generators", "07_modality_ablation"]
    assert order[4:] == [s.notebook for s in side_by_side if not s.trainings_under(cfg)]
    one_seed = load_config(ROOT / "params" / "demo.yaml", {"seeds": [1]})
    assert [
        s.notebook for s in heaviest_first(one_seed, [table["13_beyond_the_paper"], table["08_unseen_generators"]])
    ] == [
        "08_unseen_generators",
        "13_beyond_the_paper",
    ]


@pytest.mark.slow
def test_a_notebook_whose_step_the_profile_switches_off_is_not_started_and_the_index_says_why(tmp_path):
    (tmp_path / "notebooks").mkdir()
    log = tmp_path / "ran.txt"
    params = "profile = 'x'\noverrides = {}"
    for name in ("04_a", "05_shortcut_audit", "06_robustness"):
        _notebook(
            tmp_path / "notebooks" / f"{name}.ipynb", f"open({str(log)!r}, 'a').write('{name}\\n')", params=params
        )
    _table(
        tmp_path / "notebooks",
        {"04_a": {}, "05_shortcut_audit": {"analysis": "audit"}, "06_robustness": {"analysis": "robustness"}},
    )
    profile = _profile(
        tmp_path / "p.yaml",
        profile="o",
        report_dir=str(tmp_path / "reports"),
        notebook_timeout=120,
        analyses=["robustness"],
    )
    record = run_study(profile, root=tmp_path)
    assert {s["notebook"]: s["status"] for s in record["stages"]} == {
        "04_a": "ok",
        "05_shortcut_audit": "off",
        "06_robustness": "ok",
    }
    assert sorted(log.read_text().split()) == ["04_a", "06_robustness"]
    index = (tmp_path / "reports" / "o" / "index.html").read_text()
    assert (
        '05_shortcut_audit · 05_shortcut_audit <span class="muted">not run: the &#39;audit&#39; analysis is off'
        in index
    )


def _links(index_html: str) -> list[str]:
    import re

    return [link for link in re.findall(r'(?:href|src)="([^"#:]+)"', index_html)]


@pytest.mark.slow
def test_ctrl_c_in_a_rerun_keeps_the_last_complete_report_whole_and_says_so_in_one_line(tmp_path):
    """Interrupted while its second notebook runs: the first run's report is whole (every link and
    figure resolves) beside the partial one, whose own links resolve too; one line says where."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "notebooks").mkdir()
    started, go_slow = tmp_path / "started", tmp_path / "slow"
    params = "profile = 'x'\noverrides = {}"
    figure = (
        "from helpers.study.records import update_metrics\nimport pathlib\n"
        "folder = pathlib.Path('reports/i'); (folder / 'figures').mkdir(parents=True, exist_ok=True)\n"
        "(folder / 'figures' / 'cm_test_after.png').write_bytes(b'png')\n"
        "update_metrics(type('C', (), {'reports': folder})(), {'figures': ['cm_test_after']})"
    )
    _notebook(tmp_path / "notebooks" / "01_a.ipynb", figure, params=params)
    _notebook(
        tmp_path / "notebooks" / "02_b.ipynb",
        f"open({str(started)!r}, 'w').close()",
        f"import os, time\nwhile os.path.exists({str(go_slow)!r}): time.sleep(0.2)",
        params=params,
    )
    _table(tmp_path / "notebooks", {"01_a": {}, "02_b": {}})
    profile = _profile(tmp_path / "p.yaml", profile="i", report_dir="reports", notebook_timeout=120)
    command = [sys.executable, "-m", "helpers.run", str(profile)]
    assert subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=300).returncode == 0

    go_slow.touch()
    started.unlink()
    rerun = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # As in a terminal. A test run started in the background of a non-interactive shell (`make
        # test &`) ignores SIGINT, and its children would inherit that and never see the Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    os.killpg(rerun.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole process group
    try:
        _, err = rerun.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(rerun.pid, signal.SIGKILL)
        out, err = rerun.communicate()
        lines = [line for line in (out + err).replace("\r", "\n").splitlines() if not line.startswith("Executing")]
        pytest.fail("the run went on after Ctrl-C:\n" + "\n".join(lines)[-4000:])
    assert rerun.returncode == 130, err
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and "Traceback" not in err, err
    last = tmp_path / "reports" / "i.last"
    assert f"the last complete report is kept whole at {last / 'index.html'}" in lines[0]
    assert "--resume" in lines[0]
    for folder in (last, tmp_path / "reports" / "i"):
        links = _links((folder / "index.html").read_text())
        assert links and all((folder / link).exists() for link in links), (folder, links)
    assert "figures/cm_test_after.png" in _links((last / "index.html").read_text())
    partial = (tmp_path / "reports" / "i" / "index.html").read_text()
    assert "A partial report: this run was interrupted" in partial and "../i.last/index.html" in _links(partial)
    assert "A partial report" not in (last / "index.html").read_text()


def test_after_ctrl_c_a_kernel_shut_down_on_purpose_prints_no_traceback(caplog, tmp_path):
    """stop() shuts the running kernels down; nbclient's read that was waiting on one then fails
    in a task nobody awaits, which asyncio would print as a traceback beside the run's one line."""
    import asyncio
    import gc
    import logging

    from helpers.config import load_config
    from helpers.execution import NotebookRunner
    from helpers.stage_table import load_table

    async def read_from_a_dead_kernel():
        raise RuntimeError("Kernel died")

    def orphan_a_failed_task():
        loop = asyncio.new_event_loop()
        task = loop.create_task(read_from_a_dead_kernel())
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
        del task
        gc.collect()

    saved = {name: logging.getLogger(name).level for name in ("asyncio", "papermill")}
    try:
        orphan_a_failed_task()
        assert "never retrieved" in caplog.text  # what a user saw after Ctrl-C
        caplog.clear()
        NotebookRunner(load_config({"profile": "x"}), load_table(), tmp_path, {}, tmp_path, False).stop()
        orphan_a_failed_task()
        logging.getLogger("papermill").error("Kernel died while waiting for execute reply.")
        assert caplog.text == ""
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def test_a_partial_index_says_so_and_links_only_what_exists(tmp_path):
    """A run that stopped before any notebook recorded numbers: its index says it is partial, links
    no metrics.json (there is none) and points to the last complete report beside it."""
    from helpers.study.report import write_index

    out, last = tmp_path / "reports" / "demo", tmp_path / "reports" / "demo.last"
    out.mkdir(parents=True)
    last.mkdir()
    (last / "index.html").write_text("complete")
    record = {
        "params": {"profile": "demo"},
        "stages": [
            {
                "notebook": "01_x",
                "status": "failed",
                "html": "01_x.html",
                "ipynb": "01_x.ipynb",
                "seconds": 1,
                "cell": 3,
                "error": "boom",
            }
        ],
        "complete": False,
        "last_complete_report": str(last / "index.html"),
    }
    page = write_index(out, record).read_text()
    assert "A partial report: this run did not finish every notebook" in page
    assert "metrics.json" not in _links(page) and "../demo.last/index.html" in _links(page)
    record.update(complete=True, stages=[])
    assert "A partial report" not in write_index(out, record).read_text()
