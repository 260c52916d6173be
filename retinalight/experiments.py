"""Experiment files: YAML -> typed, validated configs; profiles; dotted `--set` overrides.

An experiment names a dataset, shared settings, and arms (a registered model + overrides). Loading
resolves one `RunConfig` per arm: the experiment's sections with the arm's own sections merged on top.
Every problem (unknown key, wrong type, unknown model or argument) is one line naming the file and key.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from retinalight.config import (
    SECTIONS,
    DataConfig,
    EvaluationConfig,
    GANConfig,
    LoggerConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    TrainerConfig,
    build_section,
    join,
)
from retinalight.errors import ConfigError, RetinalightError, UnknownNameError, close_matches
from retinalight.hardware import (
    SPEED_CLASSES,
    resolve_channels_last,
    resolve_flush_denormal,
    resolve_num_workers,
    resolve_precision,
    speed_class,
)

DEFAULT_PROFILE = "paper"


MODULES = ("segmentation", "gan")  # which LightningModule trains an arm (`module:` in the file or an arm)


@dataclass
class RunConfig:
    """Everything one training run needs: written to its run folder as config.yaml.

    `profile` and `overrides` record how it was asked for; its identity (`identity`, `config_hash`) is
    the resolved values alone, so two configs never share a run folder and the same config always does.
    """

    experiment: str
    arm: str
    seed: int
    model: ModelConfig
    data: DataConfig
    loss: LossConfig
    optimizer: OptimizerConfig
    trainer: TrainerConfig
    evaluation: EvaluationConfig
    gan: GANConfig
    logger: LoggerConfig
    module: str = "segmentation"
    profile: str = DEFAULT_PROFILE
    overrides: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """The values that decide what a run computes: all but the seed (a folder level of its own), how the
        config was asked for, where the data lives and where curves are logged; plus the code revision of
        each model (`register_model(..., revision=)`) once a fix has raised it."""
        return self.identity_of(self.to_dict())

    @staticmethod
    def identity_of(values: dict) -> dict:
        values = copy.deepcopy(values)
        for key in ("seed", "profile", "overrides", "logger"):
            values.pop(key, None)
        values["data"].pop("data_root", None)
        values["data"].pop("pin_memory", None)  # how batches reach the GPU changes no number
        for key in ("tta", "datasets", "scale"):  # further tests of the same weights (`rundirs.evaluation_name`)
            values.get("evaluation", {}).pop(key, None)
        if values["data"].get("num_workers") != 0:  # nor how many processes load them: sample k depends on (seed, k) alone.
            values["data"].pop("num_workers", None)  # 0, what `auto` gives on a CPU, stays: earlier CPU runs keep their folders
        if values.get("module", "segmentation") == "segmentation":  # the GAN section changes nothing here
            values.pop("module", None)
            values.pop("gan", None)
        for (section, key), default in ADDED_KEYS.items():
            if values.get(section, {}).get(key, default) == default:
                values.get(section, {}).pop(key, None)
        from retinalight.models import model_revision

        for spec in (values["model"], (values.get("gan") or {}).get("discriminator")):
            if spec and model_revision(spec["name"]):  # a model fixed since revision 0: its earlier runs are not this one
                spec["revision"] = model_revision(spec["name"])
        return values

    def config_hash(self) -> str:
        return config_hash(self.identity())


# Keys added after runs were committed: left out of the identity while at their default, so the folders of
# earlier runs keep their names (and are reused) when the new key changes nothing.
ADDED_KEYS = {
    ("data", "preprocess"): None,
    ("data", "resize"): None,
    ("data", "fov_diameter"): None,
    ("evaluation", "patch_size"): None,
    ("evaluation", "patch_overlap"): 0,
    ("trainer", "num_nodes"): 1,
    ("trainer", "sync_batchnorm"): False,
    ("trainer", "flush_denormal"): False,
    ("gan", "adversarial_warmup"): 0,
    ("gan", "discriminator_scope"): "patch",
}


def config_hash(values: dict) -> str:
    """Eight hex digits of the SHA-256 of canonical JSON: the run folder's name says which config it holds."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = sorted(set(old) | set(new), key=str)
    out = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


