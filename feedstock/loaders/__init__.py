"""feedstock.loaders: random-access sources (image folders, list files, CSV, Caffe LMDB, HDF5, pairs)."""
from .array import ArraySource
from .base import Source
from .caffe_lmdb import CaffeLmdb
from .csv_table import CsvTable
from .hdf5 import Hdf5
from .image_folder import ImageFolder
from .list_file import ListFile
from .lmdb_pairs import LmdbPairs
from .open_source import guess_kind, open_source
from .pairs import Pairs
from .pairs_source import open_pairs

__all__ = ["ArraySource", "Source", "ImageFolder", "ListFile", "CsvTable", "CaffeLmdb", "Hdf5", "Pairs", "LmdbPairs",
           "open_pairs", "open_source", "guess_kind"]
