"""The main-job benchmark: `rnnext train`'s character model against PyTorch, the same recipe,
the same wall time, the same data, side by side in one run.

Both sides train the charlm task's model (embedding E, one tanh layer of H, a linear output
over the vocabulary) on the same corpus and split as `rnnext train` (by default the
standard library's top-level .py files): the same initial parameters (PyTorch's modules
are filled with rnnext's; nn.RNN's bias_hh stays zero and untrained, since rnnext's one
b_h is bias_ih + bias_hh), Adam with the same hyper-parameters, global gradient-norm
clipping, the same learning-rate schedule (cosine over the time budget by default, as
`rnnext train`), truncated BPTT with the state carried from chunk to chunk, and the same
batches in the same order (two copies of the task drawn with the same seed). PyTorch is
torch.nn.Embedding + torch.nn.RNN + torch.nn.Linear with torch.optim.Adam and
torch.nn.utils.clip_grad_norm_.

Each side has its own clock, which counts everything its loop does: training steps and its
periodic validations (the first VAL_CHARS held-out characters, 10 times per run by
default, as `rnnext train`). The sides run alternately in slices of --slice seconds so that
load from other processes on a shared machine falls on both alike. At the end both are
scored on the whole held-out text. Printed side by side: steps, steps/s, held-out
bits/char, and time-to-quality (the clock of the first validation at or below 2.6, 2.4,
2.2, 2.0 bits/char). Then the latency of one autocompletion (`rnnext.tasks.complete`,
prefix of 20 characters, k = 5, max_length = 20) with the trained rnnext model.

    python bench/bench_charlm.py                     # the `rnnext train` recipe, its time
    python bench/bench_charlm.py --seconds 30 --hidden 512 --bptt 64 --json out.json

Nothing here is a test: no figure is asserted; the goals are printed as met or not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Any, Dict, List, Optional
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/_machine.py
from _machine import cpu_name  # noqa: E402

THRESHOLDS = (2.6, 2.4, 2.2, 2.0)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from rnnext.tasks import CharLM

    d = CharLM.defaults
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0 * d["minutes"],
                   help="training time of each side, validations included (default: rnnext train's)")
    p.add_argument("--hidden", type=int, default=d["hidden"])
    p.add_argument("--layers", type=int, default=d["layers"])
    p.add_argument("--embedding", type=int, default=d["embedding"])
    p.add_argument("--bptt", type=int, default=d["bptt"])
    p.add_argument("--batch", type=int, default=d["batch"])
    p.add_argument("--lr", type=float, default=d["lr"])
    p.add_argument("--clip", type=float, default=d["clip"])
    p.add_argument("--schedule", choices=["cosine", "constant"], default=d["schedule"],
                   help="cosine: over the time budget, down to 1%% of --lr")
    p.add_argument("--validations", type=int, default=d["validations"], help="periodic validations per run")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of each side")
    p.add_argument("--slice", type=float, default=2.0, help="seconds each side runs before the other's turn")
    p.add_argument("--sides", nargs="+", default=["rnnext", "torch"], metavar="SIDE",
                   help="rnnext or torch, optionally with its own thread count: torch:1 (default: rnnext torch)")
    p.add_argument("--data", metavar="FILE", help="a UTF-8 text file (default: the standard library's source)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--save", metavar="FILE", help="write the trained rnnext model and its vocabulary here "
                   "(rnnext.textgen.CharModel.save; `rnnext complete --checkpoint FILE` reads it)")
    return p.parse_args(argv)




class Side:
    """One implementation's run: its own task copy (data stream), model, clock and log."""

    name = ""

    def __init__(self, args: argparse.Namespace, task: Any, label: str, threads: int) -> None:
        self.args, self.task, self.label, self.threads = args, task, label, threads
        self.clock = 0.0  # seconds of this side's loop so far (steps and validations)
        self.steps = 0
        self.val_seconds = 0.0
        self.curve: List[Dict[str, float]] = []  # {"seconds", "step", "bits"}
        self.next_val = 1

    def factor(self) -> float:
        from rnnext.training import cosine_factor

        if self.args.schedule == "constant":
            return 1.0
        return cosine_factor(self.clock / self.args.seconds)

    def done(self) -> bool:
        return self.clock >= self.args.seconds

    def set_threads(self) -> None:
        raise NotImplementedError

    def run_slice(self, seconds: float) -> None:
        """Train (and validate when due) for ``seconds`` of this side's clock, or to the end."""
        self.set_threads()
        end = min(self.clock + seconds, self.args.seconds)
        every = self.args.seconds / max(1, self.args.validations)
        while self.clock < end:
            t0 = time.perf_counter()
            self.train_step()
            self.steps += 1
            self.clock += time.perf_counter() - t0
            if self.clock >= self.next_val * every and self.next_val < self.args.validations:
                t0 = time.perf_counter()
                bits = self.evaluate(final=False)
                dt = time.perf_counter() - t0
                self.clock += dt
                self.val_seconds += dt
                self.curve.append({"seconds": self.clock, "step": self.steps, "bits": bits})
                self.next_val += 1

    def time_to(self, threshold: float) -> Optional[float]:
        for point in self.curve:
            if point["bits"] <= threshold:
                return point["seconds"]
        return None

    def train_step(self) -> None:
        raise NotImplementedError

    def evaluate(self, final: bool) -> float:
        raise NotImplementedError


