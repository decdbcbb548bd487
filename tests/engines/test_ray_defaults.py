"""RayLoader's options and defaults are the Loader's (pipeline/options.py): the same keywords, the same batches."""
from __future__ import annotations

import inspect
import os

import numpy as np
import ray
from ray_engine_helpers import assert_no_process_left, assert_same, copies, quiet_ray_logs

from feedstock.engines import RayLoader
from feedstock.loaders import ArraySource
from feedstock.pipeline.loader import Loader
from feedstock.pipeline.options import DEFAULTS, OPTION_KEYS


def test_every_loader_option_has_the_shared_default():
    ray_params = inspect.signature(RayLoader.__init__).parameters
    loader_params = inspect.signature(Loader.__init__).parameters
    for key in OPTION_KEYS:
        assert ray_params[key].default == getattr(DEFAULTS, key) == loader_params[key].default, key
    # the documented stream defaults, spelled out: no shuffle, the short batch kept, seed 0
    assert (ray_params["shuffle"].default, ray_params["drop_last"].default, ray_params["seed"].default) == (
        False, False, 0)


def test_the_same_keywords_give_the_same_batches_as_the_loader():
    quiet_ray_logs()
    assert not ray.is_initialized()
    n = 21  # 21 = 2 * 8 + 5: a short last batch, kept by default
    source = ArraySource(data=np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2), label=np.arange(n))
    with Loader(source, None, batch_size=8, workers=0) as local:
        want = copies(local)
    with RayLoader(source, None, batch_size=8, workers=1) as remote:
        got = copies(remote)
    assert [len(b["label"]) for b in want] == [8, 8, 5]
    assert [int(v) for b in want for v in b["label"]] == list(range(n))  # in order: no shuffle by default
    assert_same(got, want)
    assert not ray.is_initialized()
    assert_no_process_left(os.getpid())
