"""``fluid experiment paper``: every system of the paper's Tables 1-3, MoLT and the classical baselines,
trained on one split with one protocol, evaluated once on the test split, with and without each modality.

Protocol, for every row: train on ``train``, choose the best epoch on ``val``, evaluate ``test`` once (full
input, image removed, text removed). The split is made once (GLAMI-1M: its official test split; any other
catalogue: a seeded stratified test split) and written to ``OUT/split.csv``; validation is a seeded stratified
share of train, the same for every row and seed.

Resumable: each finished row is written atomically to ``OUT/rows/<key>.json`` with a fingerprint of its
configuration and of the split; a rerun reuses every row whose fingerprint matches, and continues an
interrupted deep row from its last checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from fluid.atomic import atomic_path, write_json
from fluid.model import available_models, head_spec, is_classical
from fluid.training.checkpoints import last_checkpoint

log = logging.getLogger("fluid")

SCHEMA_VERSION = 1
#: Part of every row's fingerprint: rows trained by older model code are trained again, not reused. 2: heads
#: lost their own modality dropout (MoLT's 0.1 stacked on the run's, so its "base" rows were not plain), MoLT's
#: CCA moved before the cross-attention, Q-Transform queries start at std 0.3.
ROW_REVISION = 2
SUMMARY_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "top5_accuracy")
EVALUATIONS = {"test": None, "without_image": "image", "without_text": "text"}
MULTIMODAL_DEEP = ("fluid", "fluid-no-contrastive", "fluid-no-qtransform", "fluid-no-gating",
                   "fluid-no-bottleneck", "fluid-no-moe", "early-fusion", "improved-attention", "blip2", "molt")
MODALITY_DROPOUT_QUICK = ("fluid", "molt", "tfidf-image-logreg")
CANONICAL_COLUMNS = ("id", "text", "image", "label", "language", "label_source")


def all_systems() -> list[str]:
    """Every registered model: the deep heads, then the classical models."""
    return available_models()


@dataclass
class ExperimentSettings:
    """What ``fluid experiment paper`` was asked to do (written to results.json as ``settings``)."""

    out: str
    data: str | None = None            # None: the built-in synthetic catalogue, written to OUT/data
    seeds: int = 3
    models: list[str] | None = None    # None: every system
    quick: bool = False
    items: int | None = None           # synthetic catalogue size (default 2000; 1200 with quick)
    epochs: int | None = None          # deep rows (default 10; 6 with quick)
    text_encoder: str = "tiny"
    image_encoder: str = "tiny"
    modality_dropout: float = 0.3      # rate of the "+ modality dropout" training variant
    dropout_models: list[str] | None = None  # systems that get that variant (default: all multimodal ones;
    #                                          with quick: fluid, molt, tfidf-image-logreg)
    split_seed: int = 0
    test_fraction: float = 0.2         # non-GLAMI catalogues
    val_fraction: float = 0.1
    columns: dict = field(default_factory=dict)  # read_catalogue column options for a table file

    def resolved(self) -> "ExperimentSettings":
        """A copy with every default filled in."""
        s = copy.deepcopy(self)
        s.items = s.items or (1200 if s.quick else 2000)
        s.epochs = s.epochs or (6 if s.quick else 10)
        systems = all_systems()
        s.models = list(s.models) if s.models else systems
        unknown = [m for m in s.models if m not in systems]
        if unknown:
            raise ValueError(f"unknown systems {unknown}; choose from {systems}")
        if s.dropout_models is None:
            s.dropout_models = list(MODALITY_DROPOUT_QUICK if s.quick else
                                    [*MULTIMODAL_DEEP, "tfidf-image-logreg"])
        s.dropout_models = [m for m in s.dropout_models if m in s.models]
        if s.seeds < 1:
            raise ValueError("seeds must be >= 1")
        return s


@dataclass
class Row:
    """One trained model: a system, its training variant, a seed and the full run configuration."""

    system: str        # the name in the tables: the model name, + " +md" for the modality-dropout variant
    model: str
    variant: str       # "base" | "modality-dropout"
    seed: int
    config: dict       # RunConfig fields except columns

    @property
    def key(self) -> str:
        return f"{self.system.replace(' ', '').replace('+', '_')}__seed{self.seed}"

    def fingerprint(self, split_hash: str) -> str:
        payload = json.dumps({"model": self.model, "config": self.config, "split": split_hash,
                              "revision": ROW_REVISION}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def row_config(model: str, settings: ExperimentSettings, *, seed: int, modality_dropout: float) -> dict:
    """The run configuration of one row.

    Deep rows: :func:`fluid.config.demo_config` (small offline encoders; the ``auto`` recipe sizes the head and
    the optimiser) with the experiment's epochs, the paper's λ2 (contrastive) = 1/3 — not auto's 0 for encoders
    trained from scratch, so that "w/o contrastive" against FLUID measures the contrastive term — no modality
    dropout in the base variant (the paper has none) and no floor (the classical rows are the floor).
    Classical rows: their default options.

    ``modality_dropout`` here is the only modality dropout a row trains with (heads have none of their own), so
    the value stored with the row is what it was trained with.
    """
    from fluid.config import RunConfig, demo_config

    if is_classical(model):
        config = RunConfig(model=model, head={}, text_encoder="none", image_encoder="none", epochs=1,
                           seed=seed, modality_dropout=modality_dropout, val_fraction=settings.val_fraction)
    else:
        has_contrastive = "contrastive_weight" in head_spec(model).config_fields
        config = demo_config(model, seed=seed, epochs=settings.epochs, modality_dropout=modality_dropout,
                             val_fraction=settings.val_fraction, floor=False,
                             head={"contrastive_weight": 1.0 / 3.0} if has_contrastive else {})
        for modality, name in (("text", settings.text_encoder), ("image", settings.image_encoder)):
            setattr(config, f"{modality}_encoder", name)
            if name != "tiny":
                config.encoder_overrides.pop(modality, None)
    values = config.to_dict()
    values.pop("columns")
    return values


def plan_rows(settings: ExperimentSettings) -> list[Row]:
    """Every row of the experiment, in training order. Classical models are deterministic: one row (seed 0)."""
    rows = []
    for model in settings.models:
        seeds = [0] if is_classical(model) else range(settings.seeds)
        variants = [("base", 0.0)]
        if model in settings.dropout_models:
            variants.append(("modality-dropout", settings.modality_dropout))
        for variant, rate in variants:
            system = model if variant == "base" else f"{model} +md"
            for seed in seeds:
                rows.append(Row(system, model, variant, seed,
                                row_config(model, settings, seed=seed, modality_dropout=rate)))
    return rows


# ------------------------------------------------------------------------------------------------- data
@dataclass
class ExperimentData:
    """The fixed split: canonical frames (columns of :data:`CANONICAL_COLUMNS`)."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    kind: str          # "synthetic" | "glami" | "catalogue"
    split: str         # "official" | "seeded-stratified"
    source: str

    @property
    def split_hash(self) -> str:
        digest = hashlib.sha256()
        for name, frame in (("train", self.train), ("val", self.val), ("test", self.test)):
            digest.update(name.encode())
            digest.update("\x00".join(map(str, frame["id"])).encode("utf-8"))
            digest.update("\x00".join(map(str, frame["label"])).encode("utf-8"))
        return digest.hexdigest()[:16]

    def describe(self) -> dict:
        return {"kind": self.kind, "source": self.source, "split": self.split, "n_train": len(self.train),
                "n_val": len(self.val), "n_test": len(self.test),
                "n_classes": int(self.train["label"].astype(str).nunique()), "split_file": "split.csv",
                "split_hash": self.split_hash}


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.reindex(columns=list(CANONICAL_COLUMNS)).astype(object)
    out = out.where(out.notna(), None)
    out["id"] = out["id"].astype(str)
    return out.reset_index(drop=True)


