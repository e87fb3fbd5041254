"""Everything a user may hand to ``fit``, ``predict`` or ``evaluate``, read into one :class:`Catalogue`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from fluid.config import Columns
from fluid.data import images
from fluid.data.images import load_image
from fluid.data.glami import find_glami
from fluid.data.readers import Catalogue, read_catalogue
from fluid.data.report import DEFAULT_POLICY
from fluid.data.schema import MAX_TEXT_CHARS, has_value

def canonical_text(value: Any) -> str | None:
    """One text cell as the catalogue readers leave it: whitespace trimmed (Unicode), empty -> None, cut to
    :data:`~fluid.data.schema.MAX_TEXT_CHARS` characters; anything but a string or None is a TypeError."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"a text must be a string or None, got {type(value).__name__}")
    trimmed = pc.utf8_trim_whitespace(pa.array([value], type=pa.large_string()))[0].as_py()
    return trimmed[:MAX_TEXT_CHARS] if trimmed else None


def decoded_image(cell: Any, image_root=None) -> Image.Image | None:
    """One image cell decoded as the readers' dataset decodes it (:func:`~fluid.data.images.load_image`): None
    for a missing cell; an RGB image already within the decoding limits is used as it is (no second decode)."""
    if not has_value(cell):
        return None
    if isinstance(cell, Image.Image) and cell.mode == "RGB" and max(cell.size) <= images.MAX_DECODED_SIDE:
        return cell
    return load_image(cell, image_root)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
ACCEPTED_DATA = ("a pandas DataFrame", "a path to a .csv/.tsv/.parquet/.jsonl catalogue",
                 "a GLAMI-1M folder or zip", "a dict or a list of dicts (one product each)",
                 "an image path or a list of image paths")


def read_input(data: Any, columns: Columns, *, split: str | None = None, require_label: bool = False,
               on_bad_row: str = DEFAULT_POLICY, memory_map_rows: int | None = None) -> Catalogue:
    """Reads ``data`` (any of :data:`ACCEPTED_DATA`) with ``columns`` into canonical rows.

    ``require_label`` False (prediction): the label and the optional columns may be absent, and a DataFrame's
    rows all come back in its order and index (rows the reader could not use come back empty), so predictions
    align with the caller's rows."""
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        # One product per dict: an absent key is a missing modality, not a schema error.
        data = pd.DataFrame(data)
        for column in [*columns.text, columns.image]:
            if column is not None and column not in data.columns:
                data[column] = None
    elif isinstance(data, (list, tuple)) and data and all(isinstance(d, (str, Path)) for d in data):
        data = pd.DataFrame({columns.image or "image": [str(d) for d in data]})
    elif isinstance(data, (str, Path)) and str(data).lower().endswith(IMAGE_SUFFIXES):
        data = pd.DataFrame({columns.image or "image": [str(data)]})
    elif not isinstance(data, (pd.DataFrame, str, Path)):
        raise TypeError(f"data must be {', '.join(ACCEPTED_DATA)}; got {type(data).__name__}")
    if isinstance(data, pd.DataFrame) and data.empty:
        raise ValueError("data is an empty DataFrame: there is nothing to " + ("train on" if require_label else "score"))
    if isinstance(data, (str, Path)) and find_glami(Path(data), strict=False) is not None:
        if split == "val":
            raise ValueError(f"{data} is a GLAMI-1M catalogue, which has no validation split: leave val empty to "
                             "carve a stratified one from its training split (the test split is for the final "
                             "evaluation only)")
        return read_catalogue(data, split=split, on_bad_row=on_bad_row, require_label=require_label,
                              memory_map_rows=memory_map_rows)

    def optional(column):  # at inference, optional columns may be absent from a DataFrame
        present = not isinstance(data, pd.DataFrame) or column in data.columns
        return column if column is not None and (require_label or present) else None

    wanted = dataclasses.replace(columns, label=columns.label if require_label else None,  # prediction needs none
                                 id=optional(columns.id), language=optional(columns.language),
                                 label_source=optional(columns.label_source))
    catalogue = read_catalogue(data, columns=wanted, on_bad_row=on_bad_row, require_label=require_label,
                               memory_map_rows=memory_map_rows)
    if isinstance(data, pd.DataFrame) and not require_label and data.index.is_unique:
        # Keep every input row; rows the reader could not use come back empty and are reported as unscorable.
        frame = catalogue.frame.reindex(data.index)
        frame["text"] = frame["text"].astype(object).where(frame["text"].notna(), None)
        frame["image"] = frame["image"].astype(object).where(frame["image"].notna(), None)
        catalogue = dataclasses.replace(catalogue, frame=frame)
    return catalogue
