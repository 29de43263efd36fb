"""Training speed on the canonical run (preset nanda2023): the plain model vs the fast engine.

Both train full batch with torch.optim.AdamW (lr, weight decay, betas, eps of the preset; no lr
warm-up, which does not change the cost) and float64 cross-entropy on the float32 logits, and both
evaluate the test loss every `--eval-every` epochs. "plain" is what a straightforward implementation
does: every position through the `Transformer`, logits at all positions, then the last one. The two
run in alternating blocks of `--eval-every` epochs in one process, so load from other processes on a
shared machine hits both alike; both start from the same initialisation, and their final losses are
printed as a check that they train the same model. Then the fast engine trains stacked ensembles of
N members (N = 1, 4, 8, and 64 on CUDA) for `--ens-epochs` epochs each. Unless --no-malloc-tune,
glibc is asked to keep freed blocks (`keep_freed_memory`), which saves both engines a few ms of
page faults per epoch on CPU, and both run with denormals flushed (`flush_denormals`), as the trainer does.

    python benchmarks/train_speed.py                     # CPU, 200 timed epochs each
    python benchmarks/train_speed.py --device cuda --epochs 500
    python benchmarks/train_speed.py --profile           # + the fast engine's ops with the most time per epoch
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

from common import machine_line, op_profile
from grokscope.cpu import flush_denormals, keep_freed_memory
from grokscope.engine.modular_fast import ModularFastEngine
from grokscope.models.transformer import make_transformer
from grokscope.presets import get_preset
from grokscope.tasks.modular import ModularTask


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def adamw(params, cfg) -> torch.optim.AdamW:
    o = cfg.optim
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas), eps=o.eps)


class PlainRun:
    """The full-sequence model as an nn.Module; logits [batch pos vocab] then the last position."""

    def __init__(self, cfg, task: ModularTask, device: torch.device, seed: int, init: dict | None = None) -> None:
        self.model = make_transformer(cfg.model, task.d_vocab, task.d_vocab_out, task.n_ctx, seed).to(device)
        if init is not None:
            self.model.load_state_dict(init)
        self.opt = adamw(self.model.parameters(), cfg)
        self.tr = task.tokens(task.train_idx).to(device), task.labels(task.train_idx).to(device)
        self.te = task.tokens(task.test_idx).to(device), task.labels(task.test_idx).to(device)
        self.train_loss = float("nan")

    def step(self) -> None:
        tokens, labels = self.tr
        loss = F.cross_entropy(self.model(tokens)[:, -1].double(), labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.last = loss

    def evaluate(self) -> float:
        tokens, labels = self.te
        with torch.no_grad():
            return F.cross_entropy(self.model(tokens)[:, -1].double(), labels).item()


class FastRun:
    """N stacked members (inits from seeds seed .. seed + N - 1) through ModularFastEngine.logits."""

    def __init__(self, cfg, task: ModularTask, device: torch.device, seed: int, members: int,
                 init: dict | None = None) -> None:
        models = [
            make_transformer(cfg.model, task.d_vocab, task.d_vocab_out, task.n_ctx, seed + i) for i in range(members)
        ]
        if init is not None:
            models[0].load_state_dict(init)
        self.params = {
            name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]).to(device).requires_grad_()
            for name, _ in models[0].named_parameters()
        }
        self.members = members
        self.engine = ModularFastEngine(cfg.model, task)
        self.opt = adamw(list(self.params.values()), cfg)
        tr_labels = task.labels(task.train_idx).to(device)
        self.tr = task.tokens(task.train_idx).to(device)[None], tr_labels.repeat(members)  # tokens shared
        self.te = task.tokens(task.test_idx).to(device)[None], task.labels(task.test_idx).to(device).repeat(members)

    def _loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sum over members of each member's mean cross-entropy (= the plain loss for one member)."""
        logits = self.engine.answer_logits(self.params, tokens)  # [member batch vocab]
        return F.cross_entropy(logits.flatten(0, 1).double(), labels) * self.members

    def step(self) -> None:
        loss = self._loss(*self.tr)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.last = loss

    def evaluate(self) -> float:
        with torch.no_grad():
            return self._loss(*self.te).item() / self.members


def timed_block(run, epochs: int, device: torch.device) -> float:
    """Seconds for `epochs` training steps and one test evaluation."""
    sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        run.step()
    run.evaluate()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--epochs", type=int, default=200, help="timed epochs for plain and fast each")
    ap.add_argument("--warmup", type=int, default=20, help="untimed epochs first")
    ap.add_argument("--eval-every", type=int, default=10, help="epochs between test evaluations")
    ap.add_argument("--ens-epochs", type=int, default=50, help="timed epochs per ensemble size")
    ap.add_argument("--members", default=None, help="ensemble sizes, e.g. 1,4,8 (default; 64 added on CUDA)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--skip-plain", action="store_true", help="only the fast engine")
    ap.add_argument("--skip-trainer", action="store_true", help="skip the end-to-end grokscope.train row")
    ap.add_argument("--no-malloc-tune", action="store_true", help="leave glibc's mmap / trim thresholds alone")
    ap.add_argument("--no-ftz", action="store_true", help="leave float denormals alone (the trainer flushes them on CPU)")
    ap.add_argument("--profile", type=int, nargs="?", const=30, default=0, metavar="N",
                    help="also profile N fast-engine epochs (default 30) and print the ops with the most time per epoch")
    ap.add_argument("--init", default=None, metavar="RUN:STEP",
                    help="start plain and fast from this checkpoint of a nanda2023 run (e.g. a memorised state) instead of the init")
    args = ap.parse_args()
    with contextlib.nullcontext(False) if args.no_ftz else flush_denormals() as ftz:
        run_benchmark(args, ftz)


