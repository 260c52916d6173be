import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from retinalight.data.__main__ import main as data_main
from retinalight.data.datamodules import ChaseDB1DataModule, DriveDataModule, SyntheticVesselsDataModule, split_holdout
from retinalight.data.datasets import ChaseDB1, Drive, get_dataset
from retinalight.data.fetch import download, import_archive
from retinalight.data.fov import compute_fov
from retinalight.data.geometry import pad, padded_size
from retinalight.data.transforms import build_augmentation
from retinalight.errors import ConfigError, DataFileError, DatasetNotFoundError, UnknownNameError


def test_drive_reader_and_splits(data_root):
    drive = Drive(data_root)
    assert drive.ids("training") == [f"{n}" for n in range(21, 41)]
    assert drive.ids("test") == [f"{n:02d}" for n in range(1, 21)]
    sample = drive.load("21")
    assert sample.image.shape == (584, 565, 3) and sample.image.dtype == np.uint8
    assert sample.vessel.dtype == bool and sample.fov.dtype == bool
    assert 0.05 < sample.vessel.mean() < 0.13 and 0.6 < sample.fov.mean() < 0.75


def test_chase_reader_and_splits(data_root):
    chase = ChaseDB1(data_root)
    train, test = chase.ids("training"), chase.ids("test")
    assert len(train) == 20 and len(test) == 8
    assert train[0] == "Image_01L" and train[-1] == "Image_10R" and test == [f"Image_{n}{e}" for n in range(11, 15) for e in "LR"]
    sample = chase.load("Image_11L")
    assert sample.image.shape == (960, 999, 3)
    assert 0.6 < sample.fov.mean() < 0.75  # computed FOV
    with pytest.raises(UnknownNameError, match="did you mean test"):
        chase.ids("tets")


def test_computed_fov_matches_official_drive_masks(data_root):
    drive = Drive(data_root)
    for id in drive.ids("training") + drive.ids("test"):
        sample = drive.load(id)
        fov = compute_fov(sample.image)
        iou = (fov & sample.fov).sum() / (fov | sample.fov).sum()
        assert iou >= 0.97, f"image {id}: IoU {iou:.4f}"
    assert np.array_equal(compute_fov(sample.image), compute_fov(sample.image))  # deterministic


@pytest.mark.parametrize("dataset, padded", [("drive", (592, 592)), ("chase_db1", (1008, 1008))])
def test_pad_crop_round_trip_is_exact(data_root, dataset, padded):
    sample = get_dataset(dataset, data_root).load(get_dataset(dataset, data_root).ids("test")[0])
    size = padded_size(*sample.image.shape[:2])
    assert size == padded
    for array in (sample.image, sample.vessel, sample.fov):
        out, region = pad(array, size)
        assert out.shape[:2] == padded and out.sum() == array.sum()
        assert np.array_equal(region.crop(out.transpose(2, 0, 1)).transpose(1, 2, 0) if out.ndim == 3 else region.crop(out), array)


def test_augmentation_keeps_image_and_masks_aligned(data_root):
    sample = Drive(data_root).load("22")
    # paint the masks into the image, augment, and check the painted channels still match the masks
    painted = np.stack([sample.vessel * 255, sample.fov * 255, np.zeros_like(sample.fov, np.uint8)], axis=-1).astype(np.uint8)
    spec = {"rotate": {"p": 1.0}, "hflip": {"p": 1.0}, "vflip": {"p": 1.0}, "transpose": {"p": 1.0}}
    transform = build_augmentation(spec, (592, 592), crop=256)
    for seed in range(3):
        transform.set_random_seed(seed)
        out = transform(image=painted, masks=[sample.vessel.astype(np.uint8), sample.fov.astype(np.uint8)])
        assert out["image"].shape == (256, 256, 3)
        for channel, mask in ((0, out["masks"][0]), (1, out["masks"][1])):
            agree = ((out["image"][..., channel] > 127) == mask.astype(bool)).mean()
            assert agree > 0.98, f"seed {seed} channel {channel}: {agree:.4f}"


def test_augmentation_typo_fails_loudly():
    with pytest.raises(ConfigError, match="var_limit"):
        build_augmentation({"gauss_noise": {"p": 0.5, "var_limit": [10, 50]}}, (64, 64))
    with pytest.raises(ConfigError, match="did you mean rotate"):
        build_augmentation({"rotat": {"p": 0.5}}, (64, 64))


