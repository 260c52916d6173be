"""Config in one place: the typed sections hold every default and check; the modules take them and restate none."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from retinalight.config import SECTIONS, DataConfig, GANConfig, OptimizerConfig, build_section, section
from retinalight.errors import ConfigError

PACKAGE = Path(__file__).resolve().parent.parent / "retinalight"


def test_modules_read_no_config_key_with_a_restated_default():
    """`hparams.get("lr", 5e-4)` beside a config default of 1e-3 was a bug: modules read typed sections instead."""
    fields = {f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)}
    offenders = []
    for path in [*sorted((PACKAGE / "training").glob("*.py")), PACKAGE / "inference.py", PACKAGE / "data" / "datamodules.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in fields
            ):
                offenders.append(f"{path.name}:{node.lineno} .get({node.args[0].value!r}, ...)")
    assert not offenders, offenders


def test_datamodule_defaults_are_the_data_section_defaults(data_root):
    from retinalight.data.datamodules import DriveDataModule

    restated = set(inspect.signature(DriveDataModule.__init__).parameters) & {f.name for f in dataclasses.fields(DataConfig)}
    assert restated == {"data_root"}  # the folder is an argument of its own (--data-root); every other setting is the section's
    module = DriveDataModule(data_root)
    expected = {f.name: f.default for f in dataclasses.fields(DataConfig) if f.default is not dataclasses.MISSING}
    expected |= {"dataset": "drive", "num_workers": 0, "pin_memory": False}  # `auto` resolved on a CPU
    assert {k: getattr(module.config, k) for k in expected} == expected
    assert module.config.val_count == 0  # the old DataModule said 4 while the config said 0


def test_gan_learning_rate_default_is_the_optimizer_sections():
    from retinalight.training.gan import GANModule

    module = GANModule(gan={}, model={"name": "unet", "kwargs": {"base_width": 8}}, loss={}, optimizer={}, evaluation={})
    assert module.optimizer_config.lr == OptimizerConfig().lr == 1e-3  # was 5e-4 in gan.py
    assert module.gan_config == GANConfig()
    assert module.hparams["optimizer"] == {} and module.hparams["gan"] == {}  # the checkpoint keeps what was given


def test_each_check_stands_on_its_field_and_names_the_key():
    with pytest.raises(ConfigError, match=r"'arms.x.data.batch_size' = 0: must be an integer >= 1"):
        build_section(DataConfig, {"batch_size": 0}, "data", "arms.x")
    with pytest.raises(ConfigError, match=r"'data.dataset' = 'drvie': choose from .*\(did you mean drive\?\)"):
        build_section(DataConfig, {"dataset": "drvie"}, "data")
    with pytest.raises(ConfigError, match=r"'gan.betas' = \[0.5\]: must be two numbers"):
        build_section(GANConfig, {"betas": [0.5]}, "gan")
    constrained = [f.name for f in dataclasses.fields(DataConfig) if f.metadata]
    assert {"batch_size", "crop_size", "val_mode", "dataset", "num_workers"} <= set(constrained)


def test_section_accepts_a_checkpoints_dict_with_keys_added_since():
    old = {"lr": 0.003, "schedule": "cosine"}  # written before warmup_steps and drop_ramp existed
    assert section(OptimizerConfig, old) == OptimizerConfig(lr=0.003, schedule="cosine")
