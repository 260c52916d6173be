"""Preprocessing: ACE against its O(N^2) definition, CLAHE's output, the disk cache, config checks."""

from __future__ import annotations

import numpy as np
import pytest

from retinalight.data.io import read_rgb
from retinalight.errors import ConfigError
from retinalight.experiments import load_experiment
from retinalight.preprocess import build_preprocess
from retinalight.preprocess.ace import ace, ace_exact
from retinalight.preprocess.clahe import clahe


@pytest.fixture(scope="module")
def drive_image(data_root):
    return read_rgb(data_root / "DRIVE" / "test" / "images" / "01_test.tif")


def test_ace_matches_exact_definition_on_random_and_real_crops(drive_image):
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (23, 31, 3), dtype=np.uint8), drive_image[200:240, 250:290], drive_image[:36, 300:340]]
    for crop in crops:
        fast = ace(crop)
        assert fast.shape == crop.shape and fast.dtype == np.uint8
        error = np.abs(fast / 255 - ace_exact(crop))
        assert error.mean() <= 0.01, error.mean()
        assert fast.min() == 0 and fast.max() == 255  # stretched per channel


def test_ace_slope_matters():
    """A steeper slope saturates sooner: the two results differ (the argument is not ignored)."""
    crop = np.random.default_rng(1).integers(0, 256, (20, 20), dtype=np.uint8)
    assert np.abs(ace(crop, alpha=2.0).astype(int) - ace(crop, alpha=20.0)).mean() > 3
    assert np.abs(ace(crop, alpha=2.0) / 255 - ace_exact(crop, alpha=2.0)).mean() <= 0.01


def test_ace_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        ace(np.zeros((8, 8, 3), np.float32))


@pytest.mark.parametrize("channel", ["green", "gray", "lab"])
def test_clahe_shape_range_and_contrast(drive_image, channel):
    out = clahe(drive_image, channel=channel)
    assert out.shape == drive_image.shape and out.dtype == np.uint8
    if channel != "lab":
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    green = drive_image[..., 1]
    fov = drive_image.max(axis=2) > 20
    assert out[..., 1][fov].std() > green[fov].std()  # more local contrast inside the retina


def test_cache_returns_the_same_image_and_survives_a_damaged_file(tmp_path, drive_image):
    crop = np.ascontiguousarray(drive_image[:64, :64])
    pre = build_preprocess({"name": "ace", "alpha": 5.0}, cache_dir=tmp_path)
    first = pre(crop)
    (cached,) = list(tmp_path.rglob("*.png"))
    assert (pre(crop) == first).all()
    cached.write_bytes(b"not a png")
    assert (pre(crop) == first).all()  # recomputed, not an error


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("acee", "did you mean ace"),
        ({"name": "clahe", "clip": 2}, "no argument 'clip'"),
        ({"name": "clahe", "channel": "blue"}, "choose from lab, green, gray"),
        ({"name": "ace", "alpha": -1}, "alpha must be a number > 0"),
        ({"name": "clahe", "tile_grid": 0}, "tile_grid must be an integer >= 1"),
    ],
)
def test_bad_preprocess_fails_at_load(spec, message):
    override = f"data.preprocess={spec!r}" if isinstance(spec, str) else "data.preprocess=" + str(spec).replace("'", "")
    with pytest.raises(ConfigError, match=message):
        load_experiment("smoke_synthetic", overrides=[override])


def test_preprocess_key_keeps_earlier_run_identities():
    """Adding data.preprocess (default none) must not rename existing run folders; setting it must."""
    plain = load_experiment("ablation_drive").run_config("sa_unet", 0)
    none = load_experiment("ablation_drive", overrides=["data.preprocess=none"]).run_config("sa_unet", 0)
    clahe_cfg = load_experiment("ablation_drive", overrides=["data.preprocess=clahe"]).run_config("sa_unet", 0)
    assert "preprocess" not in plain.identity()["data"]
    assert plain.config_hash() != clahe_cfg.config_hash()
    assert none.config_hash() != clahe_cfg.config_hash()


def test_cli_writes_preprocessed_images_and_benchmarks(data_root, tmp_path, capsys):
    import json

    from retinalight.preprocess.__main__ import main

    image = data_root / "DRIVE" / "test" / "images" / "01_test.tif"
    assert main(["clahe", "--channel", "gray", "--input", str(image), "--out", str(tmp_path)]) == 0
    out = read_rgb(tmp_path / "01_test.png")
    assert out.shape == (584, 565, 3) and (out == clahe(read_rgb(image), channel="gray")).all()
    assert main(["--bench", "--data-root", str(data_root)]) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert report["ace_seconds"] > 0 and report["ace_mean_abs_error_40x40"] <= 0.01
