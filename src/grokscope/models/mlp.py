"""MLPs for two-operand tasks and real-valued features, named in the TransformerLens spirit.

An MLP reads the tokens before the answer position (x and y of `[x, y, =]`), embeds each with one
shared `embed.W_E`, combines them, and maps the result through 1-3 hidden layers to the logits:

    embed = "sum":     h_0 = W_E[x] + W_E[y]                         [d_embed]
    embed = "concat":  h_0 = [W_E[x], W_E[y]]                        [2 d_embed]
    embed = "chunked": W_E split into n_chunks = d_embed / 2 blocks of 2 columns (seed 002); chunk c
                       is its own small MLP:  e_c = W_E[x, 2c:2c+2] + W_E[y, 2c:2c+2],
                       out_c = act(... act(e_c W_in[c] + b_in[c]) ...) W_out[c]  [2]
                       and the logits read the concatenated outputs: [out_0, ..., out_{n-1}] W_U.
                       A chunk forms a circuit when its p points e_c(x) lie on a circle
                       (grokscope.analysis.formation).
    hidden layer l:    pre_l = h_l W_in + b_in, h_{l+1} = act(pre_l)
    logits = h_L W_U + b_U

A task with real-valued inputs (`d_vocab == 0`: two_feature_digits' 8x8 images) has no W_E: h_0 is
the feature vector.

Parameters (shapes with chunked in brackets): `embed.W_E` [d_vocab, d_embed];
`blocks.{l}.mlp.W_in` [d_in, d_mlp] ([n_chunks, d_in, d_mlp], d_in = 2 at l = 0), `blocks.{l}.mlp.b_in`
[d_mlp] ([n_chunks, d_mlp]) when model.bias; chunked only `blocks.{L-1}.mlp.W_out` [n_chunks, d_mlp, 2];
`unembed.W_U` [d_last, d_vocab_out] (d_last = d_mlp, chunked d_embed), `unembed.b_U` when model.unembed_bias.
Hooks: `hook_embed` (h_0), `blocks.{l}.mlp.hook_pre`, `blocks.{l}.mlp.hook_post`, and for chunked
`hook_chunk_out` [batch, n_chunks, 2].

Initialisation: W_E ~ n (a unit-variance row per token, as seed 002), every other weight ~ n / sqrt(fan_in),
all times model.init_scale; biases zero. Drawn in `named_parameters()` order from one generator
seeded with train.seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grokscope.config import ConfigError, TaskShape
from grokscope.models.hooks import HookPoint, Hooked

MLP_EMBEDS = ("sum", "concat", "chunked")
MLP_ACTS = ("relu", "gelu", "silu", "sigmoid", "quadratic")


@dataclass(frozen=True)
class MLPConfig:
    """An MLP on two operands or on real-valued features (grokscope.models.mlp)."""

    name: str = "mlp"
    embed: Literal["sum", "concat", "chunked"] = "sum"  # how the operands' embeddings combine
    d_embed: int = 128  # embedding width; chunked: 2 x the number of chunks
    d_mlp: int = 512  # hidden width (chunked: per chunk)
    n_layers: int = 1  # hidden layers, 1..3
    act_fn: Literal["relu", "gelu", "silu", "sigmoid", "quadratic"] = "relu"  # seed 002 prefers smooth ones
    bias: bool = False  # b_in on every hidden layer
    unembed_bias: bool = False  # b_U
    init_scale: float = 1.0  # multiplies every initial weight (large inits delay generalisation)
    takes_features: ClassVar[bool] = True  # reads real-valued inputs too (TaskShape.d_vocab == 0)

    def check(self) -> None:
        if not 1 <= self.n_layers <= 3:
            raise ConfigError("model.n_layers", f"must be 1, 2 or 3 hidden layers (got {self.n_layers})")
        for key in ("d_embed", "d_mlp"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key}", f"must be an integer >= 1 (got {getattr(self, key)})")
        if self.embed == "chunked" and self.d_embed % 2:
            raise ConfigError("model.d_embed", f"must be even with model.embed=chunked (2 columns per chunk; got {self.d_embed})")
        if not (self.init_scale > 0 and math.isfinite(self.init_scale)):
            raise ConfigError("model.init_scale", f"must be a finite number > 0 (got {self.init_scale})")

    def title(self) -> str:  # what reports call the model
        embed = (f"{self.n_chunks} chunks of 2" if self.embed == "chunked" else f"{self.embed} of d_embed {self.d_embed}")
        per = " per chunk" if self.embed == "chunked" else ""
        return f"MLP, embeddings {embed}, {self.n_layers} hidden layer(s) of {self.d_mlp}{per}, {self.act_fn}"

    @property
    def n_chunks(self) -> int:
        return self.d_embed // 2 if self.embed == "chunked" else 0

    def widths(self, shape: TaskShape) -> list[int]:
        """Input width of each hidden layer, then the unembedding's input width."""
        if shape.d_vocab == 0:
            d0 = shape.n_ctx
        else:
            d0 = {"sum": self.d_embed, "concat": self.d_embed * (shape.n_ctx - 1), "chunked": 2}[self.embed]
        return [d0] + [self.d_mlp] * (self.n_layers - 1) + [self.d_embed if self.n_chunks else self.d_mlp]

    def n_params(self, shape: TaskShape) -> int:
        w = self.widths(shape)
        hidden = sum(a * self.d_mlp for a in w[:-1]) + (2 * self.d_mlp if self.n_chunks else 0)
        return shape.d_vocab * self.d_embed + max(1, self.n_chunks) * hidden + w[-1] * shape.d_vocab_out

    def activation_floats(self, shape: TaskShape) -> int:
        """Floats of activation per example (forward and backward), for the trainer's memory estimate."""
        return 4 * (self.widths(shape)[0] + max(1, self.n_chunks) * self.d_mlp * self.n_layers) + 2 * shape.d_vocab_out

    def size_key(self) -> str:
        sizes = {"model.d_mlp": self.d_mlp / 512, "model.d_embed": self.d_embed / 128, "model.n_layers": self.n_layers}
        return max(sizes, key=sizes.get)

    def check_task(self, task: Any) -> None:
        """The MLP reads the tokens before one answer at the last position (or a feature vector)."""
        pos = tuple(task.target_positions)
        if task.d_vocab == 0:
            if self.embed == "chunked":
                raise ConfigError("model.embed", "chunked needs a token task (this task's inputs are real-valued features)")
            return
        if pos != (task.n_ctx - 1,) or task.n_ctx < 2:
            raise ConfigError("model.name", f"mlp needs a task with one answer at the last position, after its operands "
                              f"(task {task.name!r} has answers at {list(pos)} of {task.n_ctx}); use transformer")


