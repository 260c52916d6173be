"""Train and test every arm x seed of an experiment, then print the paper's table beside ours.

Examples:
  python -m retinalight.fit --exp ablation_drive --profile quick
  python -m retinalight.fit --exp ablation_drive --arm sa_unet --seeds 0 1 2 --set trainer.max_epochs=20
  python -m retinalight.fit --exp ablation_drive --resume          # continue an interrupted run

A run folder is runs/<exp>/<arm>/<profile>-<config hash>/seed<k>/: a run is reused only by exactly the same
resolved config (profile and overrides included); any change starts a new folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from retinalight.cli import add_data_root, run_main
from retinalight.config import LOGGERS
from retinalight.errors import ConfigError
from retinalight.experiments import DEFAULT_PROFILE, list_experiments, load_experiment


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m retinalight.fit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exp", help=f"experiment name in experiments/ or a path to a YAML file ({', '.join(list_experiments())})")
    parser.add_argument(
        "--arm",
        nargs="+",
        default=None,
        help="only these arms (default: the experiment's run_arms, which is every arm unless the profile names some)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the experiment's)")
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        help="'paper' (the paper's schedule, default) or a profile of the experiment file (its profiles: section); the "
        "SA-UNet ablations have 'quick' (all arms in minutes on a CPU), 'fast' (at most 4 min of training per arm on a "
        "CPU with native bf16) and 'cpu' (at most 30 min); retinagan_drive and preprocessing_drive have 'quick' and "
        "'cpu'. Precision, memory layout and, where a profile says so, its step count follow this machine's speed "
        "class (README, 'Fast on the machine you have')",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. trainer.max_epochs=3 arms.sa_unet.model.drop_rate=0.1",
    )
    parser.add_argument(
        "--logger",
        default="csv",
        choices=LOGGERS,
        help="csv always writes curves to the run folder; wandb adds W&B (offline without an API key)",
    )
    parser.add_argument("--runs", default="runs", metavar="DIR", help="root of run folders (default: ./runs)")
    parser.add_argument("--resume", action="store_true", help="continue unfinished runs from their last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="delete and redo existing runs")
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="train nothing: rebuild the summary from the complete run folders there are (after arms trained in separate processes or jobs)",
    )
    parser.add_argument("--list-models", action="store_true", help="print the model registry and exit")
    parser.add_argument(
        "--list-experiments",
        action="store_true",
        help="print every experiment name and the file it loads (./experiments, $RETINALIGHT_EXPERIMENTS, the package's own) and exit",
    )
    add_data_root(parser)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more overrides (the form a W&B sweep agent passes)")
    args, unknown = parser.parse_known_args(argv)
    for text in unknown:  # W&B's default `${args}` passes --key=value, dotted config keys included
        if not (text.startswith("--") and "=" in text):
            parser.error(f"unrecognized argument: {text}")
        args.overrides.append(text[2:])
    take_option_overrides(args)  # a malformed bare option: one line (ConfigError), not argparse's usage text
    if not args.exp and not args.list_models and not args.list_experiments:
        parser.error("--exp is required (e.g. --exp ablation_drive)")
    return args


OPTION_KEYS = ("exp", "profile", "arm", "seeds", "runs", "logger")  # key=value forms of options (a sweep agent's)


def take_option_overrides(args: argparse.Namespace) -> None:
    """Bare `profile=quick`, `arm=sa_unet`, `seeds=[0,1]` (as a W&B agent or `sweep --set` passes them) set the
    options; the other key=value pairs stay config overrides. A later value wins; a malformed value is a
    ConfigError naming its key."""
    keep = []
    for text in [*args.set, *args.overrides]:
        key, sep, value = text.partition("=")
        if sep and key.lstrip("-") in OPTION_KEYS:
            key = key.lstrip("-")
            setattr(args, key, option_value(key, value))
        else:
            keep.append(text)
    args.set, args.overrides = keep, []


def option_value(key: str, value: str):
    """The option `key` from its bare form's text: arm a name or a list of names, seeds an integer or a list
    of integers, logger one of LOGGERS, the others non-empty text."""
    import yaml

    if key in ("arm", "seeds"):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            problem = str(getattr(err, "problem", None) or err).splitlines()[0]
            raise ConfigError(
                f"{key}={value}: not a YAML value ({problem}); e.g. {key}={'[0,1]' if key == 'seeds' else '[unet,sa_unet]'}"
            ) from None
        items = parsed if isinstance(parsed, list) else [parsed]
        if key == "seeds" and (not items or not all(isinstance(v, int) and not isinstance(v, bool) for v in items)):
            raise ConfigError(f"seeds={value}: seeds are integers, e.g. seeds=0 or seeds=[0,1,2]")
        if key == "arm" and (not items or not all(isinstance(v, (str, int)) and str(v) for v in items)):
            raise ConfigError(f"arm={value}: an arm name or a list of them, e.g. arm=sa_unet or arm=[unet,sa_unet]")
        return [str(v) for v in items] if key == "arm" else items
    if not value.strip():
        raise ConfigError(f"{key}=: empty value")
    if key == "logger" and value not in LOGGERS:
        raise ConfigError(f"logger={value}: choose from {', '.join(LOGGERS)}")
    return value


def load_from_args(args: argparse.Namespace):
    """The experiment the parsed arguments ask for (checked: arms and seeds included), before any training."""
    experiment = load_experiment(args.exp, args.profile, args.set)
    for arm in args.arm or []:
        experiment.run_config(arm, 0)
    return experiment


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_experiments:
        from retinalight.experiments import experiment_sources

        for name, path in experiment_sources().items():
            print(f"{name:<22} {path}")
        return 0
    if args.list_models:
        from retinalight.models.__main__ import main as list_models_main

        return list_models_main([])
    from retinalight.training.interruption import handling_signals

    with handling_signals():  # SIGUSR1, SIGTERM and Ctrl-C stop at a safe point, from here to the end
        experiment = load_from_args(args)
        from retinalight.summary import format_markdown, summary_paths, write_summary
        from retinalight.training.runner import fit_experiment

        if args.summary_only:
            summary = {**write_summary(experiment, Path(args.runs), args.data_root), "failures": []}
        else:
            summary = fit_experiment(
                experiment, Path(args.runs), args.arm, args.seeds, args.resume, args.overwrite, args.logger, args.data_root
            )
    if "protocols" in summary:
        print(format_markdown(summary))
        print(f"summary: {summary_paths(experiment, Path(args.runs))[1]}")
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    run_main(main)
