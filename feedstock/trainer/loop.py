"""``train()``: the solver loop shared by the CLI and the demo, with test passes, snapshots and a report."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, Generator, Iterator, List, Optional, Union, cast

import numpy as np

from ..backend import Backend, get_backend
from ..device import DeviceFeeder
from ..errors import KeyedError, literal
from ..threads import budget
from .checks import BatchCheck
from .deploy import deployment, feature_columns_of
from .inputs import Feeds, open_feeds
from .metrics import Meter
from .models import ModelDef, fit_model, get_model
from .nn.layers import Dropout
from .nn.net import Net
from .nn.solver import SGDSolver, SolverConfig
from .report import TrainReport, build_report, write_metrics  # noqa: F401  (TrainReport: public here too)

log = logging.getLogger(__name__)

_DROPOUT_TAG = 0x44524F50  # "DROP": keeps the dropout draws apart from the data order


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


def evaluate(net: Net, feeder: DeviceFeeder, val_batches: Any, test_iter: int = 0, *,
             check: Optional[BatchCheck] = None) -> Meter:
    """The net's meter over epoch 0 of ``val_batches`` (the first ``test_iter`` batches when > 0)."""
    check = check or BatchCheck(net, what="validation data")
    meter = net.meter()
    # A test pass is no training step: it is kept out of the timing report (record=False).
    batches = _closable(feeder.feed(check.host(val_batches.epoch(0)), slots=val_batches.slot_arrays, record=False))
    for k, batch in enumerate(batches):
        if test_iter and k >= test_iter:
            break
        x, labels = check.device(batch)
        meter.update(net.forward(x, train=False), labels)
    batches.close()
    return meter