@dataclass
class Experiment:
    name: str
    path: Path
    description: str
    profile: str
    seeds: list[int]
    arms: dict[str, dict]  # arm -> {"model": ModelConfig, "paper": {...}, sections...}
    paper: dict = field(default_factory=dict)  # {"source", "protocol", "reference_arm", "claims"}
    run_arms: list[str] = field(default_factory=list)  # arms run when --arm is not given
    overrides: list[str] = field(default_factory=list)  # --set / bare key=value, as given
    hardware: str = "cpu-fp32"  # the speed class its `auto` values and `hardware:` sizes were resolved for

    def run_config(self, arm: str, seed: int) -> RunConfig:
        if arm not in self.arms:
            raise UnknownNameError(f"{self.name}: unknown arm {arm!r}{close_matches(arm, self.arms)}; arms: {', '.join(self.arms)}")
        spec = self.arms[arm]
        sections = {k: copy.deepcopy(spec["sections"][k]) for k in SECTIONS}
        resolve_hardware(sections, self.hardware)
        return RunConfig(
            self.name,
            arm,
            seed,
            copy.deepcopy(spec["model"]),
            **sections,
            module=spec["module"],
            profile=self.profile,
            overrides=list(self.overrides),
        )

    @property
    def label(self) -> str:
        """Names this invocation's summary: the profile, a short hash of the overrides when there are any, and
        the speed class (`fast@cpu-fp32`): the same profile trains other configs on other hardware."""
        return self.profile + (f"-{config_hash({'overrides': self.overrides})}" if self.overrides else "") + f"@{self.hardware}"

    def paper_numbers(self, arm: str) -> dict[str, float]:
        return self.arms[arm].get("paper") or {}

    @property
    def claims(self) -> list[tuple[str, str]]:
        """`paper.claims` as (better, worse) arm pairs: each summary tests every one ("retina_gan > r2unet")."""
        return [parse_claim(text) for text in self.paper.get("claims") or []]


def parse_claim(text) -> tuple[str, str]:
    better, sep, worse = str(text).partition(">")
    if not sep or not better.strip() or not worse.strip() or ">" in worse:
        raise ConfigError(f"'paper.claims': {text!r} is not 'arm > other_arm' (e.g. retina_gan > r2unet)")
    return better.strip(), worse.strip()


EXPERIMENT_KEYS = {"name", "description", "seeds", "arms", "run_arms", "profiles", "paper", "module", "hardware", *SECTIONS}
ARM_KEYS = {"model", "paper", "module", *SECTIONS}


def bundled_experiments() -> Path | None:
    """The experiment files that come with the package: a source checkout's experiments/ (editable installs
    and `PYTHONPATH=.`), else the copy a wheel ships as `retinalight.bundled_experiments` (pyproject's
    package-dir maps experiments/ there)."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "experiments").is_dir():
        return root / "experiments"
    spec = importlib.util.find_spec("retinalight.bundled_experiments")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def experiment_dirs() -> list[Path]:
    """Where an experiment name is looked up, first match first: ./experiments, the folders of
    $RETINALIGHT_EXPERIMENTS (separated by os.pathsep), then the package's own files."""
    extra = [Path(p).expanduser() for p in os.environ.get("RETINALIGHT_EXPERIMENTS", "").split(os.pathsep) if p]
    bundled = bundled_experiments()
    return [Path.cwd() / "experiments", *extra, *([bundled] if bundled else [])]


def experiment_sources() -> dict[str, Path]:
    """{name: the file that name loads}, for every experiment found (`fit --list-experiments`)."""
    found: dict[str, Path] = {}
    for folder in experiment_dirs():
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def list_experiments() -> list[str]:
    return list(experiment_sources())


