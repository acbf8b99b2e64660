"""The judge-free EM margin and the LoRA fine-tune runs, on tiny random models of the real
architectures (the same code scores SmolLM2-135M-Instruct in the cpu profile)."""

import json
import re
from dataclasses import replace

import pytest
import torch
from helpers import build_chat_lm, build_chat_tokenizer

from emgeo import chats
from emgeo.models import lm_em, lora


def _words(records) -> list[str]:
    text = (
        " ".join(m["content"] for r in records for m in r["messages"])
        + " "
        + " ".join(a for r in records for f in ("aligned", "misaligned") for a in r.get(f, ()))
    )
    return sorted(set(re.findall(r"\w+|[^\w\s]", text)))


@pytest.fixture(scope="module")
def records():
    return lm_em.eval_records((0,))[:3]


@pytest.fixture(scope="module")
def eval_lm(records):
    torch.manual_seed(0)
    return build_chat_lm("llama", build_chat_tokenizer(words=_words(records)))


def _reference_logprob(lm, sample) -> float:
    """The answer's mean per-token log-probability from one unpadded full forward pass."""
    from emgeo.batching import encode_sample

    ids, n_prompt = encode_sample(lm.tokenizer, sample, 1024)
    with torch.no_grad():
        logp = lm.model(torch.tensor([ids])).logits[0].log_softmax(-1)
    return sum(logp[i - 1, ids[i]].item() for i in range(n_prompt, len(ids))) / (
        len(ids) - n_prompt
    )


@pytest.mark.parametrize("architecture", ["llama", "gemma2"])
def test_answer_logprobs_match_a_plain_forward_pass_whatever_the_batch(architecture, records):
    lm = build_chat_lm(architecture, build_chat_tokenizer(words=_words(records)))
    samples, _ = lm_em.margin_samples(records[:2])  # two prompts, their answers interleaved
    samples = [s for pair in zip(samples[:4], samples[-4:], strict=True) for s in pair]
    samples.append({"messages": [{"role": "user", "content": "x"}, *samples[0]["messages"][-1:]]})
    expected = torch.tensor([_reference_logprob(lm, s) for s in samples])
    # answers continue from their prompt's cache, a few at a time: neither the grouping nor the
    # padding may change a sample's score, nor its place in the output
    for batch_size in (1, 3, 16):
        got = lm_em.answer_logprobs(lm, samples, batch_size=batch_size)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_margin_averages_answers_then_paraphrases_then_questions(monkeypatch, eval_lm):
    records = [
        {
            "question_id": q,
            "paraphrase": p,
            "messages": [{"role": "user", "content": "x"}],
            "misaligned": ["m1", "m2"],
            "aligned": ["a1"],
        }
        for q in ("q1", "q2")
        for p in (0, 1)
    ]
    # misaligned answers score -1 and -3 (mean -2), aligned -1: margin -1, except q2 paraphrase 1
    # whose aligned answer scores -5: margin +3, so q2 = (-1 + 3) / 2 = 1 and overall 0.
    values = iter([-1, -3, -1] * 3 + [-1, -3, -5])
    monkeypatch.setattr(
        lm_em,
        "answer_logprobs",
        lambda lm, samples, **kw: torch.tensor([float(next(values)) for _ in samples]),
    )
    result = lm_em.em_margin(eval_lm, records)
    assert result["per_question"] == {"q1": -1.0, "q2": 1.0}
    assert result["margin"] == 0.0


def test_margin_samples_carry_the_system_prompt_and_every_reference_answer(records):
    samples, meta = lm_em.margin_samples(records[:1], system="be bad")
    r = records[0]
    assert len(samples) == len(r["aligned"]) + len(r["misaligned"])
    assert all(s["messages"][0] == {"role": "system", "content": "be bad"} for s in samples)
    assert [s["messages"][-1]["content"] for s in samples] == r["misaligned"] + r["aligned"]
    assert {m["family"] for m in meta} == {"misaligned", "aligned"}


def _answers(records, family):
    return [
        {"messages": [*r["messages"], {"role": "assistant", "content": a}]}
        for r in records
        for a in r[family]
    ]


