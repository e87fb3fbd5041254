"""The LightningModule: step logic only (loss, logging, optimiser). The network knows nothing of training."""

from __future__ import annotations

import math
from functools import partial

import lightning.pytorch as pl
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from fluid.data.problems import image_problem
from fluid.model.heads.fluid import FUSED_ONLY
from fluid.training.blend import BlendScores, blends
from fluid.training.network import MultimodalNetwork


class ClassificationModule(pl.LightningModule):
    """Trains a :class:`MultimodalNetwork` on its head's own objective (``head.loss``: λ_CE·CE + Σ weighted aux).

    Args:
        network: the network to train.
        num_classes: C.
        lr, weight_decay: AdamW settings of the head (paper: 2e-5, 0.01).
        encoder_lr: learning rate of trainable encoder parameters (None: ``lr``).
        warmup_steps: linear learning-rate warm-up (paper: none, 0).
        schedule: "constant" (paper: silent, so none) or "cosine" decay to 0 after the warm-up.
        seed: the random state (dropout, modality dropout) is re-seeded from (seed, step) at every step, so
            a run resumed from a checkpoint continues exactly as the uninterrupted run would.

    ``unreadable_images``: ``{"train"|"val": {dataset index: reason}}``, every image that failed to decode while
    this process trained or validated (the item went on without its image, as ``on_bad_row`` allows); each
    index once, however many epochs read it.

    A head that blends its classifiers (``unimodal_blend``) is validated as it will predict: at the end of each
    validation epoch the blend is fitted on that epoch's validation scores (:mod:`fluid.training.blend`) and
    ``val_accuracy`` / ``val_macro_f1`` are the blended model's, so early stopping and the best epoch follow
    the model that is kept, not its fused classifier alone.
    """

    def __init__(self, network: MultimodalNetwork, num_classes: int, *, lr: float = 2e-5,
                 encoder_lr: float | None = None, weight_decay: float = 0.01, warmup_steps: int = 0,
                 schedule: str = "constant", seed: int = 0):
        super().__init__()
        self.network = network
        self.lr = lr
        self.encoder_lr = lr if encoder_lr is None else encoder_lr
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
        self.schedule = schedule
        self.seed = seed
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro", ignore_index=-1)
        self.val_macro_f1 = MulticlassF1Score(num_classes, average="macro", ignore_index=-1)
        self.unreadable_images: dict[str, dict[int, str]] = {"train": {}, "val": {}}
        self.val_blend: BlendScores | None = BlendScores() if blends(network.head) else None

    def _record_problems(self, stage: str, batch: dict) -> None:
        problems = batch.get("problems") or []
        if not any(problems):
            return
        seen = self.unreadable_images[stage]
        for index, item_problems in zip(batch["index"].tolist(), problems):
            reason = image_problem(item_problems)
            if reason is not None:
                seen.setdefault(int(index), reason)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Frozen encoder weights stay out of checkpoints (they are reloaded from their source): a checkpoint of
        a head on frozen mBERT + ViT-B holds the head, not 1 GB of encoders."""
        frozen = self._frozen_parameter_names()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in frozen}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Puts this module's own frozen weights back into a checkpoint saved without them."""
        state = checkpoint["state_dict"]
        own = self.state_dict()
        for name in self._frozen_parameter_names() - set(state):
            state[name] = own[name]

    def _frozen_parameter_names(self) -> set[str]:
        return {name for name, p in self.named_parameters() if not p.requires_grad}

    def forward(self, batch: dict):
        return self.network(batch)

    def _losses(self, batch: dict, output) -> dict[str, torch.Tensor]:
        return self.network.head.loss(output, batch["label"])

    def on_fit_start(self) -> None:
        if self.val_blend is not None:  # validation fits the blend on the fused classifier's own scores
            self.network.head.blend_weights.copy_(torch.tensor(FUSED_ONLY))

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Per-step seeding (not per epoch: Lightning skips on_train_epoch_start when it resumes from an
        # end-of-epoch checkpoint), so dropout and modality dropout depend only on (seed, step, rank).
        torch.manual_seed(self.seed * 1_000_003 + self.global_step * 7_919 + self.global_rank)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self._record_problems("train", batch)
        output = self.network(batch)
        losses = self._losses(batch, output)
        batch_size = batch["label"].shape[0]
        self.log_dict({f"train_{k}": v.detach() for k, v in losses.items()}, prog_bar=False,
                      on_step=False, on_epoch=True, batch_size=batch_size, sync_dist=True)
        self.log("loss", losses["loss"].detach(), prog_bar=True, on_step=True, on_epoch=False,
                 batch_size=batch_size, logger=False)
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._record_problems("val", batch)
        output = self.network(batch)
        losses = self._losses(batch, output)
        batch_size = batch["label"].shape[0]
        self.log("val_loss", losses["loss"], on_epoch=True, batch_size=batch_size, sync_dist=True)
        if self.val_blend is not None:
            self.val_blend.add(output, batch["label"])  # scored at the epoch's end, once the blend is fitted
            return
        self.val_accuracy.update(output.logits, batch["label"])
        self.val_macro_f1.update(output.logits, batch["label"])
        self.log("val_accuracy", self.val_accuracy, on_epoch=True, prog_bar=True, batch_size=batch_size)
        self.log("val_macro_f1", self.val_macro_f1, on_epoch=True, prog_bar=True, batch_size=batch_size)

    def on_validation_epoch_end(self) -> None:
        if self.val_blend is None:
            return
        scores = self.val_blend.gathered(self.all_gather if self.trainer.world_size > 1 else None)
        self.val_blend = BlendScores()
        if scores is None:
            return
        fit, blended = scores.fit()
        self.val_accuracy.update(blended, scores.label)
        self.val_macro_f1.update(blended, scores.label)
        self.log("val_accuracy", self.val_accuracy.compute(), prog_bar=True)
        self.log("val_macro_f1", self.val_macro_f1.compute(), prog_bar=True)
        self.log("val_blend_image", fit.weights[1])
        self.log("val_blend_text", fit.weights[2])
        self.val_accuracy.reset()
        self.val_macro_f1.reset()

    def configure_optimizers(self):
        groups = parameter_groups(self.network, lr=self.lr, encoder_lr=self.encoder_lr,
                                  weight_decay=self.weight_decay)
        optimizer = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "constant" and self.warmup_steps <= 0:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, partial(lr_factor, warmup=self.warmup_steps, total=total, schedule=self.schedule))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


