"""Label review: ``fluid review`` — find the products whose label is probably wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fluid.cli.common import USER_ERRORS, app, console, fail, show_progress


@app.command()
def review(run_dir: Path = typer.Argument(..., help="A run directory: its configuration trains each fold."),
           data: str = typer.Option(..., help="The labelled catalogue to review (a GLAMI-1M folder: its train "
                                               "split)."),
           out: Optional[Path] = typer.Option(None, help="Output folder (default RUN_DIR/review, where `fluid "
                                                         "serve` finds the gallery)."),
           folds: int = typer.Option(4, min=2, help="K of the k-fold cross-fitting (K models are trained)."),
           seed: Optional[int] = typer.Option(None, help="Fold assignment and training seed (default: the "
                                                          "run's)."),
           truth: Optional[Path] = typer.Option(None, help="CSV of known corrupted labels (item_id, "
                                                           "true_category, given_category); default: the "
                                                           "synthetic catalogue's noisy_labels.csv if present."),
           gallery_items: int = typer.Option(200, min=0, help="How many top issues the HTML gallery shows."),
           trusted_source: str = typer.Option("human", help="label_source value whose labels are trusted: with "
                                                            "enough of them, flag every item above the score "
                                                            "threshold whose estimated false-discovery rate is "
                                                            "<= --max-fdr; `none`: cleanlab's flagged set."),
           max_fdr: float = typer.Option(0.2, help="False-discovery-rate bound of the trusted-label flag rule, "
                                                   "in (0, 1)."),
           json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the summary JSON here.")):
    """Out-of-sample probabilities by k-fold cross-fitting, then confident learning (cleanlab) scores; the flagged
    set is bounded by a false-discovery rate estimated on trusted labels (or cleanlab's): writes label_issues.csv,
    noise_rates.csv, gallery.html and review.json."""
    from fluid.review import review_catalogue

    if not (run_dir / "config.yaml").is_file():
        fail(f"{run_dir} is not a FLUID run directory: config.yaml is missing")
    if truth is not None and not truth.is_file():
        fail(f"truth file not found: {truth}")
    if not 0.0 < max_fdr < 1.0:
        fail(f"--max-fdr must be in (0, 1) (a false-discovery rate, e.g. 0.2); got {max_fdr}")
    if not trusted_source.strip():
        fail("--trusted-source must be a label_source value (e.g. human) or `none`")
    trusted = None if trusted_source.strip().lower() == "none" else trusted_source.strip()
    try:
        summary = review_catalogue(run_dir, data, out, folds=folds, seed=seed, truth=truth,
                                   gallery_items=gallery_items, trusted_source=trusted, max_fdr=max_fdr,
                                   progress=show_progress())
    except USER_ERRORS as error:
        fail(str(error))
    if json_out is not None:
        from fluid.atomic import write_json

        json_out.parent.mkdir(parents=True, exist_ok=True)
        write_json(json_out, summary)
    console.print(f"{summary['n_flagged']} of {summary['n_items']} labels are probably wrong "
                  f"(out-of-sample accuracy against the given labels {summary['out_of_sample_accuracy']:.3f}, "
                  f"{summary['seconds']:.0f} s)", soft_wrap=True)
    console.print(f"flag rule {summary['flag_rule']}: {summary['flag_note']}", soft_wrap=True)
    if "detection_precision" in summary:
        console.print(f"against {summary['truth']}: precision {summary['detection_precision']:.3f}, recall "
                      f"{summary['detection_recall']:.3f}, precision@100 {summary['precision_at_100']:.3f} "
                      f"({summary['n_true_positives']} of {summary['n_corrupted']} corrupted labels found)",
                      soft_wrap=True)
    files = summary["files"]
    console.print(f"issues: [bold]{files['label_issues.csv']}[/]; gallery: [bold]{files['gallery.html']}[/]",
                  soft_wrap=True)
