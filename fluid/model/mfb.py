"""Multi-modal factorised bilinear pooling (MFB; Yu et al., 2017) - MoLT's FBP step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MFBPooling"]


class MFBPooling(nn.Module):
    """z = L2norm(signed_sqrt(SumPool_k(Dropout(Uᵀx ⊙ Vᵀy)))).

    Args:
        x_dim (int): width of the first input.
        y_dim (int): width of the second input.
        out_dim (int): output width o.
        factor (int): k, the factor of the low-rank bilinear form (U, V are x_dim x (o·k)).
        dropout (float): dropout on the elementwise product (as in MFB).
    """

    def __init__(self, x_dim: int, y_dim: int, out_dim: int, factor: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.factor = factor
        self.proj_x = nn.Linear(x_dim, out_dim * factor)
        self.proj_y = nn.Linear(y_dim, out_dim * factor)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """
        Args:
            x (Tensor): B x x_dim.
            y (Tensor): B x y_dim.

        Returns:
            Tensor: B x out_dim, unit L2 norm.
        """
        z = self.drop(self.proj_x(x) * self.proj_y(y))
        z = z.view(z.shape[0], self.out_dim, self.factor).sum(dim=-1)
        z = torch.sign(z) * torch.sqrt(z.abs() + 1e-6)
        return F.normalize(z, dim=-1)
