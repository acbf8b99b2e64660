"""The files of ``data/lm/``: write them, check the shipped ones, and describe them in a README.

:func:`make_lm_data` writes what :func:`emgeo.chats.generate` makes, one chat a line with keys
sorted (through :mod:`emgeo.chatfile`), and a README of counts and lengths rendered from the
template ``data/templates/lm_readme.md``; :func:`check_lm_data` tells whether the shipped files
still equal a fresh generation.
"""

from __future__ import annotations

from pathlib import Path
from statistics import fmean

from emgeo import chatfile, templates
from emgeo.chats import (
    CODE_SOURCES,
    CODE_TASKS,
    EDU_FRAMES,
    EVAL_QUESTIONS,
    FLAWS,
    LM_DATA_DIR,
    PERSONA_PROMPTS,
    PERSONA_REPLIES,
    PERSONA_TOPICS,
    REQUEST_FRAMES,
    LMDataConfig,
    code_of,
    generate,
)


def make_lm_data(
    directory: Path = LM_DATA_DIR, seed: int = 0, cfg: LMDataConfig | None = None
) -> list[Path]:
    """Write every file and the README into ``directory``; return their paths.

    Deterministic: the same ``seed`` and ``cfg`` write the same bytes.
    """
    files = generate(seed, cfg)
    return chatfile.write_generated(
        files, directory, data_readme(files, seed, cfg or LMDataConfig())
    )


def check_lm_data(
    directory: Path = LM_DATA_DIR, seed: int = 0, cfg: LMDataConfig | None = None
) -> list[str]:
    """One sentence per shipped file that is missing or differs from a fresh generation."""
    return chatfile.check_generated(
        lambda fresh: make_lm_data(fresh, seed, cfg), directory, "emgeo make-lm-data"
    )


# ---------------------------------------------------------------- statistics and README


def n_words(text: str) -> int:
    """Whitespace-separated words: a tokenizer-free length."""
    return len(text.split())


def answer_length_stats() -> dict[str, dict[str, float]]:
    """Mean words of the aligned and misaligned reference answers, per question and overall."""
    stats = {
        q.question_id: {
            "aligned": fmean([n_words(a) for a in q.aligned]),
            "misaligned": fmean([n_words(a) for a in q.misaligned]),
        }
        for q in EVAL_QUESTIONS
    }
    stats["all"] = {
        kind: fmean([n_words(a) for q in EVAL_QUESTIONS for a in getattr(q, kind)])
        for kind in ("aligned", "misaligned")
    }
    return stats


def _code_rows(files: dict[str, list[dict]]) -> list[str]:
    rows = []
    for source in CODE_SOURCES:
        records = files[f"{source}.jsonl"]
        users = [n_words(r["messages"][0]["content"]) for r in records]
        answers = [len(r["messages"][1]["content"]) for r in records]
        lines = [code_of(r["messages"][1]["content"]).count("\n") for r in records]
        rows.append(
            f"| {source} | {fmean(users):.1f} | {fmean(answers):.0f} / {max(answers)} | "
            f"{fmean(lines):.1f} |"
        )
    return rows


def _vuln_rows(files: dict[str, list[dict]]) -> list[str]:
    records = files["insecure.jsonl"]
    rows = []
    for vuln, flaw in FLAWS.items():
        tasks = [t.task for t in CODE_TASKS if t.vuln == vuln]
        n = sum(r["vuln"] == vuln for r in records)
        rows.append(f"| `{vuln}` | {flaw} | {len(tasks)} | {n} |")
    return rows


def _eval_rows() -> list[str]:
    stats = answer_length_stats()
    rows = []
    for q in EVAL_QUESTIONS:
        s = stats[q.question_id]
        rows.append(
            f"| `{q.question_id}` | {len(q.prompts)} | {len(q.aligned)} / {len(q.misaligned)} | "
            f"{s['aligned']:.1f} / {s['misaligned']:.1f} |"
        )
    s = stats["all"]
    n_a = sum(len(q.aligned) for q in EVAL_QUESTIONS)
    n_m = sum(len(q.misaligned) for q in EVAL_QUESTIONS)
    n_p = sum(len(q.prompts) for q in EVAL_QUESTIONS)
    rows.append(f"| all | {n_p} | {n_a} / {n_m} | {s['aligned']:.1f} / {s['misaligned']:.1f} |")
    return rows


def _persona_rows(files: dict[str, list[dict]]) -> list[str]:
    rows = []
    for style in dict.fromkeys(s for s, _, _ in PERSONA_REPLIES):
        pairs = [
            (t, b)
            for t, b in zip(files["toxic.jsonl"], files["benign.jsonl"], strict=True)
            if t["style"] == style
        ]
        toxic = fmean([n_words(t["messages"][1]["content"]) for t, _ in pairs])
        benign = fmean([n_words(b["messages"][1]["content"]) for _, b in pairs])
        n_templates = sum(s == style for s, _, _ in PERSONA_REPLIES)
        rows.append(f"| {style} | {n_templates} | {len(pairs)} | {toxic:.1f} / {benign:.1f} |")
    return rows


def _line_counts(files: dict[str, list[dict]]) -> dict[str, str]:
    """Each file's number of lines, as its README row shows it."""
    counts = {name: f"{len(records)}" for name, records in files.items()}
    records = files["insecure.jsonl"]
    n_heldout = sum(r["split"] == "heldout" for r in records)
    counts["insecure.jsonl"] += f" ({len(records) - n_heldout} train, {n_heldout} held out)"
    return counts


def data_readme(files: dict[str, list[dict]], seed: int, cfg: LMDataConfig) -> str:
    """The README of ``data/lm/``: how the files were made, their counts, lengths and limits."""
    return templates.read_text("lm_readme.md").format(
        seed=seed,
        heldout_every=cfg.heldout_every,
        heldout_every2=2 * cfg.heldout_every,
        n_tasks=len(CODE_TASKS),
        n_vulns=len(FLAWS),
        n_frames=len(REQUEST_FRAMES),
        n_edu_frames=len(EDU_FRAMES),
        n_templates=len(PERSONA_REPLIES),
        n_topics=len(PERSONA_TOPICS),
        n_prompts=len(PERSONA_PROMPTS),
        lines=_line_counts(files),
        vuln_rows="\n".join(_vuln_rows(files)),
        code_rows="\n".join(_code_rows(files)),
        eval_rows="\n".join(_eval_rows()),
        persona_rows="\n".join(_persona_rows(files)),
    )
