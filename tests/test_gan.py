"""The GAN LightningModule: alternating updates that touch only their own network, losses, collapse
reports, and the Retina-GAN experiment end to end on real DRIVE at tiny scale."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from retinalight.errors import ConfigError
from retinalight.experiments import load_experiment
from retinalight.fit import main as fit_main
from retinalight.inference import load_checkpoint
from retinalight.rundirs import run_dir
from retinalight.training.runner import fit_run


class StepSpy(Callback):
    """Wraps both optimizers' step: records whether the *other* network's parameters moved during it."""

    def __init__(self):
        self.steps: list[tuple[str, bool]] = []
        self.start: dict[str, list[torch.Tensor]] = {}

    def on_train_start(self, trainer, module):
        g_opt, d_opt = trainer.optimizers
        self.start = {n: [p.detach().clone() for p in net.parameters()] for n, net in (("g", module.model), ("d", module.discriminator))}
        for name, optimizer, other in (("d", d_opt, module.model), ("g", g_opt, module.discriminator)):
            step = optimizer.step

            def spied(*args, _step=step, _name=name, _other=other, **kwargs):
                before = [p.detach().clone() for p in _other.parameters()]
                out = _step(*args, **kwargs)
                self.steps.append((_name, all(torch.equal(b, p) for b, p in zip(before, _other.parameters()))))
                return out

            optimizer.step = spied


def test_alternating_steps_change_only_their_network(tmp_path):
    config = load_experiment("smoke_synthetic", overrides=["trainer.max_epochs=1"]).run_config("gan", 0)
    spy = StepSpy()
    metrics = fit_run(config, run_dir(tmp_path, config), logger="none", callbacks=[spy])
    assert [name for name, _ in spy.steps[:4]] == ["d", "g", "d", "g"]  # D first, then G, every batch
    assert all(untouched for _, untouched in spy.steps)  # a D step leaves G as it was, and a G step D
    state = torch.load(run_dir(tmp_path, config) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for prefix, name in (("model.", "g"), ("discriminator.", "d")):
        trained = [v for k, v in state.items() if k.startswith(prefix) and (k.endswith("weight") or k.endswith("bias"))]
        assert len(trained) == len(spy.start[name])
        assert any(not torch.equal(a, b) for a, b in zip(spy.start[name], trained)), f"{name} never changed"
    assert "collapsed_epochs" in metrics


def test_gan_checkpoint_loads_its_generator(tmp_path):
    config = load_experiment("smoke_synthetic", overrides=["trainer.max_epochs=1"]).run_config("gan", 0)
    fit_run(config, run_dir(tmp_path, config), logger="none")
    model, hparams = load_checkpoint(run_dir(tmp_path, config) / "checkpoints" / "last.ckpt")
    assert type(model).__name__ == "UNet" and hparams["gan"]["pixel_weight"] == 10.0
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 64, 64)


class WeightSpy(Callback):
    def __init__(self):
        self.weights: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.weights.append(module.adversarial_weight)


def test_adversarial_weight_ramps_up_over_the_warmup(tmp_path):
    overrides = [
        "trainer.max_epochs=1",
        "data.samples_per_epoch=24",
        "arms.gan.gan.adversarial_warmup=4",
        "arms.gan.gan.adversarial_weight=2.0",
    ]
    config = load_experiment("smoke_synthetic", overrides=overrides).run_config("gan", 0)
    spy = WeightSpy()
    fit_run(config, run_dir(tmp_path, config), logger="none", callbacks=[spy])
    assert spy.weights[:6] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]  # per batch, whatever d_steps makes of global_step


class AllBackground(Callback):
    """Pushes the generator's output bias far negative before every batch: it calls no pixel vessel, a
    collapsed generator."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        head = [m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        with torch.no_grad():
            head.weight.zero_()
            head.bias.fill_(-50.0)


