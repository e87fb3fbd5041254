"""``fluid review``: cross-fitted probabilities → confident learning → label_issues.csv, noise rates, gallery."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fluid.atomic import atomic_path, write_json_atomic, write_text_atomic

from .crossfit import cross_fit_proba
from .gallery import render_gallery
from .issues import (class_noise_rates, detection_metrics, fdr_flags, find_label_issues, label_source_matches,
                     read_corrupted_ids, trusted_mask)

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
                     trusted_source: str | None = "human", max_fdr: float = 0.2, progress: bool = True) -> dict:
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
        trusted_source: the ``label_source`` value whose labels are trusted (GLAMI-1M: ``human``). With at least
            :data:`~fluid.review.issues.MIN_TRUSTED` such items (and some untrusted ones), the flagged set is
            every item whose score reaches the threshold with an estimated false-discovery rate <= ``max_fdr``,
            the trusted items serving as the score's null distribution (:func:`~fluid.review.issues.fdr_flags`);
            otherwise, or with None, it is cleanlab's flagged set.
        max_fdr: the false-discovery-rate bound of that rule, in (0, 1).

    Returns:
        The summary written to ``out/review.json``: ``n_items``, ``n_flagged``, ``flag_rule`` (``trusted-fdr`` or
        ``cleanlab``), ``flag_note``, ``max_fdr``, ``flag_threshold``, ``estimated_fdr``, ``n_trusted``,
        ``trusted_source``, ``folds``, ``seconds``, ``noise_rates`` and, with a truth file,
        ``detection_precision``, ``detection_recall``, ``precision_at_100`` (plus counts).
    """
    from fluid.api import Classifier
    from fluid.data import label_sort_key, scorable_rows
    from fluid.config import RunConfig

    if not 0.0 < max_fdr < 1.0:
        raise ValueError(f"max_fdr must be in (0, 1) (a false-discovery rate, e.g. 0.2); got {max_fdr}")
    if trusted_source is not None and (not isinstance(trusted_source, str) or not trusted_source.strip()):
        raise ValueError(f"trusted_source must be a label_source value (e.g. 'human') or None; got "
                         f"{trusted_source!r}")
    trusted_source = trusted_source.strip() if trusted_source is not None else None
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / REVIEW_DIR
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a FLUID run directory: config.yaml is missing")
    config = RunConfig.load(config_path)
    reader = Classifier.from_config(config)
    seed = reader.config.seed if seed is None else seed
    started = time.perf_counter()

    catalogue = reader.read(data, split="train", require_label=True)
    frame = catalogue.frame
    usable = frame["label"].notna() & scorable_rows(frame)
    frame = frame[usable]
    if len(frame) < folds * 2:
        raise ValueError(f"{catalogue.source}: only {len(frame)} labelled items with text or image; "
                         f"cross-fitting in {folds} folds needs at least {folds * 2}")
    given = frame["label"].astype(str)
    classes = sorted(set(given), key=label_sort_key)
    if len(classes) < 2:
        raise ValueError(f"{catalogue.source}: review needs at least 2 labels; found {classes}")
    frame = frame.assign(image=_absolute_images(frame["image"], catalogue.image_root))
    label_ids = given.map({c: i for i, c in enumerate(classes)}).to_numpy()

    proba = cross_fit_proba(config.keywords(), frame, classes, folds=folds,
                            seed=seed, progress=progress)
    issues = find_label_issues(label_ids, proba)
    noise = class_noise_rates(label_ids, proba, classes)
    issues, flagging = _flag(issues, frame, trusted_source, max_fdr)

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
        "n_flagged": int(issues.is_issue.sum()), **flagging, "folds": folds, "seed": seed, "classes": classes,
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
    write_text_atomic(out / GALLERY_FILE, render_gallery(
        table.iloc[: len(shown)], frame["image"].iloc[shown], frame["text"].iloc[shown], summary, noise,
        title=f"Label review of {Path(str(catalogue.source)).name}"))
    with atomic_path(out / ISSUES_FILE) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out / NOISE_FILE) as tmp:
        noise.to_csv(tmp, index=False)
    proba_table = pd.DataFrame(proba, columns=classes)
    proba_table.insert(0, "id", frame["id"].astype(str).to_numpy())
    proba_table.insert(1, "given_label", given.to_numpy())
    with atomic_path(out / PROBA_FILE) as tmp:
        proba_table.to_parquet(tmp, index=False)
    summary["files"] = {name: str(out / name)
                        for name in (ISSUES_FILE, NOISE_FILE, GALLERY_FILE, PROBA_FILE, SUMMARY_FILE)}
    write_json_atomic(out / SUMMARY_FILE, summary)
    return summary


def _flag(issues, frame: pd.DataFrame, trusted_source: str | None, max_fdr: float):
    """The flagged set: trusted-FDR when the catalogue has enough trusted labels, else cleanlab's; and the
    summary entries saying which rule made it."""
    sources = frame["label_source"].to_numpy() if "label_source" in frame else None
    if sources is not None and pd.isna(sources).all():
        sources = None
    trusted, reason = trusted_mask(sources, trusted_source)
    n_trusted = 0 if sources is None or trusted_source is None else \
        int(label_source_matches(sources, trusted_source).sum())
    flagging = {"flag_rule": "cleanlab", "max_fdr": max_fdr,
                "flag_note": f"confident learning (prune by noise rate); trusted-FDR not used: {reason}",
                "flag_threshold": None, "estimated_fdr": None, "n_trusted": int(n_trusted),
                "trusted_source": trusted_source}
    if trusted is None:
        return issues, flagging
    is_issue, threshold, estimated = fdr_flags(issues.score, trusted, max_fdr)
    flagging.update(flag_rule="trusted-fdr", flag_threshold=threshold, estimated_fdr=estimated)
    null = f"null distribution: the {n_trusted} items labelled by {trusted_source!r}"
    if threshold is None:
        flagging["flag_note"] = (f"no score threshold keeps the estimated false-discovery rate <= {max_fdr} "
                                 f"({null}): nothing flagged; raise max_fdr, or rank by 1 - p(given label) "
                                 f"from {PROBA_FILE}")
    else:
        flagging["flag_note"] = (f"score >= {threshold:.4f}, estimated false-discovery rate {estimated:.3f} <= "
                                 f"{max_fdr} ({null})")
    return dataclasses.replace(issues, is_issue=is_issue), flagging


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
