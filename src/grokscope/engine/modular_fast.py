"""The modular fast engine: answer-position logits of a 1-layer, LayerNorm-free model on (x, y, =)
tasks, from per-token tables.

Same mathematics as `Transformer(...)(tokens)[:, -1]`, regrouped (docs/engine.md has the derivation),
with the backward written out by hand. For an (x, y, =) task only position 2 reaches the logits,
its query is a constant (token "=" at position 2) and the keys / values of positions 0 and 1 depend
on (token, position) alone. Per member, head h, position j < 2 and token t, with the input rows
E = [W_E; W_pos] (token t is row t, position j is row V + j) and r = W_E[=] + W_pos[2]:

    q[h]          = (r W_Q[h] + b_Q[h]) / sqrt(d_head)          u[h] = W_K[h] q[h]     # the one query
    s             = E u^T                                        [V + 3, h]: every key score
    a[b, j, h]    = softmax_j(s[t_j(b)] + s[V + j])              [B 3 h] (+ b_K . q, which softmax ignores)

Because sum_j a_j = 1 per head, the attention output is v_2 plus a correction from positions 0, 1,
and everything after it is linear up to the MLP activation. With W_cat = [W_in | W_U | 0 pad]:

    U[h, j, t]    = v(t)[h] + v(V + j)[h] - v_2[h]               v = E W_V: [h, 2, V, d_head]
    D[h, j, t]    = U[h, j, t] (W_O[h] W_cat)                    table rows [h 2 V W]
    C             = (r + b_O + sum_h (v_2[h] + b_V[h]) W_O[h]) W_cat + [b_in | b_out W_U + b_U | 0]
    [pre | direct] = C + sum_{j<2, h} a[b, j, h] D[h, j, t_j(b)]   # a weighted sum of 2H + 1 rows
    logits        = direct + act(pre) (W_out W_U)                # one [d_mlp, d_vocab_out] matmul

(attn_only: W_cat = W_U and logits = direct.) The weighted row sum runs as `F.embedding_bag`; its
backward is an embedding_bag over the transposed index (d table) and `torch.sparse.sampled_addmm`
(d a). `_FastLogits` is one autograd node for the whole map from parameters to logits: its backward
is the chain rule written out (`ModularFastEngine._backward`), which saves the ~150 small autograd ops and
broadcast reductions that a recorded graph of the same forward costs every step.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from grokscope.config import ModelConfig
from grokscope.engine.kernels import fastest

log = logging.getLogger(__name__)

ATTN = "blocks.0.attn."
MLP = "blocks.0.mlp."


class _Layout:
    """Which rows each example reads, for one tokens tensor; the transposed index on demand.

    Table rows, per member i of m: D rows ((i H + h) 2 + j) V + t, then the m constant rows C at
    m 2 H V + i (all D rows first, so the D block and the C block are each one contiguous tensor).
    Example b of member i reads D[h, j, t_j(b)] for j < 2 and every head h (entry k = j H + h), then
    C[i]: K = 2 H + 1 entries. `score_idx` picks s[t_j(b)] for j = 0, 1, 2 from the stacked [m (V+3) h].
    """

    def __init__(self, tokens: Tensor, n_heads: int, d_vocab: int) -> None:
        m, b, _ = tokens.shape
        dev = tokens.device
        H, V = n_heads, d_vocab
        self.k = 2 * H + 1
        self.n = m * b
        self.n_d = m * 2 * H * V  # D rows of all members
        self.n_table = self.n_d + m
        member = torch.arange(m, device=dev).view(m, 1, 1, 1)
        heads = torch.arange(H, device=dev).view(1, 1, H)
        pos = torch.arange(2, device=dev).view(1, 2, 1)
        cols = ((member * H + heads) * 2 + pos) * V + tokens[..., :2, None]  # [m b 2 H]
        const = (self.n_d + torch.arange(m, device=dev)).view(m, 1, 1).expand(m, b, 1)
        self.col = torch.cat([cols.reshape(m, b, 2 * H), const], -1).view(self.n, self.k)  # [n K]
        self.score_idx = (tokens + torch.arange(m, device=dev).view(m, 1, 1) * (V + 3)).reshape(-1)  # [m*b*3]
        self.score_bins = (self.score_idx[:, None] * H + torch.arange(H, device=dev)).reshape(-1)  # [m*b*3*H]: (row, head)
        self._t: tuple[Tensor, Tensor, Tensor] | None = None
        self._pattern: Tensor | None = None

    def transpose(self) -> tuple[Tensor, Tensor, Tensor]:
        """(order, example, offsets): entries sorted by table row, the example of each, bag starts."""
        if self._t is None:
            flat = self.col.reshape(-1)
            order = torch.argsort(flat, stable=True)
            offsets = torch.zeros(self.n_table, dtype=torch.long, device=flat.device)
            offsets[1:] = torch.bincount(flat, minlength=self.n_table)[:-1].cumsum(0)
            self._t = (order, torch.div(order, self.k, rounding_mode="floor"), offsets)
        return self._t

    def pattern(self, like: Tensor) -> Tensor:
        """The [n, n_table] CSR pattern (values 0, `like`'s dtype) of the attention weights' entries.

        The C entry (weight 1, a constant) is left out: its "gradient" is never needed.
        """
        if self._pattern is None or self._pattern.dtype != like.dtype:
            k = self.k - 1
            with warnings.catch_warnings():  # "sparse CSR support is in beta" (once per process)
                warnings.simplefilter("ignore")
                crow = torch.arange(0, self.n * k + 1, k, device=self.col.device)
                zeros = torch.zeros(self.n * k, dtype=like.dtype, device=like.device)
                self._pattern = torch.sparse_csr_tensor(crow, self.col[:, :k].reshape(-1), zeros, (self.n, self.n_table),
                                                        check_invariants=False)
        return self._pattern


class _Saved(NamedTuple):
    """Forward intermediates the hand-written backward reads (m members, B examples, H heads)."""

    E: Tensor  # [m V+3 d]: W_E rows then W_pos rows
    r: Tensor  # [m d]
    q: Tensor  # [m H e], scaled
    u: Tensor  # [m H d]
    a: Tensor  # [m B 3 H] attention of the answer position
    w: Tensor  # [m*B K] row-sum weights
    W_cat: Tensor  # [m d W]
    W_OC: Tensor  # [m H*e W]
    U: Tensor  # [m*H 2V e]
    v2: Tensor  # [m H e]: v_2 + b_V
    resid: Tensor  # [m d]: the constant part of the answer-position residual
    table: Tensor  # [n_table W]
    out: Tensor | None  # [m*B W]: the row sum, ReLU applied in place to its pre block
    W_OU: Tensor | None  # [m d_mlp d_vocab_out]


class _FastLogits(torch.autograd.Function):
    """One autograd node: parameters (in `names` order) -> logits [m B d_vocab_out]."""

    @staticmethod
    def forward(ctx, engine: "ModularFastEngine", layout: _Layout, names: tuple[str, ...], *tensors: Tensor) -> Tensor:  # type: ignore[override]
        P = dict(zip(names, tensors))
        logits, saved = engine._forward(P, layout, keep=True)
        ctx.engine, ctx.layout, ctx.names, ctx.saved = engine, layout, names, saved
        ctx.save_for_backward(*tensors)  # version checks: the parameters must not change before backward
        return logits

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        P = dict(zip(ctx.names, ctx.saved_tensors))
        grads = ctx.engine._backward(P, ctx.layout, ctx.saved, g.contiguous())
        ctx.saved = None
        need = ctx.needs_input_grad[3:]
        return (None, None, None, *[grads[n] if ok else None for n, ok in zip(ctx.names, need)])


class ModularFastEngine:
    """Answer-position logits of a 1-layer, LayerNorm-free transformer on (x, y, =) tokens.

    Tokens at position 2 must be the task's "=" token and tokens at positions 0, 1 must lie in
    [0, d_vocab); both are checked whenever a new tokens tensor is seen. The index is cached per
    tokens tensor (by identity and version), so a trainer that passes the same tensor every step
    builds it, and checks it, once. The backward is hand-written and once-differentiable: second
    derivatives (Hessians) go through the generic engine.
    """

    name = "fast"

    @classmethod
    def supports(cls, model_cfg: ModelConfig, task) -> str | None:
        """Why this engine cannot run the config, or None when it can."""
        if getattr(model_cfg, "name", None) != "transformer":
            return f"model.name is {getattr(model_cfg, 'name', None)!r}, not 'transformer'"
        if model_cfg.n_layers != 1:
            return "model.n_layers != 1"
        if model_cfg.normalization is not None:
            return "model.normalization is set"
        if model_cfg.logits_dtype is not None:
            return "model.logits_dtype is set"
        if task.n_ctx != 3 or tuple(task.target_positions) != (2,) or not hasattr(task, "eq_token"):
            return "the task is not an (x, y, =) task with the answer at position 2"
        return None

    def __init__(self, model_cfg: ModelConfig, task, model=None) -> None:
        reason = self.supports(model_cfg, task)
        if reason is not None:
            raise ValueError(f"ModularFastEngine: {reason}")
        self.cfg = model_cfg
        self.eq = int(task.eq_token)
        self.d_vocab = int(task.d_vocab)
        self.relu = model_cfg.act_fn == "relu"
        self.scale = 1.0 / math.sqrt(model_cfg.d_head)
        self._layouts: list[tuple[Tensor, tuple[int, int, int], _Layout]] = []  # most recent first
        self._kernels: dict[tuple, str] = {}  # shapes -> the formulation kernels.fastest chose

    # -- the engine contract ----------------------------------------------------------------------
    def logits(self, params: dict[str, Tensor], tokens: Tensor) -> Tensor:
        """params: {name: [member, *shape]}, tokens: [member batch 3] -> [member batch 1 d_vocab_out]."""
        return self.answer_logits(params, tokens).unsqueeze(2)

    def answer_logits(self, params: dict[str, Tensor], tokens: Tensor) -> Tensor:
        """The logits at the one target position: [member batch d_vocab_out]."""
        m = params["embed.W_E"].shape[0]
        layout = self._layout(tokens, m, params[ATTN + "W_Q"].shape[1])
        names = tuple(params)
        tensors = tuple(params.values())
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return _FastLogits.apply(self, layout, names, *tensors)
        return self._forward(params, layout, keep=False)[0]

    # -- forward ----------------------------------------------------------------------------------
    def _forward(self, P: dict[str, Tensor], lay: _Layout, keep: bool) -> tuple[Tensor, _Saved | None]:
        W_E, W_pos = P["embed.W_E"], P["pos_embed.W_pos"]
        W_Q, W_K, W_V, W_O = P[ATTN + "W_Q"], P[ATTN + "W_K"], P[ATTN + "W_V"], P[ATTN + "W_O"]
        W_U = P["unembed.W_U"]
        m, V, d = W_E.shape
        H, e = W_Q.shape[1], W_Q.shape[3]
        B = lay.n // m

        # scores of the one query on every key
        E = torch.cat([W_E, W_pos], 1)  # [m V+3 d]
        r = W_E[:, self.eq] + W_pos[:, 2]  # [m d]
        q = torch.matmul(r[:, None, None], W_Q)[:, :, 0]  # [m H e]
        if ATTN + "b_Q" in P:
            q = q + P[ATTN + "b_Q"]
        q = q * self.scale
        u = torch.matmul(W_K, q[..., None])[..., 0]  # [m H d]
        s = torch.bmm(E, u.transpose(1, 2))  # [m V+3 H]
        scores = s.reshape(-1, H).index_select(0, lay.score_idx).view(m, B, 3, H) + s[:, None, V:]
        if ATTN + "b_K" in P:  # the same for every key, so softmax ignores it; kept for exactness
            scores = scores + (P[ATTN + "b_K"] * q).sum(-1)[:, None, None]
        a = scores.softmax(2)  # [m B 3 H]
        w = torch.cat([a[:, :, :2].reshape(m, B, 2 * H), a.new_ones(m, B, 1)], -1).view(lay.n, lay.k)

        # the table: D rows then C rows, written in place into one buffer
        W_cat, bias = self._w_cat(P)  # [m d W], [m W] or None
        Wd = W_cat.shape[-1]
        W_OC = torch.bmm(W_O.reshape(m, H * e, d), W_cat)  # [m H*e W]
        v = torch.matmul(E[:, None], W_V)  # [m H V+3 e]
        v2 = v[:, :, self.eq] + v[:, :, V + 2]  # [m H e]: v_2 without b_V
        U = (v[:, :, None, :V] + (v[:, :, V : V + 2] - v2[:, :, None])[:, :, :, None]).reshape(m * H, 2 * V, e)
        table = W_cat.new_empty(lay.n_table, Wd)
        torch.bmm(U, W_OC.view(m * H, e, Wd), out=table[: lay.n_d].view(m * H, 2 * V, Wd))
        if ATTN + "b_V" in P:
            v2 = v2 + P[ATTN + "b_V"]
        resid = r + torch.bmm(v2.reshape(m, 1, H * e), W_O.reshape(m, H * e, d))[:, 0]  # [m d]
        if ATTN + "b_O" in P:
            resid = resid + P[ATTN + "b_O"]
        C = table[lay.n_d :].view(m, 1, Wd)
        if bias is None:
            torch.bmm(resid[:, None], W_cat, out=C)
        else:
            torch.baddbmm(bias[:, None], resid[:, None], W_cat, out=C)

        out = F.embedding_bag(lay.col, table, per_sample_weights=w, mode="sum")  # [m*B W]
        W_OU = None
        if self.cfg.attn_only:
            logits = out.view(m, B, Wd)[..., : W_U.shape[-1]]
        else:
            d_mlp, d_vo = self.cfg.d_mlp, W_U.shape[-1]
            W_OU = torch.bmm(P[MLP + "W_out"], W_U)  # [m d_mlp d_vocab_out]
            pre = out.view(m, B, Wd)[..., :d_mlp]
            act = pre.relu_() if self.relu else F.gelu(pre)  # ReLU in place: the backward needs only act > 0
            logits = torch.baddbmm(out.view(m, B, Wd)[..., d_mlp : d_mlp + d_vo], act, W_OU)
        if not keep:
            return logits, None
        return logits, _Saved(E, r, q, u, a, w, W_cat, W_OC, U, v2, resid, table, out, W_OU)

    def _w_cat(self, P: dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """[W_in | W_U | 0] [m d W] and its bias row [b_in | b_out W_U + b_U | 0] [m W] (None: no bias).

        With an MLP the width is padded with zero columns to a multiple of 16 floats, so table rows
        and the row-sum output are 64-byte aligned (MKL writes the [B d_mlp] gradient block into
        the padded buffer as fast as into a contiguous one; at row stride 625 it was ~1 ms slower).
        """
        W_U = P["unembed.W_U"]
        b_U = P.get("unembed.b_U")
        if self.cfg.attn_only:
            return W_U, b_U
        m, d, d_vo = W_U.shape
        d_mlp = self.cfg.d_mlp
        Wd = d_mlp + d_vo + (-(d_mlp + d_vo)) % 16
        W_cat = W_U.new_zeros(m, d, Wd)
        W_cat[..., :d_mlp] = P[MLP + "W_in"]
        W_cat[..., d_mlp : d_mlp + d_vo] = W_U
        bias = W_U.new_zeros(m, Wd)
        bias[:, :d_mlp] = P[MLP + "b_in"]
        b_dir = torch.bmm(P[MLP + "b_out"][:, None], W_U)[:, 0]  # [m d_vocab_out]
        bias[:, d_mlp : d_mlp + d_vo] = b_dir if b_U is None else b_dir + b_U
        return W_cat, bias

    # -- backward ---------------------------------------------------------------------------------
    def _backward(self, P: dict[str, Tensor], lay: _Layout, S: _Saved, g: Tensor) -> dict[str, Tensor]:
        """d logits [m B d_vocab_out] -> {name: d param}: the chain rule through `_forward`, step by step back."""
        W_E, W_O, W_V, W_Q, W_K = P["embed.W_E"], P[ATTN + "W_O"], P[ATTN + "W_V"], P[ATTN + "W_Q"], P[ATTN + "W_K"]
        W_U = P["unembed.W_U"]
        m, V, d = W_E.shape
        H, e = W_Q.shape[1], W_Q.shape[3]
        B = lay.n // m
        Wd = S.W_cat.shape[-1]
        d_vo = W_U.shape[-1]
        d_mlp = 0 if self.cfg.attn_only else self.cfg.d_mlp  # the direct block is out[..., d_mlp : d_mlp + d_vo]
        G: dict[str, Tensor] = {}

        # read-out: d out = [d pre | g | 0], d W_OU = act^T g
        if self.cfg.attn_only:
            d_out = g.new_zeros(m, B, Wd)
            d_out[..., :d_vo] = g
            d_W_U = 0
        else:
            out = S.out.view(m, B, Wd)
            d_out = g.new_empty(m, B, Wd)
            d_pre = d_out[..., :d_mlp]
            self._d_pre(g, S.W_OU, d_pre)
            if self.relu:  # out's pre block holds relu(pre): zero where it is 0
                torch.ops.aten.threshold_backward.grad_input(d_pre, out[..., :d_mlp], 0, grad_input=d_pre)
                act = out[..., :d_mlp]
            else:
                pre = out[..., :d_mlp]
                d_pre.copy_(torch.ops.aten.gelu_backward(d_pre, pre))
                act = F.gelu(pre)
            d_out[..., d_mlp : d_mlp + d_vo] = g
            d_out[..., d_mlp + d_vo :] = 0
            # as (g^T act)^T: MKL runs this [d_vocab_out B] x [B d_mlp] product ~15 % faster than act^T g
            d_W_OU = torch.bmm(g.transpose(1, 2), act).transpose(1, 2)  # [m d_mlp d_vocab_out]
            G[MLP + "W_out"] = torch.bmm(d_W_OU, W_U.transpose(1, 2))
            d_W_U = torch.bmm(P[MLP + "W_out"].transpose(1, 2), d_W_OU)
        d_out = d_out.view(lay.n, Wd)

        # the weighted row sum: d table (transposed embedding_bag) and d w (sampled products)
        order, example, offsets = lay.transpose()
        d_table = F.embedding_bag(example, d_out, offsets=offsets, per_sample_weights=S.w.reshape(-1)[order], mode="sum")
        d_a01 = torch.sparse.sampled_addmm(lay.pattern(d_out), d_out, S.table.t()).values()  # [n*2H]: d w without C

        # C row: bias and the constant residual
        d_C = d_table[lay.n_d :]  # [m W]
        d_W_cat = S.resid[:, :, None] * d_C[:, None]  # [m d W]
        d_resid = torch.bmm(d_C[:, None], S.W_cat.transpose(1, 2))[:, 0]  # [m d]
        if ATTN + "b_O" in P:
            G[ATTN + "b_O"] = d_resid
        d_v2 = torch.bmm(d_resid[:, None], W_O.reshape(m, H * e, d).transpose(1, 2)).view(m, H, e)
        G[ATTN + "W_O"] = (S.v2.reshape(m, H * e, 1) * d_resid[:, None]).view(m, H, e, d)
        if ATTN + "b_V" in P:
            G[ATTN + "b_V"] = d_v2
        d_dir = d_C[:, d_mlp : d_mlp + d_vo]  # the bias row's direct part: b_U (+ b_out W_U with an MLP)
        if "unembed.b_U" in P:
            G["unembed.b_U"] = d_dir
        if not self.cfg.attn_only:
            G[MLP + "b_in"] = d_C[:, :d_mlp]
            G[MLP + "b_out"] = torch.bmm(d_dir[:, None], W_U.transpose(1, 2))[:, 0]
            d_W_U = d_W_U + P[MLP + "b_out"][:, :, None] * d_dir[:, None]

        # D rows: D = U W_OC per head
        d_D = d_table[: lay.n_d].view(m * H, 2 * V, Wd)
        d_W_OC = torch.bmm(S.U.transpose(1, 2), d_D).view(m, H * e, Wd)
        d_U = torch.bmm(d_D, S.W_OC.view(m * H, e, Wd).transpose(1, 2)).view(m, H, 2, V, e)
        d_v = W_E.new_zeros(m, H, V + 3, e)  # d (E W_V)
        d_v[:, :, :V] = d_U.sum(2)
        d_v[:, :, V : V + 2] = d_U.sum(3)
        d_v2_all = d_v2 - d_v[:, :, V : V + 2].sum(2)  # v_2 enters U with a minus sign and resid with a plus
        d_v[:, :, self.eq] += d_v2_all
        d_v[:, :, V + 2] += d_v2_all
        G[ATTN + "W_O"] += torch.bmm(d_W_OC, S.W_cat.transpose(1, 2)).view(m, H, e, d)
        d_W_cat += torch.bmm(W_O.reshape(m, H * e, d).transpose(1, 2), d_W_OC)
        G["unembed.W_U"] = d_W_U + d_W_cat[..., d_mlp : d_mlp + d_vo]
        if not self.cfg.attn_only:
            G[MLP + "W_in"] = d_W_cat[..., :d_mlp]
        G[ATTN + "W_V"] = torch.matmul(S.E.transpose(1, 2)[:, None], d_v)  # [m H d e]
        d_E = torch.matmul(d_v, W_V.transpose(2, 3)).sum(1)  # [m V+3 d]

        # scores: softmax over the 3 keys (a_2 drops out of the regrouped sum, so d a_2 = 0)
        d_a = torch.zeros_like(S.a)
        d_a[:, :, :2] = d_a01.view(m, B, 2, H)
        d_scores = S.a * (d_a - (S.a * d_a).sum(2, keepdim=True))  # [m B 3 H]
        # back into the score table: a weighted bincount over (row, head) bins (~9x faster than index_add_
        # of [m B 3, H] rows into [m (V+3), H], which runs row by row)
        d_s = torch.bincount(lay.score_bins, weights=d_scores.reshape(-1), minlength=m * (V + 3) * H)
        d_s = d_s.to(g.dtype).view(m, V + 3, H)
        d_s[:, V:] += d_scores.sum(1)
        d_E += torch.bmm(d_s, S.u)
        d_u = torch.bmm(d_s.transpose(1, 2), S.E)  # [m H d]
        d_q = torch.matmul(d_u[:, :, None], W_K)[:, :, 0]  # [m H e]
        if ATTN + "b_K" in P:
            d_shift = d_scores.sum((1, 2))[..., None]  # [m H 1], 0 up to rounding
            G[ATTN + "b_K"] = d_shift * S.q
            d_q = d_q + d_shift * P[ATTN + "b_K"]
        G[ATTN + "W_K"] = d_u[..., None] * S.q[:, :, None]  # [m H d e]
        d_q = d_q * self.scale
        if ATTN + "b_Q" in P:
            G[ATTN + "b_Q"] = d_q
        G[ATTN + "W_Q"] = S.r[:, None, :, None] * d_q[:, :, None]  # [m H d e]
        d_r = d_resid + torch.matmul(W_Q, d_q[..., None]).sum(1)[..., 0]  # [m d]
        d_E[:, self.eq] += d_r
        d_E[:, V + 2] += d_r
        G["embed.W_E"] = d_E[:, :V]
        G["pos_embed.W_pos"] = d_E[:, V:]
        return G

    def _d_pre(self, g: Tensor, W_OU: Tensor, d_pre: Tensor) -> None:
        """d_pre[i] = g[i] W_OU[i]^T, written into the strided pre block of d_out.

        Three formulations with bit-identical results; which is fastest depends on the CPU's BLAS
        path (`kernels.fastest` times them once per machine and shape): mm straight into the strided
        block (fastest on the Intel Xeon this was tuned on), mm with a contiguous copy of W_OU^T,
        and a product into a fresh tensor copied into the block.
        """
        def strided_out() -> Tensor:
            for i in range(g.shape[0]):  # mm writes the strided block in place (bmm's out= would copy)
                torch.mm(g[i], W_OU[i].t(), out=d_pre[i])
            return d_pre

        def contiguous_b() -> Tensor:
            W_T = W_OU.transpose(1, 2).contiguous()
            for i in range(g.shape[0]):
                torch.mm(g[i], W_T[i], out=d_pre[i])
            return d_pre

        def fresh() -> Tensor:
            return d_pre.copy_(torch.bmm(g, W_OU.transpose(1, 2)))

        variants = {"strided_out": strided_out, "contiguous_b": contiguous_b, "fresh": fresh}
        shape = (tuple(g.shape), tuple(W_OU.shape), str(g.dtype), g.device.type)
        kind = self._kernels.get(shape)
        if kind is None:
            kind = self._kernels[shape] = fastest("modular_fast.d_pre", variants, shape) if g.device.type == "cpu" else "strided_out"
        variants[kind]()

    # -- the index --------------------------------------------------------------------------------
    def _layout(self, tokens: Tensor, m: int, n_heads: int) -> _Layout:
        key = (tokens._version, m, n_heads)
        for i, (tok, k, lay) in enumerate(self._layouts):
            if tok is tokens and k == key:
                if i:
                    self._layouts.insert(0, self._layouts.pop(i))
                return lay
        self._check_tokens(tokens, m)
        lay = _Layout(tokens.expand(m, -1, -1), n_heads, self.d_vocab)
        log.debug("fast engine: new index for %d members x %d examples", m, tokens.shape[1])
        self._layouts = [(tokens, key, lay)] + self._layouts[:3]  # holding `tokens` keeps its identity unique
        return lay

    def _check_tokens(self, tokens: Tensor, m: int) -> None:
        if tokens.dim() != 3 or tokens.shape[-1] != 3 or tokens.shape[0] not in (1, m):
            raise ValueError(f"tokens must be [member batch 3] with member 1 or {m} (got {tuple(tokens.shape)})")
        if tokens.dtype != torch.long:
            raise ValueError(f"tokens must be a LongTensor (got {tokens.dtype})")
        bad_eq = (tokens[..., 2] != self.eq).any()
        bad_range = ((tokens[..., :2] < 0) | (tokens[..., :2] >= self.d_vocab)).any()
        if tokens.device.type == "cpu":
            if bool(bad_eq):
                raise ValueError(f"ModularFastEngine: every token at position 2 must be '=' ({self.eq})")
            if bool(bad_range):
                raise ValueError(f"ModularFastEngine: tokens at positions 0, 1 must lie in [0, {self.d_vocab})")
        else:  # no host sync on accelerators
            torch._assert_async(~(bad_eq | bad_range), "ModularFastEngine: bad tokens (position 2 must be '=')")

