"""A self-contained HTML gallery of label issues: thumbnails embedded as base64 JPEGs, no external assets."""

from __future__ import annotations

import base64
import html
import io
import math
import os
from typing import Any

import pandas as pd

__all__ = ["NAV_MARKER", "render_gallery", "thumbnail_data_uri"]

#: Where a server may insert its navigation (the file itself links nowhere, so it works from disk).
NAV_MARKER = "<!--fluid-nav-->"
THUMBNAIL_SIZE = (160, 160)
_TEXT_CHARS = 400

_STYLE = """
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #f6f7f9; --card: #fff; --muted: #5b6470;
        --bad: #b42318; --good: #067647; --line: #d0d5dd; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8eb; --bg: #14171a; --card: #1e2227; --muted: #a3acb9;
        --bad: #ff8a80; --good: #6ee7a8; --line: #39414b; } }
body { font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 0; }
header, main { max-width: 1200px; margin: 0 auto; padding: 1rem 1.25rem; }
h1 { font-size: 1.5rem; margin: .2rem 0 .6rem; }
h2 { font-size: 1.15rem; margin: 1.2rem 0 .5rem; }
summary { cursor: pointer; font-weight: 600; }
.summary { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; margin: 0; padding: 0; list-style: none; }
.summary b { font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .75rem; text-align: left; }
td.num, th.num { text-align: right; }
.grid { list-style: none; padding: 0; display: grid; gap: 1rem;
        grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: .75rem;
        display: flex; flex-direction: column; gap: .4rem; }
.card:focus-within, .card:focus { outline: 3px solid #2e90fa; outline-offset: 2px; }
.thumb { width: 100%; height: 170px; object-fit: contain; background: var(--bg); border-radius: 6px; }
.noimg { height: 170px; display: grid; place-items: center; color: var(--muted); background: var(--bg);
         border-radius: 6px; }
.labels { display: grid; grid-template-columns: auto 1fr; gap: .1rem .5rem; margin: 0; }
.labels dt { color: var(--muted); }
.labels dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.given { color: var(--bad); text-decoration: line-through; }
.suggested { color: var(--good); }
.meta { color: var(--muted); font-size: .85rem; }
.text { font-size: .9rem; white-space: pre-wrap; overflow-wrap: anywhere; max-height: 9em; overflow: auto; }
"""


def thumbnail_data_uri(cell: Any, image_root: str | os.PathLike | None = None) -> str | None:
    """A ``data:image/jpeg;base64,...`` thumbnail (at most 160 x 160) of an image cell; None when the cell is
    missing or unreadable. Decodes one image at a time (only the gallery's items are ever loaded)."""
    from fluid.data import BadImageError, load_image

    try:
        image = load_image(cell, image_root)
    except BadImageError:
        return None
    image.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _escape(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value))


def render_gallery(issues: pd.DataFrame, images: pd.Series, texts: pd.Series, summary: dict,
                   noise_rates: pd.DataFrame, *, image_root: str | os.PathLike | None = None,
                   title: str = "Label review") -> str:
    """The gallery page.

    Args:
        issues: the flagged items to show, most probable issue first (columns of ``label_issues.csv``:
            id, given_label, suggested_label, score, language, label_source).
        images / texts: the image cell and the text of each shown item, aligned with ``issues``' rows.
        summary: counts and (when known) detection metrics shown above the gallery.
        noise_rates: per-class table from :func:`fluid.review.issues.class_noise_rates`.
    """
    facts = [("items reviewed", summary.get("n_items")), ("label issues found", summary.get("n_flagged")),
             ("shown here", len(issues)), ("folds", summary.get("folds"))]
    if summary.get("flag_rule"):
        facts.append(("flag rule", summary["flag_rule"]))
    if summary.get("estimated_fdr") is not None:
        facts.append(("estimated false-discovery rate", f"{summary['estimated_fdr']:.3f}"))
    for key, name in (("detection_precision", "detection precision"), ("detection_recall", "detection recall"),
                      ("precision_at_100", "precision at 100")):
        if summary.get(key) is not None:
            facts.append((name, f"{summary[key]:.3f}"))
    summary_html = "".join(f"<li>{_escape(name)}: <b>{_escape(value)}</b></li>" for name, value in facts)
    noise_rows = "".join(
        f"<tr><td>{_escape(r.label)}</td><td class=num>{int(r.n_items)}</td>"
        f"<td class=num>{int(r.estimated_label_issues)}</td><td class=num>{100 * r.noise_rate:.1f}%</td></tr>"
        for r in noise_rates.itertuples())
    cards = []
    for rank, (row, image, text) in enumerate(zip(issues.itertuples(), images, texts), start=1):
        uri = thumbnail_data_uri(image, image_root)
        picture = (f'<img class=thumb src="{uri}" alt="image of item {_escape(row.id)}">' if uri
                   else '<div class=noimg role=img aria-label="no image">no image</div>')
        excerpt = str(text)[:_TEXT_CHARS] + ("…" if len(str(text)) > _TEXT_CHARS else "") if text else "(no text)"
        cards.append(
            f'<li class=card tabindex=0 aria-label="issue {rank}: item {_escape(row.id)}">{picture}'
            f"<dl class=labels><dt>given</dt><dd class=given>{_escape(row.given_label)}</dd>"
            f"<dt>suggested</dt><dd class=suggested>{_escape(row.suggested_label)}</dd></dl>"
            f'<div class=meta>#{rank} · id {_escape(row.id)} · score {row.score:.3f}'
            f"{' · ' + _escape(row.language) if _escape(row.language) else ''}"
            f"{' · ' + _escape(row.label_source) if _escape(row.label_source) else ''}</div>"
            f"<div class=text>{_escape(excerpt)}</div></li>")
    gallery = (f'<ul class=grid aria-label="label issues, most probable first">{"".join(cards)}</ul>' if cards
               else "<p>No label issues were found.</p>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f'<meta name=viewport content="width=device-width, initial-scale=1">'
            f"<title>{_escape(title)}</title><style>{_STYLE}</style></head><body>{NAV_MARKER}"
            f"<header><h1>{_escape(title)}</h1><ul class=summary>{summary_html}</ul></header><main>"
            f"<details><summary>Estimated label noise per class</summary><table><thead><tr>"
            f"<th scope=col>label</th><th scope=col class=num>items</th>"
            f"<th scope=col class=num>estimated issues</th><th scope=col class=num>noise rate</th></tr></thead>"
            f"<tbody>{noise_rows}</tbody></table></details>"
            f"<h2>Items whose label is probably wrong</h2>{gallery}</main></body></html>")
