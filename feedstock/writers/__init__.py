"""feedstock.writers: Caffe-compatible outputs (LMDB of Datums)."""
from .build.builder import BuildOptions, BuildReport, build_lmdb
from .build.merge import merge_lmdb
from .build.on_ray import build_lmdb_ray  # imports Ray only when called
from .lmdb_writer import LmdbWriter, caffe_key
from .mean import CaffeMean, ExactMean, compute_db_mean

__all__ = ["LmdbWriter", "caffe_key", "BuildOptions", "BuildReport", "build_lmdb", "build_lmdb_ray", "merge_lmdb",
           "CaffeMean", "ExactMean", "compute_db_mean"]
