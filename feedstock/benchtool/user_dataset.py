"""``feedstock bench --dataset module:factory``: bench a user's own Python dataset, not one of our sources.

``factory`` is a callable in an importable module (the current directory is
searched first, like ``python -m``) returning a map-style dataset (``__len__`` and
``__getitem__``, e.g. a PyTorch Dataset); a module-level dataset object works too.
It goes through the door once (:mod:`feedstock.loaders.dataset`), then the usual
bench measures it: the dataset's ``__getitem__`` is the "source" stage, the
Loader runs at each worker count, and ``--compare torch`` runs torch's DataLoader
over the dataset itself with its default collate and the same workers.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Optional

from .engine import Subject


def load_factory(spec: str) -> object:
    """The dataset ``module:factory`` names (the factory called with no arguments); ValueError naming the flag."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--dataset {spec!r}: expected MODULE:FACTORY, e.g. mydata:make_dataset")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # a module beside the user, as `python -m` finds it
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"--dataset {spec!r}: cannot import {module_name!r} ({exc})") from exc
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"--dataset {spec!r}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    # a factory or a dataset class is called; a dataset object is used as it is
    if isinstance(target, type) or (callable(target) and not hasattr(target, "__getitem__")):
        return target()
    return target


def subject_of(spec: str, *, batch_size: Optional[int] = None, seed: Optional[int] = None,
               shuffle: Optional[bool] = None) -> Subject:
    """The bench subject for the dataset ``spec`` names (shuffled, seed 0 and batches of 64 by default)."""
    from ..loaders.dataset import as_source

    batch_size = 64 if batch_size is None else batch_size
    seed = 0 if seed is None else seed
    dataset = load_factory(spec)
    try:
        source = as_source(dataset, seed=seed)
    except TypeError as exc:  # not a map-style dataset, a record a batch cannot hold: the flag's problem
        raise ValueError(f"--dataset {spec}: {exc}") from None
    return Subject.of_parts(source, None, batch_size=batch_size, seed=seed,
                            shuffle=True if shuffle is None else shuffle,
                            description=f"{spec} ({type(dataset).__name__}, {len(source)} records)")
