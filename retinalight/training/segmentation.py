"""SegmentationModule: a thin LightningModule around any registered model, BCE on logits, Adam."""

from __future__ import annotations

import dataclasses
import math

import lightning as L
import torch
from torch import nn

from retinalight.config import EvaluationConfig, LossConfig, ModelConfig, OptimizerConfig, section
from retinalight.data.datamodules import region_of
from retinalight.metrics.segmentation import exact_counting_kernels, metric_collection, select_pixels
from retinalight.models.blocks import DropBlock


class SegmentationLoss(nn.Module):
    """BCE on logits (optionally weighting vessel pixels), plus an optional Dice term (smp's DiceLoss)."""

    def __init__(self, pos_weight: float | None, dice_weight: float):  # LossConfig's fields (their defaults live there)
        super().__init__()
        weight = torch.tensor([pos_weight]) if pos_weight else None
        self.bce = nn.BCEWithLogitsLoss(pos_weight=weight)
        self.dice_weight = dice_weight
        if dice_weight:
            from segmentation_models_pytorch.losses import DiceLoss

            self.dice = DiceLoss(mode="binary", from_logits=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.bce(logits, target)
        return loss + self.dice_weight * self.dice(logits, target) if self.dice_weight else loss


class SegmentationModule(L.LightningModule):
    """Train a vessel segmentation network.

    Args are the typed config sections (`retinalight.config`) or the plain dicts a checkpoint stores: they are
    saved as dicts in the checkpoint's hyper-parameters and rebuild the model; their defaults live in the sections.
        model: ModelConfig, {"name": registered model, "kwargs": {...}}.
        loss: LossConfig (SegmentationLoss arguments).
        optimizer: OptimizerConfig: Adam with a step schedule by epoch ("multistep", as the paper) or warm-up +
            cosine by step ("cosine"); DropBlock's rate ramps linearly from 0 over the first `drop_ramp` share of
            the steps, as the DropBlock paper recommends (0: the full rate from the start, as the SA-UNet code).
        evaluation: EvaluationConfig: validation uses the first protocol.
        preprocess, resize: how the data prepared images, kept in the checkpoint so `predict` and `evaluate --ckpt`
            prepare them alike.
        seed: base seed; each step reseeds torch from (seed, step, rank), so DropBlock masks do not depend on
            whether the run was resumed (nor on what else drew random numbers before).
        channels_last, compile: speed switches (`retinalight.hardware` resolves them).
    """

    def __init__(
        self,
        model: ModelConfig | dict,
        loss: LossConfig | dict,
        optimizer: OptimizerConfig | dict,
        evaluation: EvaluationConfig | dict,
        preprocess: str | dict | None = None,
        resize: int | None = None,
        seed: int = 0,
        channels_last: bool = False,
        compile: bool = False,
        **extra,
    ):
        super().__init__()
        given = {"model": model, "loss": loss, "optimizer": optimizer, "evaluation": evaluation, **extra}
        plain = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in given.items()}
        self.save_hyperparameters(
            {**plain, "preprocess": preprocess, "resize": resize, "seed": seed, "channels_last": channels_last, "compile": compile}
        )
        self.model_config = section(ModelConfig, model)
        self.optimizer_config = section(OptimizerConfig, optimizer)
        self.evaluation_config = section(EvaluationConfig, evaluation)
        self.model = self.model_config.build()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if compile:
            self.model = torch.compile(self.model)
        self.loss = SegmentationLoss(**dataclasses.asdict(section(LossConfig, loss)))
        self.protocol = self.evaluation_config.protocols[0]
        self.val_metrics = metric_collection(self.evaluation_config.threshold, self.evaluation_config.val_auc_thresholds, prefix="val/")

    def forward(self, image: torch.Tensor, fov: torch.Tensor | None = None) -> torch.Tensor:
        if self.hparams.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.model(image, fov)

    @property
    def batch_index(self) -> int:
        """Batches trained so far, what seeds and schedules count (one optimizer step per batch here)."""
        return self.global_step

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        torch.manual_seed(self.hparams.seed * 1_000_003 + self.batch_index * 7919 + self.global_rank)
        ramp = self.optimizer_config.drop_ramp * self.trainer.estimated_stepping_batches
        scale = min(1.0, self.batch_index / ramp) if ramp > 0 else 1.0
        for module in self.model.modules():
            if isinstance(module, DropBlock):
                module.scale = scale

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"], batch["fov"])
        loss = self.loss(logits.float(), batch["vessel"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(logits))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["image"], batch["fov"]).float()
        self.log("val/loss", self.loss(logits, batch["vessel"]), batch_size=len(logits), sync_dist=True)
        for i in range(len(logits)):
            region = region_of(batch["region"], i)
            prob, target = select_pixels(
                region.crop(torch.sigmoid(logits[i, 0])), region.crop(batch["vessel"][i, 0]), region.crop(batch["fov"][i, 0]), self.protocol
            )
            with exact_counting_kernels():
                self.val_metrics.update(prob, target.long())
        self.log_dict(self.val_metrics, prog_bar=False, batch_size=len(logits))
        self.log("val_auc", self.val_metrics["auc"], prog_bar=True, logger=False, batch_size=len(logits))

    def configure_optimizers(self):
        opt = self.optimizer_config
        optimizer = torch.optim.Adam(self.model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
        if opt.schedule == "cosine":
            schedule = warmup_cosine(optimizer, opt.warmup_steps, int(self.trainer.estimated_stepping_batches))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=opt.milestones, gamma=opt.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}

    def batch_schedule(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        """The configured schedule as one to step once per batch (for manual optimization): warm-up +
        cosine, or the multistep schedule with its epoch milestones converted to batches."""
        opt = self.optimizer_config
        total = int(self.trainer.estimated_stepping_batches)
        if opt.schedule == "cosine":
            return warmup_cosine(optimizer, opt.warmup_steps, total)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs))
        milestones, gamma = [m * per_epoch for m in opt.milestones], opt.gamma
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda batch: gamma ** sum(batch >= m for m in milestones))


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up from lr/10 over `warmup_steps`, then cosine decay to 0 at `total_steps` (per step)."""
    warmup_steps = min(warmup_steps, total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return 0.1 + 0.9 * step / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
