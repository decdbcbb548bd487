"""Caffe's SGD solver: learning-rate policies, momentum, weight decay, npz snapshots and resume."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from ...errors import KeyedError, literal
from ..snapshot_io import read_snapshot, write_snapshot
from .net import Net

LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


@dataclass(frozen=True)
class SolverConfig:
    """The SolverParameter fields this trainer honours, with Caffe's names and defaults."""

    base_lr: float = 0.01
    lr_policy: str = "fixed"
    gamma: float = 0.0
    power: float = 0.0
    stepsize: int = 0
    stepvalue: Tuple[int, ...] = ()
    momentum: float = 0.0
    weight_decay: float = 0.0
    regularization_type: str = "L2"
    clip_gradients: float = -1.0
    max_iter: int = 1000
    test_interval: int = 0
    test_iter: int = 0
    test_initialization: bool = True
    display: int = 100
    snapshot: int = 0
    snapshot_prefix: str = "snapshot"
    random_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stepvalue", tuple(int(v) for v in self.stepvalue))
        if self.lr_policy not in LR_POLICIES:
            raise ValueError(f"lr_policy={self.lr_policy!r} must be one of {LR_POLICIES}")
        if self.regularization_type not in ("L1", "L2"):
            raise ValueError(f"regularization_type={self.regularization_type!r} must be L1 or L2")
        for name in ("max_iter", "test_interval", "test_iter", "display", "snapshot", "stepsize"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.lr_policy == "step" and self.stepsize <= 0:
            raise ValueError(f"stepsize={self.stepsize} must be positive for lr_policy='step'")
        if list(self.stepvalue) != sorted(self.stepvalue):
            raise ValueError(f"stepvalue={self.stepvalue} must be increasing")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum={self.momentum} must be in [0, 1)")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SolverConfig":
        """From Caffe-named keys; an unknown key is an error naming it."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown solver keys {sorted(unknown)}; known: {sorted(names)}")
        values = dict(values)
        if isinstance(values.get("stepvalue"), (int, float)):
            values["stepvalue"] = (values["stepvalue"],)
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "SolverConfig":
        import yaml

        with open(path) as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of solver fields, got {type(values).__name__}")
        return cls.from_dict(values)

    def replace(self, **changes: Any) -> "SolverConfig":
        return dataclasses.replace(self, **changes)


def learning_rate(cfg: SolverConfig, it: int) -> float:
    """The rate Caffe's SGDSolver::GetLearningRate gives at iteration ``it``."""
    p = cfg.lr_policy
    if p == "fixed":
        return cfg.base_lr
    if p == "step":
        return cfg.base_lr * cfg.gamma ** (it // cfg.stepsize)
    if p == "exp":
        return cfg.base_lr * cfg.gamma ** it
    if p == "inv":
        return cfg.base_lr * (1.0 + cfg.gamma * it) ** (-cfg.power)
    if p == "multistep":
        return cfg.base_lr * cfg.gamma ** sum(1 for v in cfg.stepvalue if it >= v)
    if p == "poly":
        return cfg.base_lr * (1.0 - it / cfg.max_iter) ** cfg.power
    return cfg.base_lr * (1.0 / (1.0 + math.exp(-cfg.gamma * (it - cfg.stepsize))))


class SGDSolver:
    """Momentum SGD as Caffe applies it: decay into the diff, history = lr*diff + m*history, w -= history."""

    def __init__(self, net: Net, config: SolverConfig) -> None:
        self.net, self.config = net, config
        xp = net.backend.xp
        self.history = {p.name: xp.zeros_like(p.data) for p in net.params}
        self.iter = 0

    @property
    def rate(self) -> float:
        return learning_rate(self.config, self.iter)

    def apply_update(self) -> float:
        """Update every param from its grad at the current rate; advance ``iter``. Returns the rate."""
        cfg, xp = self.config, self.net.backend.xp
        rate = self.rate
        self._clip()
        for p in self.net.params:
            decay = cfg.weight_decay * p.decay_mult
            if decay:
                p.grad += decay * (p.data if cfg.regularization_type == "L2" else xp.sign(p.data))
            h = self.history[p.name]
            h *= cfg.momentum
            h += (rate * p.lr_mult) * p.grad
            p.data -= h
        self.iter += 1
        return rate

    def _clip(self) -> None:
        # Caffe's ClipGradients: scale every diff when the global L2 norm exceeds the threshold.
        if self.config.clip_gradients < 0:
            return
        norm = math.sqrt(sum(float((p.grad * p.grad).sum()) for p in self.net.params))
        if norm > self.config.clip_gradients:
            for p in self.net.params:
                p.grad *= self.config.clip_gradients / norm

    def snapshot(self, path: Union[str, Path], extra: Optional[Mapping[str, Any]] = None, *,
                 arrays: Optional[Mapping[str, np.ndarray]] = None) -> Path:
        """Write params, momentum history, iteration, JSON ``extra`` (e.g. loader state) and the deploy
        ``arrays`` (carried by value: the mean image) to npz, atomically (see :func:`.write_snapshot`)."""
        to_np = self.net.backend.to_numpy
        blobs: Dict[str, np.ndarray] = {f"param/{k}": v for k, v in self.net.state_dict().items()}
        blobs.update({f"history/{k}": to_np(v) for k, v in self.history.items()})
        blobs.update({f"deploy/{k}": np.asarray(v) for k, v in (arrays or {}).items()})
        meta = {"iter": self.iter, "config": dataclasses.asdict(self.config), "extra": dict(extra or {})}
        return write_snapshot(path, meta, blobs)

    def restore(self, path: Union[str, Path], *, model: Optional[str] = None) -> Dict[str, Any]:
        """Load a snapshot written by :meth:`snapshot`; returns its ``extra``. Errors name the file
        and, for a snapshot of another net, both models (``model``: this net's name)."""
        snap = read_snapshot(path)
        meta, params, history = snap.meta, snap.params, snap.history
        try:
            self.net.load_state_dict(params)
        except ValueError:
            saved = meta.get("extra", {}).get("model", "another model")
            raise KeyedError(f"{literal(str(path))} is a snapshot of {saved}, not of {model or 'this net'} (the params differ)",
                             ("resume from a snapshot of the same {model}",)) from None
        if set(history) != set(self.history):
            raise ValueError(f"{path}: momentum history names do not match the net")
        for name, value in history.items():
            self.history[name][...] = self.net.backend.asarray(value, dtype=self.net.dtype)
        self.iter = int(meta["iter"])
        return meta.get("extra", {})
