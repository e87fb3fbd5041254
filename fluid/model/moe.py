"""Mixture-of-Experts (paper section 4.6, eq. 9): router, top-k, expert MLPs, load balancing, usage stats.

    N_{F'} = Σ_{i ∈ top-k} G_i(F') · E_i(F')

The router is a linear layer to E logits; G is the softmax over the E experts restricted to the top k and
renormalised to sum 1 (for k = 1 the raw top probability is kept, as in Switch Transformer, so the router
still gets a gradient from the task loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .capture import capturing

__all__ = [
    "load_balancing_loss",
    "router_z_loss",
    "expert_usage",
    "Router",
    "Experts",
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


class Experts(nn.Module):
    """E expert MLPs (Linear -> GELU -> dropout -> Linear) with their weights stacked, so that all of them can run
    as one matrix product (:meth:`mixed`) or each on its own rows (:meth:`forward`).

    Parameters: ``w1`` E x h x in and ``b1`` E x h (first layers, as ``nn.Linear`` stores them), ``w2`` E x h x out
    and ``b2`` E x out (second layers, stored input-major so that :meth:`mixed` reads them as one (E·h) x out
    matrix without a copy). Initialised with the random draws of E pairs of ``nn.Linear`` built in turn.
    Checkpoints that stored one ``ExpertMLP`` module per expert (``<prefix>{e}.net.0.weight``, ...) load as well.

    Args:
        num_experts (int): E. in_dim (int), hidden_dim (int): h, out_dim (int), dropout (float): after the GELU.
    """

    def __init__(self, num_experts: int, in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.w1 = nn.Parameter(torch.empty(num_experts, hidden_dim, in_dim))
        self.b1 = nn.Parameter(torch.empty(num_experts, hidden_dim))
        self.w2 = nn.Parameter(torch.empty(num_experts, hidden_dim, out_dim))
        self.b2 = nn.Parameter(torch.empty(num_experts, out_dim))
        self.dropout = nn.Dropout(dropout)
        with torch.no_grad():
            for e in range(num_experts):
                first, second = nn.Linear(in_dim, hidden_dim), nn.Linear(hidden_dim, out_dim)
                self.w1[e].copy_(first.weight)
                self.b1[e].copy_(first.bias)
                self.w2[e].copy_(second.weight.t())
                self.b2[e].copy_(second.bias)
        self.register_load_state_dict_pre_hook(_stack_per_expert_weights)

    def extra_repr(self) -> str:
        e, h, i = self.w1.shape
        return f"num_experts={e}, in_dim={i}, hidden_dim={h}, out_dim={self.w2.shape[-1]}"

    def forward(self, x: Tensor, expert: int) -> Tensor:
        """One expert. x (Tensor): N x in -> N x out."""
        return self.apply_one(x, self.w1[expert], self.b1[expert], self.w2[expert], self.b2[expert])

    def apply_one(self, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        """An expert from its own weights (one slice of each parameter). x (Tensor): N x in -> N x out."""
        hidden = self.dropout(F.gelu(F.linear(x, w1, b1)))
        return torch.addmm(b2, hidden, w2)

    def per_expert(self) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Each expert's (w1, b1, w2, b2), split with one ``unbind`` per parameter: under autograd their gradients
        come back as one stack, where indexing every expert would add up E full-size gradients."""
        return list(zip(self.w1.unbind(0), self.b1.unbind(0), self.w2.unbind(0), self.b2.unbind(0)))

    def mixed(self, x: Tensor, gates: Tensor) -> Tensor:
        """Every expert on every vector, mixed by ``gates``, in two matrix products over all E experts:

            H = GELU(x [W1_1; …; W1_E]ᵀ + [b1_1; …; b1_E])                   N x (E·h), expert e in block e
            Σ_e g_e (W2_e H_e + b2_e) = (g ⊗ H) [W2_1; …; W2_E] + g [b2_1; …; b2_E]

        The same sum as running each expert (other rounding), in about ten operators whatever E: at batch 1 on a
        GPU the per-operator cost is the time.

        Args:
            x (Tensor): N x in. gates (Tensor): N x E, the chosen experts' gate values, 0 elsewhere.

        Returns:
            Tensor: N x out.
        """
        e, h, in_dim = self.w1.shape
        hidden = self.dropout(F.gelu(F.linear(x, self.w1.reshape(e * h, in_dim), self.b1.reshape(e * h))))
        n = x.shape[0]
        weighted = (hidden.view(n, e, h) * gates.unsqueeze(-1).to(hidden.dtype)).view(n, e * h)
        out = torch.matmul(weighted, self.w2.reshape(e * h, -1).to(hidden.dtype))
        return out + torch.matmul(gates.to(out.dtype), self.b2.to(out.dtype))


