"""The head scores on a hand-built induction circuit: a 2-layer attention-only model whose layer-0
head attends to the previous position and copies that token into a slot of the residual stream,
and whose layer-1 head attends to the position whose previous token equals the current one. The
analysis must name exactly those heads, and none on a random model."""

from __future__ import annotations

import torch

from grokscope.analysis import MemoryRun, analyze
from grokscope.config import RunConfig
from grokscope.models import make_model
from grokscope.tasks import make_task

V, N, SHARP = 40, 16, 40.0  # vocabulary, context, attention logit scale (before 1/sqrt(d_head))


def circuit_config() -> RunConfig:
    return RunConfig().replace(**{
        "task.name": "repeat_subseq", "task.seq_len": N + 1, "task.subseq_len": 4, "task.vocab": V, "task.n_test": 64,
        "model.n_layers": 2, "model.attn_only": True, "model.n_heads": 2, "model.d_model": 2 * V + N, "model.d_head": V,
        "train.batch_size": 8,
    })


def circuit_params(cfg: RunConfig, task) -> dict[str, torch.Tensor]:
    """Residual layout [token one-hot (V) | position one-hot (N) | previous token one-hot (V)]; head 1
    of each layer is left at zero, so only L0H0 and L1H0 may be named."""
    p = {k: torch.zeros_like(v) for k, v in make_model(cfg, task).state_dict().items()}
    tok, pos, prev = slice(0, V), slice(V, V + N), slice(V + N, 2 * V + N)
    p["embed.W_E"][:, tok] = torch.eye(V)
    p["pos_embed.W_pos"][:, pos] = torch.eye(N)
    # L0H0: query at position i matches key at j = i - 1; its value copies the token to the prev slot
    p["blocks.0.attn.W_Q"][0, pos, :N] = SHARP * torch.eye(N)
    p["blocks.0.attn.W_K"][0, V : V + N - 1, 1:N] = torch.eye(N - 1)
    p["blocks.0.attn.W_V"][0, tok, :V] = torch.eye(V)
    p["blocks.0.attn.W_O"][0, :V, prev] = torch.eye(V)
    # L1H0: the current token (query) against the previous token each key position holds
    p["blocks.1.attn.W_Q"][0, tok, :V] = SHARP * torch.eye(V)
    p["blocks.1.attn.W_K"][0, prev, :V] = torch.eye(V)
    return p


def test_the_hand_built_circuit_is_found_and_a_random_model_has_none():
    cfg = circuit_config()
    task = make_task(cfg.task)
    random = {k: v.detach().clone() for k, v in make_model(cfg, task).state_dict().items()}
    res = analyze(MemoryRun(cfg, task, {0: random, 100: circuit_params(cfg, task)}), analyses=["heads"])
    s = res.summary
    assert s["previous_token_heads"] == ["L0H0"]
    assert s["induction_heads"] == ["L1H0"]
    assert s["induction_step"] == 100
    scores = res.outputs["heads"].summary["final_scores"]
    assert scores["L0H0"]["previous_token"] > 0.95 and scores["L1H0"]["induction"] > 0.8
    first = res.progress.iloc[0]
    assert max(first[f"induction_score.{h}"] for h in ("L0H0", "L0H1", "L1H0", "L1H1")) < 0.5