def run_benchmark(args: argparse.Namespace, ftz: bool) -> None:
    tuned = False if args.no_malloc_tune else keep_freed_memory()  # both engines alike

    dev = args.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(dev)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = get_preset("nanda2023")
    task = ModularTask.from_config(cfg.task)
    block = args.eval_every
    n_blocks = max(1, args.epochs // block)
    print(machine_line())
    print(f"device {device} | torch {torch.__version__} | threads {torch.get_num_threads()} | malloc tuned {tuned} | "
          f"denormals flushed {ftz} | start {args.init or 'init'} | "
          f"p={task.p}, {len(task.train_idx)} train / {len(task.test_idx)} test, full batch | "
          f"{n_blocks * block} timed epochs, test loss every {block}")

    rows: list[tuple[str, int, int, float, list[float]]] = []
    init = None
    if args.init:
        from grokscope.run import load_run

        path, step = args.init.rsplit(":", 1)
        init = {k: v.to(device) for k, v in load_run(path).params(int(step)).items()}
    fast = FastRun(cfg, task, device, seed=0, members=1, init=init)
    plain = None if args.skip_plain else PlainRun(cfg, task, device, seed=0, init=init)
    runs = [r for r in (plain, fast) if r is not None]
    for run in runs:
        timed_block(run, args.warmup, device)
    times: dict[int, list[float]] = {id(r): [] for r in runs}
    for i in range(n_blocks):  # alternate the order so drifting load hits both alike
        for run in runs if i % 2 == 0 else runs[::-1]:
            times[id(run)].append(timed_block(run, block, device))
    if plain is not None:
        rows.append(("plain (full sequence)", 1, n_blocks * block, sum(times[id(plain)]), times[id(plain)]))
    rows.append(("fast", 1, n_blocks * block, sum(times[id(fast)]), times[id(fast)]))
    if plain is not None:
        lp, lf = plain.last.item(), fast.last.item()
        print(f"same model check: final train loss plain {lp:.6f}, fast {lf:.6f} (rel. diff {abs(lp - lf) / lp:.1e})")

    default_sizes = [1, 4, 8] + ([64] if device.type == "cuda" else [])
    sizes = [int(s) for s in args.members.split(",")] if args.members else default_sizes
    ens_blocks = max(1, args.ens_epochs // block)
    for n in sizes:
        run = FastRun(cfg, task, device, seed=0, members=n)
        timed_block(run, min(args.warmup, 5), device)
        t = [timed_block(run, block, device) for _ in range(ens_blocks)]
        rows.append(("fast ensemble", n, ens_blocks * block, sum(t), t))

    if not args.skip_trainer:  # the real loop: FlatAdamW, warm-up, metrics, checkpoints and state every 100 epochs
        import tempfile

        from grokscope.trainer import train

        with tempfile.TemporaryDirectory() as tmp:
            n = n_blocks * block
            t0 = time.perf_counter()
            train(cfg.replace(**{"train.epochs": n, "train.device": str(device), "train.progress": False}), f"{tmp}/run")
            secs = time.perf_counter() - t0
        rows.append(("grokscope.train (e2e)", 1, n, secs, [secs * block / n]))

    print(f"{'engine':24s} {'members':>7s} {'epochs':>6s} {'seconds':>8s} {'epochs/s':>9s} {'member-ep/s':>11s} "
          f"{'median blk ep/s':>15s} {'best blk ep/s':>13s}")
    for name, n, epochs, secs, blocks in rows:
        rate = epochs / secs
        med = block / statistics.median(blocks)
        best = block / min(blocks)
        print(f"{name:24s} {n:7d} {epochs:6d} {secs:8.2f} {rate:9.1f} {rate * n:11.1f} {med:15.1f} {best:13.1f}")
    if plain is not None:
        (_, _, e_p, s_p, b_p), (_, _, e_f, s_f, b_f) = rows[0], rows[1]
        print(f"speed-up fast / plain: {(e_f / s_f) / (e_p / s_p):.1f}x overall, "
              f"{statistics.median(b_p) / statistics.median(b_f):.1f}x on median blocks, "
              f"{min(b_p) / min(b_f):.1f}x on best blocks")
    print("(blocks: --eval-every epochs + one test evaluation; on a shared machine the best block is the "
          "closest to an unloaded one)")
    if args.profile:
        print(op_profile(fast.step, args.profile))


if __name__ == "__main__":
    main()
