"""Turning :class:`~fluid.learners.scores.Scores` into what users read: top-k rows, metrics, prediction files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from fluid.data.schema import has_value, scorable_rows
from fluid.learners.scores import UNREADABLE_EXAMPLES, Scores
from fluid.progress import progress_bar

#: The string columns of a prediction table besides the labels.
TEXT_COLUMNS = ("id", "missing", "image_problem", "error")


def checked_drop(drop_modality: str | None) -> str | None:
    """``drop_modality`` if it is None, "image" or "text"; else a ValueError naming the choices."""
    if drop_modality not in (None, "image", "text"):
        raise ValueError(f"drop_modality must be None, 'image' or 'text', got {drop_modality!r}")
    return drop_modality


def score_items(learner, items: list[dict]) -> tuple[dict, np.ndarray, Scores]:
    """Scores a few products ``{"text": str | None, "image": PIL image | bytes | None}`` in one forward pass,
    without the catalogue reader: each text normalised and each image decoded as the reader does
    (:func:`fluid.data.inputs.canonical_text`, :func:`~fluid.data.inputs.decoded_image`; an RGB image already
    decoded within the limits is not decoded again). Returns ``({"text": [...], "image": [...]}, ok, scores)`` for
    :func:`top_k_results`: an image that cannot be decoded is scored as missing and reported in
    ``scores.unreadable``. A cell is missing by the readers' rule (:func:`fluid.data.schema.has_value`)."""
    from fluid.data import BadImageError
    from fluid.data.inputs import canonical_text, decoded_image

    texts, cells, images, problems = [], [], [], {}
    for position, item in enumerate(items):
        texts.append(canonical_text(item.get("text")))
        cell = item.get("image")
        cells.append(cell if has_value(cell) else None)
        try:
            images.append(decoded_image(cells[-1]))
        except BadImageError as error:
            images.append(None)
            problems[position] = str(error)
    frame = {"text": texts, "image": cells}  # the columns top_k_results reads; no DataFrame for a few items
    ok = np.array([text is not None or cell is not None for text, cell in zip(texts, cells)], dtype=bool)
    scored = np.flatnonzero(ok)
    scores = learner.score_items([texts[i] for i in scored], [images[i] for i in scored])
    scores.unreadable.update({rank: problems[i] for rank, i in enumerate(scored) if i in problems})
    return frame, ok, scores


def top_k_results(frame: pd.DataFrame | dict, ok: np.ndarray, scores: Scores, classes: list[str], k: int,
                  chosen_experts: Callable[[np.ndarray], list[dict]]) -> list[dict]:
    """One result per row of ``frame`` (its ``text`` and ``image`` columns; ``ok``: the rows that were scored, in
    order, into ``scores``): ``{"labels": [{"label", "probability"}...k], "gate": [l floats] | None, "gate_mean": float | None,
    "experts": [{"expert", "weight"}...] | None, "missing": ["image"|"text"...]}``. ``experts`` are the MoE
    experts the item was routed to (at most the head's top_k, weights renormalised to sum to 1, largest first).
    An image that failed to decode is missing: ``missing`` names it and ``image_problem`` says why; an item with
    neither modality gets ``"labels": []`` and an ``error``."""
    positions = np.flatnonzero(ok)
    unreadable = {int(positions[p]): reason for p, reason in scores.unreadable.items()}
    results, scored = [], 0
    for position, (has_modality, text, image) in enumerate(zip(ok, frame["text"], frame["image"])):
        missing = [name for name, value in (("image", image), ("text", text)) if not has_value(value)]
        if not has_modality:
            results.append({"labels": [], "gate": None, "gate_mean": None, "experts": None,
                            "missing": missing, "error": "neither text nor image"})
            continue
        problem = unreadable.get(position)
        proba = scores.proba[scored]
        gate = scores.gate[scored] if scores.gate is not None else None
        routing = scores.routing[scored] if scores.routing is not None else None
        scored += 1
        if problem is not None:
            missing = ["image", *missing]
            if "text" in missing:
                results.append({"labels": [], "gate": None, "gate_mean": None, "experts": None,
                                "missing": missing, "image_problem": problem,
                                "error": f"neither text nor image: the image could not be read ({problem})"})
                continue
        order = np.argsort(-proba, kind="stable")[: max(1, k)]
        result = {
            "labels": [{"label": classes[i], "probability": float(proba[i])} for i in order],
            "gate": gate.tolist() if gate is not None else None,
            "gate_mean": float(gate.mean()) if gate is not None else None,
            "experts": chosen_experts(routing) if routing is not None else None,
            "missing": missing,
        }
        if problem is not None:
            result["image_problem"] = problem
        results.append(result)
    return results