def prepare_data(settings: ExperimentSettings, out: Path) -> ExperimentData:
    """Reads (or writes, for the synthetic default) the catalogue and makes the one split of the experiment."""
    from fluid.data import find_glami, read_catalogue, stratified_split, write_synthetic

    if settings.data is None:
        data_dir = out / "data"
        marker = data_dir / "synthetic.json"
        wanted = {"items": settings.items, "seed": settings.split_seed}
        if not marker.exists() or json.loads(marker.read_text(encoding="utf-8")) != wanted:
            write_synthetic(data_dir, items=settings.items, seed=settings.split_seed, overwrite=True)
            write_json(marker, wanted)
        path, kind = data_dir, "synthetic"
    else:
        path = Path(settings.data)
        kind = "glami" if find_glami(path, strict=False) is not None else "catalogue"
    if kind in ("synthetic", "glami"):
        train = read_catalogue(path, split="train", require_label=True).frame
        test = read_catalogue(path, split="test", require_label=True).frame
        split = "official"
    else:
        frame = read_catalogue(path, require_label=True, **settings.columns).frame
        train, test = stratified_split(frame, val_fraction=settings.test_fraction, seed=settings.split_seed)
        split = "seeded-stratified"
    train, val = stratified_split(train, val_fraction=settings.val_fraction, seed=settings.split_seed)
    data = ExperimentData(_canonical(train), _canonical(val), _canonical(test), kind, split, str(path))
    split_table = pd.concat([pd.DataFrame({"id": f["id"], "label": f["label"], "split": name})
                             for name, f in (("train", data.train), ("val", data.val), ("test", data.test))])
    with atomic_path(out / "split.csv") as tmp:
        split_table.to_csv(tmp, index=False)
    return data


