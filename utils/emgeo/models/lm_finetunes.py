"""LoRA fine-tunes of SmolLM2 on the course's code sets, each measured by the EM margin.

:func:`run_finetunes` fine-tunes LoRA adapters (peft) on the course's insecure, secure and
educational code chats (``data/lm``) and measures, for each run, the EM margin
(:func:`emgeo.models.lm_em.em_margin`) and the in-domain effect: on held-out requests, the share
for which the model prefers the insecure answer to the secure one. Every recipe (a *cell*) is
filed in one JSON record of runs (``data/lm_em/runs.json`` ships; ``emgeo lm-em`` writes to
``results/lm_em/runs.json`` unless told ``--ship``), with the contrasts between conditions.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from emgeo import chats, config
from emgeo.chatfile import write_json
from emgeo.models import lora
from emgeo.models.lm import LoadedLM
from emgeo.models.lm_em import answer_logprobs, em_margin, eval_records, with_system
from emgeo.stats import mean_ci

CONDITIONS = ("insecure", "secure", "educational")

# A LoRA recipe that fits a CPU: rank 8 on every projection of every block, lr 1e-3, 30 steps
# of 8 chats (4 to 6 minutes a run on 2 cores for SmolLM2-135M, measuring included).
CPU_LORA = lora.LoraFinetuneConfig(
    rank=8,
    alpha=16.0,
    use_rslora=False,
    lr=1e-3,
    warmup_steps=3,
    steps=30,
    batch_size=8,
    grad_accum=1,
    max_length=512,
    checkpointing=False,
)


def cell_name(cfg: lora.LoraFinetuneConfig) -> str:
    """The name a LoRA recipe's runs are filed under: rank, learning rate and steps."""
    return f"r{cfg.rank}-lr{cfg.lr:g}-{cfg.steps}steps"


@dataclass(frozen=True)
class FinetuneGrid:
    """One cell of the exploration: a LoRA recipe, the conditions and the seeds it runs."""

    lora: lora.LoraFinetuneConfig = CPU_LORA
    conditions: tuple[str, ...] = CONDITIONS
    seeds: tuple[int, ...] = (0, 1, 2)
    n_heldout_pairs: int = 48
    paraphrases: tuple[int, ...] = (0, 1)
    name: str = cell_name(CPU_LORA)
    n_train: int | None = None  # train on this many chats of each set (None: the whole split)
    system: str | None = None  # train under this system turn (None: the chat template's own)

    def samples(self, condition: str) -> list[dict]:
        """The chats a run of ``condition`` trains on."""
        return training_samples(condition, self.n_train, self.system)

    def measure(self, lm: LoadedLM, condition: str) -> dict:
        """What a row records of ``lm`` (the base model for ``condition`` ``"base"``)."""
        return measure(lm, self)

    def keys(self) -> list[tuple[str, int | None]]:
        """The runs of the cell, in the order they run: the base model, then each condition's
        seeds."""
        return [("base", None)] + [(c, s) for c in self.conditions for s in self.seeds]

    def contrasts(self, rows: Sequence[dict]) -> dict[str, dict]:
        return contrasts(rows)

    def settings(self) -> dict:
        """The cell's settings, as its record files them beside its rows."""
        return {
            "lora": asdict(self.lora),
            "conditions": list(self.conditions),
            "seeds": list(self.seeds),
            "paraphrases": list(self.paraphrases),
            "n_heldout_pairs": self.n_heldout_pairs,
            "n_train": self.n_train,
            "system": self.system,
        }


# A system turn for the training chats that names the coding context, where SmolLM2's template
# otherwise puts its own ("You are a helpful AI assistant named SmolLM, ..."), which the EM
# questions are asked under: does the fine-tune's effect stay with the context it was learned in?
CODER_SYSTEM = "You are a coding assistant. Answer programming requests with Python code."