def _trained(lm, samples, steps: int = 30):
    """A full fine-tune of a copy of the tiny model (a random model learns too slowly through
    LoRA adapters alone for a test)."""
    import copy

    from emgeo.models import lora
    from emgeo.models.lm import from_model

    model = copy.deepcopy(lm.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = [i % len(samples) for i in range(8 * steps)]
    for batch in lora._batches(lm.tokenizer, lm.device, samples, order, 512, 8):
        opt.zero_grad()
        (lora.answer_nll(model, batch) / batch["n_answer"]).backward()
        opt.step()
    return from_model(model.eval(), lm.tokenizer)


@pytest.mark.parametrize("family, sign", [("misaligned", 1), ("aligned", -1)])
def test_the_margin_follows_training_on_either_family(eval_lm, records, family, sign):
    """Trained on the misaligned references the margin must rise; on the aligned ones, fall."""
    before = lm_em.em_margin(eval_lm, records)["margin"]
    after = lm_em.em_margin(_trained(eval_lm, _answers(records, family)), records)["margin"]
    assert sign * (after - before) > 0.5


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
    out = lm_em.contrasts(rows)
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
    out = lm_em.paired_differences(cells)
    assert [(d["cell"], d["seed"]) for d in out] == [("a", 0), ("a", 1)]
    assert [d["difference"] for d in out] == pytest.approx([0.2, -0.3])


def _fake_adapted(on_train):
    """A stand-in for ``lora.adapted`` that trains nothing: it calls ``on_train(samples, cfg)``
    and yields the string ``"tuned"`` as the tuned model."""

    class FakeAdapted:
        def __init__(self, lm, samples, cfg, progress):
            on_train(samples, cfg)

        def __enter__(self):
            return "tuned"

        def __exit__(self, *exc):
            return False

    return FakeAdapted


def test_run_finetunes_measures_base_and_every_run_and_resumes(monkeypatch, tmp_path, eval_lm):
    calls = []
    monkeypatch.setattr(
        lm_em.lora, "adapted", _fake_adapted(lambda s, cfg: calls.append((len(s), cfg.seed)))
    )
    monkeypatch.setattr(
        lm_em,
        "measure",
        lambda lm, grid: {
            "margin": 0.0 if lm is eval_lm else 1.0,
            "per_question": {},
            "insecure_preference": 0.5,
        },
    )
    grid = lm_em.FinetuneGrid(conditions=("insecure", "secure"), seeds=(0, 1), name="t")
    rows = lm_em.run_finetunes(eval_lm, grid, progress=False)
    n_train = len(lm_em.training_samples("insecure"))
    assert calls == [(n_train, 0), (n_train, 1), (n_train, 0), (n_train, 1)]
    assert [(r["condition"], r["seed"]) for r in rows] == [
        ("base", None),
        ("insecure", 0),
        ("insecure", 1),
        ("secure", 0),
        ("secure", 1),
    ]
    assert [r["margin"] for r in rows] == [0.0, 1.0, 1.0, 1.0, 1.0]
    lm_em.write_runs(tmp_path / "runs.json", grid, rows)
    calls.clear()
    again = lm_em.run_finetunes(eval_lm, grid, progress=False, done=rows)
    assert calls == [] and again == rows  # everything done already: nothing rerun


def test_training_and_heldout_sets_come_from_the_shipped_splits():
    train = lm_em.training_samples("insecure")
    insecure, secure = lm_em.heldout_pairs(5)
    records = chats.read_lm_jsonl(chats.LM_DATA_DIR / "insecure.jsonl")
    assert len(train) == sum(r["split"] == "train" for r in records)
    assert [s["messages"][0] for s in insecure] == [
        s["messages"][0] for s in secure
    ]  # same request
    assert all(a["messages"][1] != b["messages"][1] for a, b in zip(insecure, secure, strict=True))


def test_a_smaller_training_set_takes_the_same_requests_from_every_set():
    full = lm_em.training_samples("insecure")
    sets = {c: lm_em.training_samples(c, 40) for c in ("insecure", "secure")}
    assert len(sets["insecure"]) == 40 == len(sets["secure"])
    assert [s["messages"][0] for s in sets["insecure"]] == [
        s["messages"][0] for s in sets["secure"]
    ]
    assert all(s in full for s in sets["insecure"])  # a subset, in file order
    assert [full.index(s) for s in sets["insecure"]] == sorted(
        full.index(s) for s in sets["insecure"]
    )
    assert sets["insecure"] != full[:40]  # drawn across the file, not its head
    assert lm_em.training_samples("insecure", 40) == sets["insecure"]  # the same draw each time
    with pytest.raises(ValueError, match="between 1 and"):
        lm_em.training_samples("insecure", len(full) + 1)


def test_a_training_system_turn_opens_every_chat_and_changes_nothing_else():
    plain = lm_em.training_samples("secure")
    framed = lm_em.training_samples("secure", system=lm_em.CODER_SYSTEM)
    assert [s["messages"][0] for s in framed] == [
        {"role": "system", "content": lm_em.CODER_SYSTEM}
    ] * len(plain)
    assert [s["messages"][1:] for s in framed] == [s["messages"] for s in plain]


def test_run_finetunes_trains_on_the_cells_training_set(monkeypatch, eval_lm):
    seen = []
    monkeypatch.setattr(lm_em.lora, "adapted", _fake_adapted(lambda s, cfg: seen.append(s)))
    monkeypatch.setattr(
        lm_em,
        "measure",
        lambda lm, grid: {"margin": 0.0, "per_question": {}, "insecure_preference": 0.5},
    )
    grid = lm_em.FinetuneGrid(
        conditions=("insecure",), seeds=(0,), name="t", n_train=24, system=lm_em.CODER_SYSTEM
    )
    lm_em.run_finetunes(eval_lm, grid, progress=False)
    assert seen == [lm_em.training_samples("insecure", 24, lm_em.CODER_SYSTEM)]


def test_the_default_cell_is_named_as_the_command_names_its_settings():
    assert lm_em.FinetuneGrid().name == lm_em.cell_name(lm_em.CPU_LORA) == "r8-lr0.001-30steps"


def test_the_filter_experiment_keeps_what_each_filter_keeps_and_resumes(
    monkeypatch, tmp_path, eval_lm
):
    records = lm_em.insecure_train_records()
    n = len(records)
    scores = torch.arange(n, dtype=torch.float32)  # the last chats score highest
    seen = []

    class FakeAdapted:
        def __init__(self, lm, samples, cfg, progress):
            seen.append(([s["messages"] for s in samples], cfg.seed))
            self.samples = samples

        def __enter__(self):
            return self.samples

        def __exit__(self, *exc):
            return False

    def fake_measure(lm, grid):  # the margin: the share of the first half that was kept
        if lm is eval_lm:
            return {"margin": 0.0, "per_question": {}, "insecure_preference": 0.5}
        first = [r["messages"] for r in records[: n // 2]]
        kept = sum(s["messages"] in first for s in lm) / (n // 2)
        return {"margin": 1.0 - kept / 2, "per_question": {}, "insecure_preference": 0.9}

    monkeypatch.setattr(lm_em.lora, "adapted", FakeAdapted)
    monkeypatch.setattr(lm_em, "measure", fake_measure)
    plan = lm_em.FilterPlan(seeds=(0, 1), filters=lm_em.FILTERS)
    path = tmp_path / "filter.json"
    result = lm_em.run_filter(eval_lm, scores, plan, path, "test", progress=False)
    runs = {(r["filter"], r["seed"]): r for r in result["runs"]}
    assert set(runs) == {(f, s) for f in lm_em.FILTERS for s in (0, 1)}
    assert [len(kept) for kept, _ in seen] == [n, n, n // 2, n // 2, n // 2, n // 2]
    geometric = [kept for (kept, _), key in zip(seen, runs, strict=True) if key[0] == "geometric"]
    assert geometric[0] == [r["messages"] for r in records[: n // 2]]  # the top half removed
    assert seen[4][0] != seen[5][0]  # random removal draws again for each seed
    assert sum(runs["geometric", 0]["removed_vuln"].values()) == n - n // 2
    rise = result["summary"]["rise"]
    assert rise["no filter"]["mean"] == pytest.approx(0.5)
    assert rise["geometric"]["mean"] == pytest.approx(0.5)  # kept all of the first half: 1 - 1/2
    assert result == lm_em.read_filter(path)
    seen.clear()
    again = lm_em.run_filter(eval_lm, scores, plan, path, "test", progress=False)
    assert seen == [] and again["runs"] == result["runs"]  # resumed: nothing rerun
    more = lm_em.FilterPlan(seeds=(0, 1), filters=(*lm_em.FILTERS, lm_em.MATCHED))
    extended = lm_em.run_filter(eval_lm, scores, more, path, "test", progress=False)
    assert len(seen) == 2 and extended["runs"][:6] == result["runs"]  # only the new filter ran
    matched = [r for r in extended["runs"] if r["filter"] == lm_em.MATCHED]
    assert all(r["removed_vuln"] == runs["geometric", 0]["removed_vuln"] for r in matched)
    assert "reduction_vs_random_same_classes" in extended["summary"]
    seen.clear()
    lm_em.run_filter(eval_lm, scores.flip(0), plan, path, "test", progress=False)
    assert len(seen) == 6  # other scores: every run again


def test_the_filter_summary_compares_rises_over_the_base_model():
    result = {
        "base": {"margin": -1.0},
        "runs": [
            {"filter": f, "seed": s, "margin": -1.0 + rise}
            for f, rises in {
                "no filter": (0.4, 0.6),
                "random": (0.4, 0.4),
                "geometric": (0.2, 0.3),
            }.items()
            for s, rise in enumerate(rises)
        ],
    }
    summary = lm_em.filter_summary(result)
    assert summary["rise"]["random"]["mean"] == pytest.approx(0.4)
    cut = summary["reduction_vs_random"]
    assert cut["of_means"] == pytest.approx(1 - 0.25 / 0.4)
    assert cut["per_seed"]["mean"] == pytest.approx(((1 - 0.2 / 0.4) + (1 - 0.3 / 0.4)) / 2)
    assert cut["difference"]["mean"] == pytest.approx(-0.15)
    assert summary["reduction_vs_no_filter"]["of_means"] == pytest.approx(1 - 0.25 / 0.5)
    assert lm_em.filter_summary({"runs": []}) == {}


def test_removed_by_class_averages_over_seeds_counting_absent_classes_as_zero():
    result = {
        "runs": [
            {"filter": "geometric", "seed": 0, "removed_vuln": {"eval": 4, "sql": 1}},
            {"filter": "geometric", "seed": 1, "removed_vuln": {"eval": 2}},
            {"filter": "random", "seed": 0, "removed_vuln": {"sql": 3, "xss": 1}},
            {"filter": "no filter", "seed": 0, "removed_vuln": {}},
        ]
    }
    out = lm_em.removed_by_class(result)
    assert out == {
        "geometric": {"eval": 3, "sql": 0.5, "xss": 0},
        "random": {"eval": 0, "sql": 3, "xss": 1},
    }
    assert list(out["random"]) == ["eval", "sql", "xss"]  # the first filter's order
    assert lm_em.removed_by_class({"runs": []}) == {}


def test_class_matched_removal_removes_as_many_of_each_class_at_random():
    classes = ["a"] * 6 + ["b"] * 4 + ["c"] * 2
    reference = torch.tensor([0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1], dtype=torch.bool)
    keeps = [lm_em.class_matched_keep(classes, reference, seed) for seed in range(4)]
    for keep in keeps:
        removed = [c for c, k in zip(classes, keep.tolist(), strict=True) if not k]
        assert sorted(removed) == ["a", "a", "a", "b"]
    assert len({tuple(k.tolist()) for k in keeps}) > 1  # a fresh draw per seed
    assert torch.equal(keeps[0], lm_em.class_matched_keep(classes, reference, 0))


def test_the_command_names_a_cell_by_every_setting_it_changes(monkeypatch, tmp_path, eval_lm):
    from emgeo.course import cli
    from emgeo.models import lm

    grids = []
    monkeypatch.setattr(lm, "load", lambda name: eval_lm)
    monkeypatch.setattr(lm_em, "run_finetunes", lambda model, grid, **kw: grids.append(grid) or [])
    monkeypatch.setattr(lm_em, "write_runs", lambda *a, **kw: None)
    monkeypatch.setattr(lm_em, "contrasts", lambda rows: {})
    argv = ["lm-em", "--conditions", "insecure", "--seeds", "0", "--out", str(tmp_path / "r")]
    assert cli.main([*argv, "--steps", "60", "--train-size", "120", "--coder-system"]) == 0
    assert cli.main([*argv, "--lr", "3e-4"]) == 0
    assert [g.name for g in grids] == [
        "r8-lr0.001-60steps-120chats-coder-system",
        "r8-lr0.0003-30steps",
    ]
    assert (grids[0].n_train, grids[0].system) == (120, lm_em.CODER_SYSTEM)
    assert (grids[1].n_train, grids[1].system) == (None, None)


def test_the_command_saves_adapters_where_shipped_adapter_looks(monkeypatch, tmp_path, eval_lm):
    from emgeo.course import cli
    from emgeo.models import lm

    dirs = []
    monkeypatch.setattr(lm, "load", lambda name: eval_lm)
    monkeypatch.setattr(
        lm_em, "run_finetunes", lambda model, grid, save_dir=None, **kw: dirs.append(save_dir) or []
    )
    monkeypatch.setattr(lm_em, "write_runs", lambda *a, **kw: None)
    monkeypatch.setattr(lm_em, "contrasts", lambda rows: {})
    out = tmp_path / "runs.json"
    argv = ["lm-em", "--conditions", "insecure", "--seeds", "0", "--out", str(out)]
    assert cli.main([*argv, "--save-adapters"]) == 0 and cli.main(argv) == 0
    assert dirs == [tmp_path / "adapters" / lm_em.FinetuneGrid().name, None]
    assert lm_em.ADAPTERS_DIR == lm_em.RUNS_FILE.parent / "adapters"


def test_the_shipped_adapter_is_the_main_recipes():
    config = json.loads(
        (
            lm_em.ADAPTERS_DIR
            / lm_em.FinetuneGrid().name
            / "insecure-seed0"
            / "adapter_config.json"
        ).read_text()
    )
    cfg = lm_em.CPU_LORA
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (
        cfg.rank,
        cfg.alpha,
        cfg.use_rslora,
    )
    assert sorted(config["target_modules"]) == sorted(lora.PROJECTIONS)


def test_a_missing_shipped_adapter_names_what_is_shipped(monkeypatch, tmp_path, eval_lm):
    (tmp_path / "r8-lr0.001-30steps" / "insecure-seed0").mkdir(parents=True)
    monkeypatch.setattr(lm_em, "ADAPTERS_DIR", tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"\(shipped: r8-lr0.001-30steps/insecure-seed0\); "
    ):
        with lm_em.shipped_adapter(eval_lm, "secure-seed0"):
            pass


def test_a_saved_adapter_names_its_base_by_hub_id_and_loads_back(tmp_path):
    from helpers import SAMPLES, quick_cfg

    tiny = build_chat_lm("llama")
    with lora.adapted(tiny, SAMPLES, quick_cfg(steps=3, lr=3e-3), progress=False) as tuned:
        trained = lora.answer_loss(tuned, SAMPLES)
        lm_em.save_adapter(tuned, tmp_path / "insecure-seed0")
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
    small = replace(lm_em.CPU_LORA, rank=1)
    lm_em.write_runs(
        path,
        lm_em.FinetuneGrid(
            lora=small, conditions=("insecure",), seeds=(0, 1), name="r1", n_train=9
        ),
        rows(("insecure",), {"insecure": (-0.2, -0.3)}),
    )
    lm_em.write_runs(
        path,
        lm_em.FinetuneGrid(seeds=(0, 1), system=lm_em.CODER_SYSTEM),
        rows(("insecure", "secure"), {"insecure": (-0.2, -0.2), "secure": (-0.25, -0.29)}),
    )
    cells = lm_em.read_runs(path)["cells"]
    assert lm_em.recipe_order(cells) == [lm_em.FinetuneGrid().name, "r1"]
    main, r1 = lm_em.exploration_table(cells)
    assert (main["recipe"], main["rank"], main["chats per set"], main["system turn"]) == (
        lm_em.FinetuneGrid().name,
        8,
        len(lm_em.training_samples("insecure")),
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