def scored_metrics(frame: pd.DataFrame, scores: Scores, classes: list[str], *, n_skipped: int = 0,
                   drop_modality: str | None = None, corruption=None) -> dict:
    """The metrics of ``fluid evaluate`` for a frame whose rows were all scored into ``scores``."""
    from fluid.training.metrics import compute_metrics

    metrics = compute_metrics(
        scores.labels, scores.proba, classes,
        languages=frame["language"].tolist() if "language" in frame else None,
        label_sources=frame["label_source"].tolist() if "label_source" in frame else None,
        n_skipped=n_skipped,
    )
    unknown = sorted({str(v) for v in frame["label"][scores.labels < 0].dropna()})
    metrics["unknown_labels"] = unknown[:50]
    metrics["drop_modality"] = drop_modality
    metrics["corruption"] = corruption.label if corruption is not None else None
    metrics["n_unreadable_image"] = len(scores.unreadable)
    metrics["unreadable_images"] = scores.unreadable_rows(frame, limit=UNREADABLE_EXAMPLES)
    if scores.gate is not None:
        metrics["gate_mean"] = float(scores.gate.mean())
        metrics["gate_histogram"] = np.histogram(scores.gate.mean(axis=1), bins=10, range=(0, 1))[0].tolist()
    if scores.expert_load is not None:
        metrics["expert_load"] = scores.expert_load.tolist()
    return metrics


def evaluate_frame(learner, frame: pd.DataFrame, image_root, *, drop_modality: str | None = None,
                   progress: bool = False, n_skipped: int = 0, corruption=None) -> dict:
    """Scores the scorable rows of a labelled canonical frame with ``learner`` and returns their metrics; the
    other rows count as skipped."""
    ok = scorable_rows(frame)
    scored = frame[ok]
    scores = learner.score(scored, image_root, drop_modality=drop_modality, progress=progress,
                           corruption=corruption)
    return scored_metrics(scored, scores, learner.classes, n_skipped=n_skipped + int((~ok).sum()),
                          drop_modality=drop_modality, corruption=corruption)


def top_k_table(ids: list, rows: list[dict], k: int) -> pd.DataFrame:
    """One row per item from :func:`top_k_results` (missing ranks left empty)."""
    records = []
    for item_id, row in zip(ids, rows):
        record = {"id": item_id}
        for rank in range(k):
            hit = row["labels"][rank] if rank < len(row["labels"]) else None
            record[f"label_{rank + 1}"] = hit["label"] if hit else None
            record[f"probability_{rank + 1}"] = hit["probability"] if hit else None
        record["gate_mean"] = row.get("gate_mean")
        record["missing"] = ",".join(row["missing"])
        record["image_problem"] = row.get("image_problem")
        record["error"] = row.get("error")
        records.append(record)
    columns = ["id"] + [f"{name}_{r + 1}" for r in range(k) for name in ("label", "probability")] + [
        "gate_mean", *TEXT_COLUMNS[1:]]
    return pd.DataFrame.from_records(records, columns=columns)


class TableWriter:
    """Appends prediction tables to one CSV (``csv``) or Parquet file at ``path``."""

    def __init__(self, path: Path, *, csv: bool) -> None:
        self.path, self.csv = path, csv
        self.started = False
        self._parquet = None

    def append(self, table: pd.DataFrame) -> None:
        if self.csv:
            table.to_csv(self.path, mode="a" if self.started else "w", header=not self.started, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.schema([(c, pa.string()) if c in TEXT_COLUMNS or c.startswith("label_")
                                else (c, pa.float64()) for c in table.columns])
            arrow = pa.Table.from_pandas(table.astype({c: object for c in TEXT_COLUMNS}), schema=schema,
                                         preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(str(self.path), schema)
            self._parquet.write_table(arrow)
        self.started = True

    def close(self, k: int) -> None:
        """Finishes the file; with no rows appended it still gets the header (or schema) of ``k`` labels."""
        if not self.started:
            self.append(top_k_table([], [], k))
        if self._parquet is not None:
            self._parquet.close()


def write_predictions(learner, catalogue, out: Path, *, top_k: int, chunk_size: int, progress: bool) -> dict:
    """Scores ``catalogue`` chunk by chunk with ``learner`` and writes one :func:`top_k_table` row per item to
    ``out`` (.csv or .parquet): ``id, label_1, probability_1, … label_k, probability_k, gate_mean, missing,
    image_problem, error``, in the catalogue's order; the file appears only when complete (written to a temporary
    name, then renamed). Returns ``{"n_items", "n_scored", "n_unscorable", "n_unreadable_images",
    "n_dropped_by_reader", "bad_rows", "path"}``: rows the reader could not use at all are counted in
    ``n_dropped_by_reader`` and described in ``bad_rows``."""
    from fluid.atomic import atomic_path

    if out.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"{out}: the output must end in .csv or .parquet")
    frame, n_unscorable, n_unreadable = catalogue.frame, 0, 0
    with atomic_path(out) as tmp, progress_bar("scoring", len(frame), enabled=progress) as advance:
        writer = TableWriter(tmp, csv=out.suffix.lower() == ".csv")
        for start in range(0, len(frame), chunk_size):
            chunk = frame.iloc[start:start + chunk_size]
            ok = scorable_rows(chunk).to_numpy()
            scores = learner.score(chunk[ok], catalogue.image_root)
            table = top_k_table(chunk["id"].tolist(),
                                top_k_results(chunk, ok, scores, learner.classes, top_k, learner.chosen_experts), top_k)
            n_unscorable += int(table["error"].notna().sum())
            n_unreadable += int(table["image_problem"].notna().sum())
            writer.append(table)
            advance(len(chunk))
        writer.close(top_k)
    return {"n_items": len(frame), "n_scored": len(frame) - n_unscorable, "n_unscorable": n_unscorable,
            "n_unreadable_images": n_unreadable, "n_dropped_by_reader": catalogue.report.dropped_rows,
            "bad_rows": catalogue.report.to_dict(), "path": str(out)}