def find_experiment(name: str) -> Path:
    """A path to a YAML file, or a name looked up in `experiment_dirs()` (first match: `experiment_sources`)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{path}: experiment file not found")
        return path
    sources = experiment_sources()
    if name in sources:
        return sources[name]
    known = list(sources)
    raise UnknownNameError(f"unknown experiment {name!r}{close_matches(name, known)}; available: {', '.join(known)}")


def load_experiment(name: str, profile: str = DEFAULT_PROFILE, overrides: list[str] | None = None) -> Experiment:
    """Load, apply the profile then the overrides, and validate everything (models included)."""
    path = find_experiment(name)
    raw = read_experiment(path)
    try:
        return _resolve(raw, path, profile, overrides or [])
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def read_experiment(path: Path, children: tuple[Path, ...] = ()) -> dict:
    """An experiment file's mapping with `inherits: <experiment name or file>` resolved: the file is a delta on
    its parent. Its sections deep-merge into the parent's (an arm it names merges into the parent's arm of that
    name); a profile it names replaces the parent's profile of that name, the others are inherited."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: an experiment file is a mapping of keys")
    parent_name = raw.pop("inherits", None)
    if parent_name is None:
        return raw
    if not isinstance(parent_name, str) or not parent_name:
        raise ConfigError(f"{path}: 'inherits' names one experiment (e.g. inherits: ablation_drive), got {parent_name!r}")
    relative = path.parent / parent_name
    parent_path = relative if parent_name.endswith((".yaml", ".yml")) and relative.is_file() else find_experiment(parent_name)
    if parent_path.resolve() in (path.resolve(), *children):
        raise ConfigError(f"{path}: 'inherits: {parent_name}' makes a cycle")
    parent = read_experiment(parent_path, (*children, path.resolve()))
    parent.pop("name", None)  # a child is named by its own file
    merged = deep_merge(parent, {k: v for k, v in raw.items() if k != "profiles"})
    profiles = {**(parent.get("profiles") or {}), **(raw.get("profiles") or {})}
    return {**merged, "profiles": profiles} if profiles else merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b.c=value' -> (['a', 'b', 'c'], value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not key=value (e.g. trainer.max_epochs=3)")
    try:
        return key.lstrip("-").split("."), yaml.safe_load(value)
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: value is not valid YAML") from None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] == "arms" and len(keys) > 1 and keys[1] not in raw.get("arms", {}):
            raise ConfigError(f"override {text!r}: unknown arm {keys[1]!r}{close_matches(keys[1], raw.get('arms', {}))}")
        node = raw
        for key in keys[:-1]:
            if not isinstance(node.setdefault(key, {}), dict):
                raise ConfigError(f"override {text!r}: {key!r} is not a section")
            node = node[key]
        node[keys[-1]] = value
    return raw


def deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (top or {}).items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


