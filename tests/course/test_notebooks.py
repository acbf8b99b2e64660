"""The headless runner behind `emgeo reproduce`, on a tiny notebook made here."""

import json
import os
import re

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from emgeo.config import REPO_ROOT
from emgeo.course import claims, cli, notebooks


def _tiny_notebook(path):
    nb = new_notebook(
        cells=[
            new_code_cell(
                "import os\nfrom emgeo.course.results import record\n"
                "print(os.environ['EMGEO_PROFILE'])"
            ),
            new_code_cell("record('tiny.answer', 6 * 7)\nblob = bytearray(64 * 2**20)"),
            new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1]);"),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(nb, path)


def test_reproduce_writes_notebooks_figures_and_summary(tmp_path, monkeypatch):
    src_dir, results_dir = tmp_path / "solutions", tmp_path / "results"
    src_dir.mkdir()
    _tiny_notebook(src_dir / "98_tiny.ipynb")
    monkeypatch.setattr(notebooks, "SOLUTIONS_DIR", src_dir)
    summary_path = notebooks.reproduce(["98"], results_dir=results_dir, root=src_dir)
    summary = json.loads(summary_path.read_text())
    assert summary["tiny"]["answer"] == 42
    measured = summary["notebooks"]["98_tiny"]
    assert measured["wall_s"] > 0
    assert measured["peak_rss_mb"] > 64, "the kernel's 64 MB allocation must show in its peak"
    executed = nbformat.read(results_dir / "notebooks" / "98_tiny.ipynb", as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "cpu\n"
    assert list((results_dir / "figures").glob("98_tiny_cell02_*.png"))
    assert summary["environment"]["threads"] == int(os.environ["EMGEO_THREADS"])  # as set
    assert summary["over_budget"] == []  # a tiny notebook is within Binder's memory and 3 minutes
    # the claims table closes the summary, read from it and the shipped records
    assert [r["claim"] for r in summary["claims"]][0] == claims.CLAIMS[0].claim
    assert all(r["verdict"] in claims.VERDICTS for r in summary["claims"])
    assert (results_dir / "claims.md").read_text().startswith("| claim |")


def test_execute_stores_outputs_in_place_and_reports_time_and_memory(tmp_path, monkeypatch, capsys):
    src_dir = tmp_path / "solutions"
    src_dir.mkdir()
    _tiny_notebook(src_dir / "98_tiny.ipynb")
    measured = notebooks.execute_in_place(["98"], root=src_dir)
    assert list(measured) == [src_dir / "98_tiny.ipynb"]
    assert measured[src_dir / "98_tiny.ipynb"]["peak_rss_mb"] > 64
    stored = nbformat.read(src_dir / "98_tiny.ipynb", as_version=4)
    assert stored.cells[0].outputs[0]["text"] == "cpu\n"
    monkeypatch.setattr(cli, "execute_in_place", lambda names, progress: measured)
    assert cli.main(["execute", "98"]) == 0
    out = capsys.readouterr().out
    assert "98_tiny: " in out and "peak memory" in out


def _bar_notebook(value: float, total: float, counts: str) -> nbformat.NotebookNode:
    """A notebook whose one output is a tqdm widget, with the widget state nbclient stores."""
    state = {
        "box": {
            "model_name": "HBoxModel",
            "state": {"children": ["IPY_MODEL_l", "IPY_MODEL_b", "IPY_MODEL_r"]},
        },
        "l": {
            "model_name": "HTMLModel",
            "state": {"value": "training\u2007toy\u2007models:\u2007100%"},
        },
        "b": {"model_name": "FloatProgressModel", "state": {"value": value, "max": total}},
        "r": {
            "model_name": "HTMLModel",
            "state": {"value": f"\u2007{counts}\u2007[00:06&lt;00:00,\u2007423.76it/s]"},
        },
    }
    output = nbformat.v4.new_output(
        "display_data",
        data={
            notebooks.WIDGET_VIEW: {"model_id": "box"},
            "text/plain": "training toy models:   0%|          | 0/3000 [00:00<?, ?it/s]",
        },
    )
    nb = new_notebook(cells=[new_code_cell("train()", outputs=[output])])
    nb.metadata["widgets"] = {notebooks.WIDGET_STATE: {"state": state}}
    return nb


def _sanitized(text: str) -> str:
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((REPO_ROOT / "tests" / "nbval_sanitize.cfg").read_text())
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    return text


def test_a_stored_progress_bar_shows_its_last_state_and_nbval_masks_it():
    nb = notebooks.final_progress_bars(_bar_notebook(3000.0, 3000.0, "3000/3000"))
    stored = nb.cells[0].outputs[0]["data"]["text/plain"]
    assert stored == "training toy models: 100%|██████████| 3000/3000 [00:06<00:00, 423.76it/s]"
    fresh = (
        "training toy models:   0%|          | 0/3000 [00:00<?, ?it/s]"  # a new run's first frame
    )
    assert _sanitized(stored) == _sanitized(fresh) == "training toy models:<progress> [<timing>]"


def test_a_live_description_is_not_stored_the_first_frames_is():
    nb = _bar_notebook(30.0, 30.0, "30/30")
    state = nb.metadata["widgets"][notebooks.WIDGET_STATE]["state"]
    state["l"]["state"]["value"] = "30|\u2007MSE\u2007Loss\u20070.123:\u2007100%"  # SAELens's loss
    state["r"]["state"]["value"] = (
        "\u200730/30\u2007[00:41&lt;00:00,\u2007\u20074.9it/s,\u2007lr=0.1]"
    )
    notebooks.final_progress_bars(nb)
    stored = nb.cells[0].outputs[0]["data"]["text/plain"]
    assert stored == "training toy models: 100%|██████████| 30/30 [00:41<00:00, 4.9it/s]"


def test_a_bar_without_a_total_or_a_widget_that_is_no_bar_is_left_alone():
    nb = notebooks.final_progress_bars(_bar_notebook(5.0, 0.0, "5it"))
    assert nb.cells[0].outputs[0]["data"]["text/plain"].endswith("0/3000 [00:00<?, ?it/s]")
    nb = _bar_notebook(1.0, 2.0, "1/2")
    nb.metadata["widgets"][notebooks.WIDGET_STATE]["state"]["box"]["model_name"] = "VBoxModel"
    notebooks.final_progress_bars(nb)
    assert nb.cells[0].outputs[0]["data"]["text/plain"].startswith("training toy models:   0%")


def test_headless_runs_take_the_thread_count_the_environment_sets(monkeypatch):
    monkeypatch.setenv("EMGEO_THREADS", "1")
    env = notebooks.notebook_env()
    assert env["EMGEO_THREADS"] == "1" == env["OMP_NUM_THREADS"]
    monkeypatch.delenv("EMGEO_THREADS")
    assert notebooks.notebook_env()["EMGEO_THREADS"] == "2"
    assert notebooks.notebook_env(n_threads=3)["MKL_NUM_THREADS"] == "3"


def test_a_notebook_over_binders_memory_or_three_minutes_is_named():
    measured = {
        "03_sparse_autoencoders": {"wall_s": 130.0, "peak_rss_mb": 2064.0},
        "07_geometric_filter": {"wall_s": 200.0, "peak_rss_mb": 1300.0},
        "09_audit": {"wall_s": 61.0, "peak_rss_mb": 1340.0},
    }
    over = notebooks.over_budget(measured)
    assert len(over) == 2 and over[0].startswith("03_sparse_autoencoders peaks at 2064 MB")
    assert "07_geometric_filter took 200 s" in over[1]
    assert notebooks.over_budget({"09_audit": measured["09_audit"]}) == []
