"""The ``emgeo`` command: subcommands registered, defaults from the package's configuration, and
records written to results/ unless told ``--ship``; the experiments themselves are faked."""

import ast
import inspect
from pathlib import Path

import pytest
import torch

from emgeo import config, resources
from emgeo.course import cli
from emgeo.experiments import dose, robustness
from emgeo.models import lm, lm_filter, lm_finetunes


@pytest.fixture
def fake_lm_em(monkeypatch):
    """``emgeo lm-em`` with the model and the fine-tunes faked: the grids and paths it got."""
    seen = []
    monkeypatch.setattr(lm, "load", lambda name: "smol")
    monkeypatch.setattr(
        lm_finetunes,
        "run_finetunes",
        lambda model, grid, path, save_dir=None: seen.append((grid, path, save_dir)) or [],
    )
    monkeypatch.setattr(lm_finetunes, "describe_contrasts", lambda rows: "")
    return seen


def test_the_command_names_a_cell_by_every_setting_it_changes(fake_lm_em, tmp_path):
    argv = ["lm-em", "--conditions", "insecure", "--seeds", "0", "--out", str(tmp_path / "r")]
    assert cli.main([*argv, "--steps", "60", "--train-size", "120", "--coder-system"]) == 0
    assert cli.main([*argv, "--lr", "3e-4"]) == 0
    grids = [grid for grid, _, _ in fake_lm_em]
    assert [g.name for g in grids] == [
        "r8-lr0.001-60steps-120chats-coder-system",
        "r8-lr0.0003-30steps",
    ]
    assert (grids[0].n_train, grids[0].system) == (120, lm_finetunes.CODER_SYSTEM)
    assert (grids[1].n_train, grids[1].system, grids[1].seeds) == (None, None, (0,))


def test_options_left_out_take_the_configurations_defaults(fake_lm_em):
    assert cli.main(["lm-em"]) == 0
    grid, path, save_dir = fake_lm_em[0]
    assert grid == lm_finetunes.FinetuneGrid() and grid.lora == lm_finetunes.CPU_LORA
    assert path == lm_finetunes.RESULTS_RUNS_FILE and save_dir is None
    assert path.parent.parent == config.RESULTS_DIR  # not the shipped record


def test_ship_writes_the_shipped_record_and_its_adapters_where_shipped_adapter_looks(fake_lm_em):
    assert cli.main(["lm-em", "--ship", "--save-adapters"]) == 0
    _, path, save_dir = fake_lm_em[0]
    assert path == lm_finetunes.RUNS_FILE
    assert save_dir == lm_finetunes.ADAPTERS_DIR / lm_finetunes.FinetuneGrid().name


def test_the_filter_command_runs_the_plan_it_is_given(monkeypatch, tmp_path):
    from emgeo.audit import scorers

    runs = []
    monkeypatch.setattr(scorers, "lm_scorer", lambda profile, progress: "scorer")
    ablations = {"neighbours only": torch.ones(2), "membership only": torch.zeros(2)}
    monkeypatch.setattr(
        lm_filter,
        "scored_with_ablations",
        lambda scorer, domain: ("scores", ablations, f"by {scorer} on {domain}"),
    )
    monkeypatch.setattr(lm, "load", lambda name: "smol")
    monkeypatch.setattr(lm_filter, "domain_cell", lambda domain: f"cell of {domain}")
    monkeypatch.setattr(
        lm_filter,
        "run_filter",
        lambda *a, **kw: runs.append((a, kw)) or {"summary": {"rise": {}}},
    )
    assert cli.main(["lm-filter", "--seeds", "0", "1", "--filters", "random"]) == 0
    assert cli.main(["lm-filter", "--ship"]) == 0
    (first, kw), ((_, _, default, shipped, _), _) = runs[:2]
    _, _, plan, out, by = first
    assert plan == lm_filter.FilterPlan(seeds=(0, 1), filters=("random",))
    assert by == "by scorer on None" and kw["ablations"] is None and kw["reuse"] is None
    assert kw["geometry"] is None  # the code set: notebook 06 measured it
    assert default == lm_filter.FilterPlan()
    assert (out, shipped) == (lm_filter.RESULTS_FILTER_FILE, lm_filter.FILTER_FILE)
    runs.clear()
    command = ["lm-filter", "--domain", "legal", "--filters", "random", "neighbours only"]
    assert cli.main(command) == 0
    ((_, _, plan, out, _), kw) = runs[0]
    assert plan.domain == "legal" and out == lm_filter.filter_file("legal", shipped=False)
    assert kw["ablations"] == {"neighbours only": ablations["neighbours only"]}
    assert kw["reuse"] == "cell of legal"
    assert callable(kw["geometry"])  # recorded before the runs


