"""``train()``: the solver loop shared by the CLI and the demo, with test passes, snapshots and a report."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from ..device import DeviceFeeder, FeedStats
from ..backend import Backend, get_backend
from .feeding import as_source, batch_stream, is_loader, remote_stream
from .layers import Dropout
from .models import ModelDef, get_model
from .net import Net, first_weights
from .solver import SGDSolver, SolverConfig

log = logging.getLogger(__name__)

_DROPOUT_TAG = 0x44524F50  # "DROP": keeps the dropout stream apart from the data order


@dataclass
class TrainReport:
    """What a run did: final metrics, throughput, data-wait, per-epoch timing, curves and files."""

    model: str
    backend: str
    iters: int
    batch_size: int
    train_loss: float
    train_accuracy: float
    test_loss: Optional[float]
    test_accuracy: Optional[float]
    images_per_s: float
    step_time_s: float
    data_wait_s: float
    data_wait_fraction: float
    wall_s: float
    epochs: List[FeedStats] = field(default_factory=list)
    history: Dict[str, List[float]] = field(default_factory=dict)
    files: List[str] = field(default_factory=list)
    net: Optional[Net] = field(default=None, repr=False)

    def summary(self) -> str:
        test = "n/a" if self.test_accuracy is None else f"{self.test_accuracy:.4f} (loss {self.test_loss:.4f})"
        return "\n".join([
            f"model {self.model} on {self.backend}: {self.iters} iterations of batch {self.batch_size} "
            f"in {self.wall_s:.1f} s",
            f"train loss {self.train_loss:.4f}, train accuracy {self.train_accuracy:.4f} (last 10% of steps)",
            f"test accuracy {test}",
            f"throughput {self.images_per_s:.0f} images/s, step {self.step_time_s * 1e3:.2f} ms",
            f"data wait {self.data_wait_s:.3f} s = {self.data_wait_fraction:.2%} of step time",
        ] + [f"  {e.line()}" for e in self.epochs])


def resolve_solver(solver_cfg: Any, model: ModelDef) -> SolverConfig:
    """None: the model's default; a SolverConfig; a dict of Caffe fields; or a YAML path."""
    if solver_cfg is None:
        return model.solver
    if isinstance(solver_cfg, SolverConfig):
        return solver_cfg
    if isinstance(solver_cfg, dict):
        return SolverConfig.from_dict(solver_cfg)
    return SolverConfig.from_yaml(solver_cfg)


def step_seed(seed: int, it: int) -> int:
    """The dropout seed of iteration ``it``: a pure function, so a resumed run draws the same masks."""
    return int(np.random.SeedSequence([seed, it, _DROPOUT_TAG]).generate_state(1)[0])


def evaluate(net: Net, feeder: DeviceFeeder, stream: Any, test_iter: int = 0) -> tuple[float, float]:
    """(mean loss, accuracy) over the stream's epoch 0 (the first ``test_iter`` batches when > 0)."""
    loss = correct = count = 0
    # A test pass is no training step: it is kept out of the timing report (record=False).
    batches = feeder.feed(stream.epoch(0), slots=stream.slot_arrays, record=False)
    for k, batch in enumerate(batches):
        if test_iter and k >= test_iter:
            break
        batch_loss, batch_correct = net.evaluate(batch["data"], batch["label"])
        loss, correct, count = loss + batch_loss, correct + batch_correct, count + len(batch["label"])
    batches.close()
    return loss / max(count, 1), correct / max(count, 1)


class _Run:
    """The mutable state of one train() call."""

    def __init__(self, mdef: ModelDef, cfg: SolverConfig, backend: Backend, seed: int, out_dir: Optional[Path]) -> None:
        self.mdef, self.cfg, self.seed, self.out_dir = mdef, cfg, seed, out_dir
        self.net = mdef.build(backend=backend, seed=cfg.random_seed)
        self.solver = SGDSolver(self.net, cfg)
        self.dropout = any(isinstance(layer, Dropout) for layer in self.net.layers)
        self.history: Dict[str, List[float]] = {k: [] for k in (
            "iter", "train_loss", "train_accuracy", "lr", "test_iter", "test_loss", "test_accuracy")}
        self.files: List[str] = []

    def test(self, feeder: DeviceFeeder, val: Any) -> None:
        with feeder.paused():
            loss, acc = evaluate(self.net, feeder, val, self.cfg.test_iter)
        h = self.history
        h["test_iter"].append(self.solver.iter)
        h["test_loss"].append(loss)
        h["test_accuracy"].append(acc)
        log.info("iteration %d: test loss %.4f, accuracy %.4f", self.solver.iter, loss, acc)

    def step(self, batch: Dict[str, Any]) -> None:
        backend, it = self.net.backend, self.solver.iter
        rng = backend.rng(step_seed(self.seed, it)) if self.dropout else None
        loss, correct = self.net.forward_backward(batch["data"], batch["label"], rng=rng)
        loss = float(loss)  # synchronises: the step time is the device's
        lr = self.solver.apply_update()
        h = self.history
        h["iter"].append(it)
        h["train_loss"].append(loss)
        h["train_accuracy"].append(int(correct) / len(batch["label"]))
        h["lr"].append(lr)
        if self.cfg.display and self.solver.iter % self.cfg.display == 0:
            log.info("iteration %d: loss %.4f, lr %.6g", self.solver.iter, loss, lr)

    def snapshot(self, feeder: DeviceFeeder, out_dir: Path, extra: Dict[str, Any]) -> Path:
        path = out_dir / f"{self.cfg.snapshot_prefix}_iter_{self.solver.iter}.npz"
        with feeder.paused():
            self.solver.snapshot(path, extra)
        self.files.append(str(path))
        return path


