"""LightningDataModules: one per dataset, sharing `RetinaDataModule`.

Training draws `samples_per_epoch` augmented samples (the paper's offline 20 -> ~256 images). Sample k of
the run is fully determined by (seed, k): which image, which augmentation, which crop. So a resumed run,
a run with workers and a DDP run all see the same data as a plain single-process run.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from retinalight.data.datasets import VAL_MODES, RetinaDataset, Sample, get_dataset
from retinalight.data.geometry import Region, pad, padded_size, resize_sample_arrays
from retinalight.data.tensors import channel_stats, to_tensors
from retinalight.data.transforms import CROP_SAMPLING, build_augmentation, crop_window
from retinalight.errors import ConfigError
from retinalight.preprocess import build_preprocess


class AugmentedSamples(Dataset):
    """Augmented (optionally cropped) training samples addressed by a global sample key.

    With `crop`, each sample picks a centre pixel (`crop_sampling`: "uniform" anywhere in the image, "fov"
    inside the field of view, "vessel" on a vessel pixel for half the samples and inside the FOV for the
    rest), cuts a window around it that any rotation keeps the crop inside, augments the window and
    centre-crops it. Augmenting a window instead of the whole image makes a 128x128 sample several times
    cheaper on a CPU.
    """

    def __init__(
        self, samples: list[Sample], augment: dict, size: tuple[int, int], crop: int | None, seed: int, crop_sampling: str = "uniform"
    ):
        if crop_sampling not in CROP_SAMPLING:
            raise ConfigError(f"data.crop_sampling={crop_sampling!r}: choose from {', '.join(CROP_SAMPLING)}")
        self.samples, self.seed, self.crop, self.crop_sampling = samples, seed, crop, crop_sampling
        self.stats = [channel_stats(s.image) for s in samples]
        self.transform = build_augmentation(augment, size, crop)
        self.window = crop_window(crop) if crop else 0

    def __len__(self) -> int:  # keys are unbounded; EpochSampler decides which are drawn
        return len(self.samples)

    @functools.cached_property
    def _centres(self) -> list[dict[str, np.ndarray]]:
        """Flat pixel indices the "fov" and "vessel" modes draw crop centres from, per image ("uniform"
        draws any index directly, without a table)."""
        return [{"fov": np.flatnonzero(s.fov), "vessel": np.flatnonzero(s.vessel & s.fov)} for s in self.samples]

    def _cut(self, array: np.ndarray, centre: int) -> np.ndarray:
        """The window around flat pixel index `centre`, zero-filled beyond the image."""
        height, width = array.shape[:2]
        row, col = divmod(centre, width)
        half = self.window // 2
        out = np.zeros((self.window, self.window, *array.shape[2:]), array.dtype)
        top, left = row - half, col - half
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + self.window, height), min(left + self.window, width)
        out[r0 - top : r1 - top, c0 - left : c1 - left] = array[r0:r1, c0:c1]
        return out

    def __getitem__(self, key: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, int(key)])
        index = int(rng.integers(len(self.samples)))
        sample = self.samples[index]
        image, vessel, fov = sample.image, sample.vessel.astype(np.uint8), sample.fov.astype(np.uint8)
        if self.crop:
            mode = self.crop_sampling
            if mode == "vessel" and rng.random() < 0.5:
                mode = "fov"
            if mode == "uniform":
                centre = int(rng.integers(sample.fov.size))
            else:
                pool = self._centres[index][mode]
                centre = int(pool[rng.integers(len(pool))])
            image, vessel, fov = (self._cut(a, centre) for a in (image, vessel, fov))
        self.transform.set_random_seed(int(rng.integers(2**31)))
        out = self.transform(image=image, masks=[vessel, fov])
        item = to_tensors(out["image"], out["masks"][0], out["masks"][1], self.stats[index])
        height, width = item["image"].shape[1:]
        return {**item, "id": sample.id, "region": (0, 0, height, width)}


class PaddedImages(Dataset):
    """Whole images zero-padded to the network size, with the Region to crop predictions back."""

    def __init__(self, samples: list[Sample], size: tuple[int, int]):
        self.samples, self.size = samples, size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        image, region = pad(sample.image, self.size)
        item = to_tensors(image, pad(sample.vessel, self.size)[0], pad(sample.fov, self.size)[0], channel_stats(sample.image))
        return {**item, "id": sample.id, "region": (region.top, region.left, region.height, region.width)}


class EpochSampler(Sampler[int]):
    """Yields the sample keys of one epoch (epoch * length + i), this rank's share under DDP; `skip` keys
    are left out once, at the start of the next epoch iterated (a mid-epoch resume, see `ResumableLoader`)."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.length, self.rank, self.world_size, self.epoch, self.skip = length, rank, world_size, 0, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before every epoch
        self.epoch = epoch

    def __iter__(self):
        start = self.epoch * self.length
        keys = range(start + self.rank, start + self.length, self.world_size)[self.skip :]
        self.skip = 0
        return iter(keys)

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world_size, ...: each image scored by exactly one rank (no padding repeats,
    which DistributedSampler adds to even out the ranks)."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.indices = range(rank, length, world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def resized_sample(sample: Sample, side: int) -> Sample:
    image, (vessel, fov) = resize_sample_arrays(sample.image, [sample.vessel, sample.fov], side)
    return Sample(sample.id, image, vessel, fov)


