"""RayLoader's options and defaults are the Loader's (pipeline/options.py). That the same keywords give the
same batches is checked on a running instance in test_ray_engine_local.py (one Ray start for both)."""
from __future__ import annotations

import inspect

from feedstock.engines import RayLoader
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
