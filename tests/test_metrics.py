import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, recall_score, roc_auc_score

from retinalight.data.datasets import Drive
from retinalight.data.io import write_grey
from retinalight.errors import DataFileError
from retinalight.evaluate import main as evaluate_main
from retinalight.metrics import Prediction, evaluate_folder, evaluate_predictions, metric_collection


def sklearn_metrics(prob: np.ndarray, target: np.ndarray) -> dict:
    """An independent implementation: scikit-learn on the same pixels, threshold prob > 0.5."""
    binary = prob > 0.5
    return {
        "se": recall_score(target, binary),
        "sp": recall_score(~target, ~binary),
        "acc": accuracy_score(target, binary),
        "f1": f1_score(target, binary),
        "mcc": matthews_corrcoef(target, binary),
        "auc": roc_auc_score(target, prob),
    }


def assert_close(ours: dict, reference: dict, tol: float = 1e-6) -> None:
    for key, value in reference.items():
        assert abs(ours[key] - value) < tol, f"{key}: {ours[key]} vs {value}"


def test_collection_agrees_with_sklearn_on_random_data():
    rng = np.random.default_rng(0)
    target = rng.random(50_000) < 0.1
    prob = np.clip(target * 0.3 + rng.random(50_000) * 0.7, 0, 1).astype(np.float32)
    ours = metric_collection()(torch.from_numpy(prob), torch.from_numpy(target).long())
    assert_close({k: float(v) for k, v in ours.items()}, sklearn_metrics(prob, target))


@pytest.fixture(scope="module")
def noisy_drive_predictions(data_root):
    drive, rng = Drive(data_root), np.random.default_rng(1)
    predictions = []
    for id in drive.ids("test")[:6]:
        sample = drive.load(id)
        prob = np.clip(sample.vessel * 0.45 + rng.random(sample.vessel.shape) * 0.6, 0, 1).astype(np.float32)
        predictions.append(Prediction(id, prob, sample.vessel, sample.fov))
    return predictions


@pytest.mark.parametrize("protocol", ["fov", "image"])
def test_pooled_and_per_image_agree_with_sklearn_on_real_data(noisy_drive_predictions, protocol):
    result = evaluate_predictions(noisy_drive_predictions, protocol)
    keep = (lambda p: p.fov) if protocol == "fov" else (lambda p: np.ones_like(p.fov))
    probs = np.concatenate([p.prob[keep(p)] for p in noisy_drive_predictions])
    targets = np.concatenate([p.vessel[keep(p)] for p in noisy_drive_predictions])
    assert_close(result["pooled"], sklearn_metrics(probs, targets))
    for row, p in zip(result["per_image"], noisy_drive_predictions):
        assert row["id"] == p.id
        assert_close(row, sklearn_metrics(p.prob[keep(p)], p.vessel[keep(p)]))
    f1 = [row["f1"] for row in result["per_image"]]
    assert abs(result["mean"]["f1"] - np.mean(f1)) < 1e-9 and abs(result["std"]["f1"] - np.std(f1, ddof=1)) < 1e-9


def test_fov_protocol_ignores_pixels_outside_the_fov():
    vessel = np.zeros((32, 32), bool)
    vessel[10:20, 15] = True
    fov = np.zeros((32, 32), bool)
    fov[4:28, 4:28] = True
    prob = vessel.astype(np.float32)
    prob[~fov] = 0.9  # confidently wrong, but only outside the FOV
    perfect = evaluate_predictions([Prediction("a", prob, vessel, fov)], "fov")["pooled"]
    assert all(v == pytest.approx(1.0) for v in perfect.values())
    whole = evaluate_predictions([Prediction("a", prob, vessel, fov)], "image")["pooled"]
    assert whole["sp"] < 0.6 and whole["acc"] < 0.6


@pytest.fixture
def ground_truth_dir(data_root, tmp_path):
    drive = Drive(data_root)
    for id in drive.ids("test"):
        write_grey(tmp_path / "pred" / f"{id}.png", drive.load(id).vessel * 255)
    return tmp_path / "pred"


