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

    D[h, j, t]   = (v_j(t)[h] - v_2[h]) W_O[h] W_cat                      # [m h 2 V d_mlp+d_vocab_out]
    C            = (r + b_O + sum_h v_2[h] W_O[h]) W_cat + [b_in | b_out W_U + b_U]
    [pre | direct] = C + sum_{h, j<2} a[b, h, j] D[h, j, t_j(b)]          # a weighted sum of 8 rows
    logits       = direct + act(pre) (W_out W_U)                           # one [d_mlp, d_vocab_out] matmul

The weighted row sum is a sparse [batch, rows] x [rows, width] product with 2 * n_heads + 1 non-zeros
per example (the last one is C with weight 1); on CPU it runs as an MKL CSR matmul with a hand-written
backward (`_CsrRowSum`), elsewhere as `F.embedding_bag` with per-sample weights.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from grokscope.config import ModelConfig

log = logging.getLogger(__name__)

Gather = Literal["auto", "csr", "bag"]


class _Layout:
    """Column indices of the weighted row sum for one tokens tensor; the CSR transpose on demand.

    Row (member m, example b) reads table rows m * R + (h * 2 + j) * V + t_j(b) for every head h and
    position j < 2, then row m * R + R - 1 (the constant C), so K = 2 * n_heads + 1 entries per row.
    """

    def __init__(self, tokens: Tensor, n_heads: int, d_vocab: int) -> None:
        m, b, _ = tokens.shape
        dev = tokens.device
        self.k = 2 * n_heads + 1
        self.rows_per_member = 2 * n_heads * d_vocab + 1
        self.n = m * b
        self.n_table = m * self.rows_per_member
        member = torch.arange(m, device=dev) * self.rows_per_member  # [member]
        slot = torch.arange(2 * n_heads, device=dev).view(n_heads, 2) * d_vocab  # [head 2]
        cols = member.view(m, 1, 1, 1) + slot + tokens[..., None, :2]  # [member batch head 2]
        const = (member + self.rows_per_member - 1).view(m, 1, 1).expand(m, b, 1)
        self.col = torch.cat([cols.reshape(m, b, 2 * n_heads), const], -1).reshape(-1)  # [member*batch*K]
        self.crow = torch.arange(0, self.n * self.k + 1, self.k, device=dev)  # [member*batch + 1]
        self._t: tuple[Tensor, Tensor, Tensor] | None = None

    def transpose(self) -> tuple[Tensor, Tensor, Tensor]:
        """(order, crow, col) of the transposed matrix: entries sorted by table row (a stable sort)."""
        if self._t is None:
            order = torch.argsort(self.col, stable=True)
            crow = torch.zeros(self.n_table + 1, dtype=torch.long, device=self.col.device)
            crow[1:] = torch.bincount(self.col, minlength=self.n_table).cumsum(0)
            self._t = (order, crow, torch.div(order, self.k, rounding_mode="floor"))
        return self._t


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta" (once per process)
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


class _CsrRowSum(torch.autograd.Function):
    """out[n] = sum_k values[n, k] table[col[n, k]] as A @ table with A a CSR matrix.

    Backward: d table = A^T @ g (the transpose's structure is cached on the layout) and
    d values[n, k] = g[n] . table[col[n, k]], i.e. g @ table^T sampled at A's non-zeros.
    """

    @staticmethod
    def forward(ctx, values: Tensor, table: Tensor, layout: _Layout) -> Tensor:  # type: ignore[override]
        ctx.layout = layout
        ctx.save_for_backward(values, table)
        return _csr(layout.crow, layout.col, values, (layout.n, layout.n_table)) @ table  # [n width]

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        values, table = ctx.saved_tensors
        lay: _Layout = ctx.layout
        g = g.contiguous()
        d_values = d_table = None
        if ctx.needs_input_grad[1]:
            order, crow_t, col_t = lay.transpose()
            d_table = _csr(crow_t, col_t, values[order], (lay.n_table, lay.n)) @ g  # [rows width]
        if ctx.needs_input_grad[0]:
            pattern = _csr(lay.crow, lay.col, torch.zeros_like(values), (lay.n, lay.n_table))
            d_values = torch.sparse.sampled_addmm(pattern, g, table.t()).values()  # [n*K]
        return d_values, d_table, None


