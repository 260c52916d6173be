"""GANModule: a generator (any registered segmentation model) trained against a discriminator, with
Lightning's manual optimization: per batch `d_steps` discriminator updates, then one generator update.

Validation, testing, checkpoint loading and export see only the generator (`self.model`), so a GAN run
is scored, predicted and evaluated exactly like a segmentation run.

Traps of manual optimization handled here:
- two optimizers stepping per batch make `global_step` advance d_steps + 1 times per batch: anything
  scheduled by batches (learning-rate schedules, DropBlock ramps, the per-step seed) uses `batch_index`;
- schedulers are stepped here, once per batch (Lightning does not step them under manual optimization);
- the discriminator scores real and fake pairs in one forward pass, so its BatchNorm sees one batch per
  backward (two forwards before one backward break DDP's buffer broadcast);
- backward only through `self.manual_backward`; clipping only through `self.clip_gradients`;
- under DDP each backward reaches only one network: the runner then uses find_unused_parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn

from retinalight.models import create_model
from retinalight.training.segmentation import SegmentationModule

DISCRIMINATOR_INPUTS = {"green": 1, "gray": 1, "rgb": 3}  # image channels the discriminator sees, besides the map
COLLAPSE_FRACTION = 0.005  # an epoch whose maps call fewer than 0.5% of pixels vessel (DRIVE: about 12%) is a collapse


class GANModule(SegmentationModule):
    """Adversarial vessel segmentation (Retina-GAN; V-GAN's losses).

    Args (besides SegmentationModule's):
        gan: {"discriminator": {"name", ...arguments}, "pixel_weight", "adversarial_weight", "adversarial_warmup",
            "d_steps", "d_lr", "betas", "discriminator_input", "clip_grad_norm"}. Generator loss = adversarial_weight x BCE(D(x,
            G(x)), real) + pixel_weight x the segmentation loss; pixel_weight 0 is the paper's literal minimax
            loss (V-GAN weighs the pixel term 10x the adversarial one: the default).
    """

    def __init__(self, gan: dict, **kwargs):
        super().__init__(**kwargs)
        self.automatic_optimization = False
        spec = dict(gan["discriminator"])
        channels = DISCRIMINATOR_INPUTS[gan.get("discriminator_input", "green")] + 1
        self.discriminator = create_model(spec.pop("name"), in_channels=channels, **spec)
        self.collapsed_epochs: list[int] = []
        self._vessel_share = torch.zeros(2, dtype=torch.float64)  # (vessel pixels, pixels) predicted this epoch

    @property
    def batch_index(self) -> int:
        """Batches trained so far (global_step counts optimizer steps: d_steps + 1 per batch)."""
        return self.global_step // (self.hparams.gan.get("d_steps", 1) + 1)

    @property
    def adversarial_weight(self) -> float:
        """gan.adversarial_weight, ramped linearly from 0 over the first gan.adversarial_warmup batches: a
        discriminator that beats an untrained generator at once otherwise drives its maps to all-background."""
        weight, warmup = self.hparams.gan.get("adversarial_weight", 1.0), self.hparams.gan.get("adversarial_warmup", 0)
        return weight * min(1.0, self.batch_index / warmup) if warmup else weight

    def discriminator_image(self, image: torch.Tensor) -> torch.Tensor:
        """The fundus channels the discriminator is conditioned on (the paper's is a 2-channel input)."""
        which = self.hparams.gan.get("discriminator_input", "green")
        if which == "rgb":
            return image
        if which == "green":
            return image[:, 1:2]
        return image.mean(dim=1, keepdim=True)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        gan = self.hparams.gan
        g_opt, d_opt = self.optimizers()
        image, vessel = batch["image"], batch["vessel"]
        condition = self.discriminator_image(image)
        logits = self(image, batch["fov"]).float()
        fake = torch.sigmoid(logits)
        real_label, fake_label = torch.ones(len(image), 1, device=image.device), torch.zeros(len(image), 1, device=image.device)

        # discriminator: real and fake pairs in one forward pass, generator output detached
        for _ in range(gan.get("d_steps", 1)):
            scores = self.discriminator(torch.cat([condition, condition]), torch.cat([vessel, fake.detach()]).to(condition.dtype)).float()
            d_loss = F.binary_cross_entropy_with_logits(scores, torch.cat([real_label, fake_label]))
            d_opt.zero_grad()
            self.manual_backward(d_loss)
            self._clip(d_opt)
            d_opt.step()

        # generator: through the discriminator with the discriminator's parameters frozen
        self.toggle_optimizer(g_opt)
        adversarial = F.binary_cross_entropy_with_logits(self.discriminator(condition, fake.to(condition.dtype)).float(), real_label)
        pixel = self.loss(logits, vessel)
        g_loss = self.adversarial_weight * adversarial + gan.get("pixel_weight", 10.0) * pixel
        g_opt.zero_grad()
        self.manual_backward(g_loss)
        self._clip(g_opt)
        g_opt.step()
        self.untoggle_optimizer(g_opt)

        for scheduler in self.lr_schedulers() or []:
            scheduler.step()
        with torch.no_grad():
            real_score, fake_score = torch.sigmoid(scores).chunk(2)
            self._vessel_share += torch.tensor([float((fake > 0.5).sum()), float(fake.numel())], dtype=torch.float64)
        size = len(image)
        self.log_dict(
            {
                "train/d_loss": d_loss,
                "train/g_loss": g_loss,
                "train/g_adversarial": adversarial,
                "train/loss": pixel,
                "train/adversarial_weight": self.adversarial_weight,
            },
            prog_bar=False,
            on_step=True,
            on_epoch=True,
            batch_size=size,
        )
        self.log("train/d_acc_real", (real_score > 0.5).float().mean(), on_step=False, on_epoch=True, batch_size=size)
        self.log("train/d_acc_fake", (fake_score < 0.5).float().mean(), on_step=False, on_epoch=True, batch_size=size)

    def _clip(self, optimizer) -> None:
        value = self.hparams.gan.get("clip_grad_norm")
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
        opt, gan = self.hparams.optimizer, self.hparams.gan
        betas = tuple(gan.get("betas", (0.5, 0.999)))
        lr = opt.get("lr", 5e-4)
        g_opt = torch.optim.Adam(self.model.parameters(), lr=lr, betas=betas, weight_decay=opt.get("weight_decay", 0.0))
        d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=gan.get("d_lr") or lr, betas=betas)
        return [g_opt, d_opt], [self.batch_schedule(g_opt), self.batch_schedule(d_opt)]
