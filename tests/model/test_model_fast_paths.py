"""The inference fast paths compute what the plain formulations compute: absorbed attention (W^K, W^V on the
query side), the first layer's queries computed once per batch, grouped sparse MoE dispatch, and the missing-modality token's all-present shortcut (docs/model.md, "Speed")."""

from __future__ import annotations

import math

import pytest
import torch
from torch.overrides import TorchFunctionMode

from fluid.model import build_head
from fluid.model.attention import MultiHeadAttention
from fluid.model.missing import MissingModalityToken
from fluid.model.moe import Experts, MixtureOfExperts
from fluid.model.qtransform import QTransform

TOL = {"atol": 1e-5, "rtol": 1e-5}


# ------------------------------------------------------------------------------------------ references
def reference_attention(mha: MultiHeadAttention, query, kv, mask):
    """softmax(Q Kᵀ/√d_h) V per head with every key/value token projected (the plain formula)."""
    b, h = kv.shape[0], mha.num_heads
    q = mha.q_proj(query).expand(b, -1, -1)
    k, v = mha.k_proj(kv), mha.v_proj(kv)

    def split(t):
        return t.reshape(b, t.shape[1], h, -1).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    out = scores.softmax(-1) @ v
    return mha.out_proj(out.transpose(1, 2).reshape(b, query.shape[1], -1))


def reference_qtransform(qt: QTransform, tokens, mask):
    """The Q-Transform as first written: queries expanded to the batch, every layer in full (no dropout)."""
    x = qt.queries.expand(tokens.shape[0], -1, -1)
    for layer in qt.layers:
        x = x + reference_attention(layer.attn, layer.norm_q(x), layer.norm_kv(tokens), mask)
        x = x + layer.ffn(layer.norm_ffn(x))
    return qt.norm(x)


def set_absorb(module: torch.nn.Module, mode: str) -> None:
    for m in module.modules():
        if isinstance(m, MultiHeadAttention):
            m.absorb = mode


def plain_paths(monkeypatch) -> None:
    """Every shortcut off, as under graph capture: per-expert MoE loop, full mask handling."""
    for module in ("attention", "moe", "missing"):
        monkeypatch.setattr(f"fluid.model.{module}.capturing", lambda: True)