# ------------------------------------------------------------------------------------------------- rows
def _summary(metrics: dict) -> dict:
    return {k: metrics[k] for k in (*SUMMARY_METRICS, "n_items", "n_skipped")}


def _count_parameters(classifier) -> tuple[int, int]:
    """(all, trainable) parameters of the trained model (encoders + head; classical: the regression weights)."""
    network = classifier.network
    if is_classical(classifier.config.model):
        return network.num_parameters, network.num_parameters
    params = list(network.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def _classifier(row: Row, run_dir: Path):
    """The row's classifier, reading the experiment's canonical frames."""
    from fluid import Classifier
    from fluid.config import Columns, RunConfig

    columns = Columns(id="id", language="language", label_source="label_source")
    return Classifier.from_config(RunConfig.from_dict({**row.config, "columns": columns}), path=run_dir)


def train_and_evaluate(row: Row, data: ExperimentData, run_dir: Path, *, progress: bool) -> dict:
    """Trains one row into ``run_dir`` and evaluates it on the test split three times (full input, image
    removed, text removed). Returns the row record stored in ``rows/<key>.json``."""
    resume = last_checkpoint(run_dir).exists() and not is_classical(row.model)
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    classifier = _classifier(row, run_dir)
    started = time.perf_counter()
    try:
        classifier.fit(data.train, data.val, resume=resume, progress=progress)
    except Exception as error:  # noqa: BLE001 - a stale checkpoint: train this row again from the start
        if not resume:
            raise
        log.warning("row %s: could not resume from %s (%s); training it again", row.key, run_dir, error)
        shutil.rmtree(run_dir)
        classifier = _classifier(row, run_dir)
        started = time.perf_counter()
        classifier.fit(data.train, data.val, progress=progress)
    train_seconds = time.perf_counter() - started
    evaluations, items_per_second = {}, None
    for name, drop in EVALUATIONS.items():
        started = time.perf_counter()
        metrics = classifier.evaluate(data.test, drop_modality=drop)
        seconds = time.perf_counter() - started
        if drop is None:
            items_per_second = metrics["n_items"] / max(seconds, 1e-9)
        evaluations[name] = _summary(metrics)
    total, trainable = _count_parameters(classifier)
    return {
        "system": row.system, "model": row.model, "variant": row.variant, "seed": row.seed,
        "family": head_spec(row.model).kind, "config": row.config,
        "validation": _summary(classifier.metrics_["validation"]), "best_epoch": classifier.metrics_["best_epoch"],
        **evaluations, "parameters": total, "trainable_parameters": trainable,
        "train_seconds": train_seconds, "inference_items_per_second": items_per_second,
        "run_dir": str(run_dir),
    }


def run_rows(rows: list[Row], data: ExperimentData, out: Path, *, progress: bool = False,
             on_row: Callable[[Row, str], None] | None = None) -> tuple[list[dict], int]:
    """Runs every row not already finished (same fingerprint in ``out/rows/<key>.json``).

    Returns (every row's record, the number of rows trained by this call). ``on_row(row, status)`` is called
    with status ``"reused"`` or ``"trained"`` after each row.
    """
    rows_dir = out / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    split_hash = data.split_hash
    records, trained = [], 0
    for row in rows:
        path = rows_dir / f"{row.key}.json"
        fingerprint = row.fingerprint(split_hash)
        if path.exists():
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("fingerprint") == fingerprint:
                records.append(stored)
                if on_row:
                    on_row(row, "reused")
                continue
            log.warning("row %s: %s was made with another configuration or split; training it again",
                        row.key, path)
        record = train_and_evaluate(row, data, out / "runs" / row.key, progress=progress)
        record["fingerprint"] = fingerprint
        write_json(path, record)
        records.append(record)
        trained += 1
        if on_row:
            on_row(row, "trained")
    return records, trained


# ------------------------------------------------------------------------------------------------- aggregate
def _stats(values: list[float]) -> dict:
    array = np.asarray([v for v in values if v is not None], dtype=float)
    if array.size == 0:
        return {"mean": None, "std": None, "values": []}
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
            "values": array.tolist()}