def test_ground_truth_as_prediction_scores_one_everywhere(data_root, ground_truth_dir, capsys):
    assert (
        evaluate_main(["--pred-dir", str(ground_truth_dir), "--dataset", "drive", "--format", "json", "--data-root", str(data_root)]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"dataset", "split", "protocol", "pooled", "per_image", "mean", "std"}
    assert len(result["per_image"]) == 20 and result["protocol"] == "fov"
    for block in [result["pooled"], result["mean"], *result["per_image"]]:
        assert all(block[k] == pytest.approx(1.0) for k in ("se", "sp", "acc", "f1", "mcc", "auc"))


def test_pred_dir_reads_any_image_mode(data_root, ground_truth_dir):
    from PIL import Image

    path = ground_truth_dir / "01.png"
    Image.open(path).convert("1").save(ground_truth_dir / "01.gif")
    path.unlink()
    result = evaluate_folder(ground_truth_dir, Drive(data_root), "test", "image")
    assert result["pooled"]["f1"] == pytest.approx(1.0)


def test_pred_dir_errors_name_the_file(data_root, ground_truth_dir):
    drive = Drive(data_root)
    (ground_truth_dir / "07.png").unlink()
    with pytest.raises(DataFileError, match="no prediction for 07"):
        evaluate_folder(ground_truth_dir, drive)
    write_grey(ground_truth_dir / "07.png", np.zeros((100, 100)))
    with pytest.raises(DataFileError, match="07.png: prediction is 100x100, image 07 is 565x584"):
        evaluate_folder(ground_truth_dir, drive)
    write_grey(ground_truth_dir / "07.png", np.zeros((584, 565)))
    write_grey(ground_truth_dir / "99.png", np.zeros((584, 565)))
    with pytest.raises(DataFileError, match="99.png: names no test image"):
        evaluate_folder(ground_truth_dir, drive)
    (ground_truth_dir / "99.png").unlink()
    write_grey(ground_truth_dir / "7_test.png", np.zeros((584, 565)))
    with pytest.raises(DataFileError, match="second prediction for id '07'"):
        evaluate_folder(ground_truth_dir, drive)


@pytest.mark.parametrize(
    ("stems", "pattern"),
    [
        (lambda i: f"{i}_test", None),  # the dataset's own stems (LadderNet, orobix/retina-unet ship these)
        (lambda i: f"{i}_test_prediction", None),
        (lambda i: str(int(i)), None),  # unpadded numbers
        (lambda i: f"pred-{i}-prob", r"pred-(?P<id>\d+)-prob"),
    ],
)
def test_pred_dir_accepts_the_names_peers_ship(data_root, ground_truth_dir, stems, pattern, capsys):
    from retinalight.evaluate import main as evaluate_main

    drive = Drive(data_root)
    for i in drive.ids("test"):
        (ground_truth_dir / f"{i}.png").rename(ground_truth_dir / f"{stems(i)}.png")
    if pattern:  # files the pattern does not match are not read (predict writes overlays beside the maps)
        write_grey(ground_truth_dir / "pred-01-overlay.png", np.zeros((584, 565)))
    result = evaluate_folder(ground_truth_dir, drive, "test", "image", pattern)
    assert result["pooled"]["f1"] == pytest.approx(1.0) and result["files"]["01"] == f"{stems('01')}.png"
    args = ["--pred-dir", str(ground_truth_dir), "--data-root", str(data_root), *(["--pattern", pattern] if pattern else [])]
    assert evaluate_main(args) == 0
    assert f"{stems('01')}.png -> 01" in capsys.readouterr().out


def test_chase_names_with_suffixes_match(data_root, tmp_path):
    from retinalight.data.datasets import ChaseDB1
    from retinalight.metrics.folder import find_predictions

    chase = ChaseDB1(data_root)
    for i in chase.ids("test"):
        (tmp_path / f"{i}_pred.png").touch()
    assert find_predictions(tmp_path, chase.ids("test"))["Image_11L"].name == "Image_11L_pred.png"


def test_histogram_auroc_counts_what_torchmetrics_loop_counts():
    """Validation's binned AUC (one histogram per update) against torchmetrics' own loop over thresholds, on
    more pixels than its vectorised path takes, with predictions exactly on thresholds and at 0 and 1."""
    from torchmetrics.classification import BinaryAUROC

    from retinalight.metrics.histogram import HistogramAUROC, histogram_confmat

    generator = torch.Generator().manual_seed(0)
    reference, ours = BinaryAUROC(thresholds=1000, validate_args=False), HistogramAUROC(thresholds=1000, validate_args=False)
    for _ in range(2):
        prob = torch.rand(60_000, generator=generator) ** 2
        prob[:1000] = ours.thresholds[torch.randint(0, 1000, (1000,), generator=generator)]  # ties with a threshold
        prob[1000:1010] = torch.tensor([0.0, 1.0]).repeat(5)
        target = (torch.rand(60_000, generator=generator) < prob).long()
        reference.update(prob, target)
        ours.update(prob, target)
    assert torch.equal(ours.confmat, reference.confmat)
    assert ours.compute().item() == pytest.approx(reference.compute().item(), abs=1e-12)
    assert 0.7 < ours.compute().item() < 1
    single = histogram_confmat(torch.tensor([0.5]), torch.tensor([1]), torch.tensor([0.0, 0.5, 0.75]))
    assert single.tolist() == [[[0, 0], [0, 1]], [[0, 0], [0, 1]], [[0, 0], [1, 0]]]  # 0.5 >= 0 and >= 0.5, not >= 0.75
