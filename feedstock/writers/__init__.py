"""feedstock.writers: Caffe-compatible outputs (LMDB of Datums)."""
from .lmdb_writer import LmdbWriter, caffe_key

__all__ = ["LmdbWriter", "caffe_key"]