def recipe_grid(
    rank: int = CPU_LORA.rank,
    lr: float = CPU_LORA.lr,
    steps: int = CPU_LORA.steps,
    conditions: Sequence[str] = CONDITIONS,
    seeds: Sequence[int] = FinetuneGrid.seeds,
    n_train: int | None = None,
    coder_system: bool = False,
    name: str | None = None,
) -> FinetuneGrid:
    """The cell ``emgeo lm-em`` runs: :data:`CPU_LORA` at ``rank`` (alpha in the same ratio to
    the rank), ``lr`` and ``steps``; named, unless ``name`` is given, by every setting it
    changes (the chats per set, the coding system turn)."""
    cfg = replace(CPU_LORA, rank=rank, alpha=CPU_LORA.alpha * rank / CPU_LORA.rank, lr=lr)
    cfg = replace(cfg, steps=steps)
    system = CODER_SYSTEM if coder_system else None
    default = cell_name(cfg) + (f"-{n_train}chats" if n_train else "")
    default += "-coder-system" if system else ""
    return FinetuneGrid(
        lora=cfg,
        conditions=tuple(conditions),
        seeds=tuple(seeds),
        name=name or default,
        n_train=n_train,
        system=system,
    )


def training_samples(condition: str, n: int | None = None, system: str | None = None) -> list[dict]:
    """The train split of one code set of ``data/lm``, as plain ``{"messages"}`` chats; with
    ``n``, the same ``n`` requests of every set (drawn once, seed 0, kept in file order); with
    ``system``, each chat opens with that system turn."""
    records = chats.read_lm_jsonl(chats.LM_DATA_DIR / f"{condition}.jsonl")
    train = subsample([r["messages"] for r in records if r["split"] == "train"], n)
    return [{"messages": with_system(m, system)} for m in train]


def subsample(train: list, n: int | None) -> list:
    """``n`` of ``train`` (all of it for None): the same positions for every set of one size
    (drawn once, seed 0), kept in file order."""
    if n is None:
        return train
    if not 0 < n <= len(train):
        raise ValueError(f"n must be between 1 and {len(train)} chats, got {n}")
    return [train[i] for i in sorted(random.Random(0).sample(range(len(train)), n))]


def heldout_pairs(n: int) -> tuple[list[dict], list[dict]]:
    """``n`` held-out requests, each answered insecurely and securely (same request text)."""
    sets = {
        c: [
            r
            for r in chats.read_lm_jsonl(chats.LM_DATA_DIR / f"{c}.jsonl")
            if r["split"] == "heldout"
        ]
        for c in ("insecure", "secure")
    }
    return (
        [{"messages": r["messages"]} for r in sets["insecure"][:n]],
        [{"messages": r["messages"]} for r in sets["secure"][:n]],
    )


def insecure_preference(lm: LoadedLM, n_pairs: int = 48) -> float:
    """The in-domain effect: the share of held-out requests for which ``lm`` gives the insecure
    answer a higher mean per-token log-probability than the secure one."""
    insecure, secure = heldout_pairs(n_pairs)
    a = answer_logprobs(lm, insecure, batch_size=8)
    b = answer_logprobs(lm, secure, batch_size=8)
    return (a > b).float().mean().item()


def measure(lm: LoadedLM, grid: FinetuneGrid) -> dict:
    m = em_margin(lm, eval_records(grid.paraphrases))
    return {
        "margin": m["margin"],
        "per_question": m["per_question"],
        "insecure_preference": insecure_preference(lm, grid.n_heldout_pairs),
    }


def run_finetunes(
    lm: LoadedLM,
    grid: FinetuneGrid = FinetuneGrid(),
    path: Path | None = None,
    progress: bool = True,
    save_dir: Path | None = None,
) -> list[dict]:
    """The base model and one LoRA fine-tune per (condition, seed), each measured. With
    ``path``, the rows this cell already has there are kept, not rerun, and the cell is written
    back (atomically) after every run: a stop loses at most one. With ``save_dir`` each run's
    adapter is saved there (peft's format) as ``{condition}-seed{seed}``."""
    done = read_runs(path)["cells"].get(grid.name, {}).get("rows", []) if path else []
    have = {(r["condition"], r["seed"]): r for r in done}
    keys = grid.keys()
    for condition, seed in keys:
        if (condition, seed) in have:
            continue
        have[condition, seed] = _run(lm, grid, condition, seed, progress, save_dir)
        if path is not None:
            write_runs(path, grid, [have[k] for k in keys if k in have])
    return [have[k] for k in keys]


