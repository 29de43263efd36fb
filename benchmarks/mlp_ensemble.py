"""Seeds per second: a chunked-MLP ensemble trained by grokscope against one seed in a plain PyTorch loop (issue 13).

The model is seed 002's setting (x + y mod 113, 8 chunks of 2, 32 SiLU neurons per chunk, AdamW lr
0.01 and weight decay 0.1, batch 256). "plain" is what one writes by hand for one seed: the `MLP` module, torch.optim.AdamW, a
shuffled minibatch per step and float64 cross-entropy; it does the trainer's bookkeeping too, so
both do the same work: train and test loss and accuracy on the whole splits at the trainer's
evaluation steps (every --eval-every, plus log-spaced early steps), and a safetensors checkpoint
(parameters and Adam moments) at its checkpoint steps. "ensemble" is `grokscope.train_ensemble` on
N seeds at once (stacked parameters, one process). Both run the same optimizer steps per seed;
seeds/s is seeds trained per second of wall time, and the ratio is against the plain loop
measured in the same process.

    python benchmarks/mlp_ensemble.py                          # CPU: 1, 4, 16 seeds
    python benchmarks/mlp_ensemble.py --device cuda --members 1,16,64,256
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from common import machine_line
from grokscope.models import make_model
from grokscope.presets import make_config
from grokscope.tasks import make_task
from grokscope.trainer import schedule, train_ensemble

SETTING = {"model.name": "mlp", "model.embed": "chunked", "model.d_embed": 16, "model.d_mlp": 32,
           "model.act_fn": "silu", "task.frac_train": 0.7, "train.batch_size": 256, "optim.lr": 0.01,
           "optim.weight_decay": 0.1, "train.progress": False}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_seed(cfg, steps: int, tmp: Path) -> float:
    """Seconds for one seed of `steps` steps in a hand-written loop doing the trainer's work (set-up included)."""
    t0 = time.perf_counter()
    device = cfg.train.device
    task = make_task(cfg.task)
    model = make_model(cfg, task).to(device)
    o, tc = cfg.optim, cfg.train
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas), eps=o.eps)
    train, test = task.batch("train").to(device), task.batch("test").to(device)
    evals = schedule(steps, tc.eval_every, tc.log_spaced, 2.0)
    saves = schedule(steps, tc.checkpoint_every, tc.log_spaced, 2.0)
    gen = torch.Generator().manual_seed(tc.seed)
    bs, n = tc.batch_size, len(train)
    order, at = torch.randperm(n, generator=gen), 0

    def evaluate(split) -> list[float]:  # loss (float64, as the trainer) and accuracy on a whole split
        with torch.no_grad():
            logits = model(split.inputs)[:, -1]
            return [F.cross_entropy(logits.double(), split.targets[:, 0]).item(),
                    (logits.argmax(-1) == split.targets[:, 0]).float().mean().item()]

    for step in range(steps + 1):
        if step in evals:
            evaluate(train), evaluate(test)
        if step in saves:
            state = {f"param.{k}": v.detach().cpu() for k, v in model.named_parameters()}
            for k, v in model.named_parameters():
                if v in opt.state:
                    state[f"exp_avg.{k}"] = opt.state[v]["exp_avg"].cpu()
                    state[f"exp_avg_sq.{k}"] = opt.state[v]["exp_avg_sq"].cpu()
            save_file(state, str(tmp / f"plain_step_{step}.safetensors"))
        if step == steps:
            break
        if at + bs > n:
            order, at = torch.randperm(n, generator=gen), 0
        idx = order[at:at + bs].to(device)
        at += bs
        loss = F.cross_entropy(model(train.inputs[idx])[:, -1].double(), train.targets[idx, 0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - t0


def ensemble(base, members: int, tmp: Path) -> float:
    """Seconds for `members` seeds through grokscope's trainer as one stacked ensemble."""
    cfgs = [base.replace(**{"train.seed": s}) for s in range(members)]
    t0 = time.perf_counter()
    train_ensemble(cfgs, [tmp / f"n{members}" / f"seed{s}" for s in range(members)])
    sync(base.train.device)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=1000, help="optimizer steps per seed (default 1000)")
    ap.add_argument("--members", default="1,4,16", help="ensemble sizes, comma-separated")
    ap.add_argument("--eval-every", type=int, default=10, help="as the 16-seed experiment of docs/models.md (default 10)")
    ap.add_argument("--checkpoint-every", type=int, default=10, help="as the 16-seed experiment (default 10)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("mlp_ensemble.py: CUDA is not available here", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_line())
    print(f"device {args.device}, torch threads {torch.get_num_threads()}")
    probe = make_config(overrides=SETTING)
    n_train = probe.task.shape().n_train
    epochs = -(-args.steps * probe.train.batch_size // n_train)  # enough epochs for --steps steps
    steps_per_epoch = -(-n_train // probe.train.batch_size)
    base = make_config(overrides={**SETTING, "train.device": args.device, "train.epochs": epochs,
                                  "train.eval_every": args.eval_every, "train.checkpoint_every": args.checkpoint_every})
    steps = epochs * steps_per_epoch
    print(f"chunked MLP on add mod 113: {n_train} training pairs, batch 256, {steps} steps per seed")
    with tempfile.TemporaryDirectory() as tmp:
        plain = plain_seed(base, steps, Path(tmp))
        print(f"{'plain loop, 1 seed':28s} {plain:8.2f} s  {1 / plain:8.3f} seeds/s  ratio 1.00")
        for m in (int(x) for x in args.members.split(",")):
            wall = ensemble(base, m, Path(tmp))
            print(f"{f'grokscope ensemble, {m} seeds':28s} {wall:8.2f} s  {m / wall:8.3f} seeds/s  "
                  f"ratio {m / wall * plain:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
