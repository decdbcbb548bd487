"""The array backend: cupy when a CUDA device really works, numpy otherwise."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Optional, Union, cast

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

if TYPE_CHECKING:
    import cupy

# A trainer array: numpy's on the CPU, cupy's on a GPU (cupy mirrors numpy's API). Where cupy is not
# installed mypy knows only numpy's half; the annotation still says which values are arrays.
Array = Union[np.ndarray, "cupy.ndarray"]
Rng = Union[np.random.Generator, "cupy.random.Generator"]  # a device generator (Backend.rng)

log = logging.getLogger(__name__)

BACKENDS = ("auto", "numpy", "cupy")


@functools.lru_cache(maxsize=1)
def probe_cupy() -> Optional[ModuleType]:
    """cupy if a device is usable, else None.

    ``import cupy`` succeeds on machines without a driver and the first
    allocation fails, so a tiny allocation and kernel are part of the probe.
    """
    try:
        import cupy
    except ImportError:
        return None
    try:
        if not cupy.cuda.is_available():
            return None
        probe = cupy.arange(4, dtype=cupy.float32) * 2
        cupy.cuda.get_current_stream().synchronize()
        if float(probe.sum()) != 12.0:
            return None
    # Any failure here (missing driver, libraries, no device) means "no usable GPU".
    except Exception as e:  # noqa: BLE001
        log.debug("cupy present but unusable: %s", e)
        return None
    return cupy


@dataclass(frozen=True)
class Backend:
    """One array module (``xp``) and the few operations that differ between numpy and cupy."""

    xp: ModuleType  # numpy or cupy
    name: str

    @property
    def gpu(self) -> bool:
        return self.name == "cupy"

    def asarray(self, array: Union[Array, ArrayLike], dtype: Optional[DTypeLike] = None) -> Array:
        """A device array (no copy on numpy when dtype already matches)."""
        return self.xp.asarray(array, dtype=dtype)

    def to_numpy(self, array: Array) -> np.ndarray:
        """A host numpy array."""
        return cast("cupy.ndarray", array).get() if self.gpu else np.asarray(array)

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on numpy)."""
        if self.gpu:
            self.xp.cuda.get_current_stream().synchronize()

    def rng(self, seed: int) -> Rng:
        """A generator on the device: numpy's Generator or cupy's."""
        return self.xp.random.default_rng(int(seed))


NUMPY = Backend(np, "numpy")


def get_backend(prefer: str = "auto") -> Backend:
    """``auto``: cupy when a device works, numpy otherwise; ``cupy`` raises when none works."""
    if prefer not in BACKENDS:
        raise ValueError(f"backend={prefer!r} must be one of {BACKENDS}")
    if prefer == "numpy":
        return NUMPY
    cupy = probe_cupy()
    if cupy is None:
        if prefer == "cupy":
            raise RuntimeError("backend='cupy' requested but no usable CUDA device was found")
        return NUMPY
    return Backend(cupy, "cupy")


def array_module(array: Array) -> ModuleType:
    """numpy or cupy, whichever owns ``array``."""
    if type(array).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np