class FastEngine:
    """Answer-position logits of a 1-layer, LayerNorm-free transformer on (x, y, =) tokens.

    `gather` picks how the weighted row sum runs: `csr` (MKL sparse matmul, fastest on CPU),
    `bag` (`F.embedding_bag`), or `auto` = csr on CPU, bag elsewhere. Tokens at position 2 must be
    the task's "=" token and tokens at positions 0, 1 must lie in [0, d_vocab); both are checked
    whenever a new tokens tensor is seen (the layout is cached per tokens tensor, so a trainer that
    passes the same tensor every step pays for the check and the index build once).
    """

    name = "fast"

    def __init__(self, model_cfg: ModelConfig, task, gather: Gather = "auto") -> None:
        if model_cfg.n_layers != 1:
            raise ValueError(f"FastEngine needs model.n_layers == 1 (got {model_cfg.n_layers})")
        if model_cfg.normalization is not None:
            raise ValueError("FastEngine needs model.normalization = null")
        if getattr(task, "n_ctx", None) != 3 or not hasattr(task, "eq_token"):
            raise ValueError("FastEngine needs an (x, y, =) task with n_ctx 3 and an eq_token")
        if gather not in ("auto", "csr", "bag"):
            raise ValueError(f"gather must be auto, csr or bag (got {gather!r})")
        self.cfg = model_cfg
        self.eq = int(task.eq_token)
        self.d_vocab = int(task.d_vocab)
        self.act = F.relu if model_cfg.act_fn == "relu" else F.gelu
        self.scale = 1.0 / math.sqrt(model_cfg.d_head)
        self.gather = gather
        self._layouts: list[tuple[Tensor, int, int, _Layout]] = []  # (tokens, version, member, layout)

    # -- the engine contract ----------------------------------------------------------------------
    def logits(self, params: dict[str, Tensor], tokens: Tensor) -> Tensor:
        """params: {name: [member, *shape]}, tokens: [member batch 3] -> [member batch d_vocab_out]."""
        W_E = params["embed.W_E"]  # [m V d]
        m, V, d = W_E.shape
        if tokens.shape[0] != m:
            tokens = tokens.expand(m, -1, -1)
        B = tokens.shape[1]
        r, q = self._query(params)  # [m d], [m h e]
        table, H = self._table(params, r)  # [m*R W]
        scores = self._scores(params, q, tokens)  # [m B h 3]
        a = scores.softmax(-1)  # [m B h 3]
        ones = a.new_ones(m, B, 1)
        values = torch.cat([a[..., :2].reshape(m, B, 2 * H), ones], -1).reshape(-1)  # [m*B*K]
        layout = self._layout(tokens, H)
        if self._use_csr(table):
            out = _CsrRowSum.apply(values, table, layout)  # [m*B W]
        else:
            out = F.embedding_bag(
                layout.col.view(layout.n, layout.k), table, per_sample_weights=values.view(layout.n, layout.k), mode="sum"
            )
        out = out.view(m, B, -1)  # [m B W]
        if self.cfg.attn_only:
            return out
        W_out, W_U = params["blocks.0.mlp.W_out"], params["unembed.W_U"]
        pre, direct = out.split([W_out.shape[1], W_U.shape[2]], -1)  # [m B d_mlp], [m B d_vocab_out]
        return torch.baddbmm(direct, self.act(pre), torch.bmm(W_out, W_U))  # [m B d_vocab_out]

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
        """Attention scores of the answer position on keys 0, 1, 2: [m B h 3]."""
        W_E, W_pos, W_K = params["embed.W_E"], params["pos_embed.W_pos"], params["blocks.0.attn.W_K"]
        m, V, _ = W_E.shape
        u = torch.einsum("mhde,mhe->mdh", W_K, q)  # [m d h]: q . k = e . (W_K q)
        s_tok = torch.bmm(W_E, u)  # [m V h]
        s_pos = torch.bmm(W_pos, u)  # [m 3 h]
        b_K = params.get("blocks.0.attn.b_K")
        if b_K is not None:
            s_pos = s_pos + torch.einsum("mhe,mhe->mh", b_K, q)[:, None]
        idx = tokens[..., :2] + (torch.arange(m, device=tokens.device) * V).view(m, 1, 1)  # [m B 2]
        s01 = F.embedding(idx, s_tok.reshape(m * V, -1)) + s_pos[:, None, :2]  # [m B 2 h]
        s2 = (s_tok[:, self.eq] + s_pos[:, 2])[:, None, None]  # [m 1 1 h]
        return torch.cat([s01, s2.expand(m, tokens.shape[1], 1, -1)], 2).transpose(2, 3)  # [m B h 3]

    def _table(self, params: dict[str, Tensor], r: Tensor) -> tuple[Tensor, int]:
        """Rows D[h, j, t] and C of the weighted row sum: [m * (2 h V + 1), W], and n_heads."""
        W_E, W_pos = params["embed.W_E"], params["pos_embed.W_pos"]
        W_V, W_O = params["blocks.0.attn.W_V"], params["blocks.0.attn.W_O"]
        m, V, d = W_E.shape
        H, e = W_V.shape[1], W_V.shape[3]
        W_U = params["unembed.W_U"]  # [m d d_vocab_out]
        b_U = params.get("unembed.b_U")
        if self.cfg.attn_only:
            W_cat = W_U  # [m d W]
            bias = b_U
        else:
            W_cat = torch.cat([params["blocks.0.mlp.W_in"], W_U], -1)  # [m d W]
            b_dir = torch.einsum("md,mdv->mv", params["blocks.0.mlp.b_out"], W_U)  # [m d_vocab_out]
            if b_U is not None:
                b_dir = b_dir + b_U
            bias = torch.cat([params["blocks.0.mlp.b_in"], b_dir], -1)  # [m W]
        W = W_cat.shape[-1]
        v_tok = torch.einsum("mvd,mhde->mhve", W_E, W_V)  # [m h V e]
        v_pos = torch.einsum("mjd,mhde->mhje", W_pos, W_V)  # [m h 3 e]
        # v_j(t) - v_2(=): b_V cancels                                           # [m h 2 e]
        delta = v_pos[:, :, :2] - v_pos[:, :, 2:] - v_tok[:, :, self.eq, None]
        dv = v_tok[:, :, None] + delta[:, :, :, None]  # [m h 2 V e]
        W_OC = torch.bmm(W_O.reshape(m, H * e, d), W_cat).view(m * H, e, W)  # [m*h e W]
        D = torch.bmm(dv.reshape(m * H, 2 * V, e), W_OC)  # [m*h 2V W]
        v2 = v_tok[:, :, self.eq] + v_pos[:, :, 2]  # [m h e]
        b_V = params.get("blocks.0.attn.b_V")
        if b_V is not None:
            v2 = v2 + b_V
        resid = r + torch.einsum("mhe,mhed->md", v2, W_O)  # [m d]
        b_O = params.get("blocks.0.attn.b_O")
        if b_O is not None:
            resid = resid + b_O
        C = torch.bmm(resid[:, None], W_cat)  # [m 1 W]
        if bias is not None:
            C = C + bias[:, None]
        table = torch.cat([D.view(m, H * 2 * V, W), C], 1)  # [m R W]
        return table.view(-1, W), H

    def _layout(self, tokens: Tensor, n_heads: int) -> _Layout:
        m = tokens.shape[0]
        for i, (tok, version, mm, lay) in enumerate(self._layouts):
            if tok is tokens and version == tokens._version and mm == m:
                if i:
                    self._layouts.insert(0, self._layouts.pop(i))
                return lay
        self._check_tokens(tokens)
        lay = _Layout(tokens, n_heads, self.d_vocab)
        self._layouts = [(tokens, tokens._version, m, lay)] + self._layouts[:3]
        return lay

    def _check_tokens(self, tokens: Tensor) -> None:
        if tokens.dim() != 3 or tokens.shape[-1] != 3:
            raise ValueError(f"tokens must be [member batch 3] (got {tuple(tokens.shape)})")
        bad_eq = (tokens[..., 2] != self.eq).any()
        bad_range = ((tokens[..., :2] < 0) | (tokens[..., :2] >= self.d_vocab)).any()
        if tokens.device.type == "cpu":
            if bool(bad_eq):
                raise ValueError(f"FastEngine: every token at position 2 must be '=' ({self.eq})")
            if bool(bad_range):
                raise ValueError(f"FastEngine: tokens at positions 0, 1 must lie in [0, {self.d_vocab})")
        else:  # no host sync on accelerators
            torch._assert_async(~(bad_eq | bad_range), "FastEngine: bad tokens (position 2 must be '=')")

    def _use_csr(self, table: Tensor) -> bool:
        if self.gather == "auto":
            return table.device.type == "cpu"
        return self.gather == "csr"
