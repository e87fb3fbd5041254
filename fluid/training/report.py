"""Run reports: Markdown plus PNG plots, rebuilt from the JSON metrics alone (``fluid report RUN_DIR``).

Plots: confusion matrix (the most frequent classes when there are many), per-class F1 against training
frequency (the long tail), gate-weight distribution, expert usage, calibration (reliability diagram).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fluid.atomic import atomic_path, write_text_atomic  # noqa: E402

MAX_CONFUSION_CLASSES = 20
SUMMARY_KEYS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1", "top5_accuracy")


def _pct(value) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}"


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
        plt.close(fig)
    return path


def plot_confusion(metrics: dict, classes: list[str], path: Path) -> Path | None:
    matrix = np.asarray(metrics.get("confusion_matrix") or [])
    if matrix.size == 0:
        return None
    support = matrix.sum(axis=1)
    keep = np.argsort(-support, kind="stable")[:MAX_CONFUSION_CLASSES]
    sub = matrix[np.ix_(keep, keep)].astype(float)
    normalised = sub / np.maximum(sub.sum(axis=1, keepdims=True), 1)
    names = [classes[i] for i in keep]
    fig, ax = plt.subplots(figsize=(1.0 + 0.35 * len(keep), 0.8 + 0.35 * len(keep)))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    title = "Confusion matrix (row-normalised)"
    if len(keep) < len(classes):
        title += f", {len(keep)} most frequent of {len(classes)} classes"
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_f1_vs_frequency(metrics: dict, train_counts: dict, path: Path) -> Path | None:
    per_class = metrics.get("per_class") or {}
    points = [(train_counts.get(name, 0), values["f1"]) for name, values in per_class.items()
              if values.get("support", 0) > 0]
    if not points:
        return None
    counts, f1 = np.asarray(points, dtype=float).T
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(np.maximum(counts, 1), f1, s=14, alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("training items of the class (log)")
    ax.set_ylabel("F1")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Per-class F1 against training frequency", fontsize=9)
    return _save(fig, path)


def plot_gate(metrics: dict, path: Path) -> Path | None:
    histogram = metrics.get("gate_histogram")
    if not histogram:
        return None
    fig, ax = plt.subplots(figsize=(5, 3))
    edges = np.linspace(0, 1, len(histogram) + 1)
    ax.bar(edges[:-1], histogram, width=np.diff(edges), align="edge", edgecolor="white")
    ax.set_xlabel("mean gate a per item (1 = image only, 0 = text only)")
    ax.set_ylabel("items")
    ax.set_title("Modality gate distribution", fontsize=9)
    return _save(fig, path)


def plot_expert_usage(metrics: dict, path: Path) -> Path | None:
    load = metrics.get("expert_load")
    if not load:
        return None
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(range(len(load)), load)
    ax.axhline(1.0 / len(load), color="grey", linestyle="--", linewidth=1, label="uniform")
    ax.set_xlabel("expert")
    ax.set_ylabel("share of routing assignments")
    ax.set_title("Expert usage", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_calibration(metrics: dict, path: Path) -> Path | None:
    bins = [b for b in (metrics.get("calibration") or {}).get("bins", []) if b["n"]]
    if not bins:
        return None
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Calibration (ECE {metrics['calibration']['ece']:.3f})", fontsize=9)
    return _save(fig, path)


def metrics_table(rows: dict[str, dict]) -> str:
    """A Markdown table, one row per named metrics dict (e.g. per system or per evaluation)."""
    header = "| | Acc | Macro P | Macro R | Macro F1 | Weighted F1 | Top-5 | n |\n|---|---|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {name} | " + " | ".join(_pct(m.get(k)) for k in SUMMARY_KEYS) + f" | {m.get('n_items', '')} |\n"
        for name, m in rows.items()
    )
    return header + body


def _group_table(title: str, groups: dict) -> str:
    if not groups:
        return ""
    lines = [f"\n### {title}\n", "| group | accuracy | macro F1 | n |", "|---|---|---|---|"]
    lines += [f"| {g} | {_pct(v['accuracy'])} | {_pct(v['macro_f1'])} | {v['n']} |" for g, v in groups.items()]
    return "\n".join(lines) + "\n"


def _points(value, reference) -> str:
    if value is None or reference is None or value != value or reference != reference:
        return "–"
    return f"{100 * (value - reference):+.1f}"


def robustness_table(evaluations: dict[str, dict], reference: str = "test") -> str:
    """A Markdown table: the full-input evaluation ``reference`` against every evaluation made without a
    modality (``drop_modality``) or with corrupted input (``corruption``), with the drop in points.
    Empty when there is no reference or nothing to compare it with."""
    full = evaluations.get(reference)
    degraded = {name: m for name, m in evaluations.items()
                if name != reference and (m.get("drop_modality") or m.get("corruption"))}
    if full is None or not degraded:
        return ""
    lines = ["| input | Acc | Macro F1 | Δ Acc (points) | Δ Macro F1 (points) | n |", "|---|---|---|---|---|---|",
             f"| full input (`{reference}`) | {_pct(full.get('accuracy'))} | {_pct(full.get('macro_f1'))} | | | "
             f"{full.get('n_items', '')} |"]
    for name, m in degraded.items():
        parts = ([f"without {m['drop_modality']}"] if m.get("drop_modality") else []) + (
            [f"corrupted {m['corruption']}"] if m.get("corruption") else [])
        lines.append(f"| {', '.join(parts)} (`{name}`) | {_pct(m.get('accuracy'))} | {_pct(m.get('macro_f1'))} | "
                     f"{_points(m.get('accuracy'), full.get('accuracy'))} | "
                     f"{_points(m.get('macro_f1'), full.get('macro_f1'))} | {m.get('n_items', '')} |")
    return "\n".join(lines) + "\n"


def floor_lines(run: dict) -> list[str]:
    """The report's section on the classical floor and on model="auto"'s choice (empty when the run has neither)."""
    lines = []
    floor = run.get("floor")
    if floor:
        verdict = "better" if floor["deep_minus_floor"] >= 0 else "**worse**"
        lines += ["\n## Against the classical floor (validation, %)\n",
                  f"The classical `{floor['model']}` was fitted on the same training split"
                  + (f" (a stratified sample of {floor['n_train']} items)" if floor["sampled"] else "")
                  + f"; on {floor['compared_on']} the deep model is {verdict} by "
                    f"{100 * abs(floor['deep_minus_floor']):.1f} points.\n",
                  metrics_table({"this model": run["validation"], f"floor: {floor['model']}": floor["validation"]})]
    selection = run.get("selection")
    if selection:
        lines += ["\n## Model selection (`model: auto`)\n", f"Kept `{selection['chosen']}`: {selection['reason']}.\n"]
    return lines


def blend_lines(run: dict) -> list[str]:
    """The report's section on the blend of the fused and per-modality classifiers (empty without one)."""
    blend = run.get("blend")
    if not blend:
        return []
    weights = ", ".join(f"{member} {weight:.1f}" for member, weight in blend["weights"].items())
    accuracy = blend["val_accuracy"]
    return ["\n## Blend of the classifiers (validation)\n",
            f"The predictions weigh the fused classifier and the per-modality classifiers' log-probabilities: "
            f"{weights}, fitted on {blend['n_items']} validation items (accuracy {_pct(accuracy['fused'])} % with "
            f"the fused classifier alone, {_pct(accuracy['blended'])} % blended). The modality gate and the experts "
            f"explain the fused classifier's share only.\n"]


