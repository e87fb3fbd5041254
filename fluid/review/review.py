"""``fluid review``: cross-fitted probabilities → confident learning → label_issues.csv, noise rates, gallery."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .crossfit import cross_fit_proba
from .gallery import render_gallery
from .issues import class_noise_rates, detection_metrics, find_label_issues, read_corrupted_ids

__all__ = ["GALLERY_FILE", "ISSUES_FILE", "NOISE_FILE", "PROBA_FILE", "REVIEW_DIR", "SUMMARY_FILE",
           "review_catalogue"]

REVIEW_DIR = "review"  # default output folder inside the run directory; the web page looks there
ISSUES_FILE = "label_issues.csv"
NOISE_FILE = "noise_rates.csv"
GALLERY_FILE = "gallery.html"
SUMMARY_FILE = "review.json"
PROBA_FILE = "out_of_sample_proba.parquet"
ISSUE_COLUMNS = ["id", "given_label", "suggested_label", "score", "language", "label_source"]


def review_catalogue(run_dir: str | Path, data: Any, out: str | Path | None = None, *, folds: int = 4,
                     seed: int | None = None, truth: str | Path | None = None, gallery_items: int = 200,
                     progress: bool = True) -> dict:
    """Finds the items of ``data`` whose label is probably wrong.

    Args:
        run_dir: a trained run; its configuration (model, encoders, hyper-parameters, column options) is
            reused for every fold. Its weights are not used: they saw the labels being reviewed.
        data: the labelled catalogue (anything ``Classifier.fit`` reads; a GLAMI-1M folder's train split).
        out: output folder (default ``run_dir/review``).
        folds: K of the k-fold cross-fitting.
        seed: fold assignment and training seed (default: the run's).
        truth: a ``noisy_labels.csv`` sidecar of known corrupted labels; by default the one beside a synthetic
            GLAMI-layout catalogue is used when present. Training never reads it.
        gallery_items: how many of the top issues the HTML gallery shows (thumbnails are loaded for those only).

    Returns:
        The summary written to ``out/review.json``: ``n_items``, ``n_flagged``, ``folds``, ``seconds``,
        ``noise_rates`` and, with a truth file, ``detection_precision``, ``detection_recall``,
        ``precision_at_100`` (plus counts).
    """
    from fluid.api import Classifier, _natural_key
    from fluid.config import RunConfig

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REVIEW_DIR
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a FLUID run directory: config.yaml is missing")
    params = RunConfig.load(config_path).to_dict()
    columns = params.pop("columns")
    params.update(columns)
    reader = Classifier(**params)
    seed = reader.config.seed if seed is None else seed
    started = time.perf_counter()

    catalogue = reader._read(data, split="train", require_label=True)
    frame = catalogue.frame
    usable = frame["label"].notna() & Classifier._scorable(frame)
    frame = frame[usable]
    if len(frame) < folds * 2:
        raise ValueError(f"{catalogue.source}: only {len(frame)} labelled items with text or image; "
                         f"cross-fitting in {folds} folds needs at least {folds * 2}")
    given = frame["label"].astype(str)
    classes = sorted(set(given), key=_natural_key)
    if len(classes) < 2:
        raise ValueError(f"{catalogue.source}: review needs at least 2 labels; found {classes}")
    frame = frame.assign(image=_absolute_images(frame["image"], catalogue.image_root))
    label_ids = given.map({c: i for i, c in enumerate(classes)}).to_numpy()

    proba = cross_fit_proba({k: v for k, v in params.items() if k not in columns}, frame, classes, folds=folds,
                            seed=seed, progress=progress)
    issues = find_label_issues(label_ids, proba)
    noise = class_noise_rates(label_ids, proba, classes)

    order = issues.issue_positions
    table = pd.DataFrame({
        "id": frame["id"].to_numpy()[order],
        "given_label": given.to_numpy()[order],
        "suggested_label": np.asarray(classes, dtype=object)[issues.suggested[order]],
        "score": np.round(issues.score[order], 6),
        "language": _column(frame, "language")[order],
        "label_source": _column(frame, "label_source")[order],
    }, columns=ISSUE_COLUMNS)

    summary: dict[str, Any] = {
        "run_dir": str(run_dir), "data": str(catalogue.source), "n_items": len(frame),
        "n_flagged": int(issues.is_issue.sum()), "folds": folds, "seed": seed, "classes": classes,
        "out_of_sample_accuracy": float((proba.argmax(axis=1) == label_ids).mean()),
    }
    truth_path = Path(truth) if truth is not None else _sidecar(data)
    if truth_path is not None:
        summary.update(detection_metrics(frame["id"].tolist(), issues, read_corrupted_ids(truth_path)))
        summary["truth"] = str(truth_path)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["noise_rates"] = noise.to_dict(orient="records")

    out.mkdir(parents=True, exist_ok=True)
    shown = order[:gallery_items]
    _write_text(out / GALLERY_FILE, render_gallery(
        table.iloc[: len(shown)], frame["image"].iloc[shown], frame["text"].iloc[shown], summary, noise,
        title=f"Label review of {Path(str(catalogue.source)).name}"))
    _write_csv(out / ISSUES_FILE, table)
    _write_csv(out / NOISE_FILE, noise)
    proba_table = pd.DataFrame(proba, columns=classes)
    proba_table.insert(0, "id", frame["id"].astype(str).to_numpy())
    proba_table.insert(1, "given_label", given.to_numpy())
    tmp = out / (PROBA_FILE + ".tmp")
    proba_table.to_parquet(tmp, index=False)
    tmp.replace(out / PROBA_FILE)
    summary["files"] = {name: str(out / name)
                        for name in (ISSUES_FILE, NOISE_FILE, GALLERY_FILE, PROBA_FILE, SUMMARY_FILE)}
    _write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2))
    return summary


def _absolute_images(images: pd.Series, image_root) -> pd.Series:
    """Image paths relative to the catalogue's image root, made absolute so the folds read them without it."""
    if image_root is None:
        return images
    from fluid.data.images import is_zip_ref

    root = Path(image_root)
    return images.map(lambda v: str(root / v) if isinstance(v, str) and v and not is_zip_ref(v)
                      and not Path(v).is_absolute() else v)


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), None, dtype=object)
    return frame[name].astype(object).where(frame[name].notna(), None).to_numpy()


def _sidecar(data: Any) -> Path | None:
    from fluid.data import find_glami
    from fluid.data.synthetic import NOISY_LABELS_FILE

    if not isinstance(data, (str, Path)):
        return None
    location = find_glami(Path(data), strict=False)
    if location is None or location.kind != "dir":
        return None
    path = Path(location.root) / NOISY_LABELS_FILE
    return path if path.is_file() else None


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    tmp = path.with_name(path.name + ".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