def _stack_per_expert_weights(module: Experts, state_dict: dict, prefix: str, *args) -> None:
    """Load hook: the per-expert layout (``{prefix}{e}.net.0.weight`` etc., one ``nn.Linear`` pair per expert)
    becomes the stacked one."""
    if f"{prefix}0.net.0.weight" not in state_dict or f"{prefix}w1" in state_dict:
        return
    layers = {"w1": ("0.weight", False), "b1": ("0.bias", False), "w2": ("3.weight", True), "b2": ("3.bias", False)}
    for name, (key, transpose) in layers.items():
        tensors = [state_dict.pop(f"{prefix}{e}.net.{key}") for e in range(module.num_experts)]
        state_dict[f"{prefix}{name}"] = torch.stack([t.t() if transpose else t for t in tensors])


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
            0, as two matrix products over all experts: :meth:`Experts.mixed`; same result) or "auto": dense on a
            GPU, where sparse dispatch waits for the host (docs/model.md, "MoE dispatch"), sparse on a CPU,
            where the k/E share of the expert arithmetic is what counts.
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
        self.experts = Experts(num_experts, in_dim, hidden_dim, out_dim, dropout)

    def forward(self, x: Tensor) -> MoEOutput:
        """
        Args:
            x (Tensor): N x in_dim.

        Returns:
            MoEOutput with ``output`` N x out_dim.
        """
        logits, weights, indices = self.router(x)
        if dense_dispatch(self.dispatch, x.device):
            out = self.experts.mixed(x, torch.zeros_like(logits, dtype=weights.dtype).scatter(1, indices, weights))
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
        :meth:`_sparse_per_expert` adds them. Experts with no rows do not run; under autograd their slices of the
        stacked parameters get zero gradients (every parameter is in the graph, as DDP wants).

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
        experts = self.experts.per_expert()
        pieces = [self.experts.apply_one(chunk, *experts[e])
                  for e, (chunk, count) in enumerate(zip(x[rows].split(counts), counts)) if count]
        y = torch.cat(pieces) * gates
        return x.new_zeros(x.shape[0], self.out_dim).index_add(0, rows, y.to(x.dtype))

    def _sparse_per_expert(self, x: Tensor, weights: Tensor, indices: Tensor) -> Tensor:
        """Sparse dispatch without host reads of routing values (for graph capture: ONNX, torch.compile): each
        expert selects its rows with ``nonzero`` and runs on them (an empty selection included).

        Args and return as :meth:`_sparse_grouped`.
        """
        out = x.new_zeros(x.shape[0], self.out_dim)
        for e, expert in enumerate(self.experts.per_expert()):
            rows, slots = torch.nonzero(indices == e, as_tuple=True)
            y = self.experts.apply_one(x[rows], *expert) * weights[rows, slots].unsqueeze(-1)
            out = out.index_add(0, rows, y.to(out.dtype))
        return out

    def balance_loss(self, router_logits: Tensor) -> Tensor:
        """:func:`load_balancing_loss` with this layer's k. router_logits (Tensor): N x E."""
        return load_balancing_loss(router_logits, self.top_k)

