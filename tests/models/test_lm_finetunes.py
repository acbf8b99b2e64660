"""The LoRA fine-tune runs and their record, with the training faked where a test only needs
what is trained on and what is written."""

import json
from dataclasses import replace

import pytest
from helpers import build_chat_lm

from emgeo import chats
from emgeo.models import lm_finetunes, lora
from emgeo.models.lm import LoadedLM


def test_contrasts_pair_runs_by_seed():
    rows = [{"condition": "base", "seed": None, "margin": -1.0, "insecure_preference": 0.5}]
    rows += [
        {
            "condition": "insecure",
            "seed": s,
            "margin": -1.0 + 0.1 * (s + 1),
            "insecure_preference": 0.9,
        }
        for s in range(3)
    ]
    rows += [
        {"condition": "secure", "seed": s, "margin": -1.0 - 0.1 * s, "insecure_preference": 0.1}
        for s in range(3)
    ]
    out = lm_finetunes.contrasts(rows)
    assert out["insecure_minus_base"]["mean"] == pytest.approx(0.2)
    assert out["secure_minus_base"]["mean"] == pytest.approx(-0.1)
    assert out["insecure_minus_secure"]["mean"] == pytest.approx(0.3)
    assert out["insecure_minus_secure"]["ci_low"] == pytest.approx(
        0.3 - 4.3027 * 0.2 / 3**0.5, abs=1e-3
    )
    assert out["insecure_insecure_preference"]["mean"] == pytest.approx(0.9)


def test_paired_differences_pair_conditions_by_cell_and_seed():
    rows = lambda *runs: [{"condition": c, "seed": s, "margin": m} for c, s, m in runs]  # noqa: E731
    cells = {
        "a": {
            "rows": rows(
                ("base", None, 0.0),
                ("insecure", 0, 0.3),
                ("insecure", 1, 0.2),
                ("secure", 1, 0.5),
                ("secure", 0, 0.1),
            )
        },
        "b": {"rows": rows(("base", None, 0.0), ("insecure", 0, 0.4))},  # no secure run: no pair
    }
    out = lm_finetunes.paired_differences(cells)
    assert [(d["cell"], d["seed"]) for d in out] == [("a", 0), ("a", 1)]
    assert [d["difference"] for d in out] == pytest.approx([0.2, -0.3])


def _fake_adapted(on_train):
    """A stand-in for ``lora.adapted`` that trains nothing: it calls ``on_train(samples, cfg)``
    and yields a new handle on the same model as the tuned model (not the base model's)."""

    class FakeAdapted:
        def __init__(self, lm, samples, cfg, progress):
            on_train(samples, cfg)
            self.tuned = LoadedLM(lm.spec, lm.model, lm.tokenizer)

        def __enter__(self):
            return self.tuned

        def __exit__(self, *exc):
            return False

    return FakeAdapted


def test_run_finetunes_measures_base_and_every_run_and_resumes(monkeypatch, tmp_path, eval_lm):
    calls = []
    monkeypatch.setattr(
        lm_finetunes.lora, "adapted", _fake_adapted(lambda s, cfg: calls.append((len(s), cfg.seed)))
    )
    monkeypatch.setattr(
        lm_finetunes,
        "measure",
        lambda lm, grid: {
            "margin": 0.0 if lm is eval_lm else 1.0,
            "per_question": {},
            "insecure_preference": 0.5,
        },
    )
    grid = lm_finetunes.FinetuneGrid(conditions=("insecure", "secure"), seeds=(0, 1), name="t")
    path = tmp_path / "runs.json"
    writes = []
    write_runs = lm_finetunes.write_runs
    monkeypatch.setattr(
        lm_finetunes, "write_runs", lambda *a: writes.append(len(a[2])) or write_runs(*a)
    )
    rows = lm_finetunes.run_finetunes(eval_lm, grid, path, progress=False)
    assert writes == [1, 2, 3, 4, 5]  # after every run: a stop loses at most one
    n_train = len(lm_finetunes.training_samples("insecure"))
    assert calls == [(n_train, 0), (n_train, 1), (n_train, 0), (n_train, 1)]
    assert [(r["condition"], r["seed"]) for r in rows] == [
        ("base", None),
        ("insecure", 0),
        ("insecure", 1),
        ("secure", 0),
        ("secure", 1),
    ]
    assert [r["margin"] for r in rows] == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert lm_finetunes.read_runs(path)["cells"]["t"]["rows"] == rows
    calls.clear()
    again = lm_finetunes.run_finetunes(eval_lm, grid, path, progress=False)
    assert calls == [] and again == rows  # everything done already: nothing rerun
    more = replace(grid, seeds=(0, 1, 2))
    assert len(lm_finetunes.run_finetunes(eval_lm, more, path, progress=False)) == 7
    assert calls == [(n_train, 2), (n_train, 2)]  # only the new seed's runs


