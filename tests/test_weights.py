"""The shipped weights: present, intact, small, and usable with no checkpoint from any folder."""

from __future__ import annotations

import subprocess
import sys

import pytest

from retinalight import weights
from retinalight.errors import DataFileError, UnknownNameError


def test_every_shipped_file_matches_its_manifest_and_the_size_budget():
    entries = weights.manifest()
    assert {"sa_unet-drive", "sa_unet-chase_db1"} <= set(entries)
    total = 0
    for name, entry in entries.items():
        path = weights.weights_path(name)  # checks the SHA-256
        total += path.stat().st_size
        assert entry["recipe"]["arm"] == "sa_unet" and entry["commit"] and entry["device"]
        assert entry["test"]["fov"]["auc"] > 0.96  # what its own run scored (metrics.json of the recipe's run)
    assert total < 5e6


def test_predict_with_shipped_weights_on_a_chase_image_from_an_empty_folder(data_root, tmp_path):
    image = data_root / "CHASE_DB1" / "Image_11L.jpg"
    result = subprocess.run(
        [sys.executable, "-m", "retinalight.predict", "--model", "sa_unet-drive", "--input", str(image), "--out", "maps"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [f"Image_11L_{k}.png" for k in ("fov", "overlay", "prob", "vessels")]


def test_shipped_drive_weights_at_chase_scale_need_scale_normalisation(data_root, tmp_path):
    """DRIVE's network on a CHASE_DB1 photo (FOV 919 px across, DRIVE's 540): resized to DRIVE's scale by
    default, it finds CHASE_DB1's vessels far better than at the photo's own scale."""
    from sklearn.metrics import roc_auc_score

    from retinalight.data.datasets import get_dataset
    from retinalight.data.io import read_grey
    from retinalight.predict import main as predict_main

    sample = get_dataset("chase_db1", data_root).load("Image_11L")
    image = data_root / "CHASE_DB1" / "Image_11L.jpg"
    auc = {}
    for scale in ("auto", "none"):
        assert predict_main(["--model", "sa_unet-drive", "--input", str(image), "--out", str(tmp_path / scale), "--scale", scale]) == 0
        prob = read_grey(tmp_path / scale / "Image_11L_prob.png")
        assert prob.shape == sample.vessel.shape
        auc[scale] = roc_auc_score(sample.vessel[sample.fov], prob[sample.fov])
    assert auc["auto"] > 0.94 and auc["auto"] > auc["none"] + 0.02, auc


def test_evaluate_with_shipped_weights(data_root, capsys):
    from retinalight.evaluate import main

    assert main(["--model", "sa_unet-chase_db1", "--dataset", "chase_db1", "--format", "json", "--data-root", str(data_root)]) == 0
    assert '"auc"' in capsys.readouterr().out


def test_unknown_or_damaged_weights_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(UnknownNameError, match="did you mean sa_unet-drive"):
        weights.weights_path("sa_unet-driv")
    source = weights.folder()
    for path in source.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    with open(tmp_path / "sa_unet-drive.pt", "r+b") as f:
        f.truncate(1000)
    monkeypatch.setattr(weights, "folder", lambda: tmp_path)
    with pytest.raises(DataFileError, match="SHA-256 differs"):
        weights.weights_path("sa_unet-drive")