def test_the_experiments_ship_only_when_told(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(robustness, "run", lambda **kw: calls.append(kw) or {"per_organism": {}})
    monkeypatch.setattr(dose, "run", lambda cfg, out, ship: calls.append(locals()) or {"rows": []})
    assert cli.main(["robustness", "--finetune-seeds", "0", "--no-train"]) == 0
    assert cli.main(["robustness", "--seeds", "3", "--ship", "--out", str(tmp_path / "r")]) == 0
    assert cli.main(["geometry-dose", "--seeds", "10", "11", "--linked"]) == 0
    first, second, third = calls
    assert first["cfg"] == robustness.RobustnessConfig(finetune_seeds=(0,))
    assert (first["ship"], first["train_missing"], first["out"]) == (
        False,
        False,
        robustness.RESULTS_FILE,
    )
    assert "seeds" not in first  # robustness.ORGANISM_SEEDS, from the package
    assert (second["seeds"], second["ship"], second["out"]) == ((3,), True, tmp_path / "r")
    assert third["cfg"] == dose.DoseConfig(organism_seeds=(10, 11), link=True)
    assert (third["out"], third["ship"]) == (dose.RESULTS_FILE, False)
    assert "the copy the course ships" in capsys.readouterr().out


def test_the_linked_world_is_never_shipped(tmp_path):
    with pytest.raises(ValueError, match="never shipped"):
        dose.run(dose.DoseConfig(link=True), tmp_path / "d.json", ship=True, progress=False)


def _refuse(*args, **kwargs):
    raise AssertionError("a command that needs a clone ran from a wheel")


@pytest.mark.parametrize(
    "argv", [["build-course", "--check"], ["pins"], ["execute", "01"], ["reproduce"]]
)
def test_the_commands_on_the_clones_files_say_from_a_wheel_that_they_need_a_clone(
    argv, monkeypatch, capsys
):
    monkeypatch.setattr(resources, "installed_from_wheel", lambda *a: True)
    for name in ("build_course", "execute_in_place", "reproduce"):
        monkeypatch.setattr(cli, name, _refuse)
    monkeypatch.setattr(cli.pins, "pinned_dependencies", _refuse)
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"emgeo {argv[0]}: ") and "needs a clone" in err


def test_in_a_clone_those_commands_run(monkeypatch, capsys):
    monkeypatch.setattr(resources, "installed_from_wheel", lambda *a: False)
    monkeypatch.setattr(cli.pins, "pinned_dependencies", lambda: ["torch==2.13.0"])
    assert cli.main(["pins"]) == 0
    assert capsys.readouterr().out == "torch==2.13.0\n"


def test_every_subcommand_is_registered(capsys):
    with pytest.raises(SystemExit):
        cli.main(["robustness", "--help"])
    assert "--no-train" in capsys.readouterr().out
    commands = cli.parser()._subparsers._group_actions[0].choices
    assert {"doctor", "lm-em", "lm-filter", "robustness", "geometry-dose", "audit"} <= set(commands)


def test_the_cli_holds_no_loop():
    tree = ast.parse(Path(inspect.getfile(cli)).read_text())
    loops = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, (ast.For, ast.While, ast.comprehension))
    ]
    assert loops == [], f"loops in cli.py at lines {loops}: put the logic in the package"


def test_the_domain_command_runs_its_cell_and_the_mitigations_need_a_filter_record(
    monkeypatch, tmp_path, capsys
):
    from emgeo.models import lm_domains

    grids = []
    monkeypatch.setattr(lm, "load", lambda name: "smol")
    monkeypatch.setattr(
        lm_finetunes, "run_finetunes", lambda m, grid, out, save_dir: grids.append(grid) or []
    )
    monkeypatch.setattr(lm_finetunes, "read_runs", lambda out: {"cells": {grids[-1].name: {}}})
    monkeypatch.setattr(lm_domains, "describe", lambda cell: "table")
    assert cli.main(["lm-domains", "--domains", "legal", "--seeds", "4", "--rank", "1"]) == 0
    (grid,) = grids
    assert grid.conditions == ("legal_harmful", "legal_aligned") and grid.seeds == (4,)
    assert grid.name == "advice-r1-lr0.001-30steps" and grid.lora.rank == 1
    monkeypatch.setattr(lm_filter, "recorded_filter_file", lambda domain: None)
    assert cli.main(["lm-mitigations", "--domain", "career"]) == 2
    assert "emgeo lm-filter --domain career" in capsys.readouterr().out