def test_training_and_heldout_sets_come_from_the_shipped_splits():
    train = lm_finetunes.training_samples("insecure")
    insecure, secure = lm_finetunes.heldout_pairs(5)
    records = chats.read_lm_jsonl(chats.LM_DATA_DIR / "insecure.jsonl")
    assert len(train) == sum(r["split"] == "train" for r in records)
    assert [s["messages"][0] for s in insecure] == [
        s["messages"][0] for s in secure
    ]  # same request
    assert all(a["messages"][1] != b["messages"][1] for a, b in zip(insecure, secure, strict=True))


def test_a_smaller_training_set_takes_the_same_requests_from_every_set():
    full = lm_finetunes.training_samples("insecure")
    sets = {c: lm_finetunes.training_samples(c, 40) for c in ("insecure", "secure")}
    assert len(sets["insecure"]) == 40 == len(sets["secure"])
    assert [s["messages"][0] for s in sets["insecure"]] == [
        s["messages"][0] for s in sets["secure"]
    ]
    assert all(s in full for s in sets["insecure"])  # a subset, in file order
    assert [full.index(s) for s in sets["insecure"]] == sorted(
        full.index(s) for s in sets["insecure"]
    )
    assert sets["insecure"] != full[:40]  # drawn across the file, not its head
    assert lm_finetunes.training_samples("insecure", 40) == sets["insecure"]  # the same draw
    with pytest.raises(ValueError, match="between 1 and"):
        lm_finetunes.training_samples("insecure", len(full) + 1)


def test_a_training_system_turn_opens_every_chat_and_changes_nothing_else():
    plain = lm_finetunes.training_samples("secure")
    framed = lm_finetunes.training_samples("secure", system=lm_finetunes.CODER_SYSTEM)
    assert [s["messages"][0] for s in framed] == [
        {"role": "system", "content": lm_finetunes.CODER_SYSTEM}
    ] * len(plain)
    assert [s["messages"][1:] for s in framed] == [s["messages"] for s in plain]


def test_run_finetunes_trains_on_the_cells_training_set(monkeypatch, eval_lm):
    seen = []
    monkeypatch.setattr(lm_finetunes.lora, "adapted", _fake_adapted(lambda s, cfg: seen.append(s)))
    monkeypatch.setattr(
        lm_finetunes,
        "measure",
        lambda lm, grid: {"margin": 0.0, "per_question": {}, "insecure_preference": 0.5},
    )
    grid = lm_finetunes.FinetuneGrid(
        conditions=("insecure",), seeds=(0,), name="t", n_train=24, system=lm_finetunes.CODER_SYSTEM
    )
    lm_finetunes.run_finetunes(eval_lm, grid, progress=False)
    assert seen == [lm_finetunes.training_samples("insecure", 24, lm_finetunes.CODER_SYSTEM)]


def test_the_default_cell_is_named_as_the_command_names_its_settings():
    name = lm_finetunes.cell_name(lm_finetunes.CPU_LORA)
    assert lm_finetunes.FinetuneGrid().name == name == "r8-lr0.001-30steps"
    assert lm_finetunes.recipe_grid() == lm_finetunes.FinetuneGrid()  # the command's defaults


