"""feedstock.pipeline: sampler, shared-memory slot ring, worker loop, supervised pool and the Loader."""
from .loader import Loader
from .options import LoaderOptions
from .ordered import ordered_map
from .pool import ProcessPool
from .sampler import Sampler

__all__ = ["Loader", "LoaderOptions", "ProcessPool", "Sampler", "ordered_map"]
