"""Helpers shared by the command-line entry points: data-root option and one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from retinalight.errors import Interrupted, RetinalightError

DATA_ROOT_HELP = "folder holding the dataset folders: DRIVE/, CHASE_DB1/, ... (default: $RETINALIGHT_DATA, else ./data)"


def add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None, metavar="DIR", help=DATA_ROOT_HELP)


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """--precision and --device for commands that run a network (`retinalight.hardware` resolves `auto`)."""
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="auto (default): bf16 autocast where the device has native bf16 (CUDA, AVX-512 BF16/AMX CPUs), else fp32",
    )
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto (default): CUDA where present, else the CPU"
    )
    parser.add_argument("--bf16", action="store_const", const="bf16", dest="precision", help=argparse.SUPPRESS)  # old spelling


def add_tta_option(parser: argparse.ArgumentParser) -> None:
    """--tta for commands that predict maps (retinalight.inference.with_tta)."""
    from retinalight.config import TTA_MODES

    parser.add_argument(
        "--tta",
        default="none",
        choices=TTA_MODES,
        help="test-time augmentation: none (default) or flips, the mean over the 8 flips and transposes (8 forward passes)",
    )


def add_scale_option(parser: argparse.ArgumentParser, auto: str) -> None:
    """--scale for commands that predict maps (retinalight.inference.with_scale); `auto` says what auto does."""
    from retinalight.config import SCALE_MODES

    parser.add_argument(
        "--scale",
        default="auto",
        choices=SCALE_MODES,
        help="fov: resize each image so its field of view is as wide as the network's training images' (the map keeps "
        f"the input's size); none: as it is; auto (default): {auto}",
    )


def inference_options(args: argparse.Namespace):
    """(torch device, bf16?) from --device and --precision."""
    from retinalight.hardware import inference_bf16, inference_device

    device = inference_device(args.device)
    return device, inference_bf16(args.precision, device)


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> None:
    """Run an entry point; user errors become one line on stderr (exit 2), a stop on a signal one line
    (exit 128 + the signal's number: 130 Ctrl-C, 143 SIGTERM, 138 SIGUSR1)."""
    try:
        code = main(argv)
    except RetinalightError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    except Interrupted as stop:
        print(stop, file=sys.stderr, flush=True)
        code = stop.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
