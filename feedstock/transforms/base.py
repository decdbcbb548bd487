"""The Transform contract and Compose: ``(sample, rng) -> sample`` plus ``output_spec``.

Images travel as CHW arrays (Caffe's layout). Sources that decode with OpenCV
hand out CHW *views* of the HWC buffer (``hwc.transpose(2, 0, 1)``), so a
transform that needs HWC gets it back without a copy via :func:`feedstock.chw.to_hwc`.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from ..casting import write_fields
from ..chw import to_chw as to_chw  # re-exported: the old import path keeps working
from ..chw import to_hwc as to_hwc
from ..protocols import FusedTransform
from ..protocols import Transform as TransformProtocol
from ..spec import Sample, Spec


class Transform:
    """Base class. Subclasses implement ``__call__`` and ``output_spec``.

    A transform that can write its result straight into a caller-provided row
    (a row of a shared-memory batch slot) overrides :meth:`into`.
    """

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        raise NotImplementedError

    def output_spec(self, spec: Spec) -> Spec:
        raise NotImplementedError

    def into(self, sample: Sample, rng: np.random.Generator, out: Mapping[str, np.ndarray]) -> None:
        """Apply, then write every field named in ``out`` into its row."""
        write_rows(self(sample, rng), out)


def write_rows(sample: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
    """Copy each field into its preallocated row; a shape mismatch or a cast that would change a value
    (see :mod:`feedstock.casting`) is a clear error."""
    write_fields(sample, out)


class Compose(Transform):
    """Apply transforms in order with one rng stream per sample."""

    def __init__(self, transforms: Iterable[Transform] = ()):
        self.transforms: Sequence[Transform] = list(transforms)
        for t in self.transforms:
            if not isinstance(t, TransformProtocol):
                raise ValueError(f"transform {t!r} lacks __call__/output_spec")
        # asked once here: a runtime-protocol isinstance costs ~6 us, into() runs per sample
        self._fused_last = bool(self.transforms) and isinstance(self.transforms[-1], FusedTransform)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for t in self.transforms:
            sample = t(sample, rng)
        return sample

    def output_spec(self, spec: Spec) -> Spec:
        for t in self.transforms:
            spec = t.output_spec(spec)
        return spec

    def into(self, sample: Sample, rng: np.random.Generator, out: Mapping[str, np.ndarray]) -> None:
        """All but the last transform as usual; the last may write fused into ``out``."""
        if not self.transforms:
            write_rows(sample, out)
            return
        for t in self.transforms[:-1]:
            sample = t(sample, rng)
        last = self.transforms[-1]
        if self._fused_last:
            last.into(sample, rng, out)  # type: ignore[attr-defined]  # checked in __init__
        else:
            write_rows(last(sample, rng), out)

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def as_compose(transforms) -> Compose:
    """Accept None, one transform, a list, or a Compose."""
    if transforms is None:
        return Compose()
    if isinstance(transforms, Compose):
        return transforms
    if isinstance(transforms, (list, tuple)):
        return Compose(transforms)
    return Compose([transforms])

