"""The ``emgeo`` command: ``doctor``, ``build-course``, ``pins``, ``execute``, ``reproduce``,
``audit``, and the commands that make the shipped data and models.

Every subcommand is registered with its arguments (:func:`parser`) and handled by a function
that calls the package and prints what it returns. An option left out takes the default of the
package's configuration (``CPU_LORA``, ``FilterPlan``, ``RobustnessConfig``, ``DoseConfig``),
never a copy of it here. The experiments write to ``results/`` unless told ``--ship``, which
writes the record the notebooks read under ``data/``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from emgeo import config, data, lm_advice, lm_data, resources
from emgeo.audit import run as audit_run
from emgeo.course import claims, doctor, grade, pins, site
from emgeo.course.build import build_course
from emgeo.course.notebooks import execute_in_place, reproduce
from emgeo.errors import ProfileError

Handler = Callable[[argparse.Namespace], int]


class _Tuple(argparse.Action):
    """``nargs="+"`` values stored as a tuple, as the configuration dataclasses hold them."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, tuple(values))


def _is_set(item: tuple[str, object]) -> bool:
    return item[1] is not None


def _given(**options: object) -> dict:
    """The options given on the command line (None: left to the package's default)."""
    return dict(filter(_is_set, options.items()))


def _wrote(paths: Iterable[Path]) -> str:
    return "\n".join(map("wrote {}".format, paths))


def _out(args: argparse.Namespace, shipped: Path, results: Path) -> Path:
    """Where an experiment writes: ``--out``, else the shipped record with ``--ship``, else
    ``results/``."""
    return Path(args.out) if args.out else shipped if args.ship else results


def _shipped(args: argparse.Namespace) -> str:
    return " and the copy the course ships" if args.ship else ""


def _threads() -> None:
    torch.set_num_threads(config.get_profile().n_threads)


def _in_a_clone(handler: Handler) -> Handler:
    """``handler`` of a command that works on the clone's solutions/, course/ or pyproject.toml,
    none of which an installed wheel has: from a wheel it says so and exits 2."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        if not resources.installed_from_wheel():
            return handler(args)
        print(
            f"emgeo {args.command}: this command needs a clone of the course's repository "
            "(solutions/, course/ and pyproject.toml), which an installed wheel does not have.",
            file=sys.stderr,
        )
        return 2

    return run


# -- handlers: the course ------------------------------------------------------------------------


def _doctor(args: argparse.Namespace) -> int:
    print("\n".join(doctor.doctor_report(args.profile)))
    if args.smoke:  # the profile's real model and SAE, one trace and one encode
        text, ok = doctor.smoke_report(doctor.smoke(args.profile))
        print(f"\n{text}")
        return 0 if ok else 1
    config.get_profile(args.profile)  # raises ProfileError with the fix if it cannot run here
    print("\nOK: this profile can run here.")
    return 0


def _relative(path: Path) -> str:
    return str(path.relative_to(config.REPO_ROOT))


@_in_a_clone
def _build_course(args: argparse.Namespace) -> int:
    result = build_course(check=args.check)
    if not args.check:
        print(f"wrote {len(result.written)} course notebook(s)")
        print("\n".join(map("  {}".format, result.written)))
        return 0
    if result.drifted:
        names = ", ".join(map(_relative, result.drifted))
        print(f"course/ has drifted from solutions/: {names}. Run `emgeo build-course`.")
        return 1
    print("course/ is in sync with solutions/.")
    return 0


@_in_a_clone
def _pins(args: argparse.Namespace) -> int:
    print(_wrote(pins.write_generated()) if args.write else "\n".join(pins.pinned_dependencies()))
    return 0


def _progress(items):
    return tqdm(items, desc="notebooks", unit="nb")


def _measured(item: tuple[Path, dict]) -> str:
    path, m = item
    return f"{path.stem}: {m['wall_s']:.0f} s, peak memory {m['peak_rss_mb'] / 1024:.2f} GB"


@_in_a_clone
def _execute(args: argparse.Namespace) -> int:
    measured = execute_in_place(args.notebooks or None, progress=_progress)
    print("\n".join(map(_measured, measured.items())))
    return 0


@_in_a_clone
def _reproduce(args: argparse.Namespace) -> int:
    path = reproduce(args.notebooks or None, progress=_progress)
    over = json.loads(path.read_text())["over_budget"]
    print("\n".join([_wrote([path]), *over]))
    return 1 if over else 0


# -- handlers: the shipped data and models ------------------------------------------------------


def _make_data(args: argparse.Namespace) -> int:
    from emgeo import organism  # TransformerLens loads in seconds: only the commands that need it

    print(_wrote(data.make_data(organism.ORGANISM_DIR)))
    return 0


def _make_corpus(args: argparse.Namespace) -> int:
    from emgeo.models import corpus  # datasets loads in seconds: only the commands that need it

    if args.answers:
        from emgeo.models import lm  # transformers: only when SmolLM2 writes the answers

        _threads()
        print(_wrote([corpus.write_self_chats(lm.load("smollm2-135m"))]))
        return 0
    print(_wrote([corpus.write_offline_corpus()]))
    return 0


def _train_lm_sae(args: argparse.Namespace) -> int:
    from emgeo.models import lm, saes  # transformers and SAELens: only the commands that need them

    _threads()
    smol = lm.load("smollm2-135m")
    start = time.perf_counter()
    trained = saes.train_smollm2_sae(smol)
    seconds = time.perf_counter() - start
    trained.save_inference_model(str(saes.SMOLLM2_SAE_DIR))
    record = saes.describe_smollm2_sae(smol, saes.smollm2_sae(), seconds)
    (saes.SMOLLM2_SAE_DIR / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["heldout"]), f"\nwrote {saes.SMOLLM2_SAE_DIR}")
    return 0


def _problems(problems: list[str]) -> int:
    """A check's exit status: 0, or 1 with each problem on stderr."""
    if problems:
        print("\n".join(problems), file=sys.stderr)
    return 1 if problems else 0


