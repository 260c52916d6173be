"""Patch grid round trips and sliding-window inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retinalight.data.patches import extract_patches, merge_patches, patch_grid
from retinalight.inference import predict_probability
from retinalight.models import create_model


def test_paper_grid_is_16_non_overlapping_patches():
    grid = patch_grid(512, 512, 128)
    assert len(grid) == 16 and grid[-1] == (384, 384)


@pytest.mark.parametrize(("shape", "size", "overlap"), [((512, 512), 128, 0), ((3, 584, 565), 128, 32), ((2, 1, 100, 70), 48, 13)])
def test_round_trip_is_exact(shape, size, overlap):
    image = np.random.default_rng(0).integers(0, 256, shape).astype(np.float64)
    patches, positions = extract_patches(image, size, overlap)
    assert all(p.shape[-2:] == (size, size) for p in patches)
    assert np.array_equal(merge_patches(patches, positions, image.shape), image)
    tensor = torch.from_numpy(image)
    t_patches, _ = extract_patches(tensor, size, overlap)
    assert torch.equal(merge_patches(t_patches, positions, tuple(tensor.shape)), tensor)


def test_overlap_is_averaged():
    ones = [np.full((4, 4), 1.0), np.full((4, 4), 3.0)]
    merged = merge_patches(ones, [(0, 0), (0, 2)], (4, 6))
    assert (merged[:, :2] == 1).all() and (merged[:, 2:4] == 2).all() and (merged[:, 4:] == 3).all()


def test_bad_grids_fail():
    with pytest.raises(ValueError, match="does not fit"):
        patch_grid(100, 60, 64)
    with pytest.raises(ValueError, match="overlap"):
        patch_grid(100, 100, 64, overlap=64)


def test_sliding_window_matches_whole_image_for_a_pointwise_model():
    """A 1x1-conv network sees no context: patched and whole-image inference must agree exactly."""
    model = torch.nn.Conv2d(3, 1, 1)
    model.forward = lambda x, fov=None, _f=model.forward: _f(x)
    image = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    fov = np.ones((70, 90), bool)
    whole = predict_probability(model, image, fov)
    patched = predict_probability(model, image, fov, patch_size=32, patch_overlap=8)
    assert whole.shape == patched.shape == (70, 90)
    assert np.abs(whole - patched).max() < 1e-6


def test_resize_and_patches_give_a_map_at_the_original_size():
    model = create_model("unet", base_width=4).eval()
    image = np.random.default_rng(2).integers(0, 256, (584, 565, 3), dtype=np.uint8)
    prob = predict_probability(model, image, np.ones((584, 565), bool), resize=512, patch_size=128)
    assert prob.shape == (584, 565) and np.isfinite(prob).all()


def test_grid_patches_round_trip_in_patch_grid_order():
    import torch

    from retinalight.data.patches import extract_patches, grid_images, grid_patches

    batch = torch.randn(2, 3, 64, 96)
    patches = grid_patches(batch, 32)
    assert patches.shape == (2 * 2 * 3, 3, 32, 32)
    assert torch.equal(grid_images(patches, 64, 96), batch)
    listed, _ = extract_patches(batch[1], 32)  # the second image's patches, in patch_grid order
    assert all(torch.equal(a, b) for a, b in zip(patches[6:], listed, strict=True))
    with pytest.raises(ValueError, match="does not split"):
        grid_patches(batch, 40)
