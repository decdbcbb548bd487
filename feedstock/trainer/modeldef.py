"""ModelDef: a net's layer specs, per-sample input shape, input scaling and default solver."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Tuple

import numpy as np
from numpy.typing import DTypeLike

from ..backend import NUMPY, Backend
from .nn.net import Net
from .nn.solver import SolverConfig


@dataclass(frozen=True)
class ModelDef:
    """A net's layer specs, per-sample input shape, input transform and default solver."""

    name: str
    layers: Tuple[Mapping[str, Any], ...]
    input_shape: Tuple[int, ...]
    scale: float = 1.0
    mean: float = 0.0
    log1p: bool = False
    solver: SolverConfig = field(default_factory=SolverConfig)

    def build(self, *, backend: Backend = NUMPY, dtype: DTypeLike = np.float32, seed: int = 0) -> Net:
        return Net(self.layers, self.input_shape, backend=backend, dtype=dtype, seed=seed)