class ResumableLoader(DataLoader):
    """The training loader, resumable mid-epoch: a run preempted or killed mid-epoch draws exactly the
    samples an uninterrupted run would.

    Where the epoch stands is read when its first batch is fetched (epoch from the sampler, which Lightning
    sets before every epoch; batches already trained from the restored loop), not when the loader is built or
    iterated: Lightning builds it before restoring a checkpoint whenever something asks for it early
    (`trainer.estimated_stepping_batches` in `configure_optimizers`), and then never hands it the saved state.
    Worker processes start drawing as soon as the loader is iterated, so the iteration itself is deferred."""

    def __init__(self, *args, progress=lambda: 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.progress = progress

    def __iter__(self):
        return self._batches()

    def _batches(self):
        done = self.progress()
        self.sampler.skip = done * self.batch_size if done < len(self) else 0  # a finished epoch resumes at the next one's start
        yield from super().__iter__()

    def state_dict(self) -> dict:  # what Lightning checks to know the loader resumes mid-epoch; the position is the loop's
        return {"batches_done": self.progress()}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to load: the position comes from the restored loop at the first batch (see the class)."""


def split_holdout(ids: list[str], count: int, seed: int) -> tuple[list[str], list[str]]:
    """(train, val): `count` original training images held out for validation, chosen by `seed`."""
    if not 0 <= count < len(ids):
        raise ConfigError(f"data.val_count={count} must be between 0 and {len(ids) - 1}")
    chosen = set(np.random.default_rng(seed).permutation(len(ids))[:count].tolist())
    return [i for k, i in enumerate(ids) if k not in chosen], [i for k, i in enumerate(ids) if k in chosen]


def region_of(batch_region, index: int = 0) -> Region:
    """The Region of item `index` in a collated batch."""
    return Region(*(int(v[index]) for v in batch_region))


class RetinaDataModule(L.LightningDataModule):
    """Shared data logic; subclasses name the dataset.

    Args:
        data_root: folder holding DRIVE/ and CHASE_DB1/ (see `retinalight.cli.resolve_data_root`).
        batch_size: training batch size.
        samples_per_epoch: augmented samples drawn per epoch (SA-UNet: ~256 offline images).
        crop_size: train on crop_size x crop_size crops (None: whole padded images).
        crop_sampling: where crop centres fall: "uniform", "fov" or "vessel" (see `AugmentedSamples`).
        val_count / val_seed: original training images held out for validation.
        val_mode: "holdout" (sound), "augmented" (the paper's way: augmented copies of training images,
            which leaks training images into validation) or "test" (the test images, for a learning curve
            only: the experiment loader refuses it unless the last checkpoint is tested, so it selects nothing).
        augment: {name: kwargs} for `build_augmentation`.
        preprocess: applied to every image before anything else (`retinalight.preprocess.build_preprocess`).
        resize: train (and validate) on resize x resize images; test images stay at their original size.
        pad_multiple: network input sides are multiples of this (zero padding, square).
        num_workers, pin_memory: loader processes (kept alive between epochs) and page-locked batches, for a GPU.
        dataset_kwargs: passed to the reader (synthetic: count, size, seed).
    """

    dataset_name = ""

    def __init__(
        self,
        data_root: str | Path = "data",
        batch_size: int = 8,
        samples_per_epoch: int = 256,
        crop_size: int | None = None,
        crop_sampling: str = "uniform",
        val_count: int = 4,
        val_seed: int = 0,
        val_mode: str = "holdout",
        augment: dict | None = None,
        preprocess: str | dict | None = None,
        resize: int | None = None,
        pad_multiple: int = 16,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        dataset_kwargs: dict | None = None,
    ):
        super().__init__()
        if val_mode not in VAL_MODES:
            raise ConfigError(f"data.val_mode={val_mode!r}: choose from {', '.join(VAL_MODES)}")
        self.reader: RetinaDataset = get_dataset(self.dataset_name, data_root, **(dataset_kwargs or {}))
        self.batch_size, self.samples_per_epoch, self.crop_size, self.crop_sampling = (
            batch_size,
            samples_per_epoch,
            crop_size,
            crop_sampling,
        )
        self.val_count, self.val_seed, self.val_mode = val_count, val_seed, val_mode
        self.augment = augment if augment is not None else {k: {"p": 0.5} for k in ("rotate", "hflip", "vflip")}
        self.preprocess, self.resize = build_preprocess(preprocess), resize
        self.pad_multiple, self.num_workers, self.pin_memory, self.seed = pad_multiple, num_workers, pin_memory, seed
        self.train_samples: list[Sample] = []
        self.val_samples: list[Sample] = []

    @functools.cached_property
    def size(self) -> tuple[int, int]:
        """Padded network input (height, width)."""
        if self.resize:
            return padded_size(self.resize, self.resize, self.pad_multiple)
        height, width = self.reader.load(self.reader.ids("training")[0]).image.shape[:2]
        return padded_size(height, width, self.pad_multiple)

    def setup(self, stage: str | None = None) -> None:
        self.reader.require()
        ids = self.reader.ids("training")
        if self.val_mode == "holdout":
            train_ids, val_ids = split_holdout(ids, self.val_count, self.val_seed)
        else:
            train_ids, val_ids = ids, []
        self.train_samples = self.load(train_ids)
        self.val_samples = self.load(self.reader.ids("test") if self.val_mode == "test" else val_ids)

    def load(self, ids: list[str], resized: bool = True) -> list[Sample]:
        """Samples as the network sees them: preprocessed, then resized when `resize` is set (and `resized`)."""
        samples = [self.reader.load(i) for i in ids]
        if self.preprocess is not None:
            samples = [dataclasses.replace(s, image=self.preprocess(s.image)) for s in samples]
        if self.resize and resized:
            samples = [resized_sample(s, self.resize) for s in samples]
        return samples

    @property
    def has_validation(self) -> bool:
        return self.val_mode != "holdout" or self.val_count > 0

    def test_samples(self) -> list[Sample]:
        """Test images preprocessed but at their original size: they are scored there (inference resizes)."""
        return self.load(self.reader.ids("test"), resized=False)

    def _loader(self, dataset, loader: type[DataLoader] = DataLoader, **kwargs) -> DataLoader:
        return loader(dataset, num_workers=self.num_workers, persistent_workers=self.num_workers > 0, pin_memory=self.pin_memory, **kwargs)

    @property
    def _rank_and_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def train_dataloader(self) -> DataLoader:
        dataset = AugmentedSamples(self.train_samples, self.augment, self.size, self.crop_size, self.seed, self.crop_sampling)
        sampler = EpochSampler(self.samples_per_epoch, *self._rank_and_world)
        return self._loader(
            dataset, ResumableLoader, progress=self._batches_done, batch_size=self.batch_size, sampler=sampler, drop_last=False
        )

    def _batches_done(self) -> int:
        """Batches completed in the current training epoch (what a mid-epoch checkpoint stores)."""
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.completed if self.trainer else 0

    def val_dataloader(self) -> DataLoader:
        if self.val_mode == "augmented":  # fixed keys far from the training keys: the same images every epoch
            dataset = AugmentedSamples(self.train_samples, self.augment, self.size, None, self.seed + 10_000)
            dataset = torch.utils.data.Subset(dataset, list(range(max(1, self.val_count))))
        else:
            dataset = PaddedImages(self.val_samples, self.size)
        return self._loader(dataset, batch_size=1, sampler=ShardSampler(len(dataset), *self._rank_and_world))


class DriveDataModule(RetinaDataModule):
    """DRIVE: 20 training images (4 held out for validation by default), 20 test images, 592x592 input."""

    dataset_name = "drive"


class ChaseDB1DataModule(RetinaDataModule):
    """CHASE_DB1: 20 training images (01L-10R), 8 test images (11L-14R), 1008x1008 input."""

    dataset_name = "chase_db1"


class SyntheticDataModule(RetinaDataModule):
    """Generated vessel trees (`dataset_kwargs`: count, size, seed): runs with nothing downloaded."""

    dataset_name = "synthetic"


DATAMODULES = {cls.dataset_name: cls for cls in (DriveDataModule, ChaseDB1DataModule, SyntheticDataModule)}
