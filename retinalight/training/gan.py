"""GANModule: a generator (any registered segmentation model) trained against a discriminator, with
Lightning's manual optimization: per batch `d_steps` discriminator updates, then one generator update.

`gan.discriminator_scope` says what the discriminator judges: `patch`, each training crop with its fundus
crop; `image` (Retina-GAN's), whole training images: the generator runs on each image's grid of patches
(evaluation.patch_size: 16 patches of 128x128 at 512x512), they are regrouped into the image's map, and the
discriminator scores (fundus image, map) pairs at full size, real ones with the expert map. The pixel loss
covers every patch pixel once either way. `gan.adversarial_weight: 0` is the pixel-only control: the same
generator, data and schedule, the discriminator never used.

Validation, testing, checkpoint loading and export see only the generator (`self.model`), so a GAN run
is scored, predicted and evaluated exactly like a segmentation run.

Traps of manual optimization handled here:
- two optimizers stepping per batch make `global_step` advance d_steps + 1 times per batch: anything
  scheduled by batches (learning-rate schedules, DropBlock ramps, the per-step seed) uses `batch_index`;
- schedulers are stepped here, once per batch (Lightning does not step them under manual optimization);
- the discriminator scores real and fake pairs in one forward pass, so its BatchNorm sees one batch per
  backward (two forwards before one backward break DDP's buffer broadcast), in its own step and in the
  generator's alike (on fakes alone its batch statistics differ from those it learnt on);
- backward only through `self.manual_backward`; clipping only through `self.clip_gradients`;
- under DDP each backward reaches only one network: the runner then uses find_unused_parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn

from retinalight.config import DISCRIMINATOR_INPUTS, GANConfig, section
from retinalight.data.patches import grid_images, grid_patches
from retinalight.models import create_model
from retinalight.training.segmentation import SegmentationModule

COLLAPSE_FRACTION = 0.005  # an epoch whose maps call fewer than 0.5% of pixels vessel (DRIVE: about 12%) is a collapse


class GANModule(SegmentationModule):
    """Adversarial vessel segmentation (Retina-GAN; V-GAN's losses).

    Args (besides SegmentationModule's):
        gan: GANConfig (or its dict). Generator loss = adversarial_weight x BCE(D(x, G(x)), real) + pixel_weight x
            the segmentation loss; pixel_weight 0 is the paper's literal minimax loss (V-GAN weighs the pixel term
            10x the adversarial one: the default).
    """

    def __init__(self, gan: GANConfig | dict, **kwargs):
        super().__init__(gan=gan, **kwargs)
        self.automatic_optimization = False
        self.gan_config = section(GANConfig, gan)
        spec = dict(self.gan_config.discriminator)
        channels = DISCRIMINATOR_INPUTS[self.gan_config.discriminator_input] + 1
        self.discriminator = create_model(spec.pop("name"), in_channels=channels, **spec)
        self.collapsed_epochs: list[int] = []
        self._vessel_share = torch.zeros(2, dtype=torch.float64)  # (vessel pixels, pixels) predicted this epoch

    @property
    def batch_index(self) -> int:
        """Batches trained so far (global_step counts optimizer steps: d_steps + 1 per batch)."""
        return self.global_step // (self.gan_config.d_steps + 1)

    @property
    def adversarial_weight(self) -> float:
        """gan.adversarial_weight, ramped linearly from 0 over the first gan.adversarial_warmup batches: a
        discriminator that beats an untrained generator at once otherwise drives its maps to all-background."""
        weight, warmup = self.gan_config.adversarial_weight, self.gan_config.adversarial_warmup
        return weight * min(1.0, self.batch_index / warmup) if warmup else weight

    def discriminator_image(self, image: torch.Tensor) -> torch.Tensor:
        """The fundus channels the discriminator is conditioned on (the paper's is a 2-channel input)."""
        which = self.gan_config.discriminator_input
        if which == "rgb":
            return image
        if which == "green":
            return image[:, 1:2]
        return image.mean(dim=1, keepdim=True)

    def generate(self, image: torch.Tensor, fov: torch.Tensor) -> torch.Tensor:
        """The generator's logits for a training batch. Image scope: on each image's patch grid
        (evaluation.patch_size, the paper's 16 patches of 128x128 at 512x512), regrouped into whole maps."""
        if self.gan_config.discriminator_scope == "patch":
            return self(image, fov)
        size = self.evaluation_config.patch_size
        logits = self(grid_patches(image, size), grid_patches(fov, size))
        return grid_images(logits, *image.shape[-2:])

    def training_step(self, batch: dict, batch_idx: int) -> None:
        gan = self.gan_config
        g_opt, d_opt = self.optimizers()
        image, vessel = batch["image"], batch["vessel"]
        logits = self.generate(image, batch["fov"]).float()
        fake = torch.sigmoid(logits)
        pixel = self.loss(logits, vessel)  # the mean over every patch pixel: per patch, as the paper trains
        logs = {"train/loss": pixel, "train/adversarial_weight": self.adversarial_weight}
        adversarial = gan.adversarial_weight > 0  # 0: the pixel-only control, no discriminator at all
        if adversarial:
            condition = self.discriminator_image(image)
            self.discriminator_steps(condition, vessel, fake, d_opt, logs)
            self.toggle_optimizer(g_opt)  # the discriminator frozen while the generator learns through it
            logs["train/g_adversarial"] = self.adversarial_loss(condition, vessel, fake)
        g_loss = gan.pixel_weight * pixel + (self.adversarial_weight * logs["train/g_adversarial"] if adversarial else 0)
        g_opt.zero_grad()
        self.manual_backward(g_loss)
        self._clip(g_opt)
        g_opt.step()
        if adversarial:
            self.untoggle_optimizer(g_opt)
        g_schedule, d_schedule = self.lr_schedulers()
        g_schedule.step()
        if adversarial:  # the control's discriminator never steps, so neither does its schedule
            d_schedule.step()
        with torch.no_grad():
            self._vessel_share += torch.tensor([float((fake > 0.5).sum()), float(fake.numel())], dtype=torch.float64)
        self.log_dict({**logs, "train/g_loss": g_loss}, prog_bar=False, on_step=True, on_epoch=True, batch_size=len(image))

    def pair_scores(self, condition: torch.Tensor, vessel: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Discriminator logits of the real pairs, then the generated ones, in one forward pass (one BatchNorm batch)."""
        return self.discriminator(torch.cat([condition, condition]), torch.cat([vessel, fake]).to(condition.dtype)).float()

    def discriminator_steps(self, condition: torch.Tensor, vessel: torch.Tensor, fake: torch.Tensor, d_opt, logs: dict) -> None:
        """`d_steps` updates on real and fake (image, map) pairs in one forward pass each, the generator output detached."""
        size = len(condition)
        labels = torch.cat([torch.ones(size, 1), torch.zeros(size, 1)]).to(condition.device)
        for _ in range(self.gan_config.d_steps):
            scores = self.pair_scores(condition, vessel, fake.detach())
            d_loss = F.binary_cross_entropy_with_logits(scores, labels)
            d_opt.zero_grad()
            self.manual_backward(d_loss)
            self._clip(d_opt)
            d_opt.step()
        with torch.no_grad():
            real_score, fake_score = torch.sigmoid(scores).chunk(2)
        self.log("train/d_acc_real", (real_score > 0.5).float().mean(), on_step=True, on_epoch=True, batch_size=size)
        self.log("train/d_acc_fake", (fake_score < 0.5).float().mean(), on_step=True, on_epoch=True, batch_size=size)
        logs["train/d_loss"] = d_loss

    def adversarial_loss(self, condition: torch.Tensor, vessel: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The generator's loss: BCE of the discriminator's scores of its pairs against the `real` label. The
        pairs go through the discriminator beside the real ones, as in its own step, so its BatchNorm
        normalises the same kind of batch it learnt on: on generated pairs alone (batch statistics of fakes
        only) a discriminator that separates them perfectly in its step can score them `real` here."""
        fake_scores = self.pair_scores(condition, vessel, fake)[len(condition) :]
        return F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))

    def _clip(self, optimizer) -> None:
        value = self.gan_config.clip_grad_norm
        if value:
            self.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm="norm")

    def on_train_epoch_end(self) -> None:
        """Report a collapse (maps nearly all background, the failure GAN vessel code is known for)."""
        share = self.trainer.strategy.reduce(self._vessel_share.to(self.device), reduce_op="sum").cpu().clone()
        self._vessel_share.zero_()  # after the clone: on one CPU device `share` is this very tensor
        fraction = float(share[0] / share[1]) if share[1] > 0 else 0.0
        self.log("train/vessel_fraction", fraction, batch_size=1)
        if fraction < COLLAPSE_FRACTION:
            self.collapsed_epochs.append(self.current_epoch)
            rank_zero_warn(
                f"epoch {self.current_epoch}: the generator collapsed (it calls {fraction:.2%} of training pixels vessel); "
                "raise gan.pixel_weight or lower the discriminator's learning rate"
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["collapsed_epochs"] = list(self.collapsed_epochs)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.collapsed_epochs = list(checkpoint.get("collapsed_epochs", []))

    def configure_optimizers(self):
        opt, gan = self.optimizer_config, self.gan_config
        betas = tuple(gan.betas)
        g_opt = torch.optim.Adam(self.model.parameters(), lr=opt.lr, betas=betas, weight_decay=opt.weight_decay)
        d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=gan.d_lr or opt.lr, betas=betas)
        return [g_opt, d_opt], [self.batch_schedule(g_opt), self.batch_schedule(d_opt)]