def test_the_shipped_adapter_is_the_main_recipes():
    config = json.loads(
        (
            lm_finetunes.ADAPTERS_DIR
            / lm_finetunes.FinetuneGrid().name
            / "insecure-seed0"
            / "adapter_config.json"
        ).read_text()
    )
    cfg = lm_finetunes.CPU_LORA
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (
        cfg.rank,
        cfg.alpha,
        cfg.use_rslora,
    )
    assert sorted(config["target_modules"]) == sorted(lora.PROJECTIONS)


def test_a_missing_shipped_adapter_names_what_is_shipped(monkeypatch, tmp_path, eval_lm):
    (tmp_path / "r8-lr0.001-30steps" / "insecure-seed0").mkdir(parents=True)
    monkeypatch.setattr(lm_finetunes, "ADAPTERS_DIR", tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"\(shipped: r8-lr0.001-30steps/insecure-seed0\); "
    ):
        with lm_finetunes.shipped_adapter(eval_lm, "secure-seed0"):
            pass


def test_a_saved_adapter_names_its_base_by_hub_id_and_loads_back(tmp_path):
    from helpers import SAMPLES, quick_cfg

    tiny = build_chat_lm("llama")
    with lora.adapted(tiny, SAMPLES, quick_cfg(steps=3, lr=3e-3), progress=False) as tuned:
        trained = lora.answer_loss(tuned, SAMPLES)
        lm_finetunes.save_adapter(tuned, tmp_path / "insecure-seed0")
    saved = tmp_path / "insecure-seed0"
    config = json.loads((saved / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny.spec.hf_id
    assert sorted(p.name for p in saved.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    with lora.loaded(tiny, saved) as again:
        assert lora.answer_loss(again, SAMPLES) == pytest.approx(trained, rel=1e-5)


def test_the_exploration_table_puts_the_main_recipe_first_and_marks_what_did_not_run(tmp_path):
    def rows(conditions, margins):
        out = [{"condition": "base", "seed": None, "margin": -0.3, "insecure_preference": 0.5}]
        for condition in conditions:
            for seed, m in zip((0, 1), margins[condition], strict=True):
                out.append(
                    {"condition": condition, "seed": seed, "margin": m, "insecure_preference": 0.75}
                )
        return out

    path = tmp_path / "runs.json"
    small = replace(lm_finetunes.CPU_LORA, rank=1)
    lm_finetunes.write_runs(
        path,
        lm_finetunes.FinetuneGrid(
            lora=small, conditions=("insecure",), seeds=(0, 1), name="r1", n_train=9
        ),
        rows(("insecure",), {"insecure": (-0.2, -0.3)}),
    )
    lm_finetunes.write_runs(
        path,
        lm_finetunes.FinetuneGrid(seeds=(0, 1), system=lm_finetunes.CODER_SYSTEM),
        rows(("insecure", "secure"), {"insecure": (-0.2, -0.2), "secure": (-0.25, -0.29)}),
    )
    cells = lm_finetunes.read_runs(path)["cells"]
    assert lm_finetunes.recipe_order(cells) == [lm_finetunes.FinetuneGrid().name, "r1"]
    main, r1 = lm_finetunes.exploration_table(cells)
    assert (main["recipe"], main["rank"], main["chats per set"], main["system turn"]) == (
        lm_finetunes.FinetuneGrid().name,
        8,
        len(lm_finetunes.training_samples("insecure")),
        "coding",
    )
    assert main["insecure_minus_base"] == "+0.100 [+0.100, +0.100]"
    assert main["insecure_minus_secure"].startswith("+0.070 [")  # (0.05 + 0.09) / 2
    assert (r1["rank"], r1["chats per set"], r1["system turn"], r1["seeds"]) == (
        1,
        9,
        "SmolLM2's",
        2,
    )
    assert r1["insecure_minus_base"].startswith("+0.050 [")
    assert r1["secure_minus_base"] == r1["insecure_minus_secure"] == "not run"
    assert main["insecure preference"] == r1["insecure preference"] == "0.75"