class AllVessel(Callback):
    """The opposite: every pixel called vessel, far from a collapse."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        head = [m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        with torch.no_grad():
            head.weight.zero_()
            head.bias.fill_(50.0)


def test_collapse_is_reported_in_metrics_and_log(tmp_path):
    config = load_experiment("smoke_synthetic", overrides=["trainer.max_epochs=2"]).run_config("gan", 0)
    with pytest.warns(UserWarning, match="generator collapsed"):
        metrics = fit_run(config, run_dir(tmp_path / "background", config), logger="none", callbacks=[AllBackground()])
    assert metrics["collapsed_epochs"] == [0, 1]
    config = load_experiment("smoke_synthetic", overrides=["trainer.max_epochs=2", "arms.gan.gan.pixel_weight=1000"]).run_config("gan", 0)
    metrics = fit_run(config, run_dir(tmp_path / "vessel", config), logger="none", callbacks=[AllVessel()])
    assert metrics["collapsed_epochs"] == []  # an epoch that calls pixels vessel is not a collapse


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("arms.gan.gan.d_steps=0", "d_steps"),
        ("arms.gan.gan.adversarial_warmup=-5", "adversarial_warmup"),
        ("arms.gan.gan.discriminator={name: patch_discriminatr}", "did you mean patch_discriminator"),
        ("arms.gan.gan.discriminator_input=blue", "choose from green, gray, rgb"),
        ("arms.gan.gan.betas=[0.5]", "two numbers"),
        ("arms.gan.module=gann", "choose from segmentation, gan"),
    ],
)
def test_bad_gan_values_fail_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment("smoke_synthetic", overrides=[override])


@pytest.mark.slow
def test_retina_gan_quick_runs_on_drive(data_root, tmp_path):
    """The `quick` profile's Retina-GAN arm end to end on real DRIVE (ACE, 512x512 resize, whole images cut into
    patches, the discriminator on the regrouped map) at tiny scale: scored at the original 565x584 size."""
    args = ["--exp", "retinagan_drive", "--profile", "quick", "--arm", "retina_gan", "--runs", str(tmp_path), "--data-root", str(data_root)]
    tiny = ["arms.retina_gan.data.samples_per_epoch=2", "trainer.max_epochs=2"]  # 2 whole images (32 patches) an epoch
    assert fit_main([*args, "--logger", "none", "--set", *tiny]) == 0
    (folder,) = list((tmp_path / "retinagan_drive" / "retina_gan").glob("*/seed0"))
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["protocols"]) == {"fov", "image"} and "collapsed_epochs" in metrics
    from PIL import Image

    with Image.open(folder / "predictions" / "01.png") as img:
        assert img.size == (565, 584)
    summary = next((tmp_path / "retinagan_drive").glob("summary-quick-*.md")).read_text()
    assert "retina_gan (paper)" in summary and "0.7920" in summary


IMAGE_SCOPE = ["arms.gan.gan.discriminator_scope=image", "data.resize=64", "evaluation.patch_size=32"]


class InputSpy(Callback):
    """Records the input shapes of the generator and the discriminator during training."""

    def __init__(self):
        self.shapes = {"g": set(), "d": set()}

    def on_train_start(self, trainer, module):
        for name, net in (("g", module.model), ("d", module.discriminator)):
            net.register_forward_pre_hook(lambda _m, args, _n=name: self.shapes[_n].add(tuple(args[0].shape)) if _m.training else None)


def test_image_scope_discriminator_judges_each_regrouped_map(tmp_path):
    """Batches of 4 whole 64x64 images: the generator sees their 16 patches of 32x32, the discriminator the
    4 real and 4 generated (image, map) pairs at 64x64, together (one kind of BatchNorm batch)."""
    config = load_experiment("smoke_synthetic", overrides=["trainer.max_epochs=1", *IMAGE_SCOPE]).run_config("gan", 0)
    spy = InputSpy()
    metrics = fit_run(config, run_dir(tmp_path, config), logger="none", callbacks=[spy])
    assert spy.shapes["g"] == {(16, 3, 32, 32)}
    assert spy.shapes["d"] == {(8, 1, 64, 64)}  # 4 real + 4 generated pairs together, in D's step and in G's
    assert metrics["protocols"]["fov"]["pooled"]["auc"] > 0


def test_image_scope_needs_whole_images_on_the_patch_grid():
    with pytest.raises(ConfigError, match="discriminator_scope' = 'image' trains on whole images"):
        load_experiment("smoke_synthetic", overrides=["arms.gan.gan.discriminator_scope=image", "data.crop_size=32"])
    with pytest.raises(ConfigError, match="patch_size 48"):
        load_experiment("smoke_synthetic", overrides=[*IMAGE_SCOPE, "evaluation.patch_size=48"])


def test_adversarial_weight_zero_is_the_pixel_only_control(tmp_path):
    """Weight 0: the discriminator is never run nor stepped; the generator trains on the pixel loss alone."""
    config = load_experiment("smoke_synthetic", overrides=["trainer.max_epochs=1", "arms.gan.gan.adversarial_weight=0"]).run_config(
        "gan", 0
    )
    spy, inputs = StepSpy(), InputSpy()
    fit_run(config, run_dir(tmp_path, config), logger="none", callbacks=[spy, inputs])
    assert {name for name, _ in spy.steps} == {"g"} and inputs.shapes["d"] == set()
    state = torch.load(run_dir(tmp_path, config) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    trained = [v for k, v in state.items() if k.startswith("discriminator.") and k.endswith(("weight", "bias"))]
    assert len(trained) == len(spy.start["d"]) and all(torch.equal(a, b) for a, b in zip(spy.start["d"], trained))
    assert any(
        not torch.equal(a, v)
        for a, (k, v) in zip(
            spy.start["g"], [(k, v) for k, v in state.items() if k.startswith("model.") and k.endswith(("weight", "bias"))]
        )
    )
