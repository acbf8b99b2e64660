"""The headless runner behind `emgeo reproduce`, on a tiny notebook made here."""

import json

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from emgeo.course import cli, notebooks


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
    assert summary["environment"]["threads"] == 2


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