@pytest.mark.parametrize("cls, size", [(DriveDataModule, 592), (ChaseDB1DataModule, 1008)])
def test_datamodule_batches(data_root, cls, size):
    dm = cls(data_root, batch_size=2, samples_per_epoch=4, crop_size=96, val_count=4)
    dm.setup()
    assert len(dm.train_samples) == 16 and len(dm.val_samples) == 4
    assert not {s.id for s in dm.train_samples} & {s.id for s in dm.val_samples}
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 96, 96) and batch["image"].dtype == torch.float32
    assert batch["vessel"].shape == (2, 1, 96, 96) and set(batch["vessel"].unique().tolist()) <= {0.0, 1.0}
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (4, 3, size, size) and val["fov"].shape == (4, 1, size, size)  # VAL_BATCH whole images


def test_training_samples_depend_only_on_seed_and_key(data_root):
    dm = DriveDataModule(data_root, batch_size=2, samples_per_epoch=4, crop_size=64, augment={"rotate": {"p": 0.5}})
    dm.setup()
    first, second = (next(iter(dm.train_dataloader())) for _ in range(2))
    assert torch.equal(first["image"], second["image"]) and torch.equal(first["vessel"], second["vessel"])


def test_paper_style_augmented_validation(data_root):
    dm = DriveDataModule(data_root, batch_size=2, samples_per_epoch=2, val_mode="augmented", val_count=3, augment={"rotate": {"p": 1.0}})
    dm.setup()
    assert len(dm.train_samples) == 20 and not dm.val_samples  # every original image trains: validation leaks
    batches = list(dm.val_dataloader())
    assert len(batches) == 1 and batches[0]["image"].shape == (3, 3, 592, 592)  # the 3 copies in one batch
    assert torch.equal(batches[0]["image"], next(iter(dm.val_dataloader()))["image"])  # the same copies every epoch
    with pytest.raises(ConfigError, match="val_mode"):
        DriveDataModule(data_root, val_mode="leaky")


def test_holdout_split_is_seeded():
    ids = [str(i) for i in range(20)]
    train, val = split_holdout(ids, 4, seed=0)
    assert len(val) == 4 and sorted(train + val, key=int) == ids
    assert split_holdout(ids, 4, seed=0) == (train, val) and split_holdout(ids, 4, seed=1) != (train, val)
    with pytest.raises(ConfigError):
        split_holdout(ids, 20, seed=0)


def test_synthetic_datamodule_needs_no_download(tmp_path):
    dm = SyntheticVesselsDataModule(tmp_path / "nothing-here", batch_size=2, samples_per_epoch=2, dataset_kwargs={"count": 8, "size": 64})
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 64, 64) and batch["vessel"].sum() > 0


# ---- bad input -------------------------------------------------------------------------------------


@pytest.fixture
def drive_copy(data_root, tmp_path):
    shutil.copytree(data_root / "DRIVE", tmp_path / "DRIVE")
    return tmp_path


def test_missing_dataset_says_where_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="retinalight.data import"):
        Drive(tmp_path).load("01")


def test_missing_annotation(drive_copy):
    (drive_copy / "DRIVE/test/1st_manual/03_manual1.gif").unlink()
    with pytest.raises(DataFileError, match="03_manual1.gif: missing"):
        Drive(drive_copy).load("03")


def test_truncated_tiff(drive_copy):
    path = drive_copy / "DRIVE/test/images/04_test.tif"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataFileError, match="04_test.tif: corrupt"):
        Drive(drive_copy).load("04")


def test_annotation_of_other_size(drive_copy, data_root):
    from PIL import Image

    Image.open(data_root / "DRIVE/test/1st_manual/05_manual1.gif").crop((0, 0, 500, 500)).save(
        drive_copy / "DRIVE/test/1st_manual/05_manual1.gif"
    )
    with pytest.raises(DataFileError, match="05_manual1.gif: annotation is 500x500, image is 565x584"):
        Drive(drive_copy).load("05")