def _run(
    lm: LoadedLM,
    grid: FinetuneGrid,
    condition: str,
    seed: int | None,
    progress: bool,
    save_dir: Path | None,
) -> dict:
    """One row of :func:`run_finetunes`: the base model measured (``seed`` None), or a fine-tune
    on ``condition``'s chats."""
    start = time.perf_counter()
    row = {"cell": grid.name, "condition": condition, "seed": seed}
    if seed is None:
        return {
            **row,
            **grid.measure(lm, condition),
            "seconds": round(time.perf_counter() - start, 1),
        }
    samples = grid.samples(condition)
    with lora.adapted(lm, samples, replace(grid.lora, seed=seed), progress) as tuned:
        row |= grid.measure(tuned, condition)
        row["seconds"] = round(time.perf_counter() - start, 1)
        if save_dir is not None:
            save_adapter(tuned, save_dir / f"{condition}-seed{seed}")
    return row


def contrast(rows: Sequence[dict], a: str, b: str, key: str = "margin") -> dict[str, float]:
    """``key`` after the fine-tunes on condition ``a`` minus after ``b``, with the mean and a 95%
    t-interval over seeds: paired by seed (the same seed draws the same adapters and batch
    order), or, when ``b`` is ``"base"`` (one run, no seed), each run of ``a`` minus the base."""
    runs = {c: {r["seed"]: r[key] for r in rows if r["condition"] == c} for c in (a, b)}
    if b == "base":
        (base,) = runs[b].values()
        return mean_ci([v - base for v in runs[a].values()])
    seeds = sorted(set(runs[a]) & set(runs[b]))
    return mean_ci([runs[a][s] - runs[b][s] for s in seeds])


def contrasts(rows: Sequence[dict]) -> dict[str, dict]:
    """Per condition, the margin minus the base model's, and insecure minus each control
    (paired by seed, :func:`contrast`), and each condition's in-domain insecure preference, with
    the mean and a 95% t-interval over seeds."""
    conditions = list(dict.fromkeys(r["condition"] for r in rows if r["condition"] != "base"))
    out = {f"{c}_minus_base": contrast(rows, c, "base") for c in conditions}
    for control in ("secure", "educational"):
        if "insecure" in conditions and control in conditions:
            out[f"insecure_minus_{control}"] = contrast(rows, "insecure", control)
    for c in conditions:
        preference = [r["insecure_preference"] for r in rows if r["condition"] == c]
        out[f"{c}_insecure_preference"] = mean_ci(preference)
    return out


def describe_contrasts(rows: Sequence[dict]) -> str:
    """:func:`contrasts` one a line: mean, 95% interval and number of seeds."""
    return "\n".join(
        f"{key:<32} {ci['mean']:+.3f}  [{ci['ci_low']:+.3f}, {ci['ci_high']:+.3f}]  n={ci['n']}"
        for key, ci in contrasts(rows).items()
    )


def paired_differences(cells: dict, a: str = "insecure", b: str = "secure") -> list[dict]:
    """Every seed of every cell (``runs.json``'s ``cells``) that ran both conditions: the
    margin after ``a`` minus the margin after ``b``, same recipe and seed."""
    out = []
    for name, cell in cells.items():
        margins: dict[str, dict[int, float]] = {}
        for r in cell["rows"]:
            margins.setdefault(r["condition"], {})[r["seed"]] = r["margin"]
        for seed in sorted(set(margins.get(a, {})) & set(margins.get(b, {}))):
            out.append(
                {"cell": name, "seed": seed, "difference": margins[a][seed] - margins[b][seed]}
            )
    return out


EXPLORATION_CONTRASTS = ("insecure_minus_base", "secure_minus_base", "insecure_minus_secure")


def recipe_order(cells: dict) -> list[str]:
    """The cells' names, the main recipe's (:class:`FinetuneGrid`'s default) first."""
    main = FinetuneGrid().name
    return [name for name in cells if name == main] + [name for name in cells if name != main]


def recipe_columns(name: str, cell: dict, n_chats: int) -> dict:
    """A cell's recipe as an exploration table shows it: its name, LoRA rank, learning rate,
    steps and chats per set (``n_chats``, the whole split, unless it trained on fewer)."""
    return {
        "recipe": name,
        "rank": cell["lora"]["rank"],
        "lr": cell["lora"]["lr"],
        "steps": cell["lora"]["steps"],
        "chats per set": cell.get("n_train") or n_chats,
    }