def aggregate(records: list[dict]) -> dict[str, dict]:
    """system -> mean ± std over seeds of every summary metric, for each evaluation, plus cost figures and the
    paper's numbers (where the paper has the system) and our difference to them."""
    from fluid.experiment.paper import PAPER_METRICS, PAPER_RESULTS, PAPER_ROWS

    systems: dict[str, dict] = {}
    for system in dict.fromkeys(r["system"] for r in records):
        group = [r for r in records if r["system"] == system]
        first = group[0]
        entry = {"model": first["model"], "variant": first["variant"], "family": first["family"],
                 "config": first["config"], "seeds": [r["seed"] for r in group],
                 "parameters": first["parameters"], "trainable_parameters": first["trainable_parameters"],
                 "train_seconds": _stats([r["train_seconds"] for r in group]),
                 "inference_items_per_second": _stats([r["inference_items_per_second"] for r in group])}
        for evaluation in ("validation", *EVALUATIONS):
            entry[evaluation] = {m: _stats([r[evaluation][m] for r in group]) for m in SUMMARY_METRICS}
        entry["drop"] = {name: {m: entry["test"][m]["mean"] - entry[name][m]["mean"]
                                for m in ("accuracy", "macro_f1")}
                         for name in ("without_image", "without_text")}
        paper = PAPER_RESULTS.get(first["model"]) if first["variant"] == "base" else None
        entry["paper"] = ({"row": PAPER_ROWS[first["model"]][0], "table": PAPER_ROWS[first["model"]][1],
                           **paper} if paper else None)
        entry["difference"] = ({m: entry["test"][m]["mean"] - paper[m] for m in PAPER_METRICS}
                               if paper else None)
        systems[system] = entry
    return systems


def run_experiment(settings: ExperimentSettings, *, progress: bool = False,
                   on_row: Callable[[Row, str], None] | None = None) -> dict:
    """Runs (or resumes) the whole experiment; writes OUT/results.json, OUT/results.md and the plot.
    Returns the results.json payload."""
    from fluid.experiment.claims import evaluate_claims
    from fluid.experiment.paper import PAPER_RESULTS, PAPER_SOURCE
    from fluid.experiment.report import plot_paper_vs_ours, write_results_markdown

    started = time.perf_counter()
    settings = settings.resolved()
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(settings, out)
    rows = plan_rows(settings)
    records, trained = run_rows(rows, data, out, progress=progress, on_row=on_row)
    systems = aggregate(records)
    base_scores = {name: entry["test"] for name, entry in systems.items() if entry["variant"] == "base"}
    results = {
        "schema_version": SCHEMA_VERSION,
        "settings": asdict(settings),
        "data": data.describe(),
        "protocol": ("train on train; best epoch on val (deep rows); test split evaluated once per row with the "
                     "full input, with the image removed and with the text removed"),
        "paper": {"source": PAPER_SOURCE, "results": PAPER_RESULTS},
        "systems": systems,
        "claims": evaluate_claims(base_scores),
        "rows": [f"rows/{row.key}.json" for row in rows],
        "wall_seconds": time.perf_counter() - started,
        "rows_trained_this_run": trained,
    }
    plot = plot_paper_vs_ours(systems, out / "paper_vs_ours.png")
    results["plot"] = plot.name if plot is not None else None
    write_json(out / "results.json", results)
    write_results_markdown(results, out / "results.md")
    return results
