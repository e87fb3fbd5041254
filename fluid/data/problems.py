"""What was wrong with one sample that was still used (an unreadable image scored as missing, a label the model
does not know), as a typed value instead of a prefixed string."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Problem(NamedTuple):
    """``modality``: "image", "text" or "label"; ``reason``: a short kind (``BadImageError.kind`` such as
    "unreadable" or "too large", or "unknown label"); ``detail``: the message, naming the file or value.
    A named tuple, so it travels through DataLoader workers and Lightning's device moves unchanged."""

    modality: str
    reason: str
    detail: str

    def __str__(self) -> str:  # the form stored in feature-cache indexes: "image: unreadable file ..."
        return f"{self.modality}: {self.detail}"


def image_problem(problems: Iterable[Problem]) -> str | None:
    """Why a sample's image could not be decoded (the first image problem's detail); None when it could."""
    return next((p.detail for p in problems if p.modality == "image"), None)
