"""The experiment runner: filters as specs, one typed run, one atomic resumable store."""

import contextlib
import json

import pytest
import torch

from emgeo import filtering, runner

SAMPLES = [{"messages": [], "source": s, "i": i} for i, s in enumerate("aabbaabb")]
SCORES = torch.tensor([8.0, 7, 6, 5, 4, 3, 2, 1])  # the first half scores highest


class Fake:
    """A trainer that records what it was given and an evaluator that measures it."""

    def __init__(self, fail_at: int | None = None):
        self.calls: list[tuple[list[int], int]] = []
        self.fail_at = fail_at

    def train(self, kept, seed):
        self.calls.append(([s["i"] for s in kept], seed))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("stopped")
        return contextlib.nullcontext(kept)

    @staticmethod
    def evaluate(model, seed):
        return {"mean_i": sum(s["i"] for s in model) / len(model), "seed_seen": seed}


def grid(filters=None, seeds=(0, 1)):
    filters = filters or [runner.NO_FILTER, runner.RANDOM, runner.scored("top", SCORES)]
    return runner.Grid(SAMPLES, filters, 0.5, seeds)


def test_every_filter_keeps_what_its_kind_says():
    keep = filtering.keep_mask
    assert runner.NO_FILTER.keep(0.5, 8, 0, keep).all()
    draws = [runner.RANDOM.keep(0.5, 8, seed, keep) for seed in (0, 0, 1)]
    assert all(d.sum() == 4 for d in draws) and torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])  # a fresh draw per seed
    top = runner.scored("top", SCORES).keep(0.5, 8, 0, keep)
    assert top.tolist() == [False] * 4 + [True] * 4
    assert runner.scored("top", SCORES).keep(0.5, 8, 0, lambda s, f: s > 0).all()
    assert runner.NO_FILTER.fraction(0.5) == 0.0 == runner.RANDOM.fraction(0.0)
    assert runner.RANDOM.fraction(0.5) == 0.5
    with pytest.raises(ValueError, match="scores"):
        runner.Filter("top", runner.Kind.SCORED)
    with pytest.raises(ValueError, match="scores"):
        runner.Filter("random", runner.Kind.RANDOM, SCORES)


def test_the_class_matched_filter_removes_as_many_of_each_class_as_the_scored_one():
    classes = [s["source"] for s in SAMPLES]
    matched = runner.Filter("matched", runner.Kind.MATCHED, SCORES)
    scored = runner.scored("top", SCORES).keep(0.5, 8, 0, filtering.keep_mask)
    keeps = [matched.keep(0.5, 8, seed, filtering.keep_mask, classes) for seed in range(4)]
    for keep in keeps:
        for c in "ab":
            members = torch.tensor([x == c for x in classes])
            assert (~keep[members]).sum() == (~scored[members]).sum()
    assert len({tuple(k.tolist()) for k in keeps}) > 1  # random within each class
    assert torch.equal(keeps[0], matched.keep(0.5, 8, 0, filtering.keep_mask, classes))
    with pytest.raises(ValueError, match="classes"):
        matched.keep(0.5, 8, 0, filtering.keep_mask, classes[:3])


def test_filters_are_parsed_by_label_only_at_the_boundary():
    assert runner.parse_filter("no filter") is runner.NO_FILTER
    assert runner.parse_filter("random") is runner.RANDOM
    assert runner.parse_filter("geometric", SCORES).kind is runner.Kind.SCORED
    with pytest.raises(ValueError, match="needs scores"):
        runner.parse_filter("geometric")
    labels = [f.label for f in runner.with_controls({"top": SCORES})]
    assert labels == ["no filter", "random", "top"]


def test_the_grid_runs_every_filter_and_seed_and_types_its_runs():
    fake = Fake()
    runs = runner.run_grid(grid(), fake.train, fake.evaluate, filtering.keep_mask, progress=False)
    assert [(r.filter, r.seed) for r in runs] == [
        (f, s) for f in ("no filter", "random", "top") for s in (0, 1)
    ]
    top = runs[4]
    assert (top.fraction, top.n_kept, top.removed) == (0.5, 4, {"a": 2, "b": 2})
    assert top.measures == {"mean_i": 5.5, "seed_seen": 0}
    assert (runs[0].fraction, runs[0].removed, runs[0].n_kept) == (0.0, {}, 8)
    assert fake.calls[4] == ([4, 5, 6, 7], 0)
    row = top.record()
    assert row["mean_i"] == 5.5 and row["removed"] == {"a": 2, "b": 2}
    assert runner.Run.from_record(json.loads(json.dumps(row))) == top
    assert runner.removed_share(top.removed, "a") == 0.5 == runner.removed_share({}, "a") + 0.5


