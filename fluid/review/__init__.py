"""Label review: find the items whose label is probably wrong (k-fold cross-fitting + cleanlab's confident
learning), with per-class noise estimates and an HTML gallery. Entry point: :func:`review_catalogue`."""

from .crossfit import cross_fit_proba, fold_assignment
from .issues import (LabelIssues, class_noise_rates, detection_metrics, fdr_flags, find_label_issues,
                     read_corrupted_ids, trusted_mask)
from .review import GALLERY_FILE, ISSUES_FILE, NOISE_FILE, REVIEW_DIR, SUMMARY_FILE, review_catalogue

__all__ = ["GALLERY_FILE", "ISSUES_FILE", "NOISE_FILE", "REVIEW_DIR", "SUMMARY_FILE", "LabelIssues",
           "class_noise_rates", "cross_fit_proba", "detection_metrics", "fdr_flags", "find_label_issues",
           "fold_assignment", "read_corrupted_ids", "review_catalogue", "trusted_mask"]