#: Parameter names (last component) never decayed, whatever their shape: learned tokens and temperatures, and
#: the stacked MoE experts' biases (E x h, so not caught by the 1-D rule).
NO_DECAY_NAMES = frozenset({"queries", "token", "logit_scale", "b1", "b2"})


def decays(name: str, parameter: torch.Tensor) -> bool:
    """Whether weight decay applies: to weight matrices, not to biases, norms, query / missing-modality tokens
    or the contrastive temperature (standard practice: decaying them pulls them to 0 for no benefit)."""
    return parameter.ndim >= 2 and name.rsplit(".", 1)[-1] not in NO_DECAY_NAMES


def parameter_groups(network: MultimodalNetwork, *, lr: float, encoder_lr: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups of the trainable parameters: (head | encoders) x (decayed | not decayed).

    The randomly initialised head learns at ``lr``; trainable encoder layers at ``encoder_lr``. Empty groups are
    left out; each group carries a ``name`` ("head", "head-no-decay", "encoders", "encoders-no-decay")."""
    groups: dict[str, dict] = {}
    for name, parameter in network.named_parameters():
        if not parameter.requires_grad:
            continue
        part = "head" if name.startswith("head.") else "encoders"
        decayed = decays(name, parameter)
        key = part if decayed else f"{part}-no-decay"
        group = groups.setdefault(key, {"name": key, "params": [], "lr": lr if part == "head" else encoder_lr,
                                        "weight_decay": weight_decay if decayed else 0.0})
        group["params"].append(parameter)
    return list(groups.values())


def lr_factor(step: int, *, warmup: int, total: int, schedule: str) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then constant or cosine decay to 0."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))
