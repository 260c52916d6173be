"""Scale normalisation: FOV diameters, inference at the network's scale, tiles for large inputs, config checks."""

import cv2
import numpy as np
import pytest
import torch

from retinalight.data.fov import fov_diameter, fov_scale
from retinalight.errors import ConfigError, DataFileError
from retinalight.inference import TILE, predict_probability, with_scale


def disc(height: int, width: int, radius: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    cv2.circle(mask, (width // 2, height // 2), radius, 1, -1)
    return mask.astype(bool)


def test_fov_diameter_is_the_horizontal_extent_even_when_the_disc_is_cut():
    assert fov_diameter(disc(300, 300, 100)) == 201
    cut = disc(300, 300, 100)
    cut[:120], cut[180:] = False, False  # a photo cut at the top and bottom, as HRF's
    assert fov_diameter(cut) == 201
    assert fov_diameter(np.zeros((50, 50), bool)) == 0
    with pytest.raises(DataFileError, match="too small to normalise the scale"):
        fov_scale(np.zeros((50, 50), bool), 540)


def test_inference_resizes_to_the_reference_fov_and_returns_the_original_size():
    seen = []

    def probability(x: torch.Tensor, fov: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape[-2:]))
        return fov  # the FOV itself: the map must come back onto the original grid

    fov = disc(400, 600, 150)  # 301 pixels across
    image = np.dstack([fov * 200] * 3).astype(np.uint8)
    prob = predict_probability(probability, image, fov, fov_diameter=150.5)
    assert seen == [(304, 304)]  # 200x300 after halving, padded (square) to a multiple of 16
    assert prob.shape == (400, 600) and ((prob > 0.5) == fov).mean() > 0.99


def test_large_inputs_are_predicted_in_tiles_and_match_the_whole_image(monkeypatch):
    import retinalight.inference as inference

    sizes = []
    conv = torch.nn.Conv2d(3, 1, 3, padding=1)

    def probability(x: torch.Tensor, fov: torch.Tensor) -> torch.Tensor:
        sizes.append(tuple(x.shape[-2:]))
        with torch.no_grad():
            return torch.sigmoid(conv(x))

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (1600, 1700, 3), dtype=np.uint8)
    fov = np.ones((1600, 1700), bool)
    tiled = predict_probability(probability, image, fov)
    assert set(sizes) == {(TILE[0], TILE[0])}  # never the whole 1600x1712 input
    sizes.clear()
    monkeypatch.setattr(inference, "TILE_ABOVE", 10**9)
    whole = predict_probability(probability, image, fov)
    assert sizes == [(1712, 1712)]
    assert tiled.shape == whole.shape == (1600, 1700)
    # a 3x3 conv sees 1 pixel of context: only pixels on a tile's edge (averaged with the neighbouring tile) differ
    differs = np.abs(tiled - whole) > 1e-5
    assert 0 < differs.mean() < 0.01


def test_scale_choice_needs_a_reference_and_keeps_a_trained_scale():
    preparation = {"fov_diameter": None, "resize": None}
    assert with_scale(preparation, None, "auto", "m")["fov_diameter"] is None
    assert with_scale(preparation, {"dataset": "drive", "diameter": 540.0}, "auto", "m")["fov_diameter"] == 540.0
    assert with_scale(preparation, {"dataset": "drive", "diameter": 540.0}, "none", "m")["fov_diameter"] is None
    assert with_scale({"fov_diameter": 300, "resize": None}, {"dataset": "drive", "diameter": 300}, "none", "m")["fov_diameter"] == 300
    with pytest.raises(ConfigError, match="stores no reference FOV diameter"):
        with_scale(preparation, None, "fov", "old.ckpt")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["evaluation.datasets=[drive,chase]"], "did you mean chase_db1"),
        (["data.fov_diameter=300", "data.resize=512"], "both set the network's input scale"),
        (["data.fov_diameter=10"], "an integer >= 64"),
        (["evaluation.scale=half"], "choose from fov, none"),
    ],
)
def test_scale_and_cross_dataset_keys_are_checked_in_one_line(overrides, message):
    from retinalight.experiments import load_experiment

    with pytest.raises(ConfigError, match=message):
        load_experiment("ablation_drive", "quick", overrides).run_config("sa_unet", 0)