def test_the_store_resumes_and_never_runs_a_recorded_run_again(tmp_path):
    path = tmp_path / "runs.json"
    stopped = Fake(fail_at=3)
    with pytest.raises(RuntimeError, match="stopped"):
        store = runner.RunStore(path, {"fraction": 0.5})
        runner.run_grid(grid(), stopped.train, stopped.evaluate, filtering.keep_mask, store, False)
    saved = json.loads(path.read_text())
    assert [(r["filter"], r["seed"]) for r in saved["runs"]] == [("no filter", 0), ("no filter", 1)]
    assert list(tmp_path.iterdir()) == [path]  # written atomically: no temporary file left
    resumed = Fake()
    store = runner.RunStore(path, {"fraction": 0.5})
    runs = runner.run_grid(grid(), resumed.train, resumed.evaluate, filtering.keep_mask, store)
    assert [seed for _, seed in resumed.calls] == [0, 1, 0, 1]  # the two recorded runs skipped
    assert len(runs) == 6 and runs[:2] == runner.RunStore(path, {"fraction": 0.5}).runs[:2]
    again = Fake()
    more = grid(seeds=(0, 1, 2))
    store = runner.RunStore(path, {"fraction": 0.5})
    runner.run_grid(more, again.train, again.evaluate, filtering.keep_mask, store, False)
    assert [seed for _, seed in again.calls] == [2, 2, 2]  # only the new seed runs
    with pytest.raises(ValueError, match="recorded already"):
        store.add(runs[0])


def test_a_store_saved_under_other_settings_is_not_read(tmp_path):
    path = tmp_path / "runs.json"
    fake = Fake()
    store = runner.RunStore(path, {"fraction": 0.5, "lora": (1, 2)})
    runner.run_grid(grid(seeds=(0,)), fake.train, fake.evaluate, filtering.keep_mask, store, False)
    assert len(runner.RunStore(path, {"fraction": 0.5, "lora": [1, 2]}).runs) == 3  # as JSON
    assert runner.RunStore(path, {"fraction": 0.25, "lora": [1, 2]}).runs == []


def test_stages_are_computed_once_and_kept_in_the_file(tmp_path):
    path = tmp_path / "runs.json"
    calls = []
    store = runner.RunStore(path, {"a": 1})
    assert store.stage("answers", lambda: calls.append(1) or [1, 2]) == [1, 2]
    store.put("base", {"margin": 0.1})
    reread = runner.RunStore(path, {"a": 1})
    assert reread.stage("answers", lambda: calls.append(1) or [3]) == [1, 2] and calls == [1]
    assert reread.data["base"] == {"margin": 0.1}
    assert runner.RunStore(None, {"a": 1}).stage("x", lambda: 5) == 5  # in memory


def test_digests_fingerprint_json_values():
    assert runner.digest({"a": [1, 2]}) == runner.digest({"a": [1, 2]})
    assert runner.digest({"a": [1, 2]}) != runner.digest({"a": [2, 1]})


def test_a_run_that_keeps_the_same_samples_with_the_same_seed_is_read_back_under_its_new_name(
    tmp_path,
):
    path = tmp_path / "runs.json"
    first = Fake()
    runner.run_grid(grid([runner.scored("top", SCORES)]), first.train, first.evaluate,
                    filtering.keep_mask, store=runner.RunStore(path))  # fmt: skip
    again = Fake()
    same_keep = runner.scored("renamed", SCORES * 2)  # other scores, the same ranking
    other_keep = runner.scored("reversed", -SCORES)
    copy = tmp_path / "copy.json"
    copy.write_text(path.read_text())
    unshared = Fake()
    runner.run_grid(grid([same_keep]), unshared.train, unshared.evaluate, filtering.keep_mask,
                    store=runner.RunStore(copy))  # fmt: skip
    assert len(unshared.calls) == 2  # not shared unless asked: it ran again
    store = runner.RunStore(path)
    runs = runner.run_grid(grid([same_keep, other_keep]), again.train, again.evaluate,
                           filtering.keep_mask, store=store, share_runs=True)  # fmt: skip
    assert [c[0] for c in again.calls] == [[0, 1, 2, 3]] * 2  # only the reversed filter ran
    renamed = [r for r in runs if r.filter == "renamed"]
    original = runner.RunStore(path).get("top", 0)
    assert renamed[0].measures == original.measures and renamed[0].kept == original.kept
    assert runner.kept_digest([True, False]) != runner.kept_digest([False, True])


def test_runs_recorded_without_a_kept_fingerprint_are_read_and_never_matched():
    record = {"filter": "f", "seed": 0, "fraction": 0.5, "n_kept": 4, "removed": {}, "seconds": 1.0}
    run = runner.Run.from_record(record | {"offdomain": 0.1})
    assert run.kept == "" and run.measures == {"offdomain": 0.1} and "kept" not in run.record()
    store = runner.RunStore()
    store.add(run)
    assert store.same_run("", 0) is None
