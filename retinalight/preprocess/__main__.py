"""Preprocess fundus images, or time the methods on a DRIVE image.

  python -m retinalight.preprocess ace --input photos/ --out equalised/          # see what a model will see
  python -m retinalight.preprocess clahe --channel lab --input 01_test.tif --out preview/
  python -m retinalight.preprocess --bench                                        # ACE / CLAHE time and ACE error

--bench times each method on DRIVE test image 01 (best of 3) and measures ACE's mean absolute error on
[0, 1] against the exact O(N^2) definition on a 40x40 crop.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from retinalight.cli import add_data_root, run_main
from retinalight.data.io import resolve_data_root


def bench(data_root: Path) -> dict:
    from retinalight.data.datasets import Drive
    from retinalight.preprocess import ace, clahe
    from retinalight.preprocess.ace import ace_exact
    from retinalight.provenance import provenance

    image = Drive(data_root).load("01").image
    out = {"image": "DRIVE 01_test (565x584)", "threads": torch.get_num_threads(), "provenance": provenance()}
    for name, run in (
        ("ace", lambda: ace(image)),
        ("clahe_green", lambda: clahe(image)),
        ("clahe_lab", lambda: clahe(image, channel="lab")),
    ):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        out[f"{name}_seconds"] = round(min(times), 4)
    crop = image[200:240, 250:290]
    out["ace_mean_abs_error_40x40"] = round(float(abs(ace(crop) / 255 - ace_exact(crop)).mean()), 5)
    return out


def main(argv: list[str] | None = None) -> int:
    from retinalight.preprocess import CHANNELS, build_preprocess

    parser = argparse.ArgumentParser(
        prog="python -m retinalight.preprocess", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("method", nargs="?", choices=["ace", "clahe"], help="the method to apply")
    parser.add_argument("--input", type=Path, metavar="FILE_OR_DIR", help="a fundus image or a folder of them")
    parser.add_argument("--out", type=Path, metavar="DIR", help="output folder (PNG, same names)")
    parser.add_argument("--alpha", type=float, default=5.0, help="ACE slope (default 5)")
    parser.add_argument("--clip-limit", type=float, default=2.0, help="CLAHE clip limit (default 2)")
    parser.add_argument("--tile-grid", type=int, default=8, help="CLAHE tiles per side (default 8)")
    parser.add_argument("--channel", default="green", choices=CHANNELS, help="CLAHE channel (default green)")
    parser.add_argument("--bench", action="store_true", help="time the methods on a DRIVE image and print JSON")
    add_data_root(parser)
    args = parser.parse_args(argv)
    if args.bench:
        print(json.dumps(bench(resolve_data_root(args.data_root)), indent=2))
        return 0
    if not (args.method and args.input and args.out):
        parser.error("give a method, --input and --out (or --bench)")
    from tqdm.auto import tqdm

    from retinalight.data.io import list_images, read_rgb, write_rgb

    spec = (
        {"name": "ace", "alpha": args.alpha}
        if args.method == "ace"
        else {
            "name": "clahe",
            "clip_limit": args.clip_limit,
            "tile_grid": args.tile_grid,
            "channel": args.channel,
        }
    )
    pre = build_preprocess(spec, cache_dir=False)
    paths = list_images(args.input)
    for path in tqdm(paths, desc=args.method, unit="image", disable=None):
        write_rgb(args.out / f"{path.stem}.png", pre(read_rgb(path)))
    print(f"wrote {len(paths)} images to {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