def padded(b: int, length: int, dim: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, length, dim, generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    if b > 1:
        mask[0, length // 2:] = False
    if b > 2:
        mask[2, 1:] = False
    return x.masked_fill(~mask[..., None], 0.0), mask


# ------------------------------------------------------------------------------------------ attention
@pytest.mark.parametrize("shared_queries", [True, False])
@pytest.mark.parametrize("mode", ["always", "never", "auto"])
def test_attention_equals_the_plain_formula_either_way(mode, shared_queries):
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, num_heads=4, kv_dim=24).eval()
    mha.absorb = mode
    kv, mask = padded(3, 9, 24, seed=1)
    query = torch.randn(1 if shared_queries else 3, 5, 32)
    expected = reference_attention(mha, query, kv, mask)
    torch.testing.assert_close(mha(query, kv, mask), expected, **TOL)
    torch.testing.assert_close(mha(query, kv), reference_attention(mha, query, kv, None), **TOL)


def test_absorbed_attention_gradients_equal_the_projected_ones():
    torch.manual_seed(0)
    kv, mask = padded(3, 9, 24, seed=2)
    query = torch.randn(1, 5, 32)
    grads = {}
    for mode in ("always", "never"):
        torch.manual_seed(0)
        mha = MultiHeadAttention(32, num_heads=4, kv_dim=24)  # training mode, no dropout
        mha.absorb = mode
        q, x = query.clone().requires_grad_(), kv.clone().requires_grad_()
        (mha(q, x, mask) ** 2).sum().backward()
        grads[mode] = {"query": q.grad, "kv": x.grad, **{n: p.grad for n, p in mha.named_parameters()}}
    assert grads["always"].keys() == grads["never"].keys()
    for name, grad in grads["never"].items():
        torch.testing.assert_close(grads["always"][name], grad, **TOL, msg=name)
    assert grads["always"]["k_proj.weight"].abs().sum() > 0


def shaped(*shape: int) -> torch.Tensor:
    """A CPU tensor of this shape without its memory (absorbs reads only shapes and the device)."""
    return torch.empty((1,) * len(shape)).expand(*shape)


def absorbs_by_formula(b, bq, lq, lk, d, kv, h) -> bool:
    """The cost rule (ratio 0.5) from the multiply-adds of each form: B items, B_q query rows, H heads, d = H·d_h."""
    dh = d // h
    projected = b * lk * kv * d * 2  # K = X W^K, V = X W^V
    projected += b * h * lq * lk * dh * 2  # Q Kᵀ and P V per head
    absorbed = bq * h * lq * dh * kv  # Q_h W_hᴷ, every call
    absorbed += b * h * lq * lk * kv * 2  # (Q_h W_hᴷ) Xᵀ and P_h X
    absorbed += b * h * lq * kv * dh  # (P_h X) W_hⱽᵀ
    return absorbed <= 0.5 * projected


@pytest.mark.parametrize("d,kv,h", [(768, 768, 8), (256, 768, 4), (768, 64, 12)])
@pytest.mark.parametrize("b,bq", [(1, 1), (64, 1), (64, 64)])
@pytest.mark.parametrize("lq", [2, 32])
def test_auto_absorbs_where_the_multiply_add_count_says(d, kv, h, b, bq, lq):
    mha = MultiHeadAttention(d, num_heads=h, kv_dim=kv).eval()
    decisions = []
    for lk in range(1, 1600):
        expected = absorbs_by_formula(b, bq, lq, lk, d, kv, h)
        assert mha.absorbs(shaped(bq, lq, d), shaped(b, lk, kv)) == expected, lk
        decisions.append(expected)
    assert decisions[0] is False and decisions[-1] is True  # both sides of the threshold were checked


def test_auto_absorbs_only_where_it_saves_multiply_adds():
    torch.manual_seed(0)
    mha = MultiHeadAttention(768, num_heads=8).eval()  # the paper's width
    queries, few = torch.randn(1, 32, 768), torch.randn(1, 2, 768)
    assert mha.absorbs(queries, torch.zeros(1, 197, 768))  # 32 queries over 197 image tokens
    assert mha.absorbs(few, torch.zeros(1, 32, 768))  # the Q-Bottleneck: 2 queries over 32 fused tokens
    assert not mha.absorbs(queries, torch.zeros(1, 16, 768))  # more queries than keys: project the keys
    # 32 queries at batch 1: absorbed 393216·L_k + 2·32·768² vs half of projected 614400·L_k -> from 171 keys
    assert not mha.absorbs(queries, torch.zeros(1, 170, 768)) and mha.absorbs(queries, torch.zeros(1, 171, 768))
    # queries shared by a batch of 64: Q_h W_hᴷ is paid once for 64 items -> from 87 keys, not with 64 query rows
    assert not mha.absorbs(queries, shaped(64, 86, 768)) and mha.absorbs(queries, shaped(64, 87, 768))
    assert not mha.absorbs(queries.expand(64, -1, -1), shaped(64, 87, 768))
    assert not mha.absorbs(queries, torch.zeros(1, 197, 768, device="meta"))  # accelerators keep fused SDPA
    mha.train()
    assert mha.absorbs(queries, torch.zeros(1, 197, 768))  # no attention dropout configured
    mha.dropout = 0.1
    assert not mha.absorbs(queries, torch.zeros(1, 197, 768))  # dropout on P needs the projected form
    mha.absorb = "always"
    assert mha.absorbs(queries, torch.zeros(1, 16, 768))
    mha.absorb = "fast"
    with pytest.raises(ValueError, match="absorb='fast'"):
        mha(torch.randn(1, 2, 768), torch.randn(1, 3, 768))


# ------------------------------------------------------------------------------------------ Q-Transform
def small_qtransform(seed: int = 0) -> QTransform:
    torch.manual_seed(seed)
    return QTransform(input_dim=24, hidden_dim=32, num_queries=4, num_heads=4, num_layers=2, ffn_dim=48).eval()


@pytest.mark.parametrize("mode", ["always", "never", "auto"])
def test_qtransform_matches_the_first_formulation(mode):
    qt = small_qtransform()
    set_absorb(qt, mode)
    tokens, mask = padded(3, 7, 24, seed=3)
    with torch.no_grad():
        expected = reference_qtransform(qt, tokens, mask)
    with torch.inference_mode():
        torch.testing.assert_close(qt(tokens, mask), expected, **TOL)
    torch.testing.assert_close(qt(tokens, mask), expected, **TOL)  # recording gradients


def test_qtransform_follows_in_place_weight_writes():
    """Nothing derived from the weights outlives a call: writes through param.data are seen too."""
    qt = small_qtransform()
    set_absorb(qt, "always")
    tokens, mask = padded(2, 6, 24, seed=4)
    with torch.inference_mode():
        qt(tokens, mask)
    qt.layers[0].attn.k_proj.weight.data.mul_(1.5)
    qt.queries.data.add_(0.3)
    with torch.no_grad():
        torch.testing.assert_close(qt(tokens, mask), reference_qtransform(qt, tokens, mask), **TOL)


# ------------------------------------------------------------------------------------------ MoE
def routed_moe(top_k: int, dispatch: str) -> MixtureOfExperts:
    """6 experts; the router prefers experts 1 and 4, so several experts get no rows."""
    torch.manual_seed(0)
    moe = MixtureOfExperts(8, 16, 3, num_experts=6, top_k=top_k, dispatch=dispatch)
    with torch.no_grad():
        moe.router.proj.bias.copy_(torch.tensor([0.0, 4.0, 0.0, 0.0, 4.0, 0.0]))
    return moe


@pytest.mark.parametrize("top_k", [1, 2])
def test_grouped_sparse_dispatch_matches_the_per_expert_loop_and_dense(top_k):
    x = torch.randn(10, 8, generator=torch.Generator().manual_seed(9))
    results = {}
    for name in ("grouped", "per_expert", "dense"):
        moe = routed_moe(top_k, "dense" if name == "dense" else "sparse")
        xi = x.clone().requires_grad_()
        if name == "per_expert":
            _, weights, indices = moe.router(xi)
            out = moe._sparse_per_expert(xi, weights, indices)
        else:
            out = moe(xi).output
        out.pow(2).sum().backward()
        results[name] = (out.detach(), xi.grad, {n: p.grad for n, p in moe.named_parameters()})
    used = set(routed_moe(top_k, "sparse")(x).indices.flatten().tolist())
    assert len(used) < 6  # some experts had nothing to do
    for name in ("per_expert", "dense"):
        torch.testing.assert_close(results["grouped"][0], results[name][0], **TOL)
        torch.testing.assert_close(results["grouped"][1], results[name][1], **TOL)
        for param, grad in results[name][2].items():
            torch.testing.assert_close(results["grouped"][2][param], grad, **TOL, msg=param)


class _CountTorchCalls(TorchFunctionMode):
    """Counts the torch functions and tensor methods called inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def test_dense_dispatch_runs_every_expert_in_the_same_few_operators_whatever_their_number():
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(4))
    calls = {}
    for num_experts in (4, 16):
        torch.manual_seed(0)
        moe = MixtureOfExperts(8, 16, 3, num_experts=num_experts, top_k=2, dispatch="dense").eval()
        with torch.no_grad(), _CountTorchCalls() as counter:
            moe(x)
        calls[num_experts] = counter.calls
        with torch.no_grad():  # and it is the gate-weighted sum of the chosen experts
            out = moe(x)
            manual = torch.stack([sum(out.weights[i, s] * moe.experts(x[i : i + 1], int(out.indices[i, s]))[0]
                                      for s in range(2)) for i in range(3)])
        torch.testing.assert_close(out.output, manual, **TOL)
    assert calls[4] == calls[16] < 4 * 16  # calling each expert costs at least 4 operators per expert


def test_dense_dispatch_applies_the_experts_dropout_in_training():
    torch.manual_seed(0)
    moe = MixtureOfExperts(8, 16, 3, num_experts=6, top_k=2, dropout=0.5, dispatch="dense")
    x = torch.randn(10, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference = moe.eval()(x).output
        moe.train()
        assert not torch.allclose(moe(x).output, reference)  # dropout 0.5 on the experts' hidden layer
        moe.experts.dropout.p = 0.0
        torch.testing.assert_close(moe(x).output, reference, **TOL)


def test_unrouted_experts_do_not_run_and_still_get_zero_gradients(monkeypatch):
    moe = routed_moe(2, "sparse")
    ran: list[int] = []
    original = Experts.apply_one
    monkeypatch.setattr(Experts, "apply_one", lambda self, x, *w: ran.append(x.shape[0]) or original(self, x, *w))
    x = torch.randn(10, 8)
    out = moe(x)
    routed = sorted(set(out.indices.flatten().tolist()))
    assert len(ran) == len(routed) < 6  # only the routed experts run, under autograd too
    out.output.sum().backward()
    assert all(p.grad is not None for p in moe.parameters())  # DDP sees every parameter used
    unrouted = [e for e in range(6) if e not in routed]
    for name in ("w1", "b1", "w2", "b2"):
        grad = getattr(moe.experts, name).grad
        assert grad[unrouted].abs().sum() == 0 and grad[routed].abs().sum() > 0, name


# ------------------------------------------------------------------------------------------ missing token
def test_missing_token_leaves_complete_sequences_as_they_are():
    torch.manual_seed(0)
    miss = MissingModalityToken(4)
    x = torch.randn(2, 3, 4)
    tokens, mask, present = miss(x, torch.ones(2, 3, dtype=torch.bool), 2)
    torch.testing.assert_close(tokens, x)
    assert mask.all() and present.all()
    partial = torch.tensor([[True, True, False], [True, True, True]])
    tokens, mask, present = miss(x, partial, 2)
    assert tokens[0, 2].abs().sum() == 0 and present.all() and mask.tolist() == partial.tolist()


# ------------------------------------------------------------------------------------------ whole head
def tiny_fluid(dispatch: str):
    torch.manual_seed(0)
    return build_head("fluid", 3, 24, 40, hidden_dim=32, num_heads=4, num_queries=4, num_experts=4, top_k=2,
                      expert_hidden_dim=32, gate_hidden_dim=16, ffn_dim=64, moe_dispatch=dispatch).eval()


def head_inputs(b: int):
    image, image_mask = padded(b, 5, 24, seed=10)
    text, text_mask = padded(b, 7, 40, seed=11)
    if b > 1:
        image_mask[1] = False  # item 1 has no image
    if b > 3:
        text_mask[3] = False  # item 3 has no text
    return image, text, image_mask, text_mask


def outputs(head, *inputs) -> dict:
    out = head(*inputs)
    return {"logits": out.logits, "embedding": out.embedding, "gate": out.gate, "routing": out.routing,
            "expert_load": out.expert_load, **out.aux_losses}


@pytest.mark.parametrize("dispatch", ["sparse", "dense"])
@pytest.mark.parametrize("b", [1, 5])
@pytest.mark.parametrize("text_absent", [False, True])
def test_fluid_head_fast_paths_match_the_plain_paths(dispatch, b, text_absent, monkeypatch):
    head = tiny_fluid(dispatch)
    image, text, image_mask, text_mask = head_inputs(b)
    if text_absent:
        text = text_mask = None
    args = (image, text, image_mask, text_mask)
    fast = {}
    for mode in ("auto", "always"):
        set_absorb(head, mode)
        with torch.inference_mode():
            fast[mode] = outputs(head, *args)
    set_absorb(head, "never")
    plain_paths(monkeypatch)
    with torch.no_grad():
        plain = outputs(head, *args)
    for mode, result in fast.items():
        assert result.keys() == plain.keys()
        for key, value in plain.items():
            torch.testing.assert_close(result[key], value, **TOL, msg=f"{mode}: {key}")


def test_paper_size_head_matches_the_plain_paths(monkeypatch):
    """The head fluid bench times (paper defaults, 197 image tokens), with padding and a missing image."""
    torch.manual_seed(0)
    head = build_head("fluid", 17, 768, 768).eval()
    g = torch.Generator().manual_seed(12)
    image, text = torch.randn(2, 197, 768, generator=g), torch.randn(2, 40, 768, generator=g)
    image_mask = torch.ones(2, 197, dtype=torch.bool)
    image_mask[1] = False
    text_mask = torch.ones(2, 40, dtype=torch.bool)
    text_mask[0, 25:] = False
    absorbed: list[int] = []
    original = MultiHeadAttention._absorbed
    monkeypatch.setattr(MultiHeadAttention, "_absorbed",
                        lambda self, *a: absorbed.append(self.kv_dim) or original(self, *a))
    with torch.inference_mode():
        fast = outputs(head, image, text, image_mask, text_mask)
    assert len(absorbed) == 2  # image Q-Transform and Q-Bottleneck; 32 queries over 40 text tokens: projected
    plain_paths(monkeypatch)
    set_absorb(head, "never")
    with torch.no_grad():
        plain = outputs(head, image, text, image_mask, text_mask)
    for key, value in plain.items():
        torch.testing.assert_close(fast[key], value, **TOL, msg=key)


def test_training_gradients_are_the_same_on_every_path(monkeypatch):
    head = tiny_fluid("sparse")
    head.train()  # dropout 0.1: attention dropout keeps the projected form; set it to 0 to absorb
    for m in head.modules():
        if isinstance(m, MultiHeadAttention):
            m.dropout = 0.0
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    image, text, image_mask, text_mask = head_inputs(5)
    labels = torch.tensor([0, 1, 2, 1, -1])
    grads = {}
    for mode in ("always", "never"):
        set_absorb(head, mode)
        if mode == "never":
            plain_paths(monkeypatch)
        head.zero_grad()
        out = head(image, text, image_mask, text_mask)
        head.loss(out, labels)["loss"].backward()
        grads[mode] = {n: p.grad.clone() for n, p in head.named_parameters() if p.grad is not None}
    assert grads["always"].keys() == grads["never"].keys()
    assert len(grads["never"]) == sum(1 for _ in head.parameters())  # every parameter gets a gradient
    for name, grad in grads["never"].items():
        torch.testing.assert_close(grads["always"][name], grad, **TOL, msg=name)
