"""LightningDataModules: one per registered dataset (`DATAMODULES`, e.g. `DriveDataModule`), sharing `RetinaDataModule`.

Training draws `samples_per_epoch` augmented samples (the paper's offline 20 -> ~256 images). Sample k of
the run is fully determined by (seed, k): which image, which augmentation, which crop. So a resumed run,
a run with workers and a DDP run all see the same data as a plain single-process run.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from retinalight.config import CROP_SAMPLING, DataConfig, build_section
from retinalight.data.datasets import DATASETS, RetinaDataset, Sample, get_dataset
from retinalight.data.fov import fov_diameter
from retinalight.data.geometry import Region, pad, padded_size, resize_sample_arrays
from retinalight.data.io import resolve_data_root
from retinalight.data.tensors import channel_stats, to_tensors
from retinalight.data.transforms import build_augmentation, crop_window
from retinalight.errors import ConfigError, close_matches
from retinalight.hardware import resolve_num_workers, speed_class
from retinalight.preprocess import build_preprocess

# whole images per validation batch: every batch costs Lightning's per-step host work (on an H200, 20 DRIVE
# images one at a time took 0.56 s an epoch, a fifth of a paper-schedule run); 4 at once keep memory bounded
VAL_BATCH = 4


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


def resized_sample(sample: Sample, side: int | None = None, scale: float | None = None) -> Sample:
    image, (vessel, fov) = resize_sample_arrays(sample.image, [sample.vessel, sample.fov], side, scale)
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
    """Shared data logic; the per-dataset subclasses (`DATAMODULES`) name the dataset.

    Args:
        data_root: folder holding the dataset folders (see `retinalight.data.io.resolve_data_root`).
        config: the `data` section (`retinalight.config.DataConfig`: every setting, its default and its
            domain); its `dataset` must be this module's.
        seed: the run's seed: sample k of the run depends only on (seed, k).
        **settings: DataConfig fields to set instead (`DriveDataModule(root, batch_size=4, crop_size=128)`).

    `val_mode`: "holdout" (sound), "augmented" (the paper's way: augmented copies of training images, which
    leaks training images into validation) or "test" (the test images, for a learning curve only: the
    experiment loader refuses it unless the last checkpoint is tested, so it selects nothing).
    """

    dataset_name = ""

    def __init__(self, data_root: str | Path | None = None, config: DataConfig | None = None, seed: int = 0, **settings):
        super().__init__()
        values = {**dataclasses.asdict(config or DataConfig(dataset=self.dataset_name)), **settings}
        config = build_section(DataConfig, values, "data")
        if config.dataset != self.dataset_name:
            raise ConfigError(f"data.dataset={config.dataset!r} given to {type(self).__name__} ({self.dataset_name})")
        speed = speed_class()
        config.num_workers = resolve_num_workers(config.num_workers, speed)
        config.pin_memory = speed == "cuda" if config.pin_memory == "auto" else bool(config.pin_memory)
        self.config, self.seed = config, seed
        self.reader: RetinaDataset = get_dataset(
            self.dataset_name, resolve_data_root(data_root or config.data_root), **config.dataset_kwargs
        )
        self.preprocess = build_preprocess(config.preprocess)
        self.train_samples: list[Sample] = []
        self.val_samples: list[Sample] = []

    @functools.cached_property
    def size(self) -> tuple[int, int]:
        """Padded network input (height, width)."""
        if self.config.resize:
            return padded_size(self.config.resize, self.config.resize, self.config.pad_multiple)
        height, width = self.load(self.reader.ids("training")[:1])[0].image.shape[:2]
        return padded_size(height, width, self.config.pad_multiple)

    @functools.cached_property
    def median_fov_diameter(self) -> float:
        """The median FOV diameter of the training images at their own scale (`retinalight.data.fov.fov_diameter`)."""
        return float(np.median([fov_diameter(self.reader.load(i).fov) for i in self.reader.ids("training")]))

    @property
    def fov_reference(self) -> dict:
        """The scale the network learns at, stored in its checkpoint so that inference on another dataset or a
        user's photo can resize to it: `data.fov_diameter`, else the training images' median FOV diameter."""
        return {"dataset": self.reader.name, "diameter": self.config.fov_diameter or self.median_fov_diameter}

    @property
    def fov_factor(self) -> float:
        """With `data.fov_diameter`, the one factor that brings the median training FOV to it: one factor for
        every training image keeps their sizes equal (inference scales each test image by its own FOV)."""
        return self.config.fov_diameter / self.median_fov_diameter

    def setup(self, stage: str | None = None) -> None:
        self.reader.require()
        ids = self.reader.ids("training")
        if self.config.val_mode == "holdout":
            train_ids, val_ids = split_holdout(ids, self.config.val_count, self.config.val_seed)
        else:
            train_ids, val_ids = ids, []
        self.train_samples = self.load(train_ids)
        self.val_samples = self.load(self.reader.ids("test") if self.config.val_mode == "test" else val_ids)

    def load(self, ids: list[str], resized: bool = True) -> list[Sample]:
        return self.prepared([self.reader.load(i) for i in ids], resized)

    def prepared(self, samples: list[Sample], resized: bool = True) -> list[Sample]:
        """Samples as the network sees them (this dataset's or another's, for cross-dataset tests): preprocessed,
        then resized when `resize` or `fov_diameter` is set (and `resized`)."""
        if self.preprocess is not None:
            samples = [dataclasses.replace(s, image=self.preprocess(s.image)) for s in samples]
        if self.config.resize and resized:
            samples = [resized_sample(s, side=self.config.resize) for s in samples]
        elif self.config.fov_diameter and resized:
            samples = [resized_sample(s, scale=self.fov_factor) for s in samples]
        return samples

    @property
    def has_validation(self) -> bool:
        return self.config.val_mode != "holdout" or self.config.val_count > 0

    def test_samples(self) -> list[Sample]:
        """Test images preprocessed but at their original size: they are scored there (inference resizes)."""
        return self.load(self.reader.ids("test"), resized=False)

    def _loader(self, dataset, loader: type[DataLoader] = DataLoader, **kwargs) -> DataLoader:
        workers = self.config.num_workers
        return loader(dataset, num_workers=workers, persistent_workers=workers > 0, pin_memory=self.config.pin_memory, **kwargs)

    @property
    def _rank_and_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def train_dataloader(self) -> DataLoader:
        data = self.config
        dataset = AugmentedSamples(self.train_samples, data.augment, self.size, data.crop_size, self.seed, data.crop_sampling)
        sampler = EpochSampler(data.samples_per_epoch, *self._rank_and_world)
        return self._loader(
            dataset, ResumableLoader, progress=self._batches_done, batch_size=data.batch_size, sampler=sampler, drop_last=False
        )

    def _batches_done(self) -> int:
        """Batches completed in the current training epoch (what a mid-epoch checkpoint stores)."""
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.completed if self.trainer else 0

    def val_dataloader(self) -> DataLoader:
        if self.config.val_mode == "augmented":  # fixed keys far from the training keys: the same images every epoch
            dataset = AugmentedSamples(self.train_samples, self.config.augment, self.size, None, self.seed + 10_000)
            dataset = torch.utils.data.Subset(dataset, list(range(max(1, self.config.val_count))))
        else:
            dataset = PaddedImages(self.val_samples, self.size)
        return self._loader(dataset, batch_size=VAL_BATCH, sampler=ShardSampler(len(dataset), *self._rank_and_world))


def datamodule_class(reader: type[RetinaDataset]) -> type[RetinaDataModule]:
    """The LightningDataModule of one registered dataset (`DriveDataModule`, `ChaseDB1DataModule`, ...)."""
    doc = (sys.modules[reader.__module__].__doc__ or reader.title).split("\n")[0]
    if not reader.generated:
        doc += f" Split: {reader.split_reference}."
    return type(f"{reader.__name__}DataModule", (RetinaDataModule,), {"dataset_name": reader.name, "__doc__": doc, "__module__": __name__})


DATAMODULES = {name: datamodule_class(reader) for name, reader in DATASETS.items()}  # a new reader file adds its own

# The per-dataset names users import, written out so grep and an IDE find them (a test keeps this list whole).
DriveDataModule = DATAMODULES["drive"]
ChaseDB1DataModule = DATAMODULES["chase_db1"]
StareDataModule = DATAMODULES["stare"]
HRFDataModule = DATAMODULES["hrf"]
FivesDataModule = DATAMODULES["fives"]
SyntheticVesselsDataModule = DATAMODULES["synthetic"]


def for_dataset(name: str) -> type[RetinaDataModule]:
    """The LightningDataModule of a registered dataset, by its registry name (`for_dataset("drive")`)."""
    if name not in DATAMODULES:
        raise ConfigError(f"data.dataset={name!r}: choose from {', '.join(DATAMODULES)}{close_matches(name, DATAMODULES)}")
    return DATAMODULES[name]
