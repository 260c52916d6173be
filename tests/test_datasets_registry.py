"""STARE and HRF, added as one reader file each: import, download, check and train-ready loading, on files
generated in their publishers' layouts (the real archives are not on this machine)."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from retinalight.data.__main__ import main as data_main
from retinalight.data.datamodules import DATAMODULES
from retinalight.data.datasets import DATASETS, dataset_names, get_dataset
from retinalight.data.datasets.hrf import HRF
from retinalight.data.datasets.stare import LABELLED
from retinalight.data.fetch import import_archive
from retinalight.errors import DataFileError


def fundus(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dark-rimmed disc with a few vessel lines: (rgb, vessel 0/255, fov 0/255)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    fov = np.hypot(yy - height / 2, xx - width / 2) < 0.45 * min(height, width)
    vessel = np.zeros((height, width), bool)
    for row in rng.integers(height // 4, 3 * height // 4, size=3):
        vessel[row : row + 2, width // 4 : 3 * width // 4] = True
    vessel &= fov
    rgb = np.where(fov[..., None], [170, 80, 40], 0).astype(np.uint8)
    rgb[vessel] = [90, 40, 20]
    return rgb, (vessel * 255).astype(np.uint8), (fov * 255).astype(np.uint8)


def encoded(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def tar_of(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def stare_archives(tmp_path_factory):
    """STARE's three published tars: gzipped PPM images (one unlabelled, which import skips) and two label sets."""
    folder = tmp_path_factory.mktemp("stare")
    images, ah, vk = {}, {}, {}
    for n in (*LABELLED, 6):
        rgb, vessel, _ = fundus(605, 700, n)
        images[f"im{n:04d}.ppm.gz"] = gzip.compress(encoded(rgb, "PPM"))
        ah[f"im{n:04d}.ah.ppm.gz"] = gzip.compress(encoded(vessel, "PPM"))
        vk[f"im{n:04d}.vk.ppm.gz"] = gzip.compress(encoded(vessel, "PPM"))
    paths = [folder / name for name in ("stare-images.tar", "labels-ah.tar", "labels-vk.tar")]
    for path, members in zip(paths, (images, ah, vk), strict=True):
        tar_of(path, members)
    return paths


def test_every_registered_dataset_has_a_datamodule_and_a_cli_choice():
    assert {"drive", "chase_db1", "stare", "hrf", "synthetic"} <= set(DATASETS)
    assert set(DATAMODULES) == set(DATASETS)
    assert DATAMODULES["stare"].__name__ == "StareDataModule" and DATAMODULES["hrf"].dataset_name == "hrf"
    assert "synthetic" not in dataset_names(files_only=True)


def test_stare_tars_import_check_and_load(stare_archives, tmp_path, capsys):
    root = tmp_path / "root"
    written = [p for archive in stare_archives for p in import_archive(archive, root)]
    assert len(written) == 60  # 20 images x (image, ah, vk); the unlabelled im0006 is skipped
    assert (root / "STARE/images/im0001.ppm").is_file() and not (root / "STARE/images/im0006.ppm").exists()
    assert data_main(["check", "--dataset", "stare", "--data-root", str(root)]) == 0
    assert "20/20" in capsys.readouterr().out
    stare = get_dataset("stare", root)
    assert len(stare.ids("training")) == 10 and len(stare.ids("test")) == 10
    assert set(stare.ids("training")).isdisjoint(stare.ids("test"))
    sample = stare.load("im0162")
    assert sample.image.shape == (605, 700, 3) and sample.vessel.any()
    assert 0.45 < sample.fov.mean() < 0.6  # computed from the image: the generated disc covers about 52%
    assert stare.second_observer("im0162") is not None


def test_stare_download_takes_one_url_per_archive(stare_archives, tmp_path, capsys):
    root = tmp_path / "root"
    urls = [p.as_uri() for p in stare_archives]
    assert data_main(["download", "stare", "--url", *urls, "--data-root", str(root)]) == 0
    assert "60 files" in capsys.readouterr().out


def test_stare_download_with_too_few_urls_is_one_line(stare_archives, tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "retinalight.data", "download", "stare", "--url", stare_archives[0].as_uri(), "--data-root", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "3 archive(s)" in result.stderr and result.stderr.count("\n") == 1


def test_corrupt_gzip_member_is_named(tmp_path):
    archive = tmp_path / "stare-images.tar"
    tar_of(archive, {"im0001.ppm.gz": b"not gzip"})
    with pytest.raises(DataFileError, match="im0001.ppm.gz' is corrupt"):
        import_archive(archive, tmp_path / "root")
    assert not (tmp_path / "root/STARE/images/im0001.ppm").exists()


def test_hrf_zip_import_check_and_datamodule(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(HRF, "size", (96, 144))  # the published 2336x3504, scaled down: the layout is what is tested
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for k, id in enumerate(get_dataset("hrf", ".").ids("training") + get_dataset("hrf", ".").ids("test")):
            rgb, vessel, fov = fundus(96, 144, k)
            zf.writestr(f"images/{id}{'.JPG' if id.endswith('_dr') else '.jpg'}", encoded(rgb, "JPEG"))
            zf.writestr(f"manual1/{id}.tif", encoded(vessel, "TIFF"))
            zf.writestr(f"mask/{id}_mask.tif", encoded(np.stack([fov] * 3, axis=-1), "TIFF"))  # published masks are RGB
        zf.writestr("readme.txt", "skipped")
    root = tmp_path / "root"
    assert len(import_archive(archive, root)) == 135
    assert data_main(["check", "--dataset", "hrf", "--data-root", str(root)]) == 0
    assert "45/45" in capsys.readouterr().out
    datamodule = DATAMODULES["hrf"](root, batch_size=2, samples_per_epoch=2, crop_size=32, augment={})
    datamodule.setup("fit")
    assert len(datamodule.train_samples) == 15 and len(datamodule.test_samples()) == 30
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32)


def test_check_by_default_covers_the_datasets_present(data_root, capsys):
    assert data_main(["check", "--no-checksums", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "drive" in out and "chase_db1" in out and "stare" not in out