def test_check_reports_real_data_ok(data_root, capsys):
    assert data_main(["check", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "40/40" in out and "28/28" in out and "FAIL" not in out


def test_check_names_corrupt_and_missing_files(drive_copy, capsys):
    (drive_copy / "DRIVE/training/images/25_training.tif").write_bytes(b"not a tiff")
    (drive_copy / "DRIVE/test/mask/07_test_mask.gif").unlink()
    assert data_main(["check", "--dataset", "drive", "--data-root", str(drive_copy)]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 2
    assert any("25_training.tif: corrupt" in p for p in problems) and any("07_test_mask.gif: missing" in p for p in problems)
    assert "38/40" in out


def test_check_names_annotation_of_other_size(drive_copy, data_root, capsys):
    from PIL import Image

    Image.open(data_root / "DRIVE/training/1st_manual/30_manual1.gif").crop((0, 0, 500, 500)).save(
        drive_copy / "DRIVE/training/1st_manual/30_manual1.gif"
    )
    assert data_main(["check", "--dataset", "drive", "--no-checksums", "--data-root", str(drive_copy)]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and "30_manual1.gif: size differs from its image (565x584)" in problems[0]


def test_check_flags_modified_file(drive_copy, capsys):
    from PIL import Image

    path = drive_copy / "DRIVE/test/images/01_test.tif"
    Image.open(path).save(path)  # decodes fine, but is no longer the published file
    assert data_main(["check", "--dataset", "drive", "--data-root", str(drive_copy)]) == 1
    assert "01_test.tif: SHA-256 differs" in capsys.readouterr().out


# ---- import / download ------------------------------------------------------------------------------


def test_import_drive_zip_layout(data_root, tmp_path):
    archive = tmp_path / "DRIVE.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rel in ("training/images/21_training.tif", "training/1st_manual/21_manual1.gif", "test/mask/01_test_mask.gif"):
            zf.write(data_root / "DRIVE" / rel, f"DRIVE/{rel}")
        zf.writestr("DRIVE/readme.txt", "skipped")
    written = import_archive(archive, tmp_path / "root")
    assert sorted(p.relative_to(tmp_path / "root").as_posix() for p in written) == [
        "DRIVE/test/mask/01_test_mask.gif",
        "DRIVE/training/1st_manual/21_manual1.gif",
        "DRIVE/training/images/21_training.tif",
    ]


@pytest.mark.parametrize("member", ["../evil/Image_01L.jpg", "/abs/Image_01L.jpg"])
def test_import_refuses_paths_outside_root(tmp_path, member):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("CHASE_DB1/Image_02L.jpg", b"a good member before the bad one")
        zf.writestr(member, b"x")
    with pytest.raises(DataFileError, match="refused .*nothing was written"):
        import_archive(archive, tmp_path / "root")
    assert not (tmp_path / "root").exists() and not (tmp_path / "evil").exists()


def test_import_refuses_symlinks(tmp_path):
    archive = tmp_path / "link.zip"
    info = zipfile.ZipInfo("CHASE_DB1/Image_01L.jpg")
    info.external_attr = 0o120777 << 16
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DataFileError, match="symbolic or hard link"):
        import_archive(archive, tmp_path / "root")


def test_download_from_local_url_verifies_checksums(data_root, tmp_path, capsys):
    archive = tmp_path / "CHASEDB1.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((data_root / "CHASE_DB1").iterdir()):
            zf.write(path, path.name)  # the official zip is flat
    root = tmp_path / "root"
    assert data_main(["download", "chase_db1", "--url", archive.as_uri(), "--data-root", str(root)]) == 0
    assert "56 files" in capsys.readouterr().out
    assert data_main(["check", "--dataset", "chase_db1", "--data-root", str(root)]) == 0


def test_download_detects_corrupted_file(data_root, tmp_path):
    archive = tmp_path / "CHASEDB1.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Image_01L.jpg", b"garbage")
    with pytest.raises(DataFileError, match="Image_01L.jpg: SHA-256 differs"):
        download("chase_db1", tmp_path / "root", [archive.as_uri()])


def test_cli_error_is_one_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "retinalight.data", "import", str(tmp_path / "nope.zip"), "--data-root", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nope.zip: archive not found" in result.stderr
    assert Path(tmp_path).exists()


@pytest.mark.parametrize("mode", ["fov", "vessel"])
def test_crop_centres_fall_where_the_sampling_mode_says(data_root, mode):
    from retinalight.data.datamodules import AugmentedSamples

    samples = [Drive(data_root).load(i) for i in ("21", "22")]
    dataset = AugmentedSamples(samples, {}, (592, 592), 64, seed=0, crop_sampling=mode)  # no augmentation: centres stay put
    items = [dataset[k] for k in range(40)]
    centre_fov = [item["fov"][0, 32, 32].item() for item in items]
    centre_vessel = [item["vessel"][0, 32, 32].item() for item in items]
    assert all(centre_fov)
    if mode == "vessel":  # half the centres on vessels (plus the FOV draws that hit one by chance)
        assert 0.4 < np.mean(centre_vessel) < 0.85
    assert all(item["image"].shape == (3, 64, 64) for item in items)


def test_test_set_curve_uses_every_training_image(data_root):
    dm = DriveDataModule(data_root, batch_size=2, samples_per_epoch=2, val_mode="test")
    dm.setup()
    assert len(dm.train_samples) == 20 and [s.id for s in dm.val_samples] == Drive(data_root).ids("test")


def test_shard_sampler_scores_each_image_once_across_ranks():
    from retinalight.data.datamodules import ShardSampler

    for length, world in ((20, 2), (7, 3), (1, 4)):
        shards = [list(ShardSampler(length, rank, world)) for rank in range(world)]
        assert sorted(i for shard in shards for i in shard) == list(range(length))