def _closable(batches: Iterator[Dict[str, Any]]) -> Generator[Dict[str, Any], None, None]:
    """The feeder's batches (a generator: closing it stops the loader's pass early)."""
    return cast(Generator[Dict[str, Any], None, None], batches)  # DeviceFeeder.feed is a generator function


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
        self.deploy_arrays: Dict[str, np.ndarray] = {}  # carried by value in every snapshot (the mean image)
        self.stopped_at: Optional[int] = None  # the iteration a stop request (SIGINT/SIGTERM) ended the run at
        self.last_test: Dict[str, float] = {}
        self.train_check = BatchCheck(self.net, what="training data")
        self.val_check = BatchCheck(self.net, what="validation data")

    def test(self, feeder: DeviceFeeder, val: Any) -> None:
        with feeder.paused():
            result = evaluate(self.net, feeder, val, self.cfg.test_iter, check=self.val_check).result()
        h = self.history
        h["test_iter"].append(self.solver.iter)
        for name, value in result.items():
            h.setdefault(f"test_{name}", []).append(value)
        self.last_test = result
        log.info("iteration %d: test %s", self.solver.iter,
                 ", ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float)))

    def step(self, batch: Dict[str, Any]) -> None:
        backend, it = self.net.backend, self.solver.iter
        rng = backend.rng(step_seed(self.seed, it)) if self.dropout else None
        x, labels = self.train_check.device(batch)
        loss, correct = self.net.forward_backward(x, labels, rng=rng)
        loss = float(loss)  # synchronises: the step time is the device's
        lr = self.solver.apply_update()
        h = self.history
        h["iter"].append(it)
        h["train_loss"].append(loss)
        h["train_accuracy"].append(float(correct) / len(x))
        h["lr"].append(lr)
        if self.cfg.display and self.solver.iter % self.cfg.display == 0:
            log.info("iteration %d: loss %.4f, lr %.6g", self.solver.iter, loss, lr)

    def snapshot(self, feeder: DeviceFeeder, out_dir: Path, extra: Dict[str, Any]) -> Path:
        path = out_dir / f"{self.cfg.snapshot_prefix}_iter_{self.solver.iter}.npz"
        with feeder.paused():
            self.solver.snapshot(path, extra, arrays=self.deploy_arrays)
        self.files.append(str(path))
        return path


def train(model: Any, train_source: Any, val_source: Any = None, solver_cfg: Any = None,
          out_dir: Union[str, Path, None] = None, *, batch_size: Optional[int] = None, workers: int = 0,
          seed: Optional[int] = None, iters: Optional[int] = None, backend: Union[str, Backend] = "auto",
          resume: Union[str, Path, None] = None, plots: bool = True,
          progress: Optional[Callable[[int], None]] = None, model_scaling: Optional[bool] = None,
          class_names: Optional[List[str]] = None, holdout: float = 0.0, num_classes: Optional[int] = None,
          stop: Optional[Callable[[], bool]] = None, **loader_kwargs: Any) -> TrainReport:
    """Train ``model`` (name, ModelDef or layer-spec dict) and return a TrainReport.

    ``train_source`` is one of: a Source, (images, labels), a Split or a path (read by an
    untransformed Loader of ``workers`` processes, ``batch_size`` 64, shuffled by ``seed`` 0);
    a :class:`feedstock.stream.Stream` (its TRAIN-phase Loader, full batches; ``val_source``
    a path read by the same stream's TEST phase: centre crop, no mirror, no occlusion); or a
    ready loader: a Loader with any transforms and workers, or a RemoteLoader (its batch size
    rules; ``seed``, when given, replaces its seed). ``model_scaling``: apply the model's input
    scaling (ModelDef scale/mean/log1p) on the device; default yes, except for a Stream that
    maps values itself (scale, mean, to_range). Pass False for a Loader whose transforms already
    give the net's input values. ``holdout``: validate on this seeded fraction of the training
    records instead. ``class_names``: else a CSV's, an image folder's or an LMDB's labels.txt
    (saved in the snapshot for predict). ``iters`` overrides max_iter; ``seed`` also fixes dropout;
    ``progress(n)`` is called after every step (e.g. tqdm.update). A bundled model (a name) is sized to
    the data's classes (class names, else the largest label); ``num_classes`` overrides that. ``stop()`` is
    asked after every step; when it says True the run snapshots at that iteration and ends (the CLI's
    SIGINT/SIGTERM: ``report.files`` ends with that snapshot, ``--resume`` continues it exactly).
    """
    mdef = get_model(model)
    cfg = resolve_solver(solver_cfg, mdef)
    if iters is not None:
        cfg = cfg.replace(max_iter=int(iters))
    be = backend if isinstance(backend, Backend) else get_backend(backend)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    feeds = open_feeds(train_source, val_source, holdout=holdout, batch_size=batch_size, workers=workers, seed=seed,
                       model_scaling=model_scaling, class_names=class_names, loader_kwargs=loader_kwargs)
    try:
        _check_labelled(feeds)
        mdef = fit_model(model, feeds, num_classes)
        run = _Run(mdef, cfg, be, feeds.seed, out)
        extra = _extra(run, feeds, resume)
        feeder = DeviceFeeder(be, **_conversion(mdef, feeds.model_scaling))
        try:  # BLAS threads: the cores the loader's workers leave (feedstock/threads.py)
            with budget(_local_workers(feeds)) as split:
                _loop(run, feeder, feeds, extra, progress, stop)
        finally:
            feeder.close()  # unregister pinned memory before the loaders unmap their slots
    finally:
        feeds.close()
    report = build_report(run, be.name, feeds.batch_size, feeder.stats, time.perf_counter() - started)
    report.threads = split.line()
    report.class_names = feeds.class_names
    if out is not None:
        report.files.append(str(write_metrics(report, out / f"{mdef.name}_metrics.json")))
        if plots and run.stopped_at is None:  # a stopped run ends quickly: its snapshot is what matters
            from .plots import training_pictures

            report.files += training_pictures(run.net, run.history, out, mdef.name, batch=feeds.batch_size)
    return report


def _local_workers(feeds: Any) -> int:
    """Worker processes on this machine feeding the training loader (0 for in-process or remote)."""
    workers = getattr(getattr(feeds.train, "loader", None), "workers", 0)
    return workers if isinstance(workers, int) else 0
def _check_labelled(feeds: Feeds) -> None:
    """An LMDB built with --no-labels (every Datum says label 0) can neither train nor score; other
    sources without labels have no label field, which the batch checks name."""
    from ..loaders import CaffeLmdb
    from .predict import built_without_labels

    for role, batches in (("training", feeds.train), ("validation", feeds.val)):
        source = getattr(batches.loader, "source", None) if batches is not None else None
        if isinstance(source, CaffeLmdb) and built_without_labels(source.path):
            raise ValueError(f"{role} data {source.path}: no labels (the LMDB was built with --no-labels); "
                             "train and validate on labelled data, and run `feedstock predict` on this set")


def _conversion(mdef: ModelDef, model_scaling: bool) -> Dict[str, Any]:
    if not model_scaling:
        return {}
    return {"scale": mdef.scale, "mean": mdef.mean, "log1p": mdef.log1p}


def _extra(run: _Run, feeds: Feeds, resume: Union[str, Path, None]) -> Dict[str, Any]:
    """The snapshot's JSON: the sampler setup a resume must match and the deploy record for predict."""
    seed, batch_size = feeds.seed, feeds.batch_size
    if resume is not None:
        saved = run.solver.restore(resume, model=run.mdef.name)
        if saved.get("seed", seed) != seed or saved.get("batch_size", batch_size) != batch_size:
            raise KeyedError(f"resume {literal(str(resume))}: saved seed/batch_size {saved.get('seed')}/{saved.get('batch_size')} "
                             f"differ from {{seed={seed}}}, {{batch_size={batch_size}}}",
                             ("give the saved values to resume that run",))
    deploy = deployment(run.mdef, task=run.net.task, class_names=feeds.class_names,
                        model_scaling=feeds.model_scaling, stream=feeds.stream,
                        features=feature_columns_of(getattr(feeds.train.loader, "source", None)))
    run.deploy_arrays = deploy.arrays()
    return {"seed": seed, "batch_size": batch_size, "model": run.mdef.name, "deploy": deploy.to_dict()}


def _first_batch(check: BatchCheck, loader_batches: Any) -> None:
    """Check the first batch of ``loader_batches`` (layout and labels) and put them back."""
    batches = check.host(loader_batches.epoch(0))
    try:
        next(batches, None)
    finally:
        batches.close()


def _loop(run: _Run, feeder: DeviceFeeder, feeds: Feeds, extra: Dict[str, Any],
          progress: Optional[Callable[[int], None]], stop: Optional[Callable[[], bool]] = None) -> None:
    cfg, solver, train_batches, val_batches = run.cfg, run.solver, feeds.train, feeds.val
    if val_batches is not None:
        _first_batch(run.val_check, val_batches)  # a bad validation layout fails now, not after training
    tested_at = -1
    while solver.iter < cfg.max_iter:
        epoch, start = divmod(solver.iter, train_batches.num_batches)
        host = run.train_check.host(train_batches.epoch(epoch, start))
        batches = _closable(feeder.feed(host, epoch=epoch, slots=train_batches.slot_arrays))
        for batch in batches:
            due = cfg.test_interval and solver.iter % cfg.test_interval == 0
            if val_batches is not None and due and (solver.iter > 0 or cfg.test_initialization):
                run.test(feeder, val_batches)
                tested_at = solver.iter
            run.step(batch)
            if progress is not None:
                progress(1)
            if cfg.snapshot and run.out_dir is not None and solver.iter % cfg.snapshot == 0:
                run.snapshot(feeder, run.out_dir, extra)
            if stop is not None and solver.iter < cfg.max_iter and stop():
                run.stopped_at = solver.iter
                break
            if solver.iter >= cfg.max_iter:
                break
        batches.close()
        if run.stopped_at is not None:
            _stopped(run, feeder, extra)
            return
    if val_batches is not None and tested_at != solver.iter:
        run.test(feeder, val_batches)
    if run.out_dir is not None and not (cfg.snapshot and solver.iter % cfg.snapshot == 0):
        run.snapshot(feeder, run.out_dir, extra)  # Caffe's snapshot_after_train


def _stopped(run: _Run, feeder: DeviceFeeder, extra: Dict[str, Any]) -> None:
    """A stop request: the snapshot of this iteration (Caffe snapshots on SIGINT), no test pass."""
    log.info("stopped at iteration %d", run.solver.iter)
    cfg = run.cfg
    if run.out_dir is not None and not (cfg.snapshot and run.solver.iter % cfg.snapshot == 0):
        run.snapshot(feeder, run.out_dir, extra)
