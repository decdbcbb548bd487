"""Users' own datasets: feedstock.torch.DataLoader vs torch.utils.data.DataLoader, same workers, same run.

Two user-style map datasets, written the way people write them:

* ``jpeg``: ``__getitem__`` opens a JPEG file with Pillow, resizes the short side
  to 256, takes a random 224 crop, flips half the time and normalises with the
  ImageNet mean/std in numpy (float32, CHW), like torchvision's train transforms;
* ``small``: 60k records of 28x28 uint8 arrays and an int label (MNIST-sized),
  ``__getitem__`` returns ``(x[i], int(y[i]))``.

Both loaders get the same dataset object, batch size, worker count (default 2),
shuffle, persistent workers and torch's default prefetch (2 batches per worker); the
consumer only takes batches (no compute, so neither main process's thread count matters
and neither is changed). Rounds alternate between the two, and who goes first alternates
by round; the medians of the
steady-state rates (after the first batch) are compared. Worker memory is the
proportional set size (PSS: shared pages divided among the processes sharing them,
so feedstock's shared-memory slots count a third each with 2 workers) of each
worker at the end of a round, averaged. Goals: >= 1.2x on jpeg, >= 3x on small,
worker PSS no higher ("PSS all" adds this process: the batches torch has sent are
mapped here, feedstock's slots are shared by all). CPU seconds per sample (this process and the workers, over the
same window) are printed too: on a loaded machine they vary less than the rates; so is the
CPU per sample each loader adds beyond the dataset's own ``__getitem__`` (timed in this
process), which is what a loader can save at all.

    .venv/bin/python bench/bench_library.py [--workers 2] [--rounds 3] [--seconds 8] [--only jpeg]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


class JpegFiles:
    """A torchvision-style ImageFolder stand-in: paths and labels; decoding and augmenting in __getitem__."""

    def __init__(self, paths: List[str], labels: List[int]):
        self.paths, self.labels = paths, labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        img = Image.open(self.paths[i]).convert("RGB")
        w, h = img.size
        scale = 256 / min(w, h)
        img = img.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
        a = np.asarray(img)
        y0 = np.random.randint(0, a.shape[0] - 224 + 1)
        x0 = np.random.randint(0, a.shape[1] - 224 + 1)
        a = a[y0:y0 + 224, x0:x0 + 224]
        if np.random.rand() < 0.5:
            a = a[:, ::-1]
        a = (a.astype(np.float32) / 255.0 - MEAN) / STD
        return {"image": np.ascontiguousarray(a.transpose(2, 0, 1)), "label": self.labels[i]}


class SmallRecords:
    """60k MNIST-sized records held in memory."""

    def __init__(self, n: int = 60000):
        rng = np.random.default_rng(0)
        self.x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        self.y = rng.integers(0, 10, n)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Tuple[np.ndarray, int]:
        return self.x[i], int(self.y[i])



def child_pids() -> List[int]:
    """The pids of this process's children (from /proc: torch's DataLoader exposes no list of workers)."""
    pids: List[int] = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            pids += [int(p) for p in f.read().split()]
    return pids

def write_jpegs(folder: Path, n: int) -> JpegFiles:
    """``n`` 500x375 JPEGs (quality 90) of smooth gradients plus noise: photo-like decode cost."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:375, 0:500]
    paths = []
    for i in range(n):
        base = np.stack([(xx * (1 + i % 3) + yy) % 256, (yy * 2 + i * 7) % 256, (xx + yy * (i % 5)) % 256], -1)
        noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"img{i:04d}.jpg"
        Image.fromarray(noisy).save(path, quality=90)
        paths.append(str(path))
    return JpegFiles(paths, [i % 10 for i in range(n)])


def first(batch: Any) -> Any:
    return batch["image"] if isinstance(batch, dict) else batch[0]


def cpu_of(pids: List[int]) -> float:
    """CPU seconds so far of this process and ``pids``."""
    from feedstock.pipeline.machine import cpu_seconds

    return time.process_time() + sum(cpu_seconds(pid) or 0.0 for pid in pids)


Measured = Tuple[float, float, float, float]


def measure(make: Callable[[], Any], pids_of: Callable[[Any], List[int]], seconds: float) -> Measured:
    """(samples/s after the first batch, CPU seconds per sample of this process and the workers, mean worker
    PSS, PSS of this process and the workers together, in bytes) of one loader for about ``seconds``."""
    import os

    from feedstock.pipeline.machine import pss_bytes

    loader = make()
    samples, t0, c0, pids = 0, 0.0, 0.0, []
    try:
        while True:
            for batch in loader:
                if not t0:  # the steady state starts after the first batch
                    pids = pids_of(loader)
                    t0, c0 = time.perf_counter(), cpu_of(pids)
                    continue
                samples += len(first(batch))
                if time.perf_counter() - t0 >= seconds:
                    break
            else:
                continue
            break
        rate, cpu = samples / (time.perf_counter() - t0), (cpu_of(pids) - c0) / max(samples, 1)
        pss = [pss_bytes(pid) or 0 for pid in pids]
        total = sum(pss) + (pss_bytes(os.getpid()) or 0)
    finally:
        close = getattr(loader, "close", None)
        if close is not None:
            close()
    return rate, cpu, statistics.mean(pss) if pss else 0.0, total


