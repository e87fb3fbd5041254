"""Experiments over many systems on one split: ``fluid experiment paper`` (Tables 1-3 of the FLUID paper,
MoLT, the classical baselines, the missing-modality table and the paper's claims). See docs/experiments.md."""

from fluid.experiment.claims import ALL_CLAIMS, PAPER_CLAIMS, REFERENCE_CLAIMS, Claim, evaluate_claim, evaluate_claims
from fluid.experiment.paper import PAPER_RESULTS, PAPER_ROWS, PAPER_SOURCE
from fluid.experiment.runner import ExperimentSettings, plan_rows, run_experiment

__all__ = ["ALL_CLAIMS", "PAPER_CLAIMS", "REFERENCE_CLAIMS", "Claim", "evaluate_claim", "evaluate_claims",
           "PAPER_RESULTS", "PAPER_ROWS", "PAPER_SOURCE", "ExperimentSettings", "plan_rows", "run_experiment"]
