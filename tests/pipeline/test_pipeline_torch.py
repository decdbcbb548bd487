"""feedstock.torch.wrap: tensors on the slot memory, equal to the numpy batches."""
from __future__ import annotations

import numpy as np
import pytest
from pipeline_helpers import Jitter, collect, make_source

from feedstock.pipeline.loader import Loader

torch = pytest.importorskip("torch")
from feedstock.torch import wrap  # noqa: E402


def test_wrap_yields_zero_copy_tensors(no_leaks):
    source = make_source(16)
    with Loader(source, [Jitter()], batch_size=4, workers=0, seed=2, shuffle=True, drop_last=True) as ref:
        expected = collect(ref)
    with wrap(Loader(source, [Jitter()], batch_size=4, workers=2, prefetch=2, seed=2, shuffle=True,
                     drop_last=True)) as loader:
        assert len(loader) == 4
        pointers = []
        for batch, want in zip(loader, expected):
            assert isinstance(batch["data"], torch.Tensor) and batch["data"].dtype == torch.float32
            assert np.array_equal(batch["data"].numpy(), want["data"])
            assert np.array_equal(batch["label"].numpy(), want["label"])
            pointers.append(batch["data"].data_ptr())
        assert loader.state_dict()["epoch"] == 1  # the loader's API passes through
    assert pointers[0] == pointers[2] and pointers[1] == pointers[3] and pointers[0] != pointers[1]  # 2 slots
