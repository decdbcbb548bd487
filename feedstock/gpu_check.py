"""``make gpu-check`` / ``python -m feedstock.gpu_check``: everything GPU in one command (minutes).

Run it first whenever a machine with a GPU is available: the cupy half of feedstock
cannot be tested anywhere else. Parts, one verdict line each (PASS, FAIL or SKIP):

1. ``trainer lenet`` / ``trainer fcn_small``: 20 SGD steps on the cupy backend and on
   numpy, same seed and batches: every step's loss equal to 1e-4.
2. ``pinned slots``: a Loader's slot memory is registered (cudaHostRegister) once, in
   the first epoch, and never again in the second, and unregistered on close.
3. ``feeder overlap``: the DeviceFeeder with a simulated 5 ms step waits < 5% of the
   step time for data; H2D GB/s from a pinned slot vs a pageable copy, as
   ``feedstock bench --device`` measures them.
4. ``torch batches``: feedstock.torch batches on the GPU (pinned or device batches,
   where this feedstock.torch offers them) equal the Loader's numpy batches.

Exit status 1 when a part fails, else 0; on a machine without a usable GPU it says so
and exits 0 (CI runs that fallback).
"""
from __future__ import annotations

import inspect
import sys
import time
from types import ModuleType
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, TextIO, Tuple, Union

import numpy as np

from .protocols import Source

if TYPE_CHECKING:
    from .pipeline.loader import Loader
    from .trainer.modeldef import ModelDef

STEPS, TOLERANCE = 20, 1e-4
BACKENDS = ("numpy", "cupy")  # the trainer parts compare these two (tests run numpy against itself)
NO_GPU = "gpu-check: no usable GPU here (cupy absent or no CUDA device): nothing to check, exit 0"


class Skip(Exception):
    """A part that cannot run here (its API or library is absent): said in one line, not a failure."""


Part = Tuple[str, Callable[[ModuleType], str]]  # a check of the cupy module


def _data(n: int = 128) -> Tuple[np.ndarray, np.ndarray]:
    from .trainer.datasets import load_fashion_mnist

    tr, _ = load_fashion_mnist()
    return tr.images[:n], tr.labels[:n]


def _losses(model: Union[str, "ModelDef"], source: Union[Source, Tuple[np.ndarray, np.ndarray]], backend: str, solver: dict, batch: int) -> np.ndarray:
    from .trainer.loop import train

    report = train(model, source, None, dict(solver, max_iter=STEPS, display=0), None, batch_size=batch,
                   workers=0, backend=backend, plots=False, seed=0)
    return np.asarray(report.history["train_loss"], dtype=np.float64)


def _same_losses(name: str, cpu: np.ndarray, gpu: np.ndarray) -> str:
    if cpu.shape != gpu.shape or cpu.size != STEPS:
        raise AssertionError(f"{name}: {cpu.size} numpy steps vs {gpu.size} cupy steps, expected {STEPS}")
    diff = float(np.abs(cpu - gpu).max())
    if not diff <= TOLERANCE:
        raise AssertionError(f"{name}: losses differ by up to {diff:.2e} (> {TOLERANCE:g}); "
                             f"numpy {cpu[-1]:.6f} vs cupy {gpu[-1]:.6f} at step {STEPS}")
    return f"{STEPS} steps, max |loss numpy - loss cupy| = {diff:.1e}, final loss {gpu[-1]:.5f}"


