"""Training speed per task preset: grokscope's training step against a plain PyTorch loop of the same model.

"grokscope" is the trainer's own step (the engine it picks, stacked parameters, float64 masked
cross-entropy, the flat AdamW), driven through a real `Trainer` on a scratch run directory with
evaluation and checkpoints left out. "plain" is what a straightforward implementation does: the
`Transformer` over every position, the logits at the answer positions, float64 cross-entropy that
ignores missing targets, torch.optim.AdamW. Both draw the same data (fresh examples per step for
infinite data, minibatches or the full batch otherwise) and start from the same initialisation.
They run in alternating blocks of `--block` steps in one process, so load from other processes
hits both alike; the ratio grokscope / plain is printed per preset (>= 1: grokscope is faster).

    python benchmarks/task_speed.py                          # every seed-experiment preset
    python benchmarks/task_speed.py --presets s5,digit_add5_finite --blocks 5 --block 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import machine_line
from grokscope.cpu import flush_denormals, keep_freed_memory
from grokscope.models import make_model
from grokscope.presets import get_preset
from grokscope.runstore import release_all
from grokscope.tasks import NO_TARGET, is_infinite
from grokscope.trainer import Trainer

PRESETS = ["digit_add5_infinite", "digit_add5_finite", "repeat_subseq", "skip_trigram", "s5", "sparse_parity",
           "modular_multi", "nanda2023"]


class GrokscopeSteps:
    """The trainer's forward, backward and update, step after step (no evaluation, no checkpoints)."""

    def __init__(self, cfg, folder: Path) -> None:
        self.tr = Trainer([cfg], [folder])
        self.step = 0

    def run(self, n: int) -> None:
        tr = self.tr
        for _ in range(n):
            params = tr.layout.views(tr.flat)
            _, _, grad = tr._gradient(params, tr._batch(self.step))
            tr.opt.step(tr.flat, grad, tr.lr.to(tr.flat.dtype), tr.wd, None)
            self.step += 1


class PlainSteps:
    """model(tokens) at every position, the answer positions picked, torch AdamW."""

    def __init__(self, cfg, task, init: dict) -> None:
        self.cfg, self.task = cfg, task
        self.model = make_model(cfg, task)
        self.model.load_state_dict(init)
        o = cfg.optim
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas), eps=o.eps)
        self.pos = list(task.target_positions)
        self.train = task.batch("train")
        self.bs = cfg.train.batch_size
        self.step = 0

    def batch(self):
        if is_infinite(self.task):
            return self.task.sample(self.step, self.bs, self.cfg.train.seed)
        if self.bs is None or self.bs >= len(self.train):
            return self.train
        per_epoch = -(-len(self.train) // self.bs)
        epoch, b = divmod(self.step, per_epoch)
        order = np.random.default_rng([self.cfg.train.seed, epoch]).permutation(len(self.train))[b * self.bs : (b + 1) * self.bs]
        return self.task.batch("train", order)

    def run(self, n: int) -> None:
        for _ in range(n):
            b = self.batch()
            logits = self.model(b.inputs)[:, self.pos]
            loss = F.cross_entropy(logits.flatten(0, 1).double(), b.targets.flatten(), ignore_index=NO_TARGET)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.step += 1


def measure(name: str, blocks: int, block: int, warmup: int) -> dict:
    cfg = get_preset(name).replace(**{"train.progress": False, "train.device": "cpu"})
    with tempfile.TemporaryDirectory() as tmp:
        ours = GrokscopeSteps(cfg, Path(tmp) / "run")
        init = {k: v.detach().clone() for k, v in ours.tr.layout.views(ours.tr.flat.detach()).items()}
        plain = PlainSteps(cfg, ours.tr.tasks[0], {k: v[0] for k, v in init.items()})
        times: dict[str, list[float]] = {"grokscope": [], "plain": []}
        for runner in (ours, plain):
            runner.run(warmup)
        for _ in range(blocks):
            for key, runner in (("grokscope", ours), ("plain", plain)):
                t0 = time.perf_counter()
                runner.run(block)
                times[key].append(block / (time.perf_counter() - t0))
        release_all(ours.tr.stores)
    rate = {k: statistics.median(v) for k, v in times.items()}
    return {"preset": name, "engine": ours.tr.engine.name, "grokscope_steps_per_s": rate["grokscope"],
            "plain_steps_per_s": rate["plain"], "ratio": rate["grokscope"] / rate["plain"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--block", type=int, default=20, help="steps per timed block")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    print(machine_line(), flush=True)
    rows = []
    with flush_denormals():
        for name in args.presets.split(","):
            row = measure(name.strip(), args.blocks, args.block, args.warmup)
            rows.append(row)
            print(f"{row['preset']:<20} engine {row['engine']:<8} grokscope {row['grokscope_steps_per_s']:7.1f} steps/s   "
                  f"plain {row['plain_steps_per_s']:7.1f} steps/s   ratio grokscope / plain {row['ratio']:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