def _resolve(raw: dict, path: Path, profile: str, overrides: list[str]) -> Experiment:
    _check_keys(raw, EXPERIMENT_KEYS, "")
    profiles = raw.get("profiles") or {}
    if profile in profiles:
        raw = deep_merge(raw, profiles[profile])
    elif profile != DEFAULT_PROFILE:
        raise UnknownNameError(
            f"unknown profile {profile!r}{close_matches(profile, profiles)}; profiles: {', '.join(dict.fromkeys([DEFAULT_PROFILE, *profiles]))}"
        )
    accelerator = (apply_overrides(raw, overrides).get("trainer") or {}).get("accelerator", "auto")  # --set may name it
    hardware = speed_class(str(accelerator))
    raw = select_hardware(raw, hardware)
    raw = apply_overrides(raw, overrides)
    _check_keys(raw, EXPERIMENT_KEYS, "")
    arms_raw = raw.get("arms")
    if not isinstance(arms_raw, dict) or not arms_raw:
        raise ConfigError("'arms' must map arm names to {model: ...}")
    arms = {}
    for arm, spec in arms_raw.items():
        where = f"arms.{arm}"
        if not isinstance(spec, dict) or "model" not in spec:
            raise ConfigError(f"{where}: needs a model (e.g. model: {{name: sa_unet}})")
        _check_keys(spec, ARM_KEYS, where)
        sections = {k: build_section(cls, deep_merge(raw.get(k) or {}, spec.get(k) or {}), k, where) for k, cls in SECTIONS.items()}
        module = spec.get("module", raw.get("module", "segmentation"))
        if module not in MODULES:
            raise ConfigError(f"'{where}.module' = {module!r}: choose from {', '.join(MODULES)}{close_matches(str(module), MODULES)}")
        _check_run(sections, where)
        if sections["data"].val_mode == "augmented" and profile != DEFAULT_PROFILE:
            raise ConfigError(
                f"'{where}.data.val_mode' = 'augmented' validates on augmented copies of the training images, a leak "
                f"allowed only in the `{DEFAULT_PROFILE}` profile (a paper's own protocol); use holdout or test"
            )
        if module == "gan":
            _check_gan(sections, where)
        model = _model(spec["model"], f"{where}.model")
        arms[arm] = {"model": model, "paper": spec.get("paper") or {}, "sections": sections, "module": module}
    run_arms = raw.get("run_arms") or list(arms)
    for arm in run_arms:
        if arm not in arms:
            raise ConfigError(f"run_arms: unknown arm {arm!r}{close_matches(arm, arms)}")
    _check_claims((raw.get("paper") or {}).get("claims") or [], arms)
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"'seeds' must be a list of integers, got {seeds!r}")
    return Experiment(
        name=raw.get("name") or path.stem,
        path=path,
        description=raw.get("description", ""),
        profile=profile,
        seeds=seeds,
        arms=arms,
        paper=raw.get("paper") or {},
        run_arms=run_arms,
        overrides=list(overrides),
        hardware=hardware,
    )


def _check_claims(claims, arms: dict) -> None:
    if not isinstance(claims, list):
        raise ConfigError("'paper.claims' must be a list of 'arm > other_arm'")
    for claim in claims:
        for arm in parse_claim(claim):
            if arm not in arms:
                raise ConfigError(f"'paper.claims': {claim!r}: unknown arm {arm!r}{close_matches(arm, arms)}")


def select_hardware(raw: dict, hardware: str) -> dict:
    """Merge the `hardware: {<speed class>: {...}}` entry of the experiment or its profile for this machine's
    class (a profile sized for each class, e.g. fewer steps where bf16 is not native); the others are dropped."""
    sizes = raw.pop("hardware", None) or {}
    if not isinstance(sizes, dict):
        raise ConfigError(f"'hardware' must map speed classes ({', '.join(SPEED_CLASSES)}) to sections")
    for key, value in sizes.items():
        if key not in SPEED_CLASSES:
            raise ConfigError(f"unknown key 'hardware.{key}'{close_matches(str(key), SPEED_CLASSES)}; classes: {', '.join(SPEED_CLASSES)}")
        if not isinstance(value, dict) or "hardware" in value or "profiles" in value:
            raise ConfigError(f"'hardware.{key}' must be a mapping of sections (data, trainer, arms, ...)")
    return deep_merge(raw, sizes.get(hardware) or {})


def resolve_hardware(sections: dict, hardware: str) -> None:
    """Replace the `auto` values of a run's sections by what is fast on `hardware` (retinalight.hardware).
    Resolved values are what config.yaml records and what the run identity hashes."""
    trainer, data = sections["trainer"], sections["data"]
    trainer.precision = resolve_precision(trainer.precision, hardware)
    trainer.channels_last = resolve_channels_last(trainer.channels_last, hardware)
    trainer.flush_denormal = resolve_flush_denormal(trainer.flush_denormal, trainer.precision, hardware)
    devices = len(trainer.devices) if isinstance(trainer.devices, list) else trainer.devices if isinstance(trainer.devices, int) else 1
    data.num_workers = resolve_num_workers(data.num_workers, hardware, devices)  # devices: per machine, sharing its cores
    data.pin_memory = hardware == "cuda" if data.pin_memory == "auto" else bool(data.pin_memory)