class RnnextSide(Side):
    name = "rnnext"

    def __init__(self, args: argparse.Namespace, task: Any, label: str, threads: int, model: Any) -> None:
        from rnnext import optim

        super().__init__(args, task, label, threads)
        self.model = model
        self.opt = optim.Adam(model, lr=args.lr, lr_schedule=lambda step: self.factor())
        self.optim = optim

    def set_threads(self) -> None:
        import rnnext

        rnnext.set_num_threads(self.threads)

    def train_step(self) -> None:
        self.opt.zero_grad()
        self.task.train_step(self.model)
        self.optim.clip_grad_norm(self.model, self.args.clip)
        self.opt.step()

    def evaluate(self, final: bool) -> float:
        return float(self.task.evaluate(self.model, final=final)["metric"])


class TorchSide(Side):
    name = "torch"

    def __init__(self, args: argparse.Namespace, task: Any, label: str, threads: int, model: Any) -> None:
        import torch

        super().__init__(args, task, label, threads)
        self.torch = torch
        V, E, H, L = model.vocab_size, model.input_size, model.hidden_size, model.num_layers
        self.net = torch.nn.ModuleDict({"embedding": torch.nn.Embedding(V, E),
                                        "rnn": torch.nn.RNN(E, H, num_layers=L),  # tanh, time-major, as rnnext
                                        "out": torch.nn.Linear(H, V)})
        self.net.load_state_dict(model.torch_state_dict(rnn_prefix="rnn.", linear_prefix="out."))
        self.emb, self.rnn, self.out = self.net["embedding"], self.net["rnn"], self.net["out"]
        for k in range(L):  # rnnext has one bias b_h = bias_ih + bias_hh: train bias_ih alone (zero bias_hh)
            getattr(self.rnn, f"bias_hh_l{k}").requires_grad_(False)
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
        self.h: Any = None

    def set_threads(self) -> None:
        self.torch.set_num_threads(self.threads)

    def forward(self, x: Any, h: Any) -> Any:
        y, h = self.rnn(self.emb(x), h)
        return self.out(y), h

    def train_step(self) -> None:
        torch = self.torch
        x, y = self.task.next_batch()
        if self.task.chunk == 1:  # a new pass over the text: the carried state is reset
            self.h = None
        for g in self.opt.param_groups:
            g["lr"] = self.args.lr * self.factor()
        self.opt.zero_grad()
        logits, h = self.forward(torch.from_numpy(x), self.h)
        self.h = h.detach()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.args.clip)
        self.opt.step()

    def evaluate(self, final: bool) -> float:
        torch = self.torch
        task = self.task
        ids = task.heldout_ids if final else task.heldout_ids[: task.VAL_CHARS + 1]
        total, count, h = 0.0, 0.0, None
        with torch.no_grad():
            for x, y, m in task.heldout_chunks(ids):
                logits, h = self.forward(torch.from_numpy(x), h)
                logp = torch.log_softmax(logits.double(), dim=-1)
                nll = -logp.gather(-1, torch.from_numpy(y)[..., None])[..., 0]
                total += float(nll[torch.from_numpy(m)].sum())
                count += float(m.sum())
        return total / count / math.log(2.0)


def completion_latency(model: Any, vocab: str, text: str, beam: Optional[int] = None) -> Dict[str, float]:
    """Median and max wall time of rnnext.tasks.complete for 20-character prefixes cut from
    the held-out text (k = 5, max_length = 20), 40 prefixes 1000 characters apart."""
    from rnnext.tasks import complete

    prefixes = [text[i : i + 20] for i in range(0, 40 * 1000, 1000)]
    complete(model, vocab, prefixes[0], k=5, max_length=20, beam=beam)  # warm up
    times = []
    for prefix in prefixes:
        t0 = time.perf_counter()
        complete(model, vocab, prefix, k=5, max_length=20, beam=beam)
        times.append(time.perf_counter() - t0)
    return {"median_ms": 1e3 * statistics.median(times), "max_ms": 1e3 * max(times), "runs": len(times)}


