"""Runs Lightning for one network: checkpoints, resume, time limit, early stopping, CSV log.

Lightning is the engine (loop, checkpoints, mixed precision, DDP); this module only configures it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar, Timer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from fluid.atomic import atomic_path
from fluid.config import RunConfig
from fluid.progress import LIGHTNING_CONSOLE
from fluid.training.checkpoints import BEST_NAME, CHECKPOINT_DIR, LAST_NAME, last_checkpoint, load_checkpoint
from fluid.training.module import ClassificationModule
from fluid.training.network import MultimodalNetwork

#: Lightning loggers whose informational lines (devices found, and the like) are silenced while FLUID trains.
QUIET_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric")
#: Lightning warnings that do not apply to FLUID's loaders (worker count chosen by the run; pytree internals).
#: Frozen encoder layers stay in eval mode on purpose (fluid.encoders.base), which Lightning warns about.
QUIET_WARNINGS = (".*does not have many workers.*", ".*LeafSpec.*",
                  ".*module\\(s\\) in eval mode at the start of training.*")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silences :data:`QUIET_LOGGERS` below WARNING and :data:`QUIET_WARNINGS` for the duration of one fit; the
    caller's logging levels and warning filters are restored afterwards (nothing changes at import)."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@dataclass
class TrainResult:
    best_epoch: int | None
    epochs_run: int
    best_score: float | None
    stopped_by_time: bool
    is_global_zero: bool = True  # False in the other processes of a multi-device (DDP) run
    #: {"train"|"val": {dataset index: reason}}: images that failed to decode while training (this process's
    #: share of the data under DDP); see ClassificationModule.unreadable_images.
    unreadable_images: dict[str, dict[int, str]] = field(default_factory=dict)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, then renames it into place (``os.replace``), so a
    crash or ``kill -9`` mid-save leaves the previous checkpoint intact, never a half-written one. (Lightning's
    own save stages the file in the system temp folder and moves it, which copies across file systems.)"""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())


def _monitor_mode(monitor: str) -> str:
    return "min" if monitor.endswith("loss") else "max"


def _log_version(log_dir: Path, resume: bool) -> str:
    """A fresh run logs to log/metrics.csv; each resumption to log/resumed-N/metrics.csv, because Lightning's
    CSV logger deletes an existing metrics file and the log of the interrupted part must not be lost."""
    if not resume:
        return ""
    n = 1
    while (log_dir / f"resumed-{n}").exists():
        n += 1
    return f"resumed-{n}"


def train_network(network: MultimodalNetwork, cfg: RunConfig, *, num_classes: int, run_dir: Path,
                  train_loader, val_loader, devices="auto", resume: bool = False,
                  time_limit: float | None = None, progress: bool = True) -> TrainResult:
    """Trains ``network`` in place and leaves the best validation epoch's weights in it.

    Checkpoints go to ``run_dir/checkpoints`` (``last.ckpt`` every epoch and on interruption, ``best.ckpt``
    for the best ``cfg.monitor``); the per-epoch log to ``run_dir/log/metrics.csv``.
    """
    module = ClassificationModule(network, num_classes, lr=cfg.lr, encoder_lr=cfg.encoder_lr,
                                  weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
                                  schedule=cfg.schedule, seed=cfg.seed)
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    mode = _monitor_mode(cfg.monitor)
    best = ModelCheckpoint(dirpath=checkpoint_dir, filename=BEST_NAME, monitor=cfg.monitor, mode=mode,
                           save_top_k=1, enable_version_counter=False, auto_insert_metric_name=False)
    # Lightning's save_last only writes when the best improves; this one writes every epoch and on a crash.
    last = ModelCheckpoint(dirpath=checkpoint_dir, filename=LAST_NAME, monitor=None, save_top_k=1,
                           save_on_exception=True, enable_version_counter=False, auto_insert_metric_name=False)
    callbacks = [best, last]
    if cfg.patience:
        callbacks.append(EarlyStopping(monitor=cfg.monitor, mode=mode, patience=cfg.patience))
    timer = None
    if time_limit is not None:
        timer = Timer(duration=timedelta(seconds=float(time_limit)), interval="epoch", verbose=False)
        callbacks.append(timer)
    with quiet_lightning():
        trainer = _fit(module, cfg, run_dir, callbacks, train_loader, val_loader, devices=devices, resume=resume,
                       progress=progress)
    best_path = Path(best.best_model_path) if best.best_model_path else None
    best_epoch = None
    if best_path is not None and best_path.exists():
        checkpoint = load_checkpoint(best_path)
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"])
        best_epoch = int(checkpoint.get("epoch", 0)) + 1
    network.cpu()
    score = best.best_model_score
    stopped_by_time = bool(timer is not None and trainer.current_epoch < cfg.epochs and trainer.should_stop)
    return TrainResult(best_epoch=best_epoch, epochs_run=int(trainer.current_epoch),
                       best_score=float(score) if score is not None else None, stopped_by_time=stopped_by_time,
                       is_global_zero=trainer.is_global_zero, unreadable_images=module.unreadable_images)


def _fit(module: ClassificationModule, cfg: RunConfig, run_dir: Path, callbacks: list, train_loader, val_loader, *,
         devices, resume: bool, progress: bool) -> pl.Trainer:
    """Builds the Lightning trainer and runs ``fit`` (from ``last.ckpt`` when resuming); returns the trainer."""
    on_cpu = not torch.cuda.is_available()
    trainer = pl.Trainer(
        max_epochs=cfg.epochs,
        accelerator="auto",
        devices=devices,
        precision=cfg.precision,
        callbacks=[*callbacks, RichProgressBar(console_kwargs=LIGHTNING_CONSOLE)] if progress else callbacks,
        logger=CSVLogger(str(run_dir), name="log", version=_log_version(run_dir / "log", resume)),
        deterministic=True if on_cpu else "warn",
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(10, len(train_loader))),
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
    )
    ckpt_path = str(last_checkpoint(run_dir)) if resume else None
    if ckpt_path is not None:
        load_checkpoint(Path(ckpt_path))  # refuse a bad file with a clear error before Lightning reads it
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt_path,
                weights_only=True if resume else None)
    return trainer
