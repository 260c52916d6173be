"""The typed config sections: every setting's type, default, and domain, written once, next to its field.

An experiment file's sections (`retinalight.experiments`) become these dataclasses; the DataModules and
LightningModules take them (or the dicts a checkpoint stores, through `section`), so no default is restated
anywhere else. A field's `metadata` holds its check: `must(test, what)` or `one_of(choices)`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from retinalight.errors import ConfigError, close_matches

DISCRIMINATOR_INPUTS = {"green": 1, "gray": 1, "rgb": 3}  # fundus channels the discriminator sees beside the map
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
VAL_MODES = ("holdout", "augmented", "test")  # where validation images come from (retinalight.data.datamodules)
CROP_SAMPLING = ("uniform", "fov", "vessel")  # where crop centres fall (retinalight.data.datamodules.AugmentedSamples)
LOGGERS = ("csv", "wandb", "none")  # fit --logger: csv curves in the run folder; wandb adds W&B; none
SCALE_MODES = ("auto", "fov", "none")  # inference scale: fov resizes to the network's training FOV diameter; auto: when known
TTA_MODES = ("none", "flips")  # test-time augmentation (retinalight.inference.with_tta): none, or the 8 flips and transposes


def must(test: Callable[[Any], bool], what: str) -> dict:
    """Field metadata: `test(value)` must hold (None passes where the type allows it); `what` says what it must be."""
    return {"check": (test, what)}


def one_of(choices: tuple | Callable[[], list[str]]) -> dict:
    """Field metadata: the value (each item of a list) is one of `choices` (a callable: read when checked)."""
    return {"choices": choices}


def _at_least(bound):
    return lambda v: v >= bound


def _multiple_of_16(v) -> bool:
    return v >= 16 and v % 16 == 0


def _datasets() -> list[str]:
    from retinalight.data.datasets import dataset_names

    return dataset_names()


AUTO_OR_BOOL = must(lambda v: v in ("auto", True, False), "auto, true or false")


@dataclass
class DataConfig:
    dataset: str = field(default="drive", metadata=one_of(_datasets))
    data_root: str | None = None  # None: --data-root, else $RETINALIGHT_DATA, else ./data
    batch_size: int = field(default=8, metadata=must(_at_least(1), "an integer >= 1"))
    samples_per_epoch: int = field(default=256, metadata=must(_at_least(1), "an integer >= 1"))
    crop_size: int | None = field(default=None, metadata=must(_multiple_of_16, "null (whole images) or a multiple of 16 >= 16"))
    crop_sampling: str = field(default="uniform", metadata=one_of(CROP_SAMPLING))  # uniform, fov (inside the FOV), vessel (half on vessels)
    val_count: int = field(
        default=0, metadata=must(_at_least(0), "an integer >= 0")
    )  # training images held out (0: train on all, as the paper)
    val_seed: int = 0
    val_mode: str = field(default="holdout", metadata=one_of(VAL_MODES))  # holdout | augmented (the paper's, leaks) | test (curve only)
    augment: dict | str = field(default_factory=dict)  # {name: kwargs} or a preset name ("official")
    preprocess: dict | str | None = None  # none, clahe, ace, or {name: clahe, clip_limit: 2.0, ...} (retinalight.preprocess)
    resize: int | None = field(  # train and predict on resize x resize images, score at the original size (Retina-GAN: 512)
        default=None, metadata=must(_multiple_of_16, "null (original size) or a multiple of 16 >= 16")
    )
    fov_diameter: int | None = field(  # scale normalisation: every image resized so its FOV is this many pixels across
        # (train, test, predict; scored at the original size); null: each dataset at its own scale
        default=None,
        metadata=must(lambda v: v >= 64, "null (each image at its own scale) or an integer >= 64 (pixels)"),
    )
    pad_multiple: int = field(default=16, metadata=must(_multiple_of_16, "a multiple of 16 (the networks halve the input up to 4 times)"))
    num_workers: int | str = field(  # loader processes; auto: 0 on a CPU, the cores shared among GPUs on CUDA (retinalight.hardware)
        default="auto", metadata=must(lambda v: v == "auto" or (isinstance(v, int) and v >= 0), "auto or an integer >= 0")
    )
    pin_memory: bool | str = field(default="auto", metadata=AUTO_OR_BOOL)  # page-locked batches for a GPU; auto: on CUDA only
    dataset_kwargs: dict = field(default_factory=dict)  # passed to the reader (synthetic: count, size, seed)


@dataclass
class LossConfig:
    pos_weight: float | None = field(
        default=None, metadata=must(lambda v: v > 0 and math.isfinite(v), "null or a number > 0")
    )  # BCE weight of vessel pixels
    dice_weight: float = field(default=0.0, metadata=must(_at_least(0), "a number >= 0"))  # add dice_weight * Dice (smp's DiceLoss) to BCE


@dataclass
class OptimizerConfig:
    lr: float = field(default=1e-3, metadata=must(lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)"))
    weight_decay: float = field(default=0.0, metadata=must(_at_least(0), "a number >= 0"))
    schedule: str = field(
        default="multistep", metadata=one_of(("multistep", "cosine"))
    )  # multistep: by epoch; cosine: by step, after warm-up
    milestones: list = field(  # epochs where lr is multiplied by gamma
        default_factory=lambda: [100],
        metadata=must(lambda v: all(isinstance(m, int) and m >= 1 for m in v), "a list of epochs (integers >= 1)"),
    )
    gamma: float = field(default=0.1, metadata=must(lambda v: 0 < v <= 1, "a number in (0, 1]"))
    warmup_steps: int = field(default=0, metadata=must(_at_least(0), "an integer >= 0"))  # linear warm-up from lr/10 (cosine schedule)
    drop_ramp: float = field(  # share of the steps over which DropBlock's rate ramps up from 0 (Ghiasi et al. 2018)
        default=0.0, metadata=must(lambda v: 0 <= v <= 1, "a share of the steps in [0, 1]")
    )


@dataclass
class TrainerConfig:
    max_epochs: int = field(default=150, metadata=must(_at_least(1), "an integer >= 1"))
    accelerator: str = "auto"
    devices: Any = field(
        default=1,
        metadata=must(
            lambda v: v == "auto" or (isinstance(v, int) and v >= 1) or isinstance(v, list), "auto, a count >= 1 or a list of ids"
        ),
    )
    strategy: str = "auto"
    num_nodes: int = field(default=1, metadata=must(_at_least(1), "an integer >= 1"))  # machines (SLURM: --nodes); devices is per machine
    sync_batchnorm: bool = False  # one BatchNorm over the global batch under DDP (the BatchNorm arms)
    precision: str = field(  # auto: bf16-mixed where native (CUDA with bf16, AVX-512 BF16/AMX CPUs), 16-mixed on older GPUs, else 32-true
        default="auto", metadata=must(lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}")
    )
    compile: bool = False
    channels_last: bool | str = field(
        default="auto", metadata=AUTO_OR_BOOL
    )  # auto: on (measured faster on every class; retinalight.hardware)
    flush_denormal: bool | str = field(default="auto", metadata=AUTO_OR_BOOL)  # auto: on for fp32 training on a CPU (retinalight.hardware)
    deterministic: bool = False
    log_every_n_steps: int = field(default=10, metadata=must(_at_least(1), "an integer >= 1"))
    check_val_every_n_epoch: int = field(default=1, metadata=must(_at_least(1), "an integer >= 1"))


@dataclass
class EvaluationConfig:
    protocols: list = field(default_factory=lambda: ["fov", "image"], metadata=one_of(("fov", "image")))
    threshold: float = field(default=0.5, metadata=must(lambda v: 0 < v < 1, "a probability between 0 and 1 (exclusive)"))
    test_checkpoint: str = field(
        default="last", metadata=one_of(("last", "best"))
    )  # "last" (as the official SA-UNet code) or "best" (by monitor)
    monitor: str = "val/auc"
    val_auc_thresholds: int | None = field(  # binned AUROC per epoch (constant memory); None = exact
        default=1000, metadata=must(_at_least(2), "null (exact) or an integer >= 2")
    )
    patch_size: int | None = field(  # test on patches of this side (sliding window), regrouped; None: whole images
        default=None, metadata=must(_multiple_of_16, "null (whole images) or a multiple of 16 >= 16")
    )
    patch_overlap: int = field(  # pixels shared by neighbouring test patches (averaged)
        default=0, metadata=must(_at_least(0), "an integer >= 0, less than evaluation.patch_size")
    )
    # test-time augmentation, scored beside the plain test (never instead): its own evaluation in the run folder
    # (`retinalight.rundirs.evaluation_dir`), so a trained run is re-scored with it without retraining
    tta: str = field(default="none", metadata=one_of(TTA_MODES))
    # test each run on these datasets' test splits too (the training dataset's own test is always run), where
    # present: a cross-dataset table in the summary; also not part of the run identity
    datasets: list = field(default_factory=list, metadata=one_of(_datasets))
    # how the cross-dataset tests scale images: fov, to the FOV diameter the network trained at; none, as they are
    scale: str = field(default="fov", metadata=one_of(("fov", "none")))


@dataclass
class GANConfig:
    """Used by `module: gan` runs only (see retinalight.training.gan.GANModule)."""

    discriminator: dict = field(default_factory=lambda: {"name": "patch_discriminator"})  # a registered model + its arguments
    # fundus channels the discriminator sees beside the map (the paper: one channel)
    discriminator_input: str = field(default="green", metadata=one_of(tuple(DISCRIMINATOR_INPUTS)))
    # patch: D judges each training crop. image (the paper's): training batches are whole images, the generator
    # runs on their evaluation.patch_size grid and D judges each image's regrouped map
    discriminator_scope: str = field(default="patch", metadata=one_of(("patch", "image")))
    # weight of the segmentation loss in the generator loss (0: the paper's minimax loss)
    pixel_weight: float = field(default=10.0, metadata=must(_at_least(0), "a number >= 0"))
    # 0: the pixel-only control (the same generator, data and schedule; the discriminator is not trained)
    adversarial_weight: float = field(default=1.0, metadata=must(_at_least(0), "a number >= 0"))
    # batches over which the adversarial weight ramps linearly from 0 (the generator learns to segment first)
    adversarial_warmup: int = field(default=0, metadata=must(lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (batches)"))
    d_steps: int = field(default=1, metadata=must(_at_least(1), "an integer >= 1"))  # discriminator updates per generator update
    d_lr: float | None = field(default=None, metadata=must(lambda v: 0 < v < 1, "null (optimizer.lr) or a number between 0 and 1"))
    betas: list = field(  # Adam betas of both networks
        default_factory=lambda: [0.5, 0.999],
        metadata=must(lambda v: len(v) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    )
    clip_grad_norm: float | None = field(default=None, metadata=must(lambda v: v > 0, "null or a number > 0"))


@dataclass
class LoggerConfig:
    project: str = "retinalight"
    entity: str | None = None
    tags: list = field(default_factory=list)


@dataclass
class ModelConfig:
    name: str
    kwargs: dict = field(default_factory=dict)

    def build(self):
        from retinalight.models import create_model

        return create_model(self.name, **self.kwargs)


SECTIONS = {
    "data": DataConfig,
    "loss": LossConfig,
    "optimizer": OptimizerConfig,
    "trainer": TrainerConfig,
    "evaluation": EvaluationConfig,
    "gan": GANConfig,
    "logger": LoggerConfig,
}

T = typing.TypeVar("T")


def section(cls: type[T], value: T | dict | None) -> T:
    """A typed section from what a module was given: the dataclass itself, or the dict a checkpoint's
    hyperparameters hold (keys it lacks take the field defaults, so a checkpoint from before a key existed loads)."""
    if isinstance(value, cls):
        return value
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (value or {}).items() if k in names})


def build_section(cls: type[T], values: Any, name: str, where: str = "") -> T:
    """Type-check a section's mapping, build it, and check every field's domain: one line naming the key."""
    if not isinstance(values, dict):
        raise ConfigError(f"'{join(where, name)}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = dict(values)
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"unknown key '{name}.{key}'{close_matches(key, names)}")
        if isinstance(value, str) and float in (typing.get_args(hints[key]) or (hints[key],)):
            with contextlib.suppress(ValueError):  # PyYAML reads 1e-3 (no dot) as a string
                value = values[key] = float(value)
        if not _type_ok(value, hints[key]):
            raise ConfigError(f"'{name}.{key}' must be {_type_name(hints[key])}, got {value!r}")
    built = cls(**values)
    check_section(built, name, where)
    return built


def check_section(config: Any, name: str, where: str = "") -> None:
    """Check every field of a built section against its `must` / `one_of` metadata."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = join(where, f"{name}.{f.name}")
        if "choices" in f.metadata:
            choices = f.metadata["choices"]
            allowed = tuple(choices() if callable(choices) else choices)
            for item in value if isinstance(value, list) else [value]:
                if item not in allowed:
                    raise ConfigError(f"'{key}' = {item!r}: choose from {', '.join(allowed)}{close_matches(str(item), allowed)}")
        if "check" in f.metadata and value is not None:
            test, what = f.metadata["check"]
            if not test(value):
                raise ConfigError(f"'{key}' = {value!r}: must be {what}")


def join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    for option in options:
        option = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return True
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option not in (int, float, type(None)) and isinstance(value, option):
            return True
    return False


def _type_name(hint: Any) -> str:
    return " or ".join(getattr(t, "__name__", str(t)).replace("NoneType", "null") for t in (typing.get_args(hint) or (hint,)))