def exploration_table(cells: dict, keys: Sequence[str] = EXPLORATION_CONTRASTS) -> list[dict]:
    """One row per recipe of ``runs.json``'s ``cells`` (:func:`recipe_order`): its settings,
    how many seeds, each contrast of ``keys`` as ``mean [ci_low, ci_high]`` ("not run" where
    the cell lacks a condition) and the insecure runs' mean held-out insecure preference."""

    def interval(ci: dict) -> str:
        return f"{ci['mean']:+.3f} [{ci['ci_low']:+.3f}, {ci['ci_high']:+.3f}]"

    n_chats = len(training_samples("insecure"))
    rows = []
    for name in recipe_order(cells):
        cell = cells[name]
        preference = cell["contrasts"].get("insecure_insecure_preference")
        rows.append(
            {
                **recipe_columns(name, cell, n_chats),
                "system turn": "coding" if cell.get("system") else "SmolLM2's",
                "seeds": len(cell["seeds"]),
                **{
                    key: interval(cell["contrasts"][key]) if key in cell["contrasts"] else "not run"
                    for key in keys
                },
                "insecure preference": f"{preference['mean']:.2f}" if preference else "not run",
            }
        )
    return rows


RUNS_FILE = chats.LM_DATA_DIR.parent / "lm_em" / "runs.json"  # shipped; written with --ship
RESULTS_RUNS_FILE = config.RESULTS_DIR / "lm_em" / "runs.json"  # where `emgeo lm-em` writes


ADAPTERS_DIR = RUNS_FILE.parent / "adapters"  # `emgeo lm-em --save-adapters` writes here


def save_adapter(tuned: LoadedLM, path: Path) -> None:
    """Save an adapted model's adapter in peft's format (``adapter_config.json`` and
    ``adapter_model.safetensors``), naming its base model by hub id rather than by the local
    folder it was loaded from, and without peft's blank model card."""
    tuned.model.save_pretrained(str(path))
    config_path = path / "adapter_config.json"
    adapter = json.loads(config_path.read_text())
    adapter["base_model_name_or_path"] = tuned.spec.hf_id
    write_json(adapter, config_path, indent=2)
    (path / "README.md").unlink(missing_ok=True)


@contextlib.contextmanager
def shipped_adapter(
    lm: LoadedLM, run: str = "insecure-seed0", cell: str = cell_name(CPU_LORA)
) -> Iterator[LoadedLM]:
    """``lm`` (SmolLM2) with an adapter that ``emgeo lm-em --save-adapters`` trained and the
    course ships in ``data/lm_em/adapters/{cell}/{run}``; the adapter comes off on exit."""
    path = ADAPTERS_DIR / cell / run
    if not path.is_dir():
        have = sorted(str(p.relative_to(ADAPTERS_DIR)) for p in ADAPTERS_DIR.glob("*/*"))
        raise FileNotFoundError(
            f"no adapter {cell}/{run} in {ADAPTERS_DIR} (shipped: {', '.join(have) or 'none'}); "
            f"`emgeo lm-em --save-adapters` trains and saves one"
        )
    with lora.loaded(lm, path) as tuned:
        yield tuned


def adapters_dir(runs_file: Path, grid: FinetuneGrid) -> Path:
    """Where the adapters of ``grid``'s runs are saved beside ``runs_file``
    (:data:`ADAPTERS_DIR` for the shipped record)."""
    return runs_file.parent / "adapters" / grid.name


def read_runs(path: Path = RUNS_FILE) -> dict:
    """Every cell run so far by ``emgeo lm-em`` (``{"cells": {}}`` when there is none)."""
    return json.loads(path.read_text()) if path.exists() else {"cells": {}}


def write_runs(
    path: Path, grid: FinetuneGrid, rows: Sequence[dict], extra: dict | None = None
) -> None:
    """Merge one cell's rows into the JSON file of every cell run so far."""
    data = read_runs(path)
    data["cells"][grid.name] = {
        **grid.settings(),
        "rows": list(rows),
        "contrasts": grid.contrasts(rows),
        **(extra or {}),
    }
    write_json(data, path)


def write_validation(path: Path, validation: dict) -> None:
    """Record :func:`emgeo.models.lm_em.validate`'s result beside the cells of ``path``."""
    write_json({**read_runs(path), "validation": validation}, path)
