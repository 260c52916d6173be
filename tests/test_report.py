"""The report: report.md with the summary table and PNG figures built from run folders."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from retinalight.errors import DataFileError
from retinalight.fit import main as fit_main
from retinalight.report import error_map
from retinalight.report import main as report_main


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    assert fit_main(["--exp", "smoke_synthetic", "--runs", str(runs), "--logger", "none", "--set", "trainer.max_epochs=2"]) == 0
    return runs / "smoke_synthetic"


def test_report_has_table_and_figures(smoke_runs, tmp_path, capsys):
    assert report_main([str(smoke_runs), "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| unet |" in report and "| sa_unet |" in report
    assert "| sa_unet > unet | 1 vs 1 |" in report and "one seed: " in report  # paper.claims, tested
    assert "Topology, protocol `fov`" in report and "clDice vs unet" in report  # the topology table of runs scored with it
    for name in ("per_image_fov.png", "topology_fov.png", "pooled_fov.png", "claims_fov.png", "curves.png", "panels.png"):
        assert (tmp_path / name).stat().st_size > 5_000, name
        assert f"({name})" in report


def test_report_without_predictions_says_so(smoke_runs, tmp_path):
    copy = tmp_path / "smoke_synthetic"
    shutil.copytree(smoke_runs, copy, ignore=shutil.ignore_patterns("predictions", "checkpoints"))
    assert report_main([str(copy), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "No prediction panels" in report and not (tmp_path / "out" / "panels.png").exists()


def test_report_on_a_folder_without_summaries_is_one_error(tmp_path):
    with pytest.raises(DataFileError, match="no summary"):
        report_main([str(tmp_path)])


def test_error_map_colours():
    prob = np.array([[0.9, 0.9, 0.1, 0.1]])
    vessel = np.array([[True, False, True, False]])
    colours = error_map(prob, vessel, np.ones_like(vessel))
    assert colours[0, 0].tolist() == [255, 255, 255] and colours[0, 1, 0] > 200 and colours[0, 2, 2] > 200 and colours[0, 3].sum() == 0


def test_roc_from_8bit_histograms_matches_the_runs_auc(smoke_runs):
    import json

    from retinalight.data.datasets import get_dataset
    from retinalight.report import pixel_histograms

    folder = next(smoke_runs.glob("unet/*/seed0"))
    vessel, background = pixel_histograms(get_dataset("synthetic", ".", count=16, size=64), folder / "predictions", "fov")
    tpr = np.concatenate([[0.0], np.cumsum(vessel[::-1]) / vessel.sum()])
    fpr = np.concatenate([[0.0], np.cumsum(background[::-1]) / background.sum()])
    recorded = json.loads((folder / "metrics.json").read_text())["protocols"]["fov"]["pooled"]["auc"]
    assert abs(np.trapezoid(tpr, fpr) - recorded) < 1e-5


def test_compare_puts_an_external_folder_beside_the_arms(smoke_runs, tmp_path):
    peer = tmp_path / "peer"
    shutil.copytree(next(smoke_runs.glob("unet/*/seed0")) / "predictions", peer)
    assert report_main([str(smoke_runs), "--out", str(tmp_path / "out"), "--compare", f"copy_of_unet={peer}"]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| unet (ours") or line.startswith("| copy_of_unet")]
    assert len(rows) == 4  # two protocols
    assert rows[0].split("|")[2:] == rows[1].split("|")[2:]  # the same maps score the same


def test_loss_figure_leaves_out_a_validation_curve_no_run_has(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from retinalight.report import plot_losses

    train_only, both = tmp_path / "train.csv", tmp_path / "both.csv"
    train_only.write_text("epoch,step,train/loss_epoch\n0,10,0.5\n1,20,0.4\n")
    both.write_text("epoch,step,train/loss_epoch,val/loss\n0,10,0.5,\n0,10,,0.6\n1,20,0.4,\n1,20,,0.5\n")
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    one = plot_losses({"a": train_only}, tmp_path / "one", plt)
    two = plot_losses({"a": both}, tmp_path / "two", plt)
    assert Image.open(one).width < 0.6 * Image.open(two).width  # one panel, not an empty second one
    assert plot_losses({"a": tmp_path / "missing.csv"}, tmp_path / "none", plt) is None


def test_adversarial_figure_only_for_runs_that_logged_a_discriminator(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from retinalight.report import plot_adversarial

    gan, segmentation = tmp_path / "gan.csv", tmp_path / "seg.csv"
    rows = [f"{k},{10 * k},{min(1, 0.5 + k / 20)},{min(1, 0.4 + k / 20)},{0.7 + k / 10}" for k in range(12)]
    gan.write_text("epoch,step,train/d_acc_real_step,train/d_acc_fake_step,train/g_adversarial_step\n" + "\n".join(rows) + "\n")
    segmentation.write_text("epoch,step,train/loss_step\n0,10,0.5\n0,20,0.4\n")
    assert plot_adversarial({"unet": segmentation}, tmp_path, plt) is None
    figure = plot_adversarial({"unet": segmentation, "retina_gan": gan}, tmp_path, plt)
    assert figure.name == "adversarial.png" and figure.stat().st_size > 10_000


def test_report_picks_its_summary_by_name_never_by_time(tmp_path):
    from retinalight.report import find_summary

    for name in ("summary-quick@cpu-bf16.json", "summary-quick-1a2b3c4d@cpu-bf16.json"):
        (tmp_path / name).write_text("{}")
    assert find_summary(tmp_path, None).name == "summary-quick@cpu-bf16.json"  # overrides' tables only by --label
    (tmp_path / "summary-fast@cpu-bf16.json").write_text("{}")
    with pytest.raises(DataFileError, match="several summaries .*pass --label"):
        find_summary(tmp_path, None)
    assert find_summary(tmp_path, "fast@cpu-bf16").name == "summary-fast@cpu-bf16.json"
