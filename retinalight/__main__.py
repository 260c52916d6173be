"""`retinalight <command> [arguments]`: the package's commands behind one entry point.

Each command is also `python -m retinalight.<command>` (the form W&B agents and srun templates use), with
the same arguments; `retinalight <command> --help` explains each.
"""

from __future__ import annotations

import importlib
import sys

from retinalight import __version__
from retinalight.cli import run_main
from retinalight.errors import close_matches

COMMANDS = {  # name: (module with main(argv), what it does)
    "fit": ("retinalight.fit", "train and test an experiment's arms x seeds, print its table"),
    "evaluate": ("retinalight.evaluate", "score a checkpoint, or any method's folder of maps, on a dataset split"),
    "predict": ("retinalight.predict", "segment fundus images with shipped weights, a checkpoint or an exported model"),
    "export": ("retinalight.export", "export a checkpoint's network to ONNX or TorchScript"),
    "report": ("retinalight.report", "report.md with figures from an experiment's runs"),
    "sweep": ("retinalight.sweep", "run a W&B sweep file's runs here, without a W&B server"),
    "bench": ("retinalight.bench", "training and inference speed here, and the GPU check"),
    "data": ("retinalight.data.__main__", "list, check, import or download the datasets (DRIVE, CHASE_DB1, STARE, HRF)"),
    "models": ("retinalight.models.__main__", "list the model registry"),
    "preprocess": ("retinalight.preprocess.__main__", "write CLAHE or ACE preprocessed images"),
    "weights": ("retinalight.weights.__main__", "list the shipped pretrained weights, or rebuild one from its recipe"),
    "check-scores": ("retinalight.check_scores", "which protocol a published ACC/SE/SP can have come from"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: retinalight <command> [arguments]   (retinalight {__version__})", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "retinalight <command> --help explains a command; python -m retinalight.<command> is the same command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    if argv[0] in ("-V", "--version"):
        print(f"retinalight {__version__}")
        sys.exit(0)
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}{close_matches(command, COMMANDS)}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    run_main(importlib.import_module(COMMANDS[command][0]).main, rest)


if __name__ == "__main__":
    main()
