"""The deep learner: text and image encoders + a registered head (``fluid.model``), trained with Lightning."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fluid.config import RunConfig
from fluid.data.dataset import IMAGE_PROBLEM, ColumnCells
from fluid.data.problems import image_problem
from fluid.learners.base import FitOptions, TrainingData, TrainOutcome
from fluid.learners.run_directory import RunDirectory
from fluid.learners.scores import UNREADABLE_EXAMPLES, Scores, unreadable_rows
from fluid.progress import progress_bar
from fluid.training.device import resolve_device


class DeepLearner:
    """A :class:`~fluid.training.network.MultimodalNetwork` for ``config`` and ``classes``."""

    has_floor = True  # a classical baseline that reads the same modalities is fitted beside it

    def __init__(self, config: RunConfig, classes: list[str], network) -> None:
        self.config = config
        self.classes = classes
        self.network = network

    # ------------------------------------------------------------------------------------------ building
    @staticmethod
    def recipe_inputs(config: RunConfig):
        """(the encoders' :class:`~fluid.training.recipe.EncoderSetup`, the head config's defaults)."""
        from fluid.model import head_config, head_spec
        from fluid.training.recipe import EncoderSetup

        spec = head_spec(config.model)
        return (EncoderSetup.from_config(config, uses_image=spec.reads_image, uses_text=spec.reads_text),
                dataclasses.asdict(head_config(config.model)))

    @classmethod
    def build(cls, config: RunConfig, classes: list[str], *, corpus: Sequence[str | None] | None = None,
              encoder_dir: Path | None = None) -> "DeepLearner":
        """A fresh network (encoders built from ``config``, or read from ``encoder_dir`` where saved there)."""
        from fluid.model import build_head, head_spec
        from fluid.training.network import MultimodalNetwork

        spec = head_spec(config.model)
        text_encoder = (_encoder("text", config, encoder_dir, max_length=config.max_text_length, corpus=corpus)
                        if spec.reads_text else None)
        image_encoder = _encoder("image", config, encoder_dir) if spec.reads_image else None
        head = build_head(config.model, len(classes),
                          image_dim=image_encoder.dim if image_encoder is not None else 768,
                          text_dim=text_encoder.dim if text_encoder is not None else 768,
                          image_has_cls=image_encoder.has_cls_token if image_encoder is not None else True,
                          text_has_cls=text_encoder.has_cls_token if text_encoder is not None else True,
                          **config.head)
        network = MultimodalNetwork(head, text_encoder, image_encoder, modality_dropout=config.modality_dropout,
                                    token_dropout=config.token_dropout or 0.0,
                                    image_augment=config.image_augment or 0.0,
                                    colour_augment=config.colour_augment or 0.0)
        return cls(config, classes, network)

    @classmethod
    def for_training(cls, config: RunConfig, classes: list[str], data: TrainingData, run: RunDirectory, *,
                     resume: bool) -> "DeepLearner":
        """:meth:`build`, seeded with the run's seed, with the training texts as the corpus of a tokenizer
        trained on them; a resumed run reads the encoders it saved."""
        import lightning.pytorch as pl

        pl.seed_everything(config.seed, workers=True, verbose=False)
        return cls.build(config, classes, corpus=ColumnCells(data.train["text"], "text"),
                         encoder_dir=run.encoders if resume else None)

    @classmethod
    def load(cls, run: RunDirectory, config: RunConfig, classes: list[str]) -> "DeepLearner":
        learner = cls.build(config, classes, encoder_dir=run.encoders)
        learner.load_weights(run.weights)
        learner.network.eval()
        return learner

    @property
    def model(self):
        return self.network

    @property
    def reads(self) -> tuple[bool, bool]:
        return self.network.spec.reads_image, self.network.spec.reads_text

    # ------------------------------------------------------------------------------------------ data
    def loader(self, frame: pd.DataFrame, image_root, *, shuffle: bool, drop_modality: str | None = None,
               corruption=None, features: dict | None = None, bucket: bool = False):
        """:func:`fluid.training.loaders.catalogue_loader` with this run's settings; ``bucket`` applies only
        when ``length_bucketing`` is on."""
        from fluid.training.loaders import catalogue_loader

        cfg = self.config
        label_map = {c: i for i, c in enumerate(self.classes)}
        return catalogue_loader(self.network, frame, image_root, label_map, batch_size=cfg.batch_size,
                                shuffle=shuffle, seed=cfg.seed, bucket=bucket and cfg.length_bucketing,
                                num_workers=cfg.num_workers, on_bad_row=cfg.on_bad_row, drop_modality=drop_modality,
                                corruption=corruption, features=features)

    def cached_features(self, frames: list[tuple[pd.DataFrame, object]], progress: bool) -> list[dict]:
        """Per (frame, image_root): the frozen encoders' features from the on-disk cache (built where missing),
        or ``{}`` when the cache is off or no encoder can be cached (see :mod:`fluid.training.features`)."""
        from fluid.encoders import FeatureCache
        from fluid.training.features import cache_root, cached_features

        root = cache_root(self.config.feature_cache)
        if root is None:
            return [{} for _ in frames]
        cache = FeatureCache(root, budget_bytes=int(self.config.feature_cache_budget_gb * 1024**3))
        return [cached_features(self.network, frame, image_root, cache, batch_size=self.config.batch_size,
                                progress=progress, workers=self.config.num_workers) for frame, image_root in frames]

    # ------------------------------------------------------------------------------------------ fitting
    def fit(self, data: TrainingData, run: RunDirectory, options: FitOptions) -> TrainOutcome:
        from fluid.training.blend import blends, fit_blend
        from fluid.training.trainer import train_network

        cfg = self.config
        self.network.to(resolve_device(cfg.device))  # the cache is built there; Lightning then trains
        train_features, val_features = self.cached_features(
            [(data.train, data.train_root), (data.val, data.val_root)], progress=options.progress)
        result = train_network(
            self.network, cfg, num_classes=len(self.classes), run_dir=run.path,
            # Lightning's DDP sampler swap cannot wrap a custom batch sampler: no bucketing across devices
            train_loader=self.loader(data.train, data.train_root, shuffle=True, features=train_features,
                                     bucket=not is_multi_device(options.devices)),
            val_loader=self.loader(data.val, data.val_root, shuffle=False, features=val_features),
            devices=options.devices, resume=options.resume, time_limit=options.time_limit,
            progress=options.progress,
        )
        outcome = TrainOutcome(best_epoch=result.best_epoch, epochs_run=result.epochs_run,
                               stopped_by_time=result.stopped_by_time, is_global_zero=result.is_global_zero)
        if not result.is_global_zero:
            return outcome
        for stage, frame, features in (("train", data.train, train_features), ("val", data.val, val_features)):
            problems = {**_cache_problems(features), **result.unreadable_images.get(stage, {})}
            outcome.unreadable_images[stage] = {"count": len(problems),
                                                "examples": unreadable_rows(frame, problems, UNREADABLE_EXAMPLES)}
        if blends(self.network.head):
            fitted = fit_blend(self.network, self.loader(data.val, data.val_root, shuffle=False,
                                                         features=val_features), resolve_device(cfg.device))
            outcome.blend = fitted.to_dict()
            if options.verbose:
                print(fitted.summary(), file=sys.stderr, flush=True)
        return outcome

    # ------------------------------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score(self, frame: pd.DataFrame, image_root, *, drop_modality: str | None = None,
              want_embedding: bool = False, corruption=None, progress: bool = False) -> Scores:
        device = self._ready()
        loader = self.loader(frame, image_root, shuffle=False, drop_modality=drop_modality, corruption=corruption)
        outputs = _Outputs(want_embedding)
        with progress_bar("scoring", len(frame), enabled=progress, transient=True) as advance:
            for batch in loader:
                outputs.add(self._forward(batch, device), batch)
                advance(len(batch["label"]))
        return outputs.scores(len(self.classes))

    @torch.no_grad()
    def score_items(self, texts: list, images: list) -> Scores:
        """Scores a few raw items in one forward pass, without a catalogue or a DataLoader (a server request):
        ``texts`` canonical (:func:`fluid.data.inputs.canonical_text`), ``images`` decoded RGB images, None where
        missing; at least one of the two per item."""
        from fluid.training.network import Collator

        batch = Collator.for_network(self.network).collate_items(texts, images)
        outputs = _Outputs(False)
        outputs.add(self._forward(batch, self._ready()), batch)
        return outputs.scores(len(self.classes))

    def _ready(self) -> torch.device:
        """The scoring device, with the network on it in eval mode (moved only when it is elsewhere: walking
        every module costs milliseconds, more than a small model's forward pass)."""
        device = resolve_device(self.config.device)
        current = next(self.network.parameters()).device
        if current.type != device.type or (device.index is not None and current.index != device.index):
            self.network.to(device)
        if self.network.training:
            self.network.eval()
        return device

    def _forward(self, batch: dict, device: torch.device):
        from lightning.fabric.utilities.apply_func import move_data_to_device

        return self.network(move_data_to_device(batch, device), aux_losses=False)

    def chosen_experts(self, routing: np.ndarray) -> list[dict]:
        top_k = self.network.head.config.top_k  # routing comes only from heads that declare experts
        order = [i for i in np.argsort(-routing, kind="stable")[:top_k] if routing[i] > 0]
        total = float(sum(routing[i] for i in order)) or 1.0
        return [{"expert": int(i), "weight": float(routing[i]) / total} for i in order]

    # ------------------------------------------------------------------------------------------ weights
    def saved_state(self) -> dict[str, torch.Tensor]:
        """The parameters and buffers worth saving: the head, plus any encoder that trains (a frozen pretrained
        encoder is reloaded from its source instead)."""
        keep = {"head"}
        for name in ("text_encoder", "image_encoder"):
            encoder = getattr(self.network, name)
            if encoder is not None and encoder.trainable:
                keep.add(name)
        state = self.network.state_dict()
        return {k: v.detach().cpu().contiguous().clone() for k, v in state.items() if k.split(".")[0] in keep}

    def save_assets(self, run: RunDirectory) -> None:
        """The encoders' tokenizer / image processor / config (and the weights of a saved backbone)."""
        if self.network.text_encoder is not None:
            self.network.text_encoder.save(run.encoders / "text")
        if self.network.image_encoder is not None:
            self.network.image_encoder.save(run.encoders / "image")

    def save_weights(self, run: RunDirectory) -> None:
        from safetensors.torch import save_file

        from fluid.atomic import atomic_path

        with atomic_path(run.weights) as tmp:
            save_file(self.saved_state(), str(tmp), metadata={"format": "pt", "fluid_model": self.config.model})

    def load_weights(self, path: Path) -> None:
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            raise ValueError(f"{path}: refused to load the weights: not a valid safetensors file (run directories "
                             f"hold safetensors only, never a pickle; the file may be truncated or replaced): "
                             f"{str(error).strip() or type(error).__name__}") from None
        missing, unexpected = self.network.load_state_dict(state, strict=False)
        saved_prefixes = {k.split(".")[0] for k in state}
        missing = [k for k in missing if k.split(".")[0] in saved_prefixes | {"head"}]
        if missing or unexpected:
            raise ValueError(f"{path} does not match the model in its run directory: missing {missing[:5]}, "
                             f"unexpected {list(unexpected)[:5]}")


def _encoder(modality: str, config: RunConfig, encoder_dir: Path | None, **build_options):
    """The ``modality`` encoder: read from ``encoder_dir/<modality>`` where a run saved it, else built from the
    config (its source, freezing and overrides) with ``build_options``."""
    from fluid.encoders import build_image_encoder, build_text_encoder, load_image_encoder, load_text_encoder

    saved = encoder_dir / modality if encoder_dir is not None else None
    if saved is not None and saved.exists():
        return (load_text_encoder if modality == "text" else load_image_encoder)(saved)
    build = build_text_encoder if modality == "text" else build_image_encoder
    return build(getattr(config, f"{modality}_encoder"), freeze=config.freeze,
                 train_top_layers=config.train_top_layers, **build_options,
                 **(config.encoder_overrides or {}).get(modality, {}))


class _Outputs:
    """Batches of head outputs gathered into one :class:`Scores`."""

    def __init__(self, want_embedding: bool) -> None:
        self.want_embedding = want_embedding
        self.probas, self.labels, self.embeddings, self.gates, self.loads, self.routings = [], [], [], [], [], []
        self.unreadable: dict[int, str] = {}
        self.n = 0

    def add(self, output, batch: dict) -> None:
        self.probas.append(_host(torch.softmax(output.logits.float(), dim=-1)))
        self.labels.append(batch["label"].numpy())
        if self.want_embedding:
            self.embeddings.append(_host(output.embedding))
        if output.gate is not None:
            self.gates.append(_host(output.gate))
        if output.expert_load is not None:
            self.loads.append(_host(output.expert_load) * len(batch["label"]))
        if output.routing is not None:
            self.routings.append(_host(output.routing))
        for position, problems in zip(batch["index"].tolist(), batch.get("problems", [])):
            reason = image_problem(problems)
            if reason is not None:
                self.unreadable[position] = reason
        self.n += len(batch["label"])

    def scores(self, n_classes: int) -> Scores:
        return Scores(
            proba=np.concatenate(self.probas) if self.probas else np.zeros((0, n_classes)),
            labels=np.concatenate(self.labels) if self.labels else np.zeros(0, dtype=np.int64),
            embedding=np.concatenate(self.embeddings) if self.embeddings else None,
            gate=np.concatenate(self.gates) if self.gates else None,
            expert_load=(np.sum(self.loads, axis=0) / max(self.n, 1)) if self.loads else None,
            routing=np.concatenate(self.routings) if self.routings else None,
            unreadable=self.unreadable,
        )


def _host(values: torch.Tensor) -> np.ndarray:
    """A float32 numpy copy of an output tensor, wherever it was computed."""
    return values.float().cpu().numpy()


def is_multi_device(devices) -> bool:
    """Whether Lightning's ``devices`` value means several processes (DDP)."""
    if isinstance(devices, (list, tuple)):
        return len(devices) > 1
    if isinstance(devices, int) or (isinstance(devices, str) and devices.lstrip("-").isdigit()):
        count = int(devices)
        return count > 1 or (count == -1 and torch.cuda.device_count() > 1)
    return devices == "auto" and torch.cuda.device_count() > 1


def _cache_problems(features: dict) -> dict[int, str]:
    """Frame position -> reason for the images the feature-cache build could not decode."""
    image = features.get("image")
    problems = getattr(image, "problems", None) or {}
    return {position: reason.removeprefix(IMAGE_PROBLEM) for position, reason in problems.items()}