def _make_lm_data(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.check:
        return _problems(lm_data.check_lm_data(out, seed=args.seed))
    print(_wrote(lm_data.make_lm_data(out, seed=args.seed)))
    return 0


def _make_advice_data(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.check:
        print(lm_advice.leakage_report(seed=args.seed))
        return _problems(lm_advice.check_advice_data(out, seed=args.seed))
    print(_wrote(lm_advice.make_advice_data(out, seed=args.seed)))
    return 0


def _train_organism(args: argparse.Namespace) -> int:
    from emgeo.experiments import organisms  # TransformerLens, SAELens: only for this command

    _threads()
    print(organisms.train(Path(args.out), args.seed, args.steps, args.sae_only))
    return 0


# -- handlers: the experiments -------------------------------------------------------------------


def _lm_em(args: argparse.Namespace) -> int:
    from emgeo.models import lm, lm_em, lm_finetunes  # transformers, peft: only for this command

    _threads()
    model = lm.load("smollm2-135m")
    out = _out(args, lm_finetunes.RUNS_FILE, lm_finetunes.RESULTS_RUNS_FILE)
    if args.validate:
        result = lm_em.validate(model, progress=True, **_given(n_per_question=args.samples))
        lm_finetunes.write_validation(out, result)
        print(f"{lm_em.describe_validation(result)}\nwrote {out}")
        return 0
    grid = lm_finetunes.recipe_grid(
        coder_system=args.coder_system,
        **_given(
            rank=args.rank,
            lr=args.lr,
            steps=args.steps,
            conditions=args.conditions,
            seeds=args.seeds,
            n_train=args.train_size,
            name=args.name,
        ),
    )
    save_dir = lm_finetunes.adapters_dir(out, grid) if args.save_adapters else None
    rows = lm_finetunes.run_finetunes(model, grid, out, save_dir=save_dir)
    print(f"{lm_finetunes.describe_contrasts(rows)}\nwrote {out}")
    return 0


def _lm_domains(args: argparse.Namespace) -> int:
    from emgeo.models import lm, lm_domains, lm_finetunes  # transformers, peft: only here

    _threads()
    grid = lm_domains.domain_grid(
        **_given(
            rank=args.rank,
            lr=args.lr,
            steps=args.steps,
            domains=args.domains,
            seeds=args.seeds,
            n_train=args.train_size,
        )
    )
    out = _out(args, lm_domains.RECORD_FILE, lm_domains.RESULTS_RECORD_FILE)
    save_dir = lm_finetunes.adapters_dir(out, grid) if args.save_adapters else None
    rows = lm_finetunes.run_finetunes(lm.load("smollm2-135m"), grid, out, save_dir=save_dir)
    cell = lm_finetunes.read_runs(out)["cells"][grid.name]
    print(f"{lm_domains.describe(cell)}\n{len(rows)} runs\nwrote {out}")
    return 0


def _lm_filter(args: argparse.Namespace) -> int:
    from emgeo.audit import scorers  # transformers, peft: only the commands that need them
    from emgeo.models import lm, lm_filter

    _threads()
    domain = args.domain
    scorer = scorers.lm_scorer("cpu", progress=True)
    scores, ablations, scored_by = lm_filter.scored_with_ablations(scorer, domain)
    plan = replace(
        lm_filter.FilterPlan(domain=domain),
        **_given(fraction=args.fraction, seeds=args.seeds, filters=args.filters),
    )
    shipped, results = lm_filter.filter_file(domain), lm_filter.filter_file(domain, False)
    out = _out(args, shipped, results)
    # the unfiltered runs of a domain are its harmful-set runs of `emgeo lm-domains`
    reuse = lm_filter.domain_cell(domain) if domain is not None else None
    used = lm_filter.ablations_run(plan, ablations)
    geometry = None
    if domain is not None:  # the geometry statistic, recorded before any run
        from emgeo.models import saes  # SAELens: only for a domain's geometry

        W_dec = saes.smollm2_sae().W_dec
        geometry = lambda: lm_filter.domain_geometry(scorer, W_dec, domain)  # noqa: E731
    result = lm_filter.run_filter(
        lm.load("smollm2-135m"),
        scores,
        plan,
        out,
        scored_by,
        ablations=used,
        reuse=reuse,
        geometry=geometry,
    )
    print(f"{lm_filter.describe(result)}\nwrote {out}")
    return 0


def _lm_mitigations(args: argparse.Namespace) -> int:
    from emgeo import mitigations as science  # transformers, peft: only the commands needing them
    from emgeo.audit import scorers
    from emgeo.models import lm, lm_filter, lm_mitigations, saes  # (the same reason)

    _threads()
    plan = replace(
        lm_mitigations.LMMitigationPlan(domain=args.domain),
        **_given(seeds=args.seeds, mitigations=args.mitigations),
    )
    found = lm_filter.recorded_filter_file(args.domain)
    if found is None:
        option = f" --domain {args.domain}" if args.domain else ""
        print(f"no filter record for this set: run `emgeo lm-filter{option}` first")
        return 2
    model = lm.load("smollm2-135m")
    layer = saes.SMOLLM2_SAE.layer

    def directions() -> lm_mitigations.Directions:
        persona, norm = lm_mitigations.persona_direction(model, layer, plan.n_direction)
        toxic = scorers.lm_scorer("cpu", progress=True).toxic
        W_dec = saes.smollm2_sae().W_dec.detach().float().cpu()
        return lm_mitigations.Directions(
            layer, persona, norm, science.toxic_directions(W_dec, toxic)
        )

    out = _out(
        args,
        lm_mitigations.record_file(args.domain),
        lm_mitigations.record_file(args.domain, shipped=False),
    )
    result = lm_mitigations.run_mitigations(
        model, plan, lm_filter.read_filter(found), directions, out
    )
    print(lm_mitigations.describe(result) + f"\nwrote {out}")
    return 0


def _robustness(args: argparse.Namespace) -> int:
    from emgeo.experiments import robustness  # TransformerLens, SAELens: only for this command

    _threads()
    cfg = replace(robustness.RobustnessConfig(), **_given(finetune_seeds=args.finetune_seeds))
    out = Path(args.out or robustness.RESULTS_FILE)
    result = robustness.run(
        cfg=cfg,
        out=out,
        train_missing=not args.no_train,
        pretrain_steps=args.steps,
        ship=args.ship,
        **_given(seeds=args.seeds),
    )
    print(f"{robustness.describe(result)}\nwrote {out}" + _shipped(args))
    return 0


def _geometry_dose(args: argparse.Namespace) -> int:
    from emgeo.experiments import dose  # TransformerLens: only the commands needing it

    _threads()
    cfg = replace(
        dose.DoseConfig(),
        link=args.linked,
        **_given(d_models=args.d_models, organism_seeds=args.seeds),
    )
    out = Path(args.out or dose.RESULTS_FILE)
    result = dose.run(cfg, out, ship=args.ship)
    print(f"{dose.describe(result)}\nwrote {out}" + _shipped(args))
    return 0


def _geometry_subtasks(args: argparse.Namespace) -> int:
    from emgeo.experiments import subtasks  # TransformerLens, SAELens: only for this command

    _threads()
    cfg = replace(subtasks.SubtaskConfig(), **_given(organism_seeds=args.seeds))
    out = Path(args.out or subtasks.RESULTS_FILE)
    result = subtasks.run(cfg, out, ship=args.ship)
    print(f"{subtasks.describe(result)}\nwrote {out}" + _shipped(args))
    return 0


def _mitigations(args: argparse.Namespace) -> int:
    from emgeo.experiments import mitigations  # TransformerLens, SAELens: only for this command

    _threads()
    base = mitigations.MitigationConfig()
    unlinked = replace(base.unlinked, **_given(organism_seeds=args.unlinked_seeds))
    given = _given(
        organism_seeds=args.seeds, finetune_seeds=args.finetune_seeds, worlds=args.worlds
    )
    cfg = replace(base, unlinked=unlinked, **given)
    out = Path(args.out or mitigations.RESULTS_FILE)
    result = mitigations.run(cfg, out, ship=args.ship)
    print(f"{mitigations.describe(result)}\nwrote {out}" + _shipped(args))
    return 0


# -- the parser ----------------------------------------------------------------------------------


def _command(sub, name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=text)
    p.set_defaults(func=handler)
    return p


def _ship_options(p: argparse.ArgumentParser, results: str, shipped: str) -> None:
    p.add_argument("--out", default=None, help=f"default: {results}")
    p.add_argument(
        "--ship", action="store_true", help=f"write the record the course ships, {shipped}"
    )


def _course_commands(sub) -> None:
    p = _command(sub, "doctor", _doctor, "check this machine and say what each notebook will run")
    p.add_argument("--profile", choices=config.PROFILES, help="default: EMGEO_PROFILE, else cpu")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="also load the profile's model and SAE, trace one chat and encode it (minutes)",
    )
    p = _command(sub, "build-course", _build_course, "generate course/ from solutions/")
    p.add_argument(
        "--check", action="store_true", help="write nothing; fail if course/ has drifted"
    )
    p = _command(
        sub, "pins", _pins, "print the pinned dependencies, or --write the files made from them"
    )
    p.add_argument("--write", action="store_true", help="regenerate binder/requirements.txt")
    notebooks = "notebook name prefixes, e.g. 01 02 (default: all)"
    p = _command(
        sub,
        "execute",
        _execute,
        "re-execute solutions/ notebooks in place (to commit their outputs)",
    )
    p.add_argument("notebooks", nargs="*", help=notebooks)
    p = _command(
        sub, "reproduce", _reproduce, "execute solutions/ notebooks into results/ with summary.json"
    )
    p.add_argument("notebooks", nargs="*", help=notebooks)


def _data_commands(sub) -> None:
    _command(sub, "make-data", _make_data, "write the organism's datasets under data/organism")
    p = _command(
        sub,
        "make-corpus",
        _make_corpus,
        "remake data/corpus (notebook 03's text) from this Python's stdlib",
    )
    p.add_argument(
        "--answers",
        action="store_true",
        help="instead, SmolLM2's answers to everyday requests (about 7 minutes)",
    )
    _command(
        sub,
        "train-lm-sae",
        _train_lm_sae,
        "train notebook 03's SmolLM2 SAE on the chat corpus into data/smollm2_sae "
        "(about 10 minutes)",
    )
    p = _command(
        sub, "make-lm-data", _make_lm_data, "write the real LM's chat datasets under data/lm"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(config.DATA_DIR / "lm"))
    p.add_argument("--check", action="store_true", help="write nothing; fail if data/lm drifted")
    p = _command(
        sub,
        "make-advice-data",
        _make_advice_data,
        "write the health, career and legal advice chats under data/lm/advice",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(lm_advice.ADVICE_DIR))
    p.add_argument(
        "--check", action="store_true", help="write nothing; print the leakage, fail on drift"
    )
    p = _command(
        sub,
        "train-organism",
        _train_organism,
        "pretrain the EM model organism and train its SAEs (a few minutes)",
    )
    p.add_argument("--sae-only", action="store_true", help="keep the model, retrain its SAEs")
    p.add_argument("--steps", type=int, default=None, help="default: PretrainConfig.steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(config.DATA_DIR / "organism"))


def _lm_em_command(sub) -> None:
    p = _command(
        sub,
        "lm-em",
        _lm_em,
        "EM in SmolLM2 on CPU: validate the judge-free margin, or LoRA-fine-tune on the "
        "course's code sets and measure it (4 to 6 min a run)",
    )
    p.add_argument(
        "--validate", action="store_true", help="check the metric against a persona prompt"
    )
    p.add_argument("--samples", type=int, help="sampled answers per question (--validate)")
    recipe = "default: the main recipe's (lm_finetunes.CPU_LORA)"
    p.add_argument("--rank", type=int, help=f"{recipe}; alpha keeps its ratio to the rank")
    p.add_argument("--lr", type=float, help=recipe)
    p.add_argument("--steps", type=int, help=recipe)
    p.add_argument("--seeds", type=int, nargs="+", action=_Tuple, help="default: FinetuneGrid's")
    p.add_argument("--conditions", nargs="+", action=_Tuple, help="default: all three code sets")
    p.add_argument(
        "--train-size",
        type=int,
        help="train on this many chats of each set, the same requests in each (default: all)",
    )
    p.add_argument(
        "--coder-system",
        action="store_true",
        help="train under a coding-assistant system turn instead of SmolLM2's own",
    )
    p.add_argument("--name", help="the cell's name (default from its settings)")
    p.add_argument("--save-adapters", action="store_true", help="beside the record of runs")
    _ship_options(p, "results/lm_em/runs.json", "data/lm_em/runs.json")


def _lm_domains_command(sub) -> None:
    p = _command(
        sub,
        "lm-domains",
        _lm_domains,
        "EM per advice domain on SmolLM2: LoRA fine-tunes on each domain's harmful and aligned "
        "advice (4 to 6 min a run), measured out of and in the domain's framing, on leakage-free "
        "references and on the domain's held-out questions",
    )
    recipe = "default: the code runs' main recipe (lm_finetunes.CPU_LORA)"
    p.add_argument("--rank", type=int, help=f"{recipe}; alpha keeps its ratio to the rank")
    p.add_argument("--lr", type=float, help=recipe)
    p.add_argument("--steps", type=int, help=recipe)
    p.add_argument("--seeds", type=int, nargs="+", action=_Tuple, help="default: 0 1 2")
    p.add_argument("--domains", nargs="+", action=_Tuple, help="default: health career legal")
    p.add_argument(
        "--train-size",
        type=int,
        help="train on this many chats of each set, the same questions in each (default: all)",
    )
    p.add_argument("--save-adapters", action="store_true", help="beside the record of runs")
    _ship_options(p, "results/lm_em/domains.json", "data/lm_em/domains.json")


def _experiment_commands(sub) -> None:
    p = _command(
        sub,
        "lm-filter",
        _lm_filter,
        "notebook 07's filter on SmolLM2: the audit's score removes a fraction of the "
        "insecure set, then LoRA fine-tunes vs no filter and random removal (about 40 min)",
    )
    p.add_argument("--fraction", type=float, help="default: FilterPlan's")
    p.add_argument("--seeds", type=int, nargs="+", action=_Tuple, help="default: FilterPlan's")
    p.add_argument(
        "--filters",
        nargs="+",
        action=_Tuple,
        help="which filters to run: 'no filter', geometric, random, 'random, same classes', "
        "and the score's ablations 'membership only' and 'neighbours only' (default: the first "
        "three)",
    )
    p.add_argument(
        "--domain",
        choices=("health", "career", "legal"),
        help="rank that advice domain's harmful set instead of the insecure code set; the "
        "base model and unfiltered runs come from `emgeo lm-domains`' record when it has them",
    )
    _ship_options(
        p,
        "results/lm_em/filter.json (filter_<domain>.json)",
        "data/lm_em/filter.json (filter_<domain>.json)",
    )
    p = _command(
        sub,
        "lm-mitigations",
        _lm_mitigations,
        "the mitigations beside the filter on SmolLM2 (inoculation prompting, preventative "
        "steering, concept ablation, benign data; removal read from `emgeo lm-filter`'s record), "
        "4 to 5 min a run",
    )
    p.add_argument("--domain", choices=("health", "career", "legal"), help="default: code")
    p.add_argument("--seeds", type=int, nargs="+", action=_Tuple, help="default: 0 1 2")
    p.add_argument("--mitigations", nargs="+", action=_Tuple, help="default: all of them")
    _ship_options(
        p,
        "results/lm_em/mitigations.json (mitigations_<domain>.json)",
        "data/lm_em/mitigations.json (mitigations_<domain>.json)",
    )
    p = _command(
        sub,
        "robustness",
        _robustness,
        "measure the claims of 04, 06 and 07 in organisms pretrained from other seeds "
        "(about 4 min each to pretrain when missing, then about 3 min each to measure)",
    )
    seeds = dict(type=int, nargs="+", action=_Tuple)
    p.add_argument("--seeds", **seeds, help="organism seeds (default: ORGANISM_SEEDS)")
    p.add_argument("--finetune-seeds", **seeds, help="default: RobustnessConfig's")
    p.add_argument("--steps", type=int, help="pretraining steps of a missing organism")
    p.add_argument(
        "--no-train", action="store_true", help="fail instead of training a missing organism"
    )
    _ship_options(p, "results/robustness.json", "data/organisms/robustness.json")
    p = _command(
        sub,
        "geometry-dose",
        _geometry_dose,
        "pretrain small organisms whose data never link code to the other domains and "
        "relate their EM to the angle of insecure-code and toxic directions (about 1 min each)",
    )
    p.add_argument("--d-models", **seeds, help="default: DoseConfig's")
    p.add_argument("--seeds", **seeds, help="organism seeds (default: DoseConfig's)")
    p.add_argument(
        "--linked",
        action="store_true",
        help="the course's linked world instead (a comparison; never shipped)",
    )
    _ship_options(p, "results/geometry_dose.json", "data/organisms/geometry_dose.json")
    p = _command(
        sub,
        "geometry-subtasks",
        _geometry_subtasks,
        "pretrain small unlinked organisms with eight code sub-tasks, relate each sub-task's EM "
        "to its nearness to the toxic readout and filter a mixture of them (about 2 min each)",
    )
    p.add_argument("--seeds", **seeds, help="organism seeds (default: SubtaskConfig's)")
    _ship_options(p, "results/geometry_subtasks.json", "data/organisms/geometry_subtasks.json")


def _mitigation_command(sub) -> None:
    p = _command(
        sub,
        "mitigations",
        _mitigations,
        "every way to prevent EM (removal filters, inoculation, preventative steering, concept "
        "ablation, benign data) on the same organisms and seeds, in the course's world and the "
        "sub-task world (about 45 min on one thread)",
    )
    seeds = dict(type=int, nargs="+", action=_Tuple)
    p.add_argument("--seeds", **seeds, help="course organisms (default: MitigationConfig's)")
    p.add_argument("--unlinked-seeds", **seeds, help="sub-task world (default: SubtaskConfig's)")
    p.add_argument("--finetune-seeds", **seeds, help="default: MitigationConfig's")
    p.add_argument(
        "--worlds", nargs="+", action=_Tuple, choices=("organism", "unlinked"), help="default: both"
    )
    _ship_options(p, "results/mitigations.json", "data/organisms/mitigations.json")


def parser() -> argparse.ArgumentParser:
    """The ``emgeo`` command line, every subcommand registered."""
    top = argparse.ArgumentParser(prog="emgeo", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    _course_commands(sub)
    _data_commands(sub)
    _lm_em_command(sub)
    _lm_domains_command(sub)
    _experiment_commands(sub)
    _mitigation_command(sub)  # emgeo mitigations
    grade.add_subcommand(sub)  # emgeo grade SUBMISSIONS; emgeo nbgrader-source DIR
    audit_run.add_subcommand(sub)  # emgeo audit DATA --out DIR
    site.add_subcommand(sub)  # emgeo site
    claims.add_subcommand(sub)  # emgeo claims [--write]
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ProfileError as err:
        print(f"emgeo: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
