"""FIVES on files generated in its published layout (real FIVES is not on this machine): import, check, train."""

import zipfile

import cv2
import numpy as np
import pytest

from retinalight.data.datasets import get_dataset
from retinalight.data.datasets.fives import Fives
from retinalight.data.io import _decode_binary
from retinalight.errors import DataFileError

TOP = "FIVES A Fundus Image Dataset for AI-based Vessel Segmentation"
SIZE = 256


def photo_and_label(seed: int, colour_label: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    cv2.circle(image, (SIZE // 2, SIZE // 2), SIZE // 2 - 8, (150, 70, 30), -1)
    label = np.zeros((SIZE, SIZE), np.uint8)
    for _ in range(6):
        a, b = rng.integers(30, SIZE - 30, 2), rng.integers(30, SIZE - 30, 2)
        cv2.line(label, tuple(int(v) for v in a), tuple(int(v) for v in b), 255, 3)
    image[label > 0] = (90, 30, 10)
    if colour_label:  # stored in three channels, vessels in red only: grey would be 76, neither 0 nor 255
        label = np.dstack([label, np.zeros_like(label), np.zeros_like(label)])
    return image, label


def fives_archive(path, names: dict[str, list[str]]) -> None:
    """A zip in FIVES' published layout; the first label of each split in colour."""
    with zipfile.ZipFile(path, "w") as zf:
        for split, stems in names.items():
            for k, stem in enumerate(stems):
                image, label = photo_and_label(hash((split, stem)) % 1000, colour_label=k == 0)
                for part, array in (("Original", image), ("Ground truth", label)):
                    ok, encoded = cv2.imencode(".png", array[..., ::-1] if array.ndim == 3 else array)
                    zf.writestr(f"{TOP}/{split}/{part}/{stem}.png", encoded.tobytes())


@pytest.fixture
def fives_root(tmp_path, monkeypatch):
    monkeypatch.setattr(Fives, "size", (SIZE, SIZE))
    archive = tmp_path / "FIVES.zip"
    fives_archive(archive, {"train": ["1_A", "2_D", "3_G", "4_N", "10_N"], "test": ["1_A", "2_D", "3_N"]})
    from retinalight.data.__main__ import main as data_main

    root = tmp_path / "data"
    assert data_main(["import", str(archive), "--data-root", str(root)]) == 0
    return root


def test_fives_imports_keeps_split_names_apart_and_reads_colour_labels(fives_root, capsys):
    from retinalight.data.__main__ import main as data_main

    reader = get_dataset("fives", fives_root)
    assert reader.ids("training") == ["train_1_A", "train_2_D", "train_3_G", "train_4_N", "train_10_N"]
    assert reader.ids("test") == ["test_1_A", "test_2_D", "test_3_N"]
    train, test = reader.load("train_1_A"), reader.load("test_1_A")  # the same file name in both splits
    assert not np.array_equal(train.vessel, test.vessel)
    assert 0.01 < train.vessel.mean() < 0.2 and train.fov.mean() > 0.5  # colour label read; FOV computed
    assert [Fives.group(i) for i in reader.ids("test")] == ["AMD", "DR", "normal"]
    assert data_main(["check", "--dataset", "fives", "--data-root", str(fives_root)]) == 0
    capsys.readouterr()
    label = fives_root / "FIVES" / "test" / "Ground truth" / "2_D.png"
    cv2.imwrite(str(label), np.zeros((SIZE // 2, SIZE // 2), np.uint8))  # another size
    _decode_binary.cache_clear()  # decoded maps are cached per process
    assert data_main(["check", "--dataset", "fives", "--data-root", str(fives_root)]) == 1
    assert "2_D.png" in capsys.readouterr().out
    label.unlink()
    with pytest.raises(DataFileError, match="lacks 1 test expert maps"):
        reader.require_files()


def test_fives_trains_the_quick_profile(fives_root, tmp_path):
    from retinalight.fit import main as fit_main

    tiny = ["trainer.max_epochs=1", "data.samples_per_epoch=4", "data.batch_size=2", "data.crop_size=64", "data.resize=128"]
    args = [
        "--exp",
        "ablation_fives",
        "--profile",
        "quick",
        "--arm",
        "unet",
        "--runs",
        str(tmp_path / "runs"),
        "--data-root",
        str(fives_root),
    ]
    assert fit_main([*args, "--set", *tiny]) == 0
    predictions = sorted(p.name for p in (tmp_path / "runs").rglob("predictions/*.png"))
    assert predictions == ["test_1_A.png", "test_2_D.png", "test_3_N.png"]
    table = next((tmp_path / "runs" / "ablation_fives").glob("summary-*.md")).read_text()
    assert "Per diagnosis group, protocol `fov`" in table
    for group in ("AMD", "DR", "normal"):
        assert f"| unet | {group} | 1 |" in table


def test_unknown_layouts_and_rar_archives_are_one_line(tmp_path):
    from retinalight.data.fetch import import_archive

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "photo.png").write_bytes(b"x")
    with pytest.raises(DataFileError, match="an unknown layout"):
        import_archive(tmp_path / "other", tmp_path / "data")
    (tmp_path / "FIVES.rar").write_bytes(b"Rar!")
    with pytest.raises(DataFileError, match="extract it"):
        import_archive(tmp_path / "FIVES.rar", tmp_path / "data")
