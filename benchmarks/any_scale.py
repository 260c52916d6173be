"""Shipped weights on a photo of any size: a DRIVE test image enlarged to another camera's size, predicted with
`python -m retinalight.predict --model ...` at --scale fov and none, scored against the equally enlarged
expert map inside the enlarged official FOV; the peak resident memory of each predict process is printed.

  python benchmarks/any_scale.py --size 3504x2336 --images 01 02     # HRF's size (the issue's case)

Nearest-neighbour enlargement of the expert map and FOV (they stay binary); area/bilinear for the photo.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from retinalight.data.datasets import get_dataset
from retinalight.data.io import read_grey, resolve_data_root


def predict_once(model: str, image: Path, out: Path, scale: str) -> tuple[float, float, Path]:
    """(seconds, peak resident MiB of the predict process, its probability map)."""
    command = [sys.executable, "-m", "retinalight.predict", "--model", model, "--input", str(image), "--out", str(out), "--scale", scale]
    start = time.time()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)  # this process's own peak, not the largest child's so far
    if status:
        raise SystemExit(f"predict --scale {scale} failed (exit {status >> 8}): run it by hand to see why: {' '.join(command)}")
    return time.time() - start, usage.ru_maxrss / 1024, out / f"{image.stem}_prob.png"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sa_unet-drive")
    parser.add_argument("--dataset", default="drive")
    parser.add_argument("--size", default="3504x2336", help="WIDTHxHEIGHT of the enlarged photo (default: HRF's)")
    parser.add_argument("--images", nargs="+", default=["01"], help="test image ids (default: 01)")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    reader = get_dataset(args.dataset, resolve_data_root(args.data_root))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for id in args.images:
            sample = reader.load(id)
            photo = Path(tmp) / f"{id}_{width}x{height}.png"
            cv2.imwrite(
                str(photo), cv2.cvtColor(cv2.resize(sample.image, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_RGB2BGR)
            )
            vessel, fov = (
                cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
                for m in (sample.vessel, sample.fov)
            )
            for scale in ("fov", "none"):
                seconds, peak, prob_path = predict_once(args.model, photo, Path(tmp) / scale, scale)
                prob = read_grey(prob_path)
                assert prob.shape == (height, width), prob.shape
                auc = roc_auc_score(vessel[fov], prob[fov])
                rows.append(
                    {
                        "image": id,
                        "size": args.size,
                        "scale": scale,
                        "fov_auc": round(auc, 4),
                        "seconds": round(seconds, 1),
                        "peak_rss_mib": round(peak),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    print(f"# {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; peak RSS: each predict process's own")
    return 0


if __name__ == "__main__":
    sys.exit(main())
