"""Evaluation beyond pixels: topology metrics (hand-made shapes, an independent recomputation on a DRIVE test
map, what `evaluate --pred-dir` prints and writes), test-time augmentation and ensembles of prediction folders."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.ndimage import binary_erosion
from skimage.measure import euler_number, label
from skimage.morphology import skeletonize

from retinalight.data.datasets import Drive
from retinalight.data.io import write_grey
from retinalight.evaluate import main as evaluate_main
from retinalight.metrics.topology import PATCHES, TOPOLOGY, betti, cl_dice, patch_corners, topology_scores


def canvas(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows])


def test_cldice_of_identical_disjoint_and_empty_maps():
    tree = canvas(["..........", ".########.", "....#.....", "....#.....", "....####..", ".........."])
    assert cl_dice(tree, tree) == 1.0
    assert cl_dice(tree, np.roll(tree, 3, axis=0) & ~tree) == 0.0  # no skeleton pixel of one inside the other
    assert cl_dice(np.zeros_like(tree), tree) == 0.0 and cl_dice(tree, np.zeros_like(tree)) == 0.0  # all background: 0, no crash
    assert cl_dice(np.zeros_like(tree), np.zeros_like(tree)) == 1.0
    half = tree.copy()
    half[:, 5:] = False  # half the tree: full topology precision, partial sensitivity
    assert 0 < cl_dice(half, tree) < 1


def test_betti_numbers_of_hand_made_shapes():
    ring = canvas([".....", ".###.", ".#.#.", ".###.", "....."])
    assert betti(ring) == (1, 1)
    hash_sign = canvas(["..#..#..", "########", "..#..#..", "..#..#..", "########", "..#..#.."])  # two pairs of crossing lines: one hole
    assert betti(hash_sign) == (1, 1)
    eight = canvas(["#####", "#...#", "#####", "#...#", "#####"])
    assert betti(eight) == (1, 2)
    # connectivity: vessels are 8-connected, so a diagonal step joins; a diamond of diagonal steps encloses a
    # 4-connected background pixel: one loop
    assert betti(canvas(["#.", ".#"])) == (1, 0)
    assert betti(canvas([".#.", "#.#", ".#."])) == (1, 1)
    assert betti(canvas(["#..#", "....", "#..#"])) == (4, 0)
    assert betti(np.zeros((4, 4), bool)) == (0, 0) and betti(np.ones((4, 4), bool)) == (1, 0)
    # a hole open to the border is no hole
    assert betti(canvas(["###", "#.#", "#.#"])) == (1, 0)


def test_topology_recomputed_independently_on_a_drive_test_map(data_root):
    """Our numbers on DRIVE test image 01 (the expert map eroded: thin vessels break) against scikit-image's
    own label and Euler number and a direct clDice, with the same patches."""
    sample = Drive(data_root).load("01")
    target, fov = np.array(sample.vessel, bool), np.array(sample.fov, bool)
    pred = binary_erosion(target, np.ones((2, 2), bool))
    ours = topology_scores(pred, target, fov, "fov", index=0)
    p, t = pred & fov, target & fov
    sp, st = skeletonize(p), skeletonize(t)
    precision, sensitivity = (sp & t).sum() / sp.sum(), (st & p).sum() / st.sum()
    assert ours["cldice"] == pytest.approx(2 * precision * sensitivity / (precision + sensitivity), abs=1e-12)
    errors = []
    for top, left in patch_corners(fov, PATCHES, 0):
        window = np.s_[top : top + PATCHES.size, left : left + PATCHES.size]
        b0p, b0t = label(p[window], connectivity=2).max(), label(t[window], connectivity=2).max()
        b1p, b1t = b0p - euler_number(p[window], connectivity=2), b0t - euler_number(t[window], connectivity=2)
        errors.append((abs(b0p - b0t), abs(b1p - b1t)))
    assert (ours["b0_error"], ours["b1_error"]) == pytest.approx(tuple(np.mean(errors, axis=0)), abs=1e-12)
    assert ours["components"] == label(p, connectivity=2).max() > ours["components_gt"] == label(t, connectivity=2).max()
    assert ours["b0_error"] > 0 and 0.3 < ours["cldice"] < 1  # erosion breaks vessels apart
    corners = patch_corners(fov, PATCHES, 0)
    centres = corners + PATCHES.size // 2
    assert len(corners) == PATCHES.count and fov[centres[:, 0], centres[:, 1]].mean() > 0.9  # clipped at the border only
    assert np.array_equal(corners, patch_corners(fov, PATCHES, 0)) and not np.array_equal(corners, patch_corners(fov, PATCHES, 1))


def expert_and_empty_maps(reader, folder, stem: str = "{}") -> tuple:
    """Two prediction folders under `folder`: the expert maps themselves (files named `stem`) and all-background maps."""
    perfect, empty = folder / "perfect", folder / "empty"
    for id in reader.ids("test"):
        vessel = reader.load(id).vessel
        write_grey(perfect / f"{stem.format(id)}.png", vessel.astype(np.uint8) * 255)
        write_grey(empty / f"{id}.png", np.zeros(vessel.shape, np.uint8))
    return perfect, empty


def test_evaluate_pred_dir_prints_and_writes_topology(data_root, tmp_path, capsys):
    """Expert maps as predictions: clDice 1 and no Betti error; an all-background map: clDice 0, no crash."""
    perfect, empty = expert_and_empty_maps(Drive(data_root), tmp_path)
    assert evaluate_main(["--pred-dir", str(perfect), "--data-root", str(data_root), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "CLDICE" in printed and "B1_ERROR" in printed and PATCHES.describe() in printed
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["protocols"]["fov"]
    assert metrics["topology"]["mean"]["cldice"] == 1.0 and metrics["topology"]["mean"]["b0_error"] == 0.0
    assert metrics["topology"]["mean"]["b1_error"] == 0.0 and metrics["topology"]["patches"] == PATCHES.describe()
    with open(tmp_path / "out" / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20 and set(TOPOLOGY) <= set(rows[0]) and float(rows[0]["cldice"]) == 1.0
    assert evaluate_main(["--pred-dir", str(empty), "--data-root", str(data_root), "--format", "json", "--protocol", "image"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["topology"]["mean"]["cldice"] == 0.0 and result["topology"]["mean"]["components"] == 0.0


def test_tta_of_a_flip_equivariant_map_is_the_plain_map_and_undoes_each_flip():
    """A pointwise map commutes with every flip and transpose: its TTA mean equals it. A map that marks the
    top-left corner only is averaged over the 8 symmetries, each mapped back: each of the 4 corners gets 2 of
    them (a flip and its transpose), 1/4."""
    import torch

    from retinalight.errors import ConfigError
    from retinalight.inference import with_tta

    x, fov = torch.rand(2, 3, 32, 48), torch.ones(2, 1, 32, 48)

    def pointwise(x, fov):
        return torch.sigmoid(x.mean(dim=1, keepdim=True)) * fov

    assert torch.allclose(with_tta(pointwise, "flips")(x, fov), pointwise(x, fov), atol=1e-6)
    assert with_tta(pointwise, "none") is pointwise

    def corner(x, fov):
        out = torch.zeros_like(fov)
        out[..., 0, 0] = 1
        return out

    averaged = with_tta(corner, "flips")(x, fov)
    assert averaged.shape == fov.shape
    assert all(averaged[..., r, c].eq(0.25).all() for r in (0, -1) for c in (0, -1))
    assert averaged.sum().item() == pytest.approx(2.0)  # one pixel's mass per image, nothing lost
    with pytest.raises(ConfigError, match="--tta 'mirror': choose from none, flips"):
        with_tta(pointwise, "mirror")


def test_evaluate_ensemble_averages_maps_and_refuses_mismatches(data_root, tmp_path, capsys):
    """The expert maps with themselves score as the expert maps; with all-background maps their mean is 0.5 on
    vessels, below the threshold (> 0.5) but ranked above the background (AUC 1). Another dataset's run folder
    or a folder missing an image: one line naming it, nothing scored."""
    from retinalight.errors import DataFileError
    from retinalight.metrics.folder import evaluate_ensemble

    reader = Drive(data_root)
    perfect, empty = expert_and_empty_maps(reader, tmp_path, "{}_test")
    same = evaluate_ensemble([perfect, perfect], reader)
    assert same["pooled"]["f1"] == 1.0 and same["topology"]["mean"]["cldice"] == 1.0
    assert evaluate_main(["--ensemble", str(perfect), str(empty), "--data-root", str(data_root), "--format", "json"]) == 0
    half = json.loads(capsys.readouterr().out)
    assert half["pooled"]["auc"] == 1.0 and half["pooled"]["f1"] == 0.0 and half["ensemble"] == [str(perfect), str(empty)]
    (empty / "07.png").unlink()
    with pytest.raises(DataFileError, match="no prediction for 07"):
        evaluate_ensemble([perfect, empty], reader)
    run = tmp_path / "chase_run"
    (run / "predictions").mkdir(parents=True)
    (run / "config.yaml").write_text("data: {dataset: chase_db1}\n")
    with pytest.raises(DataFileError, match="a run on chase_db1, not drive"):
        evaluate_ensemble([perfect, run], reader)
    with pytest.raises(DataFileError, match="two folders or more"):
        evaluate_ensemble([perfect], reader)
