"""Which protocol a published ACC / SE / SP (and F1) can have come from: FOV or whole image, pooled or mean
over images, each decided exactly from the dataset's pixel counts (mlscorecheck; `pip install 'retinalight[check]'`).

  python -m retinalight.check_scores --dataset drive --acc 0.9698 --se 0.8212 --sp 0.9840      # SA-UNet, Table II
  retinalight check-scores --dataset chase_db1 --acc 0.9755 --se 0.8573 --sp 0.9835 --f1 0.8153

The tolerance is half a unit in the last decimal written (0.9698: 5e-05) unless --decimals or --eps says
otherwise. The mean-over-images test uses ACC, SE and SP only.
"""

from __future__ import annotations

import argparse

from retinalight.cli import run_main
from retinalight.data.datasets import SPLITS
from retinalight.metrics.scorecheck import check_scores, consistent_with, tolerance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="retinalight check-scores", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="drive", choices=["drive", "chase_db1"], help="default: drive")
    parser.add_argument("--split", default="test", choices=SPLITS, help="default: test")
    for name, text in (("acc", "accuracy"), ("se", "sensitivity (recall)"), ("sp", "specificity"), ("f1", "F1 (pooled test only)")):
        parser.add_argument(f"--{name}", default=None, metavar="X", help=f"published {text}, as printed (e.g. 0.9698)")
    parser.add_argument("--decimals", type=int, default=None, help="decimals the paper printed (default: as written)")
    parser.add_argument("--eps", type=float, default=None, help="tolerance of every score (default: half a unit in the last decimal)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for the mean-over-images solver (default 30)")
    args = parser.parse_args(argv)
    written = {k: getattr(args, k) for k in ("acc", "se", "sp", "f1") if getattr(args, k) is not None}
    if len(written) < 2:
        parser.error("give at least two scores, e.g. --acc 0.9698 --se 0.8212 --sp 0.9840")
    try:
        scores = {k: float(v) for k, v in written.items()}
    except ValueError:
        parser.error(f"scores are numbers, got {written}")
    eps = tolerance(written, args.eps, args.decimals)
    rows = check_scores(args.dataset, args.split, scores, eps, args.timeout)
    print(f"{args.dataset} {args.split}, first annotator; {', '.join(f'{k} {v}' for k, v in written.items())}; tolerance {eps:g}")
    print(f"{'region':<8}{'aggregation':<13}verdict")
    for row in rows:
        print(f"{row['region']:<8}{row['aggregation']:<13}{row['verdict']}")
    print(f"consistent with: {consistent_with(rows)}")
    return 0


if __name__ == "__main__":
    run_main(main)
