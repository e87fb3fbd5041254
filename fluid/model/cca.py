"""Soft-CCA correlation loss (MoLT's L_CCA; our choice of a differentiable CCA objective, see docs/molt.md)."""

from __future__ import annotations

from torch import Tensor

__all__ = ["soft_cca_loss"]


def _standardise(x: Tensor, eps: float) -> Tensor:
    return (x - x.mean(dim=0)) / (x.std(dim=0, unbiased=False) + eps)


def _off_diagonal_correlation(z: Tensor) -> Tensor:
    b, d = z.shape
    if d < 2:
        return z.new_zeros(())
    corr = z.t() @ z / b
    off = corr - corr.diagonal().diag_embed()
    return off.abs().sum() / (d * (d - 1))


def soft_cca_loss(x: Tensor, y: Tensor, decorrelation: float = 1.0, eps: float = 1e-5) -> Tensor:
    """Soft CCA (Chang et al., 2018): align standardised views, decorrelate features within each view.

        x̂, ŷ = batch-standardised x, y (zero mean, unit std per feature)
        loss = mean((x̂ − ŷ)²) + decorrelation · (offdiag|corr(x̂)| + offdiag|corr(ŷ)|)

    The first term is 2·(1 − mean per-feature correlation between the views); the second is the mean
    absolute off-diagonal correlation inside each view (it keeps the views from collapsing to one
    direction, which CCA's whitening constraint does exactly).

    Args:
        x (Tensor): B x D, view 1 (only complete pairs).
        y (Tensor): B x D, view 2.
        decorrelation (float): weight of the within-view term.
        eps (float): added to the std.

    Returns:
        Tensor: scalar; 0 when B < 2.
    """
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"expected two B x D tensors, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2:
        return x.new_zeros(())
    xs, ys = _standardise(x.float(), eps), _standardise(y.float(), eps)
    loss = (xs - ys).pow(2).mean()
    if decorrelation > 0:
        loss = loss + decorrelation * (_off_diagonal_correlation(xs) + _off_diagonal_correlation(ys))
    return loss