def _check_run(sections: dict, where: str) -> None:
    """Checks that span keys: held-out images against the dataset, and a test-set curve that selects nothing."""
    from retinalight.data.transforms import build_augmentation

    data, evaluation = sections["data"], sections["evaluation"]
    from retinalight.preprocess import build_preprocess

    try:  # typos in augmentation names or arguments fail here, not in the first training step
        build_augmentation(data.augment, (64, 64))
    except ConfigError as err:
        raise ConfigError(f"'{join(where, 'data.augment')}': {err}") from None
    try:
        build_preprocess(data.preprocess, cache_dir=False)
    except ConfigError as err:
        raise ConfigError(f"{where + ': ' if where else ''}{err}") from None
    from retinalight.data.datasets import get_dataset

    try:
        available = len(get_dataset(data.dataset, ".", **data.dataset_kwargs).ids("training"))
    except TypeError as err:
        raise ConfigError(f"'{join(where, 'data.dataset_kwargs')}': {err}") from None
    if data.val_mode == "holdout" and available and data.val_count >= available:
        raise ConfigError(
            f"'{join(where, 'data.val_count')}' = {data.val_count}: {data.dataset} has {available} training images; hold out at most {available - 1}"
        )
    if evaluation.patch_size and evaluation.patch_overlap >= evaluation.patch_size:
        raise ConfigError(
            f"'{join(where, 'evaluation.patch_overlap')}' = {evaluation.patch_overlap}: must be less than patch_size {evaluation.patch_size}"
        )
    if data.fov_diameter and data.resize:
        raise ConfigError(
            f"'{join(where, 'data.fov_diameter')}' and '{join(where, 'data.resize')}' both set the network's input scale: choose one"
        )
    if data.val_mode == "test" and evaluation.test_checkpoint != "last":
        raise ConfigError(
            f"'{join(where, 'evaluation.test_checkpoint')}' = {evaluation.test_checkpoint!r}: with data.val_mode=test the curve is drawn "
            "on the test images, which must never select a checkpoint; use test_checkpoint: last, or val_mode: holdout"
        )


def _check_gan(sections: dict, where: str) -> None:
    """The discriminator must be a registered model taking `in_channels` (its fields are checked by `build_section`);
    an image-scope discriminator needs whole training images that split into the evaluation patch grid."""
    gan, data, evaluation = sections["gan"], sections["data"], sections["evaluation"]
    at = f"{where}.gan"
    if not isinstance(gan.discriminator, dict) or "name" not in gan.discriminator:
        raise ConfigError(f"'{at}.discriminator' needs a name (a registered model), e.g. {{name: patch_discriminator}}")
    if "in_channels" in gan.discriminator:
        raise ConfigError(f"'{at}.discriminator.in_channels': set by {at}.discriminator_input (the map adds one channel)")
    _model(gan.discriminator, f"{at}.discriminator")
    if gan.discriminator_scope == "image":
        size = evaluation.patch_size
        if data.crop_size is not None or not data.resize or not size or data.resize % size:
            raise ConfigError(
                f"'{at}.discriminator_scope' = 'image' trains on whole images cut into the evaluation patch grid: it needs "
                f"data.crop_size null, data.resize and evaluation.patch_size dividing it (got crop_size {data.crop_size}, "
                f"resize {data.resize}, patch_size {size})"
            )


def _model(spec: Any, where: str) -> ModelConfig:
    from retinalight.models import model_arguments

    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"{where}: needs a name (a registered model)")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    try:
        accepted = model_arguments(spec["name"])
    except RetinalightError as err:
        raise ConfigError(f"{where}.name: {err}") from None
    if not spec["name"].startswith("smp_"):
        for key in kwargs:
            if key not in accepted:
                raise ConfigError(f"unknown key '{where}.{key}'{close_matches(key, accepted)}; {spec['name']} takes {', '.join(accepted)}")
    return ModelConfig(spec["name"], kwargs)


def _check_keys(raw: dict, allowed: set[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"unknown key '{join(where, key)}'{close_matches(str(key), allowed)}")
