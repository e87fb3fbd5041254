"""Fitting ``unimodal_blend``: the weights of the fused and per-modality classifiers, chosen on validation.

After training, the validation split is scored once; every weight triple on a simplex grid (step 0.1: 66
candidates, (1, 0, 0) among them) is tried on those scores, and the one with the lowest validation negative
log-likelihood becomes the head's ``blend_weights`` — when its gain over the fused classifier alone is clearly
more than chance on that many items (:data:`EVIDENCE_Z`); else the fused classifier stays alone. A weighted
ensemble fitted on held-out predictions, as AutoML systems stack their models: the per-modality classifiers do
not see how the fused classifier fits the training labels through the modality it memorises first, so held-out
data is what can tell how far to trust each (docs/model.md, "Deviations").
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import torch

from fluid.model.heads.fluid import FUSED_ONLY, FluidHead, blend_log_probs

MEMBERS = ("fused", "image", "text")
GRID_STEP = 0.1
#: A blend replaces the fused classifier only when its mean validation NLL gain is this many standard errors
#: above 0 (one-sided, ~98 %).
EVIDENCE_Z = 2.0


@dataclass(frozen=True)
class BlendFit:
    """The chosen weights and what they did on the validation split they were fitted on."""

    weights: tuple[float, float, float]  # (fused, image, text)
    n_items: int
    accuracy_fused: float
    accuracy_blended: float
    nll_fused: float
    nll_blended: float
    #: how many standard errors the best candidate's mean NLL gain over the fused classifier lies above 0
    evidence_z: float = 0.0

    def to_dict(self) -> dict:
        return {"weights": dict(zip(MEMBERS, self.weights)), "fitted_on": "validation", "n_items": self.n_items,
                "val_accuracy": {"fused": self.accuracy_fused, "blended": self.accuracy_blended},
                "val_nll": {"fused": self.nll_fused, "blended": self.nll_blended},
                "evidence_z": self.evidence_z, "evidence_needed_z": EVIDENCE_Z}

    def summary(self) -> str:
        weights = ", ".join(f"{m} {w:.1f}" for m, w in zip(MEMBERS, self.weights))
        if self.weights == FUSED_ONLY:
            return (f"blend fitted on {self.n_items} validation items: the fused classifier alone (no blend beat it "
                    f"by more than {EVIDENCE_Z:g} standard errors of validation NLL; best {self.evidence_z:.1f})")
        return (f"blend fitted on {self.n_items} validation items: {weights} (validation accuracy "
                f"{self.accuracy_fused:.3f} fused alone, {self.accuracy_blended:.3f} blended; NLL gain "
                f"{self.evidence_z:.1f} standard errors)")


def blends(head) -> bool:
    """Whether ``head`` blends its classifiers (a FLUID head with ``unimodal_blend``)."""
    return isinstance(head, FluidHead) and head.blend_weights is not None


def weight_grid(step: float = GRID_STEP) -> torch.Tensor:
    """K x 3: every (w_fused, w_image, w_text) with w >= 0, Σ w = 1, on a grid of ``step``; (1, 0, 0) first."""
    n = round(1 / step)
    rows = [(a / n, b / n, (n - a - b) / n) for a, b in itertools.product(range(n, -1, -1), range(n + 1))
            if a + b <= n]
    return torch.tensor(rows)


def choose_weights(fused: torch.Tensor, image: tuple[torch.Tensor, torch.Tensor],
                   text: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor,
                   grid: torch.Tensor | None = None, evidence_z: float = EVIDENCE_Z) -> BlendFit:
    """The grid weights with the lowest mean negative log-likelihood of ``labels`` — when the validation items
    show them better than the fused classifier alone; else (1, 0, 0).

    "Better" means the mean per-item NLL gain over the fused classifier exceeds ``evidence_z`` standard errors
    of that mean: on a few dozen validation items the lowest of 66 candidates' NLLs is mostly chance.

    Args:
        fused (Tensor): N x C fused logits. image, text: (N x C logits, N bool present). labels: N int64 (-1 = none,
            left out). grid: K x 3 candidates (default :func:`weight_grid`); ties keep the earliest candidate.
    """
    keep = labels >= 0
    fused, labels = fused[keep], labels[keep]
    image, text = (image[0][keep], image[1][keep]), (text[0][keep], text[1][keep])
    grid = weight_grid() if grid is None else grid
    rows = torch.arange(len(labels))

    def per_item(weights: torch.Tensor) -> tuple[torch.Tensor, float]:
        """N per-item NLLs, and the accuracy."""
        log_p = torch.log_softmax(blend_log_probs(weights, fused, image, text), dim=-1)
        return -log_p[rows, labels], float((log_p.argmax(-1) == labels).float().mean())

    scores = [per_item(w) for w in grid]
    best = min(range(len(grid)), key=lambda k: float(scores[k][0].mean()))
    nll_fused, accuracy_fused = per_item(torch.tensor(FUSED_ONLY))
    z = evidence(nll_fused - scores[best][0])
    if z <= evidence_z:
        best_weights, (nll_best, accuracy_best) = FUSED_ONLY, (nll_fused, accuracy_fused)
    else:
        best_weights, (nll_best, accuracy_best) = tuple(float(w) for w in grid[best]), scores[best]
    return BlendFit(tuple(round(w, 4) for w in best_weights), int(len(labels)), accuracy_fused, accuracy_best,
                    float(nll_fused.mean()), float(nll_best.mean()), round(z, 3))


def evidence(gain: torch.Tensor) -> float:
    """How many standard errors the mean of ``gain`` (N per-item NLL gains) lies above 0; 0 when N < 2 or every
    gain is equal (no evidence either way)."""
    if len(gain) < 2:
        return 0.0
    spread = float(gain.std())
    if spread == 0.0:
        return 0.0
    return float(gain.mean()) / (spread / len(gain) ** 0.5)


@dataclass
class BlendScores:
    """The validation scores a blend is fitted on, collected batch by batch.

    ``add(output, labels)`` keeps a FLUID output's fused logits (B x C; the eval-mode logits while the blend is
    (1, 0, 0)), each modality's classifier logits and presence, and the labels (B); ``fit()`` chooses the weights
    and returns them with the blended logits (N x C)."""

    fused: list = dataclasses.field(default_factory=list)
    image: list = dataclasses.field(default_factory=list)
    image_present: list = dataclasses.field(default_factory=list)
    text: list = dataclasses.field(default_factory=list)
    text_present: list = dataclasses.field(default_factory=list)
    label: list = dataclasses.field(default_factory=list)

    def add(self, output, labels: torch.Tensor) -> None:
        self.fused.append(output.logits.detach().float().cpu())
        for modality in ("image", "text"):
            logits, present = output.unimodal_logits[modality]
            getattr(self, modality).append(logits.detach().float().cpu())
            getattr(self, f"{modality}_present").append(present.detach().cpu())
        self.label.append(labels.detach().cpu())

    def gathered(self, all_gather=None) -> "JoinedScores | None":
        """The batches joined (None when empty); ``all_gather`` (a LightningModule's, under DDP) joins every
        process's share."""
        if not self.label:
            return None
        parts = {f.name: torch.cat(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if all_gather is not None:
            parts = {k: all_gather(v).flatten(0, 1).cpu() for k, v in parts.items()}
        return JoinedScores(**parts)


@dataclass(frozen=True)
class JoinedScores:
    """N x C logits of the fused and per-modality classifiers, N bool presences and N labels (-1 = none)."""

    fused: torch.Tensor
    image: torch.Tensor
    image_present: torch.Tensor
    text: torch.Tensor
    text_present: torch.Tensor
    label: torch.Tensor

    def fit(self) -> tuple[BlendFit, torch.Tensor]:
        """The chosen weights (:func:`choose_weights`) and the N x C blended logits they give."""
        image, text = (self.image, self.image_present), (self.text, self.text_present)
        fit = choose_weights(self.fused, image, text, self.label)
        return fit, blend_log_probs(torch.tensor(fit.weights), self.fused, image, text)


@torch.no_grad()
def fit_blend(network, loader, device: torch.device | str = "cpu") -> BlendFit:
    """Scores ``loader`` (the validation split) with the blend reset to the fused classifier alone, chooses the
    weights (:func:`choose_weights`) and sets them on ``network.head.blend_weights``."""
    from lightning.fabric.utilities.apply_func import move_data_to_device

    head = network.head
    if not blends(head):
        raise ValueError(f"head {head.name!r} does not blend its classifiers (needs unimodal_blend)")
    head.blend_weights.copy_(torch.tensor(FUSED_ONLY))
    network.to(device).eval()
    scores = BlendScores()
    for batch in loader:
        scores.add(network(move_data_to_device(batch, device), aux_losses=False), batch["label"])
    joined = scores.gathered()
    if joined is None:
        raise ValueError("fitting the blend needs validation items; the validation loader gave none")
    fit, _ = joined.fit()
    head.blend_weights.copy_(torch.tensor(fit.weights))
    return fit