def _act(name: str):
    if name == "quadratic":
        return torch.square
    return {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "sigmoid": torch.sigmoid}[name]


class MLPLayer(nn.Module):
    """One hidden layer; with `n_chunks` every chunk has its own weights (a batched matmul)."""

    def __init__(self, d_in: int, d_mlp: int, n_chunks: int, bias: bool, act: str, out: bool) -> None:
        super().__init__()
        lead = (n_chunks,) if n_chunks else ()
        self.W_in = nn.Parameter(torch.empty(*lead, d_in, d_mlp))
        if bias:
            self.b_in = nn.Parameter(torch.zeros(*lead, d_mlp))
        if out:  # the last chunked layer maps each chunk back to 2 dimensions
            self.W_out = nn.Parameter(torch.empty(*lead, d_mlp, 2))
        self.act = _act(act)
        self.hook_pre = HookPoint()  # [batch d_mlp] / [batch n_chunks d_mlp]
        self.hook_post = HookPoint()

    def forward(self, h: Tensor) -> Tensor:
        pre = torch.einsum("bci,cio->bco", h, self.W_in) if self.W_in.dim() == 3 else h @ self.W_in
        if hasattr(self, "b_in"):
            pre = pre + self.b_in
        return self.hook_post(self.act(self.hook_pre(pre)))


