"""Bad-row accounting: every problem found while reading a catalogue is counted here, never silently lost."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np

__all__ = ["BadRow", "BadRowReport", "REASONS", "POLICIES", "DEFAULT_POLICY", "check_policy"]

#: ``on_bad_row`` policies. ``missing-modality`` (default): a row with a bad image or empty text keeps its
#: other modality; ``skip``: such a row is dropped; ``fail``: the first problem raises ``BadRowError``.
POLICIES = ("skip", "missing-modality", "fail")
DEFAULT_POLICY = "missing-modality"

#: Every reason a row can be reported for, in priority order (a dropped row is counted under the first
#: reason it has in this order).
REASONS: dict[str, str] = {
    "no-modality": "neither text nor image is usable; the row is always dropped",
    "image-outside-root": "image path is absolute or uses '..' to leave the image root, or is a URL",
    "image-missing": "image file does not exist",
    "image-invalid": "image cell has an unsupported type",
    "image-empty": "no image given in the image column",
    "text-invalid": "a text cell holds a list, an object or a boolean, not text (read as empty)",
    "text-empty": "all text columns are empty",
    "label-missing": "no label in a labelled catalogue (dropped when labels are required)",
    "id-missing": "empty id cell; the row number is used as id",
    "duplicate-id": "id already used by an earlier row (reported, kept)",
    "text-huge": "text longer than MAX_TEXT_CHARS characters (reported, kept, cut to MAX_TEXT_CHARS)",
}


def check_policy(on_bad_row: str) -> str:
    if on_bad_row not in POLICIES:
        raise ValueError(f"on_bad_row must be one of {POLICIES}, got {on_bad_row!r}")
    return on_bad_row


def _plain(value: Any) -> Any:
    """Make a row number / id JSON-friendly."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)


@dataclass(frozen=True)
class BadRow:
    """One example of a problem: ``row`` is the 0-based data row of the file (header excluded) or the
    DataFrame index label; ``id`` the item id."""

    row: Any
    id: Any
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        s = f"row {self.row} (id {self.id!r})"
        return f"{s}: {self.detail}" if self.detail else s


class BadRowReport:
    """Counts problems by reason, keeps up to ``max_examples`` examples per reason, and the number of rows
    read, kept and dropped (a dropped row is counted once, under its first reason in :data:`REASONS`)."""

    def __init__(self, source: str | None = None, *, max_examples: int = 5) -> None:
        self.source = source
        self.max_examples = int(max_examples)
        self.total_rows = 0
        self.kept_rows = 0
        self.counts: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.examples: dict[str, list[BadRow]] = {}

    # -- recording -----------------------------------------------------------------------------------
    def add(self, reason: str, row: Any = None, id: Any = None, detail: str = "") -> None:
        """Record one problem."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < self.max_examples:
            ex.append(BadRow(_plain(row), _plain(id), reason, detail))

    def add_many(self, reason: str, count: int, examples: Iterable[tuple[Any, Any, str]] = ()) -> None:
        """Record ``count`` problems at once; ``examples`` yields ``(row, id, detail)`` (only the first
        ``max_examples`` are consumed)."""
        if count <= 0:
            return
        self.counts[reason] = self.counts.get(reason, 0) + int(count)
        ex = self.examples.setdefault(reason, [])
        for row, id_, detail in examples:
            if len(ex) >= self.max_examples:
                break
            ex.append(BadRow(_plain(row), _plain(id_), reason, detail))

    def add_dropped(self, reason: str, count: int) -> None:
        if count > 0:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    # -- reading -------------------------------------------------------------------------------------
    @property
    def dropped_rows(self) -> int:
        return sum(self.dropped.values())

    @property
    def total_problems(self) -> int:
        return sum(self.counts.values())

    def count(self, reason: str) -> int:
        return self.counts.get(reason, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "total_rows": self.total_rows,
            "kept_rows": self.kept_rows,
            "dropped_rows": self.dropped_rows,
            "counts": dict(self.counts),
            "dropped": dict(self.dropped),
            "examples": {r: [asdict(e) for e in ex] for r, ex in self.examples.items()},
        }

    def merge(self, other: "BadRowReport") -> "BadRowReport":
        """A new report adding ``other`` to this one (sources joined with ``" + "``)."""
        out = BadRowReport(
            " + ".join(s for s in (self.source, other.source) if s) or None,
            max_examples=max(self.max_examples, other.max_examples),
        )
        for rep in (self, other):
            out.total_rows += rep.total_rows
            out.kept_rows += rep.kept_rows
            for r, n in rep.counts.items():
                out.counts[r] = out.counts.get(r, 0) + n
            for r, n in rep.dropped.items():
                out.dropped[r] = out.dropped.get(r, 0) + n
            for r, ex in rep.examples.items():
                dst = out.examples.setdefault(r, [])
                dst.extend(ex[: max(0, out.max_examples - len(dst))])
        return out

    def __str__(self) -> str:
        src = self.source or "catalogue"
        if not self.counts:
            return f"{src}: {self.total_rows} rows, no bad rows"
        lines = [
            f"{src}: {self.total_rows} rows read, {self.kept_rows} kept, {self.dropped_rows} dropped; "
            f"{self.total_problems} problems:"
        ]
        order = list(REASONS) + sorted(set(self.counts) - set(REASONS))
        for reason in order:
            n = self.counts.get(reason, 0)
            if not n:
                continue
            d = self.dropped.get(reason, 0)
            lines.append(f"  {reason}: {n}" + (f" ({d} rows dropped)" if d else ""))
            for ex in self.examples.get(reason, []):
                lines.append(f"    e.g. {ex}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"BadRowReport(source={self.source!r}, total_rows={self.total_rows}, kept_rows={self.kept_rows}, "
            f"counts={self.counts}, dropped={self.dropped})"
        )
