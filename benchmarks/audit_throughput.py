"""Throughput and peak memory of ``emgeo audit`` (cpu profile: SmolLM2-135M and the course SAE)
against a naive scorer that runs each sample alone through the whole model.

    .venv/bin/python benchmarks/audit_throughput.py [--sizes 1000 10000] [--naive 64]

Each audit runs in a fresh child process on a file of chats drawn from the course's code sets
(data/lm, each made unique by a numbered request), with an empty cache; its peak resident memory is
that child's. Samples per second count the scoring only (the model and the toxic reference set are
built before the clock starts); the naive scorer runs before and after the audits, and its rate is
the mean of the two. Writes results/audit_benchmark.json and the ``audit.*`` keys of
results/summary.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emgeo.config import RESULTS_DIR

THREADS = 2


def synthetic_chats(n: int, seed: int = 0) -> list[dict]:
    from emgeo.audit import validate  # the course's code sets, cycled

    pool = validate.lm_mix(200, seed)
    out = []
    for i in range(n):
        chat = pool[i % len(pool)]
        user, *rest = chat["messages"]
        out.append({**chat, "messages": [{**user, "content": f"{user['content']} (#{i})"}, *rest]})
    return out


def n_tokens(chats: list[dict], max_length: int) -> dict:
    """Tokens of ``chats`` (chat template, cut at ``max_length``), and the tokens the audit runs:
    the same, less the prefix every chat of one of its chunks shares, which runs once a chunk."""
    from emgeo.audit.run import CHUNK
    from emgeo.batching import common_prefix, encode_sample
    from emgeo.models import lm

    tokenizer = lm.load("smollm2-135m").tokenizer
    encoded = [encode_sample(tokenizer, c, max_length) for c in chats]
    tokens = sum(len(ids) for ids, _ in encoded)
    shared = [
        common_prefix(encoded[start : start + CHUNK]) for start in range(0, len(chats), CHUNK)
    ]
    per_chunk = (min(CHUNK, len(chats) - start) for start in range(0, len(chats), CHUNK))
    saved = sum((n_chats - 1) * n for n_chats, n in zip(per_chunk, shared, strict=True))
    return {"tokens": tokens, "tokens_run": tokens - saved, "shared_prefix_tokens": min(shared)}


def child_audit(data: str, out: str, batch_size: str) -> dict:
    """Run in the child: build the scorer, then time the audit alone."""
    import torch

    from emgeo.audit import audit, scorer_for

    torch.set_num_threads(THREADS)
    scorer = scorer_for("cpu", batch_size=int(batch_size), progress=False)
    start = time.perf_counter()
    result = audit(data, out, scorer=scorer, progress=False)
    seconds = time.perf_counter() - start
    chats = [json.loads(line) for line in Path(data).read_text().splitlines()]
    return {
        "n": result.n_samples,
        "seconds": round(seconds, 1),
        "samples_per_s": result.n_samples / seconds,
        **n_tokens(chats, scorer.max_length),
    }


def child_naive(n: int) -> dict:
    """Each sample alone, through every block (no early stop), the SAE on the read layer."""
    import torch

    from emgeo.audit import scorer_for
    from emgeo.audit.scorers import score_latents
    from emgeo.batching import chat_batch
    from emgeo.models import lm, saes

    torch.set_num_threads(THREADS)
    scorer = scorer_for("cpu", progress=False)
    smol, sae = lm.load("smollm2-135m"), saes.smollm2_sae()
    chats = synthetic_chats(n, seed=1)
    start = time.perf_counter()
    with torch.no_grad():
        for chat in chats:
            enc, mask = chat_batch(smol.tokenizer, [chat], 512)
            out = smol.model(**enc, output_hidden_states=True)
            acts = out.hidden_states[scorer.layer + 1]  # after block `layer`
            latents = sae.encode(acts)
            mean = (latents * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            score_latents(mean, scorer.proximity, scorer.toxic)
    seconds = time.perf_counter() - start
    return {
        "n": n,
        "seconds": round(seconds, 1),
        "samples_per_s": n / seconds,
        "tokens": n_tokens(chats, 512)["tokens"],
    }


def flop_ceiling() -> dict:
    """Multiply-adds per token of each scorer, from SmolLM2's config: the naive one runs every
    block and the unembedding, the audit the blocks up to the read layer; both run the SAE's
    encoder. Their ratio is the speedup early stopping gives when batching gains nothing."""
    from emgeo.models import lm, saes

    cfg = lm.load("smollm2-135m").model.config
    d, kv = cfg.hidden_size, cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    block = 2 * d * d + 2 * d * kv + 3 * d * cfg.intermediate_size  # q, o; k, v; gate, up, down
    sae = d * saes.SMOLLM2_SAE.training.expansion * d
    layer = saes.SMOLLM2_SAE.layer
    naive = cfg.num_hidden_layers * block + d * cfg.vocab_size + sae
    audit = (layer + 1) * block + sae
    return {
        "naive_macs_per_token": naive,
        "audit_macs_per_token": audit,
        "flop_ratio": round(naive / audit, 2),
    }


def child_gemm() -> dict:
    """Multiply-adds per second this machine's float32 matrix product sustains at ``THREADS``
    threads on large square matrices: the arithmetic ceiling either scorer could reach."""
    import torch

    torch.set_num_threads(THREADS)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm up
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = max(best, n**3 / (time.perf_counter() - start) / 1e9)
    return {"gemm_gmacs_per_s": round(best, 1)}


def child_breakdown(n: int) -> dict:
    """Where the audit's model time goes: ``n`` chats traced as the audit traces them (sorted by
    tokens, the shared prefix cached, batches of 8), and the same batches' matrix products alone
    (every linear layer up to the read layer, on inputs of the batch's shape). Their ratio is the
    share of the trace spent in matrix products; the rest is attention, norms, rotary embeddings,
    activations and copies."""
    import torch

    from emgeo.batching import common_prefix, encode_sample, split_after_prefix
    from emgeo.models import lm, saes, tracing

    torch.set_num_threads(THREADS)
    smol, layer = lm.load("smollm2-135m"), saes.SMOLLM2_SAE.layer
    encoded = sorted(
        (encode_sample(smol.tokenizer, c, 256) for c in synthetic_chats(n, seed=2)),
        key=lambda e: len(e[0]),
    )
    shared = common_prefix(encoded)
    prefix = tracing.prefix_cache(smol, encoded[0][0][:shared])
    blocks = smol.model.model.layers[: layer + 1]
    linears = [m for block in blocks for m in block.modules() if isinstance(m, torch.nn.Linear)]
    trace_s = matmul_s = macs = 0.0
    with torch.no_grad():
        for start in range(0, n, 8):
            batch = encoded[start : start + 8]
            enc, _ = split_after_prefix(batch, smol.tokenizer.pad_token_id, shared)
            begin = time.perf_counter()
            tracing.batch_residuals(smol, enc, layer, prefix=prefix)
            trace_s += time.perf_counter() - begin
            rows = enc["input_ids"].numel()
            inputs = {m.in_features: torch.randn(rows, m.in_features) for m in linears}
            begin = time.perf_counter()
            for m in linears:
                m(inputs[m.in_features])
            matmul_s += time.perf_counter() - begin
            macs += rows * sum(m.in_features * m.out_features for m in linears)
    return {
        "profiled_samples": n,
        "matmul_share": round(matmul_s / trace_s, 3),
        "matmul_gmacs_per_s": round(macs / matmul_s / 1e9, 1),
    }


def in_child(*args: str) -> dict:
    """Run this script in a fresh process; its result, with its own peak memory."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--naive", type=int, default=64, help="samples the naive scorer runs")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="chats per trace (audit; the command's default)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "audit":
            result = child_audit(*rest)
        elif kind == "gemm":
            result = child_gemm()
        elif kind == "breakdown":
            result = child_breakdown(int(rest[0]))
        else:
            result = child_naive(int(rest[0]))
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
        print(json.dumps({**result, "peak_rss_mb": round(peak_kib / 1024, 1)}))
        return
    # The naive scorer runs before and after the audits and its rate is their mean, so a
    # machine that speeds up or slows down during the benchmark moves both sides alike.
    naive_runs = [in_child("--child", "naive", str(args.naive))]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(args.sizes):
            data = Path(tmp) / f"chats_{n}.jsonl"
            data.write_text("".join(json.dumps(c) + "\n" for c in synthetic_chats(n)))
            rows[str(n)] = in_child(
                "--child", "audit", str(data), str(Path(tmp) / f"out_{n}"), str(args.batch_size)
            )
            print(
                f"audit {n:>6} samples: {rows[str(n)]['samples_per_s']:.1f} samples/s, "
                f"peak {rows[str(n)]['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    naive_runs.append(in_child("--child", "naive", str(args.naive)))
    naive = {key: sum(r[key] for r in naive_runs) / 2 for key in ("n", "seconds", "samples_per_s")}
    naive.update(tokens=naive_runs[0]["tokens"], runs=naive_runs)
    print(
        f"naive  {args.naive:>6} samples: {naive['samples_per_s']:.1f} samples/s (one at a time, "
        f"every block; {naive_runs[0]['samples_per_s']:.2f} before the audits, "
        f"{naive_runs[1]['samples_per_s']:.2f} after)"
    )
    largest = rows[str(max(args.sizes))]
    ceiling = flop_ceiling()
    print(
        f"multiply-adds per token: naive {ceiling['naive_macs_per_token']:,}, audit "
        f"{ceiling['audit_macs_per_token']:,} (ratio {ceiling['flop_ratio']})"
    )
    # Multiply-adds per second each scorer sustains: how near the machine's arithmetic limit it
    # runs, so how much of a speedup is left once early stopping and the shared prefix have
    # removed what they can.
    rate = {
        name: r.get("tokens_run", r["tokens"])
        / r["seconds"]
        * ceiling[f"{name}_macs_per_token"]
        / 1e9
        for name, r in (("audit", largest), ("naive", naive))
    }
    print(
        f"sustained multiply-adds: audit {rate['audit']:.1f} GMAC/s, naive {rate['naive']:.1f} "
        f"GMAC/s"
    )
    # The most any scorer computing the same products could gain: every block up to the read
    # layer, for the tokens the audit runs, at the machine's large-matrix rate, against the naive
    # scorer as measured.
    gemm = in_child("--child", "gemm")["gemm_gmacs_per_s"]
    run_share = largest["tokens_run"] / largest["tokens"]
    ceiling_now = ceiling["flop_ratio"] / run_share * gemm / rate["naive"]
    parts = in_child("--child", "breakdown", "256")
    print(
        f"where the audit's model time goes ({parts['profiled_samples']} chats): matrix products "
        f"{parts['matmul_share']:.0%}, at {parts['matmul_gmacs_per_s']:.1f} GMAC/s; the rest "
        "(attention, norms, rotary embeddings, activations, copies) "
        f"{1 - parts['matmul_share']:.0%}"
    )
    print(
        f"the audit runs {run_share:.0%} of the chats' tokens (the "
        f"{largest['shared_prefix_tokens']} every chat starts with run once a chunk); this "
        f"machine's float32 matrix product: {gemm:.1f} GMAC/s; speedup ceiling {ceiling_now:.2f}x"
    )
    figures = {
        "samples_per_s": round(largest["samples_per_s"], 2),
        "gmacs_per_s": round(rate["audit"], 1),
        "naive_gmacs_per_s": round(rate["naive"], 1),
        "speedup_vs_naive": round(largest["samples_per_s"] / naive["samples_per_s"], 2),
        **{f"peak_rss_mb_{int(n) // 1000}k": r["peak_rss_mb"] for n, r in rows.items()},
        "naive_samples_per_s": round(naive["samples_per_s"], 2),
        "naive_samples_per_s_before_after": [round(r["samples_per_s"], 2) for r in naive_runs],
        "flop_ratio": ceiling["flop_ratio"],
        "gemm_gmacs_per_s": gemm,
        "speedup_ceiling": round(ceiling_now, 2),
        "tokens_run_share": round(run_share, 3),
        "trace_matmul_share": parts["matmul_share"],
        "trace_matmul_gmacs_per_s": parts["matmul_gmacs_per_s"],
        "shared_prefix_tokens": largest["shared_prefix_tokens"],
        "threads": THREADS,
        "batch_size": args.batch_size,
    }
    print(json.dumps(figures, indent=1))
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "audit_benchmark.json").write_text(
        json.dumps({"runs": rows, "naive": naive, **figures}, indent=1) + "\n"
    )
    summary_path = RESULTS_DIR / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary.setdefault("audit", {}).update(figures)
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
