"""Catalogue data for FLUID: readers, the synthetic catalogue, image loading, bad-row accounting, and a torch
``Dataset`` of raw samples. See docs/data.md and docs/architecture.md ("Canonical record", "Sample").

``import fluid.data`` does not import torch; ``fluid.data.CatalogueDataset`` (or ``fluid.data.dataset``) does.
"""

from __future__ import annotations

from typing import Any

from fluid.data.errors import BadImageError, BadRowError, ColumnError
from fluid.data.glami import find_glami, read_glami
from fluid.data.images import load_image
from fluid.data.inputs import ACCEPTED_DATA, read_input
from fluid.data.readers import detect_encoding, normalize_frame, read_catalogue, read_table
from fluid.data.problems import Problem
from fluid.data.report import POLICIES, REASONS, BadRow, BadRowReport
from fluid.data._canonical import release_arrow_memory
from fluid.data.schema import (
    COLUMNS, ID, IMAGE, LABEL, LABEL_SOURCE, LANGUAGE, TEXT, Catalogue, label_sort_key, scorable_rows, sorted_labels,
)
from fluid.data.splits import stratified_split
from fluid.data.store import memory_map_strings
from fluid.data.synthetic import write_synthetic

__all__ = [
    "BadImageError", "BadRow", "BadRowError", "BadRowReport", "COLUMNS", "Catalogue", "CatalogueDataset",
    "ColumnError", "ID", "IMAGE", "Problem", "LABEL", "LABEL_SOURCE", "LANGUAGE", "POLICIES", "REASONS", "TEXT",
    "ACCEPTED_DATA", "detect_encoding", "find_glami", "read_input", "load_image", "memory_map_strings", "normalize_frame", "read_catalogue",
    "read_glami", "label_sort_key", "release_arrow_memory", "scorable_rows",
    "read_table", "sorted_labels", "stratified_split", "write_synthetic",
]


def __getattr__(name: str) -> Any:  # lazy: only the Dataset needs torch
    if name == "CatalogueDataset":
        from fluid.data.dataset import CatalogueDataset

        return CatalogueDataset
    raise AttributeError(f"module 'fluid.data' has no attribute {name!r}")