def train(model: Any, train_source: Any, val_source: Any = None, solver_cfg: Any = None,
          out_dir: Union[str, Path, None] = None, *, batch_size: int = 64, workers: int = 0,
          seed: int = 0, iters: Optional[int] = None, backend: Union[str, Backend] = "auto",
          resume: Union[str, Path, None] = None, plots: bool = True,
          progress: Optional[Callable[[int], None]] = None, **loader_kwargs: Any) -> TrainReport:
    """Train ``model`` (name, ModelDef or layer-spec dict) and return a TrainReport.

    Sources are feedstock Sources, (images, labels) pairs, Splits or paths; the training
    source may also be a RemoteLoader (`feedstock serve` hosts decode and augment; the
    servers' shuffle and transforms apply, ``seed`` is sent to them).
    ``workers=0`` reads in-process; otherwise the multi-process Loader feeds.
    ``iters`` overrides the solver's max_iter; ``seed`` fixes data order and
    dropout; ``progress(n)`` is called after every step (e.g. tqdm.update).
    """
    mdef = get_model(model)
    cfg = resolve_solver(solver_cfg, mdef)
    if iters is not None:
        cfg = cfg.replace(max_iter=int(iters))
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    run = _Run(mdef, cfg, be, seed, out)
    if resume is not None:
        extra = run.solver.restore(resume)
        if extra.get("seed", seed) != seed or extra.get("batch_size", batch_size) != batch_size:
            raise ValueError(f"resume {resume}: saved seed/batch_size {extra} differ from {seed=}, {batch_size=}")
    extra = {"seed": seed, "batch_size": batch_size, "model": mdef.name}
    common = dict(batch_size=batch_size, workers=workers, **loader_kwargs)
    started = time.perf_counter()
    if is_loader(train_source):
        train_stream = remote_stream(train_source, batch_size=batch_size, seed=seed)
    else:
        train_stream = batch_stream(as_source(train_source), shuffle=True, seed=seed, drop_last=True, **common)
    val_stream = None if val_source is None else batch_stream(
        as_source(val_source), shuffle=False, seed=seed, drop_last=False, **common)
    feeder = DeviceFeeder(be, scale=mdef.scale, mean=mdef.mean, log1p=mdef.log1p)
    try:
        _loop(run, feeder, train_stream, val_stream, extra, progress)
    finally:
        feeder.close()  # unregister pinned memory before the loaders unmap their slots
        train_stream.close()
        if val_stream is not None:
            val_stream.close()
    if plots and out is not None:
        run.files += _pictures(run, out)
    return _report(run, be, batch_size, feeder.stats, time.perf_counter() - started)


def _loop(run: _Run, feeder: DeviceFeeder, train_stream: Any, val_stream: Any, extra: Dict[str, Any],
          progress: Optional[Callable[[int], None]]) -> None:
    cfg, solver = run.cfg, run.solver
    tested_at = -1
    while solver.iter < cfg.max_iter:
        epoch, start = divmod(solver.iter, train_stream.num_batches)
        batches = feeder.feed(train_stream.epoch(epoch, start), epoch=epoch, slots=train_stream.slot_arrays)
        for batch in batches:
            due = cfg.test_interval and solver.iter % cfg.test_interval == 0
            if val_stream is not None and due and (solver.iter > 0 or cfg.test_initialization):
                run.test(feeder, val_stream)
                tested_at = solver.iter
            run.step(batch)
            if progress is not None:
                progress(1)
            if cfg.snapshot and run.out_dir is not None and solver.iter % cfg.snapshot == 0:
                run.snapshot(feeder, run.out_dir, extra)
            if solver.iter >= cfg.max_iter:
                break
        batches.close()
    if val_stream is not None and tested_at != solver.iter:
        run.test(feeder, val_stream)
    if run.out_dir is not None and not (cfg.snapshot and solver.iter % cfg.snapshot == 0):
        run.snapshot(feeder, run.out_dir, extra)  # Caffe's snapshot_after_train


def _pictures(run: _Run, out: Path) -> List[str]:
    from .plots import plot_curves, plot_filters

    files = [str(plot_curves(run.history, out / f"{run.mdef.name}_curves.png", title=run.mdef.name))]
    weights = first_weights(run.net)
    if weights is not None:
        files.append(str(plot_filters(weights, out / f"{run.mdef.name}_filters.png")))
    return files


def _report(run: _Run, be: Backend, batch_size: int, stats: List[FeedStats], wall: float) -> TrainReport:
    h = run.history
    tail = max(1, len(h["iter"]) // 10)
    compute = sum(s.compute_s for s in stats)
    wait = sum(s.wait_s for s in stats)
    steps = sum(s.steps for s in stats)
    samples = sum(s.samples for s in stats)
    return TrainReport(
        model=run.mdef.name, backend=be.name, iters=run.solver.iter, batch_size=batch_size,
        train_loss=float(np.mean(h["train_loss"][-tail:])) if h["iter"] else float("nan"),
        train_accuracy=float(np.mean(h["train_accuracy"][-tail:])) if h["iter"] else float("nan"),
        test_loss=h["test_loss"][-1] if h["test_loss"] else None,
        test_accuracy=h["test_accuracy"][-1] if h["test_accuracy"] else None,
        images_per_s=samples / (compute + wait) if compute + wait > 0 else 0.0,
        step_time_s=(compute + wait) / steps if steps else 0.0,
        data_wait_s=wait, data_wait_fraction=wait / (compute + wait) if compute + wait > 0 else 0.0,
        wall_s=wall, epochs=list(stats), history=h, files=run.files, net=run.net)