def main() -> int:
    args = parse_args()
    import rnnext
    from rnnext.tasks import CharLM

    specs = []
    for spec in args.sides:
        name, _, threads = spec.partition(":")
        if name not in ("rnnext", "torch") or (threads and not threads.isdigit()) or spec in [s[0] for s in specs]:
            raise SystemExit(f"--sides: expected distinct rnnext[:THREADS] or torch[:THREADS], got {spec!r}")
        specs.append((spec, name, int(threads) if threads else args.threads))
    rnnext.set_num_threads(args.threads)
    kw = dict(data=args.data, batch_size=args.batch, bptt=args.bptt, embedding_size=args.embedding, seed=args.seed)
    t0 = time.perf_counter()
    first = CharLM(**kw)
    load_s = time.perf_counter() - t0
    model = first.build_model(args.hidden, args.layers, seed=args.seed)
    sides: List[Side] = []
    for i, (label, name, threads) in enumerate(specs):
        task = first if i == 0 else CharLM(**kw)
        cls = RnnextSide if name == "rnnext" else TorchSide
        sides.append(cls(args, task, label, threads, model.__deepcopy__({}) if name == "rnnext" else model))
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {cpu_name()}, {os.cpu_count()} cores, "
          f"{args.threads} threads per side; python {platform.python_version()}, rnnext {rnnext.__version__} "
          f"(GEMM kernel {rnnext._core.gemm_isa()})"
          + (f", torch {sys.modules['torch'].__version__}" if "torch" in sys.modules else ""))
    print(f"data: {first.source}; {len(first.train_ids)} training, {len(first.heldout_ids)} held-out characters, "
          f"vocabulary {len(first.vocab)} (loaded in {load_s:.1f} s)")
    print(f"recipe: {model!r}, {model.num_parameters()} parameters; batch {args.batch}, bptt {args.bptt}, "
          f"Adam lr {args.lr:g} ({args.schedule}), clip {args.clip:g}, {args.seconds:g} s per side, "
          f"{args.validations} validations of {first.VAL_CHARS} characters", flush=True)
    wall0 = time.perf_counter()
    while not all(s.done() for s in sides):
        for s in sides:
            if not s.done():
                s.run_slice(args.slice)
    finals = {}
    for s in sides:
        t0 = time.perf_counter()
        finals[s.label] = (s.evaluate(final=True), time.perf_counter() - t0)
    wall = time.perf_counter() - wall0

    rows = [("steps", lambda s: f"{s.steps}"), ("steps/s", lambda s: f"{s.steps / s.clock:.1f}"),
            ("validation s", lambda s: f"{s.val_seconds:.1f}"),
            ("held-out bits/char", lambda s: f"{finals[s.label][0]:.3f}"),
            ("final eval s", lambda s: f"{finals[s.label][1]:.1f}")]
    for th in THRESHOLDS:
        rows.append((f"time to {th} bits/char", lambda s, th=th: "-" if s.time_to(th) is None else f"{s.time_to(th):.0f} s"))
    width = max(len(r[0]) for r in rows) + 2
    print("\n" + "".ljust(width) + "".join(s.label.rjust(12) for s in sides))
    for label, fmt in rows:
        print(label.ljust(width) + "".join(fmt(s).rjust(12) for s in sides))
    print("validation curves (seconds: bits/char):")
    for s in sides:
        print(f"  {s.label}: " + ", ".join(f"{p['seconds']:.0f}: {p['bits']:.3f}" for p in s.curve))
    result: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "cpu": cpu_name(), "threads": args.threads,
        "gemm_isa": rnnext._core.gemm_isa(),
        "recipe": {k: getattr(args, k) for k in ("seconds", "hidden", "layers", "embedding", "bptt", "batch", "lr", "clip",
                                                   "schedule", "validations", "seed")},
        "wall_seconds": wall,
        "sides": {s.label: {"threads": s.threads, "steps": s.steps, "seconds": s.clock, "steps_per_s": s.steps / s.clock,
                           "validation_seconds": s.val_seconds, "heldout_bits": finals[s.label][0],
                           "time_to": {str(th): s.time_to(th) for th in THRESHOLDS}, "curve": s.curve}
                  for s in sides},
    }
    ours = [s for s in sides if s.name == "rnnext"]
    theirs = [s for s in sides if s.name == "torch"]
    if ours and theirs:
        # Against PyTorch's best thread count of this run, rnnext's as run by default (first listed).
        best = min(theirs, key=lambda s: finals[s.label][0])
        gap = finals[best.label][0] - finals[ours[0].label][0]
        print(f"{ours[0].label} is {gap:.3f} bits/char below {best.label}, PyTorch's best here (goal: at least 0.1), "
              f"with {ours[0].steps / max(1, best.steps):.2f}x its steps; goal <= 1.9 bits/char "
              f"{'met' if finals[ours[0].label][0] <= 1.9 else 'not met'}")
        result["gap_bits"] = gap
    if ours:
        side = ours[0]
        try:
            lat = completion_latency(side.model, first.vocab, "".join(first.vocab[i] for i in first.heldout_ids[:40000]))
        except ImportError:
            lat = None
        if lat is not None:
            print(f"completion latency (20-character prefix, k=5, max_length=20, {lat['runs']} prefixes): median "
                  f"{lat['median_ms']:.2f} ms, max {lat['max_ms']:.2f} ms (goal: under 5 ms)")
            result["completion_ms"] = lat
    if args.save and ours:
        from rnnext.textgen import CharModel

        CharModel(ours[0].model, first.vocab).save(args.save)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