def check_lenet(cp: ModuleType) -> str:
    images, labels = _data()
    solver = {"base_lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005}
    return _same_losses("lenet", *(_losses("lenet", (images, labels), b, solver, 32) for b in BACKENDS))


def check_fcn(cp: ModuleType) -> str:
    from .fixtures.segdata import draw_sample
    from .loaders.array import ArraySource
    from .trainer.seg.models import fcn_small

    pairs = [draw_sample(0, i) for i in range(16)]  # the shapes set: BGR HxWx3 images, HxW class masks
    images = np.stack([img.transpose(2, 0, 1) for img, _ in pairs])
    masks = np.stack([m[None] for _, m in pairs])
    solver = {"base_lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005}
    model = fcn_small(width=8, input_shape=images.shape[1:])
    runs = [_losses(model, ArraySource(data=images, label=masks), b, solver, 8) for b in BACKENDS]
    return _same_losses("fcn_small", *runs)


def _loader(workers: int = 2) -> Loader:
    from .pipeline.loader import Loader
    from .trainer.feeding import labelled_arrays

    images, labels = _data(512)
    return Loader(labelled_arrays(images, labels), batch_size=64, workers=workers, seed=0)


def check_pinned(cp: ModuleType) -> str:
    from .backend import get_backend
    from .device import DeviceFeeder

    runtime = cp.cuda.runtime
    calls: List[int] = []
    real = runtime.hostRegister

    def counted(ptr: int, size: int, flags: int) -> object:
        calls.append(size)
        return real(ptr, size, flags)

    runtime.hostRegister = counted
    try:
        with _loader() as loader, DeviceFeeder(get_backend("cupy")) as feeder:
            per_epoch = []
            for epoch in range(2):
                before = len(calls)
                for batch in feeder.feed(loader, epoch=epoch, slots=loader.slot_arrays):
                    got = cp.asnumpy(batch["data"])
                    if got.shape[0] != 64 or not np.isfinite(got).all():
                        raise AssertionError(f"a device batch of shape {got.shape} with non-finite values")
                per_epoch.append(len(calls) - before)
            slot_bytes = sum(a.nbytes for s in loader.slot_arrays() for a in s.values())
            registered = sum(feeder._registered.values())
        leftover = len(feeder._registered)
    finally:
        runtime.hostRegister = real
    if per_epoch[0] == 0 or per_epoch[1] != 0 or registered < slot_bytes or leftover:
        raise AssertionError(f"hostRegister calls per epoch {per_epoch} (expected [n > 0, 0]), {registered} bytes "
                             f"registered for {slot_bytes} bytes of slots, {leftover} left registered after close")
    return f"{per_epoch[0]} registration(s) in epoch 0, none in epoch 1, {registered >> 10} KiB, released on close"


def check_overlap(cp: ModuleType) -> str:
    from .benchtool.device_feed import measure_device

    lines = measure_device(lambda w: _loader(w), 2, seconds=2.0, step_s=0.005)
    text = " | ".join(lines)
    wait = [float(tok.strip("(%),")) for tok in text.split() if tok.startswith("(") and tok.endswith("%),")]
    if not wait or wait[-1] >= 5.0:
        raise AssertionError(f"data wait not under 5% of a 5 ms step: {text}")
    return text.replace("device: ", "")


def check_torch(cp: ModuleType) -> str:
    try:
        import torch
    except ImportError:
        raise Skip("torch is not installed (pip install -e '.[torch]')") from None
    if not torch.cuda.is_available():
        raise Skip("this torch build has no CUDA")
    from . import torch as ft
    from .pipeline.loader import Loader
    from .trainer.feeding import labelled_arrays

    loader_class: Optional[type] = getattr(ft, "DataLoader", None)  # engineer door's torch-signature DataLoader
    if loader_class is None:
        raise Skip("this feedstock.torch has no DataLoader (device/pinned batches arrive with it)")
    params = inspect.signature(loader_class).parameters
    options = [o for o in ({"device": "cuda"}, {"pin_memory": True}) if next(iter(o)) in params]
    if not options:
        raise Skip(f"feedstock.torch.DataLoader takes neither device nor pin_memory ({sorted(params)})")
    images, labels = _data(256)
    with Loader(labelled_arrays(images, labels), batch_size=64, workers=0, shuffle=False) as ref_loader:
        want = [[v.copy() for v in b.values()] for b in ref_loader]
    done = []
    for option in options:
        loader = loader_class(labelled_arrays(images, labels), batch_size=64, num_workers=2, **option)
        try:
            count = 0
            for k, (batch, ref) in enumerate(zip(loader, want)):
                tensors = list(batch.values()) if isinstance(batch, dict) else list(batch)
                for tensor, expected in zip(tensors, ref):
                    where = tensor.is_cuda if "device" in option else tensor.is_pinned()
                    if not where or not np.array_equal(tensor.cpu().numpy(), expected):
                        raise AssertionError(f"{option}: batch {k} is not the Loader's (device {tensor.device}, "
                                             f"pinned {tensor.is_pinned()})")
                count += 1
            if count != len(want):
                raise AssertionError(f"{option}: {count} batches, expected {len(want)}")
        finally:
            close = getattr(loader, "close", None)
            if close is not None:
                close()
        done.append(f"{next(iter(option))}={next(iter(option.values()))!r}")
    return f"{' and '.join(done)}: {len(want)} batches equal the Loader's"


PARTS: Sequence[Part] = (("trainer lenet", check_lenet), ("trainer fcn_small", check_fcn),
                         ("pinned slots", check_pinned), ("feeder overlap", check_overlap),
                         ("torch batches", check_torch))


def run(parts: Sequence[Part], cp: ModuleType, out: Optional[TextIO] = None) -> int:
    """Run every part, one verdict line each; 1 when one failed."""
    out = out or sys.stdout
    failed = 0
    for name, fn in parts:
        start = time.perf_counter()
        try:
            verdict = f"PASS {name}: {fn(cp)}"
        except Skip as skip:
            verdict = f"SKIP {name}: {skip}"
        except Exception as exc:  # noqa: BLE001  (a part's failure is its verdict, the others still run)
            failed += 1
            verdict = f"FAIL {name}: {type(exc).__name__}: {exc}"
        print(f"{verdict} ({time.perf_counter() - start:.1f} s)", file=out, flush=True)
    print(f"gpu-check: {'FAILED ' + str(failed) + ' part(s)' if failed else 'all parts passed or skipped'}",
          file=out)
    return 1 if failed else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .backend import probe_cupy

    cp = probe_cupy()
    if cp is None:
        print(NO_GPU)
        return 0
    name = cp.cuda.runtime.getDeviceProperties(0)["name"]
    print(f"gpu-check on {name.decode() if isinstance(name, bytes) else name}, cupy {cp.__version__}")
    return run(PARTS, cp)


if __name__ == "__main__":
    sys.exit(main())