class Block(nn.Module):
    def __init__(self, layer: MLPLayer) -> None:
        super().__init__()
        self.mlp = layer


class Embed(nn.Module):
    def __init__(self, d_vocab: int, d_embed: int) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_embed))


class Unembed(nn.Module):
    def __init__(self, d_in: int, d_vocab_out: int, bias: bool) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(d_in, d_vocab_out))
        if bias:
            self.b_U = nn.Parameter(torch.zeros(d_vocab_out))


class MLP(Hooked):
    """tokens [batch n_ctx] (or features [batch n_features]) -> logits [batch 1 d_vocab_out] at the answer."""

    def __init__(self, cfg: MLPConfig, d_vocab: int, d_vocab_out: int, n_ctx: int) -> None:
        super().__init__()
        self.cfg, self.d_vocab, self.d_vocab_out, self.n_ctx = cfg, d_vocab, d_vocab_out, n_ctx
        self.features = d_vocab == 0
        widths = cfg.widths(TaskShape(d_vocab, d_vocab_out, n_ctx, None))
        chunks = 0 if self.features else cfg.n_chunks
        if not self.features:
            self.embed = Embed(d_vocab, cfg.d_embed)
        self.blocks = nn.ModuleList([
            Block(MLPLayer(widths[i], cfg.d_mlp, chunks, cfg.bias, cfg.act_fn, out=bool(chunks) and i == cfg.n_layers - 1))
            for i in range(cfg.n_layers)
        ])
        self.unembed = Unembed(widths[-1], d_vocab_out, cfg.unembed_bias)
        self.hook_embed = HookPoint()  # [batch d_in] / chunked [batch n_chunks 2]
        if chunks:
            self.hook_chunk_out = HookPoint()  # [batch n_chunks 2]
        self.name_hooks()

    def embed_input(self, tokens: Tensor) -> Tensor:
        """h_0: the combined operand embeddings (chunked: [batch n_chunks 2]), or the features."""
        if self.features:
            return tokens.to(self.unembed.W_U.dtype)
        e = self.embed.W_E[tokens[:, :-1]]  # [batch n_operands d_embed]: every token before the answer
        if self.cfg.embed == "concat":
            return e.flatten(1)
        h = e.sum(1)
        return h.view(h.shape[0], -1, 2) if self.cfg.embed == "chunked" else h

    def forward(self, tokens: Tensor, at: Any = None) -> Tensor:
        """Logits [batch 1 d_vocab_out]: an MLP has one answer, at the last position (`at` is accepted
        for the engines' contract and names that position)."""
        h = self.hook_embed(self.embed_input(tokens))
        for block in self.blocks:
            h = block.mlp(h)
        last = self.blocks[-1].mlp
        if hasattr(last, "W_out"):
            h = self.hook_chunk_out(torch.einsum("bcm,cmo->bco", h, last.W_out)).flatten(1)
        logits = h @ self.unembed.W_U
        if hasattr(self.unembed, "b_U"):
            logits = logits + self.unembed.b_U
        return logits[:, None]

    @torch.no_grad()
    def init_weights(self, seed: int) -> "MLP":
        gen = torch.Generator().manual_seed(seed)
        for name, param in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("b_"):
                param.zero_()
                continue
            fan_in = 1 if leaf == "W_E" else param.shape[-2]
            std = self.cfg.init_scale / math.sqrt(fan_in)
            param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float32) * std)
        return self


def make_mlp(cfg: MLPConfig, d_vocab: int, d_vocab_out: int, n_ctx: int, seed: int) -> MLP:
    return MLP(cfg, d_vocab, d_vocab_out, n_ctx).init_weights(seed)