def run_case(name: str, dataset: Any, *, batch_size: int, workers: int, rounds: int, seconds: float) -> Dict[str, Any]:
    import torch.utils.data as tud

    from feedstock.torch import DataLoader

    kw = dict(batch_size=batch_size, shuffle=True, num_workers=workers, persistent_workers=True, drop_last=True)
    ours = lambda: DataLoader(dataset, seed=0, **kw)
    theirs = lambda: tud.DataLoader(dataset, multiprocessing_context="fork", **kw)
    our_pids = lambda loader: loader.loader.worker_pids()
    their_pids = lambda loader: child_pids()  # torch names no public list: its workers are our children
    results: Dict[str, List[Measured]] = {"feedstock": [], "torch": []}
    makers = {"feedstock": (ours, our_pids), "torch": (theirs, their_pids)}
    for r in range(rounds):
        # who goes first alternates, so a drift in the machine's load favours neither
        for who in (("feedstock", "torch") if r % 2 == 0 else ("torch", "feedstock")):
            results[who].append(measure(*makers[who], seconds))
    out: Dict[str, Any] = {"case": name, "getitem": getitem_cpu(dataset)}
    for who, rows in results.items():
        out[who] = tuple(statistics.median(r[j] for r in rows) for j in range(4))
        out[who + "_rounds"] = [round(r[0]) for r in rows]
    out["ratios"] = [a[0] / b[0] for a, b in zip(results["feedstock"], results["torch"])]
    out["cpu_ratios"] = [b[1] / a[1] for a, b in zip(results["feedstock"], results["torch"])]
    return out


def getitem_cpu(dataset: Any, n: int = 256) -> float:
    """CPU seconds per ``dataset[i]`` in this process (the user's own cost, the floor for any loader),
    the best of three passes over ``n`` shuffled indices."""
    order = np.random.default_rng(0).permutation(len(dataset))[:n].tolist()
    best = float("inf")
    for _ in range(3):
        c0 = time.process_time()
        for i in order:
            dataset[i]
        best = min(best, (time.process_time() - c0) / len(order))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="steady-state seconds per measurement")
    parser.add_argument("--only", choices=("jpeg", "small"))
    args = parser.parse_args()
    goals = {"jpeg": 1.2, "small": 3.0}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_library_") as tmp:
        if args.only in (None, "jpeg"):
            rows.append(run_case("jpeg", write_jpegs(Path(tmp), 256), batch_size=64, workers=args.workers,
                                 rounds=args.rounds, seconds=args.seconds))
        if args.only in (None, "small"):
            rows.append(run_case("small", SmallRecords(), batch_size=256, workers=args.workers, rounds=args.rounds,
                                 seconds=args.seconds))
    print(f"{'dataset':8} {'feedstock/s':>12} {'torch/s':>10} {'ratio':>6} {'goal':>5} {'CPU us/sample':>14} "
          f"{'torch':>7} {'ratio':>6} {'PSS/worker':>11} {'torch':>9} {'PSS all':>9} {'torch':>9}  rounds (ours | torch)")
    for r in rows:
        (ours, our_cpu, our_pss, our_all), (theirs, their_cpu, their_pss, their_all) = r["feedstock"], r["torch"]
        print(f"{r['case']:8} {ours:12.0f} {theirs:10.0f} {ours / theirs:5.2f}x {goals[r['case']]:4.1f}x "
              f"{our_cpu * 1e6:14.1f} {their_cpu * 1e6:7.1f} {their_cpu / our_cpu:5.2f}x "
              f"{our_pss / 2**20:8.1f} MB {their_pss / 2**20:6.1f} MB {our_all / 2**20:6.0f} MB {their_all / 2**20:6.0f} MB"
              f"  {r['feedstock_rounds']} | {r['torch_rounds']}")
    print("\nper round (ratio of rates, ratio of CPU per sample), and CPU per sample beyond the dataset's own "
          "__getitem__ (its CPU per call in this process, best of 3 passes):")
    for r in rows:
        (_, our_cpu, _, _), (_, their_cpu, _, _) = r["feedstock"], r["torch"]
        spread = ", ".join(f"{a:.2f}x/{b:.2f}x" for a, b in zip(r["ratios"], r["cpu_ratios"]))
        g = r["getitem"]
        print(f"{r['case']:8} rounds {spread}; __getitem__ {g * 1e6:.1f} us, beyond it: feedstock "
              f"{(our_cpu - g) * 1e6:+.1f} us, torch {(their_cpu - g) * 1e6:+.1f} us per sample")


if __name__ == "__main__":
    main()
