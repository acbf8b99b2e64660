"""`emgeo mitigations`: every mitigation on the same organisms and seeds, evaluated without cue or
hook, the test in the record before the runs, resumable, and summarised as the course records."""

import json
import math
from dataclasses import replace

import pytest

from emgeo import data, mitigations, organism
from emgeo.experiments import mitigations as experiment


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick configuration run once, with every prompt the evaluation saw and whether a
    hook was on the model while it looked."""
    seen = []
    real = organism.first_token_probs

    def watched(model, tok, prompts):
        hooked = any(hp.fwd_hooks for hp in model.hook_dict.values())
        seen.append((hooked, prompts))
        return real(model, tok, prompts)

    patch = pytest.MonkeyPatch()
    patch.setattr(organism, "first_token_probs", watched)
    out = tmp_path_factory.mktemp("mitigations") / "mitigations.json"
    try:
        result = experiment.run(experiment.quick(), out=out, progress=False)
    finally:
        patch.undo()
    return result, out, seen


def test_every_mitigation_runs_on_every_organism_and_seed_and_the_record_is_written(quick_run):
    result, out, _ = quick_run
    cfg = experiment.quick()
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["config"]["prestated"] == experiment.PRESTATED
    for world in experiment.WORLDS:
        seeds = experiment.world_seeds(world, cfg)
        organisms = result["worlds"][world]["organisms"]
        assert [o["seed"] for o in organisms] == list(seeds)
        for seed in seeds:
            runs = set()
            for plan in experiment.PLANS:
                store = json.loads(experiment.store_path(out, world, seed, plan).read_text())
                assert store["settings"]["prestated"] == experiment.PRESTATED
                runs |= {(r["filter"], r["seed"]) for r in store["runs"]}
            assert runs == {(m, s) for m in experiment.MITIGATIONS for s in cfg.finetune_seeds}
        for o in organisms:  # every mitigation was fine-tuned, none taken for another's run
            assert len(o["runs"]) == len(experiment.MITIGATIONS) * len(cfg.finetune_seeds)
            trained = [o["mitigations"][name]["em"] for name in experiment.TRAINED]
            assert o["mitigations"]["no mitigation"]["em"] not in trained
        assert set(result["worlds"][world]["pooled"]) == set(experiment.MITIGATIONS)
    summary = experiment.summary(result)
    names = [n for n in experiment.MITIGATIONS if n != "no mitigation"]
    assert set(summary) == {
        f"mitigations.{w}.{experiment._slug(n)}" for w in experiment.WORLDS for n in names
    }
    for entry in summary.values():
        assert set(entry) == {"em_cut", "em_cut_ci", "task_kept", "selectivity"}
    assert "no mitigation" in experiment.describe(result)


def test_every_evaluation_reads_prompts_without_a_cue_on_a_model_without_a_hook(quick_run):
    _, _, seen = quick_run
    assert seen
    for hooked, prompts in seen:
        assert not hooked
        for p in prompts:
            assert [m["role"] for m in p["messages"]] == ["user"]
            assert not p["messages"][0]["content"].startswith(data.EDU_FRAME)


def test_a_stopped_run_has_its_test_on_disk_and_resumes_without_rerunning(monkeypatch, tmp_path):
    cfg = replace(experiment.quick(), worlds=("organism",))
    out = tmp_path / "mitigations.json"
    real = experiment.evaluator
    calls = []

    def failing(subject, c):
        measure = real(subject, c)

        def once(model, seed):
            calls.append(seed)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return measure(model, seed)

        return once

    monkeypatch.setattr(experiment, "evaluator", failing)
    with pytest.raises(KeyboardInterrupt):
        experiment.run(cfg, out=out, progress=False)
    stored = json.loads(experiment.store_path(out, "organism", 0).read_text())
    assert stored["settings"]["prestated"] == experiment.PRESTATED and len(stored["runs"]) == 2
    counted = []
    monkeypatch.setattr(experiment, "evaluator", lambda s, c: _counting(real(s, c), counted))
    resumed = experiment.run(cfg, out=out, progress=False)
    n_runs = len(experiment.MITIGATIONS) * len(cfg.finetune_seeds)
    assert len(counted) == n_runs - 2  # the two recorded runs are not run again
    monkeypatch.setattr(experiment, "SUBJECTS", {})  # complete: no organism is even loaded
    assert experiment.run(cfg, out=out, progress=False)["worlds"] == resumed["worlds"]


def _counting(measure, calls):
    def counted(model, seed):
        calls.append(seed)
        return measure(model, seed)

    return counted


def _runs(em: dict[str, float], code: dict[str, float], seeds=(0, 1)) -> list[dict]:
    return [
        {
            "filter": name,
            "seed": seed,
            "offdomain": rate * (1 + seed / 10),
            "em_unseen": rate,
            "code": code[name],
            "seconds": 2.0 if name == "no mitigation" else 3.0,
        }
        for name, rate in em.items()
        for seed in seeds
    ]


def test_organism_summary_pairs_by_seed_and_leaves_selectivity_undefined_when_the_task_stays():
    em = {"no mitigation": 0.4, "kept task": 0.3, "lost task": 0.2}
    code = {"no mitigation": 1.0, "kept task": 0.995, "lost task": 0.5}
    out = experiment.organism_summary(_runs(em, code), {"toxic latents": 1.0})
    assert out["kept task"]["em_cut"] == pytest.approx(0.25)
    assert out["kept task"]["em_cut_ci"] == pytest.approx([0.25, 0.25])
    assert out["kept task"]["task_kept"] == pytest.approx(0.995)
    assert out["kept task"]["selectivity"] is None  # task cut 0.005 < MIN_TASK_CUT
    assert out["lost task"]["selectivity"] == pytest.approx(0.5 / 0.5)
    assert out["lost task"]["extra_time"] == pytest.approx(0.5)  # one more second of two
    assert out["no mitigation"]["em_cut"] == 0.0


def test_pooled_gives_the_interval_over_organisms_and_selectivity_of_the_means():
    def organism_entry(cut, kept):
        return {
            "em_cut": cut,
            "task_kept": kept,
            "em_unseen_cut": cut,
            "extra_time": 0.1,
        }

    per = [
        {"concept ablation": organism_entry(c, k)} for c, k in ((0.2, 0.8), (0.4, 0.9), (0.3, 0.7))
    ]
    out = experiment.pooled(per)["concept ablation"]
    half = 4.302653 * 0.1 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert out["em_cut"] == pytest.approx(0.3)
    assert out["em_cut_ci"] == pytest.approx([0.3 - half, 0.3 + half])
    assert out["task_kept"] == pytest.approx(0.8)
    assert out["selectivity"] == pytest.approx(0.3 / 0.2)
    assert out["cuts_em_in"] == 3 and out["n_organisms"] == 3
    assert out["needs"] == mitigations.NEEDS["concept ablation"]
    kept = experiment.pooled([{"random": organism_entry(0.1, 0.999)} for _ in range(2)])
    assert kept["random"]["selectivity"] is None


def test_a_missing_organism_names_the_command_that_trains_it(monkeypatch, tmp_path):
    monkeypatch.setattr(experiment.robustness, "ORGANISMS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="emgeo robustness --seeds 9"):
        experiment.course_subject(9, experiment.MitigationConfig())


def test_every_mitigation_says_what_it_needs():
    assert set(mitigations.NEEDS) == set(experiment.MITIGATIONS)
    assert all(mitigations.NEEDS.values())


def test_the_command_passes_only_the_options_given_and_ships_only_when_told(monkeypatch, capsys):
    from emgeo.course import cli

    calls = []

    def fake_run(cfg, out, ship):
        calls.append((cfg, out, ship))
        return {"worlds": {}}

    monkeypatch.setattr(experiment, "run", fake_run)
    assert cli.main(["mitigations"]) == 0
    argv = ["mitigations", "--seeds", "1", "2", "--unlinked-seeds", "21", "--worlds", "organism"]
    assert cli.main([*argv, "--finetune-seeds", "0", "--ship"]) == 0
    (default, out, ship), (given, _, shipped) = calls
    assert (default, out, ship) == (experiment.MitigationConfig(), experiment.RESULTS_FILE, False)
    base = experiment.MitigationConfig()
    assert given == replace(
        base,
        organism_seeds=(1, 2),
        unlinked=replace(base.unlinked, organism_seeds=(21,)),
        worlds=("organism",),
        finetune_seeds=(0,),
    )
    assert shipped is True and "the copy the course ships" in capsys.readouterr().out


def test_the_table_shows_each_world_and_mitigation_but_no_mitigation():
    entry = {"em_cut": 0.112, "em_cut_ci": [0.041, 0.184], "task_kept": 1.0012}
    entry["em_unseen_cut"] = 0.117
    none = {"em_cut": 0.0, "em_cut_ci": [0.0, 0.0], "task_kept": 1.0, "em_unseen_cut": 0.0}
    result = {"worlds": {w: {"pooled": {"no mitigation": none, "geometric (max)": entry}}
                         for w in ("organism", "unlinked")}}  # fmt: skip
    shown = experiment.table(result)
    assert list(shown.index) == ["geometric (max)"]
    assert shown.loc["geometric (max)", ("organism", "EM cut [95% CI]")] == "+11% [+4%, +18%]"
    assert shown.loc["geometric (max)", ("unlinked", "task kept")] == 1.0
    unseen = ("organism", "EM cut, domains no benign chat covers")
    assert shown.loc["geometric (max)", unseen] == "+12%"
