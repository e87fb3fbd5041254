"""Mixture-of-Experts (paper section 4.6, eq. 9): router, top-k, expert MLPs, load balancing, usage stats.

    N_{F'} = Σ_{i ∈ top-k} G_i(F') · E_i(F')

The router is a linear layer to E logits; G is the softmax over the E experts restricted to the top k and
renormalised to sum 1 (for k = 1 the raw top probability is kept, as in Switch Transformer, so the router
still gets a gradient from the task loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .capture import capturing
from .mlp import MLP

__all__ = [
    "load_balancing_loss",
    "router_z_loss",
    "expert_usage",
    "Router",
    "ExpertMLP",
    "DISPATCH_MODES",
    "MixtureOfExperts",
    "dense_dispatch",
    "MoEOutput",
]


def load_balancing_loss(router_logits: Tensor, top_k: int) -> Tensor:
    """Switch-Transformer load-balancing loss, generalised to top-k.

        E · Σᵢ fᵢ · Pᵢ,   fᵢ = (# top-k assignments to expert i) / (N·k),   Pᵢ = mean_n softmax(logits_n)ᵢ

    Args:
        router_logits (Tensor): N x E.
        top_k (int): experts per routed vector.

    Returns:
        Tensor: scalar; 1.0 under perfectly uniform routing, up to E when everything goes to one expert.
        The gradient flows through Pᵢ only (fᵢ is a count).
    """
    n, num_experts = router_logits.shape
    probs = router_logits.float().softmax(dim=-1)
    indices = router_logits.topk(top_k, dim=-1).indices
    f = expert_usage(indices, num_experts)
    p = probs.mean(dim=0)
    return num_experts * (f * p).sum()


def router_z_loss(router_logits: Tensor) -> Tensor:
    """ST-MoE router z-loss: mean over vectors of logsumexp(logits)².

    Args:
        router_logits (Tensor): N x E.

    Returns:
        Tensor: scalar.
    """
    return router_logits.float().logsumexp(dim=-1).pow(2).mean()


def expert_usage(indices: Tensor, num_experts: int) -> Tensor:
    """Fraction of routing assignments per expert.

    Args:
        indices (Tensor): N x k chosen expert ids.
        num_experts (int): E.

    Returns:
        Tensor: E, float, sums to 1 (no gradient).
    """
    counts = torch.bincount(indices.reshape(-1), minlength=num_experts).float()
    return counts / counts.sum().clamp(min=1.0)


class Router(nn.Module):
    """Linear router with top-k selection.

    Args:
        dim (int): input width.
        num_experts (int): E.
        top_k (int): k.
    """

    def __init__(self, dim: int, num_experts: int, top_k: int) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k={top_k} must be in [1, num_experts={num_experts}]")
        self.top_k = top_k
        self.proj = nn.Linear(dim, num_experts)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """
        Args:
            x (Tensor): N x dim.

        Returns:
            logits (Tensor): N x E router logits.
            weights (Tensor): N x k gate values G of the chosen experts.
            indices (Tensor): N x k chosen expert ids (distinct per row).
        """
        logits = self.proj(x)
        probs = logits.float().softmax(dim=-1)
        weights, indices = probs.topk(self.top_k, dim=-1)
        if self.top_k > 1:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return logits, weights.to(x.dtype), indices


class ExpertMLP(MLP):
    """One expert: a small MLP (Linear -> GELU -> dropout -> Linear).

    Args:
        in_dim (int), hidden_dim (int), out_dim (int), dropout (float).
    """


@dataclass
class MoEOutput:
    """Result of :class:`MixtureOfExperts`.

    Attributes:
        output (Tensor): N x out_dim.
        router_logits (Tensor): N x E.
        weights (Tensor): N x k.
        indices (Tensor): N x k.
        load (Tensor): E, fraction of assignments per expert (sums to 1, detached).
        balance_logits (Tensor): N x E router logits for the load-balancing loss: the same values as
            ``router_logits``, computed from a detached input unless ``balance_trains_input`` (so the loss
            trains the router only).
    """

    output: Tensor
    router_logits: Tensor
    weights: Tensor
    indices: Tensor
    load: Tensor
    balance_logits: Tensor

    @property
    def routing(self) -> Tensor:
        """N x E routing weights (detached): ``weights`` scattered to the chosen experts, 0 elsewhere."""
        return torch.zeros_like(self.router_logits, dtype=self.weights.dtype).scatter(
            1, self.indices, self.weights).detach()


DISPATCH_MODES = ("auto", "sparse", "dense")


def dense_dispatch(dispatch: str, device: torch.device) -> bool:
    """Whether a :class:`MixtureOfExperts` with this ``dispatch`` runs every expert on every vector on ``device``
    ("auto": on any accelerator, not on the CPU)."""
    return dispatch == "dense" or (dispatch == "auto" and device.type != "cpu")


class MixtureOfExperts(nn.Module):
    """E expert MLPs, of which the router's top k run on each input vector; outputs mixed by the gate.

    Args:
        in_dim (int): input width.
        hidden_dim (int): each expert's hidden width.
        out_dim (int): output width (FLUID: the number of classes; the experts output logits).
        num_experts (int): E (paper: 16).
        top_k (int): k (paper: 2).
        dropout (float): dropout inside the experts.
        dispatch (str): "sparse" (each expert runs on its routed vectors only; the selections are sized on
            the host, one read per call), "dense" (every expert runs on every vector, non-chosen ones weighted
            0; same result) or "auto": dense on a GPU, where sparse dispatch waits for the host (measured on
            an H100 with the paper-size head when it waited once per expert: 6.8 ms sparse vs 3.7 ms dense per
            item at batch 1, 8.3 vs 6.2 ms at batch 64), sparse on a CPU, where the k/E share of the expert
            arithmetic is what counts.
        balance_trains_input (bool): whether the load-balancing loss (on ``balance_logits``) may send
            gradient into the input ``x``; False = it trains the router weights only.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_experts: int = 16,
        top_k: int = 2,
        dropout: float = 0.0,
        dispatch: str = "auto",
        balance_trains_input: bool = False,
    ) -> None:
        super().__init__()
        if dispatch not in DISPATCH_MODES:
            raise ValueError(f"dispatch={dispatch!r} is not one of {list(DISPATCH_MODES)}")
        self.num_experts = num_experts
        self.top_k = top_k
        self.out_dim = out_dim
        self.dispatch = dispatch
        self.balance_trains_input = balance_trains_input
        self.router = Router(in_dim, num_experts, top_k)
        self.experts = nn.ModuleList(ExpertMLP(in_dim, hidden_dim, out_dim, dropout) for _ in range(num_experts))

    def forward(self, x: Tensor) -> MoEOutput:
        """
        Args:
            x (Tensor): N x in_dim.

        Returns:
            MoEOutput with ``output`` N x out_dim.
        """
        logits, weights, indices = self.router(x)
        if dense_dispatch(self.dispatch, x.device):
            gates = torch.zeros_like(logits, dtype=weights.dtype).scatter(1, indices, weights)  # N x E
            stacked = torch.stack([expert(x) for expert in self.experts], dim=1)  # N x E x out
            out = (gates.unsqueeze(-1) * stacked).sum(dim=1)
        elif capturing():
            out = self._sparse_per_expert(x, weights, indices)
        else:
            out = self._sparse_grouped(x, weights, indices)
        load = expert_usage(indices.detach(), self.num_experts)
        # Without autograd, router logits of the detached input are these same values: no second product.
        balance_logits = (logits if self.balance_trains_input or not torch.is_grad_enabled()
                          else self.router.proj(x.detach()))
        return MoEOutput(out, logits, weights, indices, load, balance_logits)

    def _sparse_grouped(self, x: Tensor, weights: Tensor, indices: Tensor) -> Tensor:
        """Sparse dispatch with one host read: the N·k assignments sorted by expert (stable, so rows stay in
        order), each expert run on its contiguous run of rows, one ``index_add`` back.

        Each output row receives its experts' weighted outputs in ascending expert order, as
        :meth:`_sparse_per_expert` adds them. Experts with no rows are skipped when no gradient is recorded;
        under autograd they still run on an empty selection, so their parameters get (zero) gradients and DDP
        does not see them as unused.

        Args:
            x (Tensor): N x in_dim. weights (Tensor): N x k. indices (Tensor): N x k.

        Returns:
            Tensor: N x out_dim.
        """
        flat = indices.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.num_experts).tolist()
        rows = torch.div(order, self.top_k, rounding_mode="floor")
        gates = weights.reshape(-1)[order].unsqueeze(-1)
        record = torch.is_grad_enabled()
        pieces = [expert(chunk) for expert, chunk, count in zip(self.experts, x[rows].split(counts), counts)
                  if count or record]
        y = torch.cat(pieces) * gates
        return x.new_zeros(x.shape[0], self.out_dim).index_add(0, rows, y.to(x.dtype))

    def _sparse_per_expert(self, x: Tensor, weights: Tensor, indices: Tensor) -> Tensor:
        """Sparse dispatch without host reads of routing values (for graph capture: ONNX, torch.compile): each
        expert selects its rows with ``nonzero``; one with none still runs on the empty selection (DDP).

        Args and return as :meth:`_sparse_grouped`.
        """
        out = x.new_zeros(x.shape[0], self.out_dim)
        for e, expert in enumerate(self.experts):
            rows, slots = torch.nonzero(indices == e, as_tuple=True)
            y = expert(x[rows]) * weights[rows, slots].unsqueeze(-1)
            out = out.index_add(0, rows, y.to(out.dtype))
        return out

    def balance_loss(self, router_logits: Tensor) -> Tensor:
        """:func:`load_balancing_loss` with this layer's k. router_logits (Tensor): N x E."""
        return load_balancing_loss(router_logits, self.top_k)

