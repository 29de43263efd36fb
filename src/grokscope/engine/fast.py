"""The fast engine: answer-position logits of a 1-layer, LayerNorm-free model from per-token tables.

Same mathematics as `Transformer(...)(tokens)[:, -1]`, regrouped (docs/engine.md has the derivation).
For an (x, y, =) task only position 2 reaches the logits, its query is a constant (token "=" at
position 2) and the keys / values of positions 0 and 1 depend on (token, position) alone. Per member
m, head h, position j in {0, 1} and token t (e_j(t) = W_E[t] + W_pos[j], r = W_E[=] + W_pos[2]):

    q[h]         = (r W_Q[h] + b_Q[h]) / sqrt(d_head)                      # the one query
    score_j(t)[h] = e_j(t) . (W_K[h] q[h]) + b_K[h] . q[h]                # tables [m V h]
    a[b, h, :]   = softmax(score_0(x), score_1(y), score_2(=))            # [m batch h 3]

Because sum_j a_j = 1 per head, the attention output is v_2 plus a correction from positions 0, 1:

    attn_out = sum_h v_2[h] W_O[h] + b_O + sum_{h, j<2} a[b, h, j] (v_j(t_j)[h] - v_2[h]) W_O[h]

and everything after it is linear up to the MLP activation, so with W_cat = [W_in | W_U]:

    D[j, h, t]   = (v_j(t)[h] - v_2[h]) W_O[h] W_cat                      # [m 2 h V d_mlp+d_vocab_out]
    C            = (r + b_O + sum_h v_2[h] W_O[h]) W_cat + [b_in | b_out W_U + b_U]
    [pre | direct] = C + sum_{j<2, h} a[b, j, h] D[j, h, t_j(b)]          # a weighted sum of 2H rows
    logits       = direct + act(pre) (W_out W_U)                           # one [d_mlp, d_vocab_out] matmul

(attn_only: W_cat = W_U and logits = direct.) The weighted row sum is a sparse [batch, rows] x
[rows, width] product with K = 2 * n_heads + 1 non-zeros per example (the last is C, weight 1):
`_RowSum` runs it as `F.embedding_bag` forward with a hand-written backward (3x faster on CPU than
embedding_bag's own). With an MLP the table rows are zero-padded to a multiple of 16 floats (`FastEngine._table`)
and ReLU models read out through `_ReluReadOut` (one autograd node, one gradient buffer). Cost per
example: 2H + 1 table rows of width W, plus the [d_mlp] x [d_mlp, d_vocab_out] matmul, against
[3 positions] x [d_model, d_mlp] x 2 + ... in the plain model; the tables themselves cost O(H V d_head W) per step, independent of the batch.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from grokscope.config import ModelConfig

log = logging.getLogger(__name__)

Gather = Literal["auto", "custom", "bag"]


class _Layout:
    """Which table rows each example reads, for one tokens tensor; the transposed index on demand.

    Example (member m, example b) reads rows m * R + (j * H + h) * V + t_j(b) for every position
    j < 2 and head h, then row m * R + R - 1 (the constant C): K = 2 H + 1 entries per example.
    """

    def __init__(self, tokens: Tensor, n_heads: int, d_vocab: int) -> None:
        m, b, _ = tokens.shape
        dev = tokens.device
        self.k = 2 * n_heads + 1
        self.rows_per_member = 2 * n_heads * d_vocab + 1
        self.n = m * b
        self.n_table = m * self.rows_per_member
        member = torch.arange(m, device=dev) * self.rows_per_member  # [member]
        slot = (torch.arange(2 * n_heads, device=dev) * d_vocab).view(2, n_heads)  # [2 head]
        cols = member.view(m, 1, 1, 1) + slot + tokens[..., :2, None]  # [member batch 2 head]
        const = (member + self.rows_per_member - 1).view(m, 1, 1).expand(m, b, 1)
        self.col = torch.cat([cols.reshape(m, b, 2 * n_heads), const], -1).view(self.n, self.k)  # [n K]
        self._t: tuple[Tensor, Tensor, Tensor] | None = None
        self._crow: Tensor | None = None

    def crow(self) -> Tensor:
        """CSR row pointers of the [n, rows] weight matrix (K entries per row)."""
        if self._crow is None:
            self._crow = torch.arange(0, self.n * self.k + 1, self.k, device=self.col.device)
        return self._crow

    def transpose(self) -> tuple[Tensor, Tensor, Tensor]:
        """(order, example, offsets): entries sorted by table row, the example of each, bag starts."""
        if self._t is None:
            flat = self.col.reshape(-1)
            order = torch.argsort(flat, stable=True)
            offsets = torch.zeros(self.n_table, dtype=torch.long, device=flat.device)
            offsets[1:] = torch.bincount(flat, minlength=self.n_table)[:-1].cumsum(0)
            self._t = (order, torch.div(order, self.k, rounding_mode="floor"), offsets)
        return self._t


class _RowSum(torch.autograd.Function):
    """out[n] = sum_k w[n, k] table[col[n, k]] ([n W]) with a backward cheaper than embedding_bag's.

    d table[r] = sum_{(n, k): col[n, k] = r} w[n, k] g[n]: an embedding_bag over g with the
    transposed index (one bag per table row); d w[n, k] = g[n] . table[col[n, k]]: g @ table^T
    sampled at the non-zeros of the [n, rows] matrix of weights (`torch.sparse.sampled_addmm`).
    """

    @staticmethod
    def forward(ctx, w: Tensor, table: Tensor, layout: _Layout) -> Tensor:  # type: ignore[override]
        ctx.layout = layout
        ctx.save_for_backward(w, table)
        return F.embedding_bag(layout.col, table, per_sample_weights=w, mode="sum")  # [n W]

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        w, table = ctx.saved_tensors
        lay: _Layout = ctx.layout
        g = g.contiguous()
        d_w = d_table = None
        if ctx.needs_input_grad[1]:
            order, example, offsets = lay.transpose()
            d_table = F.embedding_bag(
                example, g, offsets=offsets, per_sample_weights=w.reshape(-1)[order], mode="sum"
            )  # [rows W]
        if ctx.needs_input_grad[0]:
            with warnings.catch_warnings():  # "sparse CSR support is in beta" (once per process)
                warnings.simplefilter("ignore")
                pattern = torch.sparse_csr_tensor(
                    lay.crow(), lay.col.reshape(-1), torch.zeros_like(w).reshape(-1), (lay.n, lay.n_table),
                    check_invariants=False,
                )
            d_w = torch.sparse.sampled_addmm(pattern, g, table.t()).values().view(lay.n, lay.k)  # [n K]
        return d_w, d_table, None


class _ReluReadOut(torch.autograd.Function):
    """logits = direct + relu(pre) @ W_OU from the whole row-sum output out = [pre | direct | pad].

    out [m B d_mlp + d_vocab_out + pad], W_OU [m d_mlp d_vocab_out] -> logits [m B d_vocab_out]. With
    g = d logits and act = relu(pre):

        d out  = [ (g W_OU^T) * (pre > 0) | g | 0 ]     [m B W + pad]: one buffer, masked in place
        d W_OU = act^T g = (g^T act)^T                  [m d_mlp d_vocab_out]

    `out` may carry zero pad columns after direct (`FastEngine._table`), whose gradient is 0. Compared with
    autograd through split / relu / baddbmm: no [m B d_mlp] temporary, no cat, one threshold pass
    fewer. GELU keeps the autograd path.
    """

    @staticmethod
    def forward(ctx, out: Tensor, W_OU: Tensor) -> Tensor:  # type: ignore[override]
        d_mlp, d_vo = W_OU.shape[1:]
        act = torch.relu(out[..., :d_mlp])  # [m B d_mlp]
        ctx.save_for_backward(act, W_OU)
        ctx.width = out.shape[-1]
        return torch.baddbmm(out[..., d_mlp : d_mlp + d_vo], act, W_OU)  # [m B d_vocab_out]

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        act, W_OU = ctx.saved_tensors
        m, B, d_mlp = act.shape
        d_vo = g.shape[-1]
        d_out = d_W_OU = None
        if ctx.needs_input_grad[0]:
            d_out = g.new_empty(m, B, ctx.width)  # [m B W + pad]
            d_pre = d_out[..., :d_mlp]  # [m B d_mlp], rows 64-byte aligned (see FastEngine._table)
            for i in range(m):  # mm writes the strided block in place (bmm's out= would copy)
                torch.mm(g[i], W_OU[i].t(), out=d_pre[i])
            torch.ops.aten.threshold_backward.grad_input(d_pre, act, 0, grad_input=d_pre)  # *= (pre > 0), in place
            d_out[..., d_mlp : d_mlp + d_vo].copy_(g)
            d_out[..., d_mlp + d_vo :].zero_()  # the pad columns
        if ctx.needs_input_grad[1]:
            # as (g^T act)^T: MKL runs this [d_vocab_out B] x [B d_mlp] product ~15 % faster than act^T g
            d_W_OU = torch.bmm(g.transpose(1, 2), act).transpose(1, 2)  # [m d_mlp d_vocab_out]
        return d_out, d_W_OU


class FastEngine:
    """Answer-position logits of a 1-layer, LayerNorm-free transformer on (x, y, =) tokens.

    `gather` picks how the weighted row sum runs: `custom` (`_RowSum`: embedding_bag forward with
    a transposed-index backward, the fastest measured on CPU), `bag` (plain `F.embedding_bag`
    autograd), or `auto` (= custom). Tokens at position 2 must be the task's "=" token and tokens
    at positions 0, 1 must lie in [0, d_vocab); both are checked whenever a new tokens tensor is
    seen. The index is cached per tokens tensor (by identity and version), so a trainer that passes
    the same tensor every step builds it, and checks it, once.
    """

    name = "fast"

    def __init__(self, model_cfg: ModelConfig, task, gather: Gather = "auto") -> None:
        if model_cfg.n_layers != 1:
            raise ValueError(f"FastEngine needs model.n_layers == 1 (got {model_cfg.n_layers})")
        if model_cfg.normalization is not None:
            raise ValueError("FastEngine needs model.normalization = null")
        if getattr(task, "n_ctx", None) != 3 or not hasattr(task, "eq_token"):
            raise ValueError("FastEngine needs an (x, y, =) task with n_ctx 3 and an eq_token")
        if gather not in ("auto", "custom", "bag"):
            raise ValueError(f"gather must be auto, custom or bag (got {gather!r})")
        self.cfg = model_cfg
        self.eq = int(task.eq_token)
        self.d_vocab = int(task.d_vocab)
        self.act = F.relu if model_cfg.act_fn == "relu" else F.gelu
        self.scale = 1.0 / math.sqrt(model_cfg.d_head)
        self.gather = gather
        self._layouts: list[tuple[Tensor, tuple[int, int, int], _Layout]] = []  # most recent first

    # -- the engine contract ----------------------------------------------------------------------
    def logits(self, params: dict[str, Tensor], tokens: Tensor) -> Tensor:
        """params: {name: [member, *shape]}, tokens: [member batch 3] -> [member batch d_vocab_out]."""
        m = params["embed.W_E"].shape[0]
        H = params["blocks.0.attn.W_Q"].shape[1]
        layout = self._layout(tokens, m, H)  # cached per tokens tensor
        if tokens.shape[0] != m:  # one token set shared by every member
            tokens = tokens.expand(m, -1, -1)
        B = tokens.shape[1]
        r, q = self._query(params)  # [m d], [m h e]
        table = self._table(params, r)  # [m*R W (+ pad)]
        a = self._scores(params, q, tokens).softmax(2)  # [m B 3 h]
        w = torch.cat([a[:, :, :2].reshape(m, B, 2 * H), a.new_ones(m, B, 1)], -1).view(m * B, 2 * H + 1)
        if self.gather == "bag":
            out = F.embedding_bag(layout.col, table, per_sample_weights=w, mode="sum")  # [m*B W]
        else:
            out = _RowSum.apply(w, table, layout)  # [m*B W]
        out = out.view(m, B, -1)  # [m B W]
        if self.cfg.attn_only:
            return out
        W_out, W_U = params["blocks.0.mlp.W_out"], params["unembed.W_U"]
        W_OU = torch.bmm(W_out, W_U)  # [m d_mlp d_vocab_out]
        d_mlp, d_vo = W_OU.shape[1:]
        if self.cfg.act_fn == "relu" and torch.is_grad_enabled():
            return _ReluReadOut.apply(out, W_OU)  # [m B d_vocab_out]
        if self.cfg.act_fn == "relu":  # evaluation: nothing is kept for a backward, so ReLU in place
            return torch.baddbmm(out[..., d_mlp : d_mlp + d_vo], out[..., :d_mlp].relu_(), W_OU)
        pre, direct = out[..., :d_mlp], out[..., d_mlp : d_mlp + d_vo]  # [m B d_mlp], [m B d_vocab_out]
        return torch.baddbmm(direct, self.act(pre), W_OU)  # [m B d_vocab_out]

    # -- pieces -----------------------------------------------------------------------------------
    def _query(self, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Residual r = W_E[=] + W_pos[2] [m d] and the scaled query q [m h e] at position 2."""
        r = params["embed.W_E"][:, self.eq] + params["pos_embed.W_pos"][:, 2]  # [m d]
        q = torch.einsum("md,mhde->mhe", r, params["blocks.0.attn.W_Q"])  # [m h e]
        b_Q = params.get("blocks.0.attn.b_Q")
        if b_Q is not None:
            q = q + b_Q
        return r, q * self.scale

    def _scores(self, params: dict[str, Tensor], q: Tensor, tokens: Tensor) -> Tensor:
        """Attention scores of the answer position on keys 0, 1, 2: [m B 3 h]."""
        W_E, W_pos, W_K = params["embed.W_E"], params["pos_embed.W_pos"], params["blocks.0.attn.W_K"]
        m, V, _ = W_E.shape
        u = torch.einsum("mhde,mhe->mdh", W_K, q)  # [m d h]: q . k_j(t) = e_j(t) . (W_K q)
        s_tok = torch.bmm(W_E, u)  # [m V h]
        s_pos = torch.bmm(W_pos, u)  # [m 3 h]
        b_K = params.get("blocks.0.attn.b_K")
        if b_K is not None:  # the same for every key, so softmax ignores it; kept for exactness
            s_pos = s_pos + torch.einsum("mhe,mhe->mh", b_K, q)[:, None]
        idx = tokens[..., :2] + (torch.arange(m, device=tokens.device) * V).view(m, 1, 1)  # [m B 2]
        # index_select: its backward (index_add_) is 3x cheaper than F.embedding's here
        s01 = s_tok.reshape(m * V, -1).index_select(0, idx.reshape(-1)).view(*idx.shape, -1)  # [m B 2 h]
        s01 = s01 + s_pos[:, None, :2]
        s2 = (s_tok[:, self.eq] + s_pos[:, 2])[:, None, None]  # [m 1 1 h]
        return torch.cat([s01, s2.expand(m, tokens.shape[1], 1, -1)], 2)  # [m B 3 h]

    def _table(self, params: dict[str, Tensor], r: Tensor) -> Tensor:
        """Rows D[j, h, t] (position j < 2, head h, token t) then C: [m * (2 H V + 1), W (+ pad)].

        D[j, h, t] = T[h, t] + P[j, h] with T[h, t] = W_E[t] W_V[h] W_OC[h] (shared by both
        positions) and P[j, h] = (W_pos[j] W_V[h] - v_2[h]) W_OC[h]: half the products of
        computing (v_j(t) - v_2) W_OC for each j. With an MLP, W_cat gets zero columns up to a
        multiple of 16 floats (64-byte rows), so the table and the row-sum output come out padded:
        MKL writes the gradient's [B d_mlp] block in place ~1 ms faster than at row stride 625.
        """
        W_E, W_pos = params["embed.W_E"], params["pos_embed.W_pos"]
        W_V, W_O = params["blocks.0.attn.W_V"], params["blocks.0.attn.W_O"]
        m, V, d = W_E.shape
        H, e = W_V.shape[1], W_V.shape[3]
        W_U = params["unembed.W_U"]  # [m d d_vocab_out]
        b_U = params.get("unembed.b_U")
        if self.cfg.attn_only:
            W_cat, bias = W_U, b_U  # [m d W]
        else:
            width = self.cfg.d_mlp + W_U.shape[-1]
            pad = W_U.new_zeros(m, d, (-width) % 16)
            W_cat = torch.cat([params["blocks.0.mlp.W_in"], W_U, pad], -1)  # [m d W + pad]
            b_dir = torch.einsum("md,mdv->mv", params["blocks.0.mlp.b_out"], W_U)  # [m d_vocab_out]
            if b_U is not None:
                b_dir = b_dir + b_U
            bias = torch.cat([params["blocks.0.mlp.b_in"], b_dir, pad[:, 0]], -1)  # [m W + pad]
        W = W_cat.shape[-1]
        W_OC = torch.bmm(W_O.reshape(m, H * e, d), W_cat).view(m * H, e, W)  # [m*h e W]
        v_tok = torch.einsum("mvd,mhde->mhve", W_E, W_V)  # [m h V e]
        v_pos = torch.einsum("mjd,mhde->mhje", W_pos, W_V)  # [m h 3 e]
        v_eq = v_tok[:, :, self.eq] + v_pos[:, :, 2]  # [m h e]: v_2 without b_V
        T = torch.bmm(v_tok.reshape(m * H, V, e), W_OC).view(m, 1, H, V, W)
        P = torch.bmm((v_pos[:, :, :2] - v_eq[:, :, None]).reshape(m * H, 2, e), W_OC)  # b_V cancels
        D = T + P.view(m, H, 2, W).transpose(1, 2).contiguous()[:, :, :, None]  # [m 2 h V W], contiguous
        b_V = params.get("blocks.0.attn.b_V")
        v2 = v_eq if b_V is None else v_eq + b_V  # [m h e]
        resid = r + torch.einsum("mhe,mhed->md", v2, W_O)  # [m d]: r + all attention on position 2
        b_O = params.get("blocks.0.attn.b_O")
        if b_O is not None:
            resid = resid + b_O
        C = torch.bmm(resid[:, None], W_cat)  # [m 1 W]
        if bias is not None:
            C = C + bias[:, None]
        return torch.cat([D.view(m, 2 * H * V, W), C], 1).view(-1, W)  # [m*R W]

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
                raise ValueError(f"FastEngine: every token at position 2 must be '=' ({self.eq})")
            if bool(bad_range):
                raise ValueError(f"FastEngine: tokens at positions 0, 1 must lie in [0, {self.d_vocab})")
        else:  # no host sync on accelerators
            torch._assert_async(~(bad_eq | bad_range), "FastEngine: bad tokens (position 2 must be '=')")


def keep_freed_memory(trim_bytes: int = 1 << 29) -> bool:
    """Ask glibc to keep freed large blocks for reuse; True if it took. Process-wide; call once.

    Why: a CPU training step allocates and frees the same ~10 MB activations every step. glibc
    serves blocks above its mmap threshold with fresh mmap()s and unmaps them on free, so every step
    page-faults ~2500 zeroed pages (~5 ms of system time here, a third of a fast-engine epoch).
    M_MMAP_THRESHOLD = 32 MiB (glibc's maximum) keeps such blocks on the heap, and M_TRIM_THRESHOLD
    = `trim_bytes` stops the heap from being handed back after each step. No-op off glibc.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, 1 << 25) == 1 and mallopt(m_trim_threshold, int(trim_bytes)) == 1
    log.info("glibc mallopt: mmap threshold 32 MiB, trim threshold %d bytes: %s", trim_bytes, "ok" if ok else "refused")
    return ok