def write_report(run_dir: str | Path) -> Path:
    """(Re)builds ``run_dir/report.md`` and ``run_dir/plots/*.png`` from the run's JSON files.

    Uses ``metrics.json`` (validation metrics written by training) and any ``eval/*.json`` written by
    ``fluid evaluate``; the most recent evaluation is plotted, validation otherwise.
    """
    import yaml

    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists():
        raise FileNotFoundError(f"{metrics_path} not found: is {run_dir} a trained FLUID run directory?")
    run = json.loads(metrics_path.read_text(encoding="utf-8"))
    classes = json.loads((run_dir / "labels.json").read_text(encoding="utf-8"))["classes"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    evaluations = {"validation": run["validation"]}
    for path in sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").exists() else []:
        evaluations[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    shown_name = list(evaluations)[-1]
    shown = evaluations[shown_name]

    plots_dir = run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    plots = [
        ("Confusion matrix", plot_confusion(shown, classes, plots_dir / "confusion.png")),
        ("Per-class F1 against training frequency",
         plot_f1_vs_frequency(shown, run.get("train_label_counts", {}), plots_dir / "f1_vs_frequency.png")),
        ("Modality gate", plot_gate(shown, plots_dir / "gate.png")),
        ("Expert usage", plot_expert_usage(shown, plots_dir / "experts.png")),
        ("Calibration", plot_calibration(shown, plots_dir / "calibration.png")),
    ]
    lines = [
        f"# FLUID run report: `{config['model']}`\n",
        f"- encoders: text `{config['text_encoder']}`, image `{config['image_encoder']}`",
        f"- classes: {len(classes)}; epochs run: {run.get('epochs_run')}; best epoch (validation "
        f"`{config['monitor']}`): {run.get('best_epoch')}; training time: {run.get('train_seconds', 0):.1f} s",
        "\n## Metrics (%)\n",
        metrics_table(evaluations),
    ]
    lines += blend_lines(run)
    lines += floor_lines(run)
    robustness = robustness_table(evaluations)
    if robustness:
        lines += ["\n## Robustness: missing and corrupted input (%)\n",
                  "Each row is one `fluid evaluate` with `--drop-modality` or `--corrupt`, against the full input.\n",
                  robustness]
    if shown.get("n_skipped") or shown.get("n_unknown_label") or shown.get("n_unreadable_image"):
        lines.append(f"\n{shown_name}: {shown.get('n_skipped', 0)} item(s) skipped (no usable modality), "
                     f"{shown.get('n_unknown_label', 0)} with a label unknown to the model, "
                     f"{shown.get('n_unreadable_image', 0)} with an unreadable image (scored without it).\n")
        lines += [f"- row {u['row']} (id {u['id']!r}): {u['problem']}" for u in shown.get("unreadable_images", [])[:10]]
    lines.append(_group_table(f"Per language ({shown_name})", shown.get("per_language", {})))
    lines.append(_group_table(f"Per label source ({shown_name})", shown.get("per_label_source", {})))
    bad_rows_path = run_dir / "bad_rows.json"
    if bad_rows_path.exists():
        bad = json.loads(bad_rows_path.read_text(encoding="utf-8"))
        lines.append("\n## Bad rows\n")
        lines.append("```json\n" + json.dumps(bad, indent=2)[:4000] + "\n```\n")
    lines.append(f"\n## Plots ({shown_name})\n")
    lines += [f"### {title}\n\n![{title}](plots/{path.name})\n" for title, path in plots if path is not None]
    report = run_dir / "report.md"
    write_text_atomic(report, "\n".join(lines))  # atomic: a crash never leaves a half-written report
    return report
