"""Rows of one HDF5 dataset in any order, at memory speed where the file's layout allows it.

* Contiguous, uncompressed datasets (h5py's default layout) are read through a
  numpy memory map of their bytes in the file (``Dataset.id.get_offset()``):
  any rows, in any order, cost a numpy fancy index, not an h5py call per run.
* Chunked datasets (compressed or not) are read by whole chunks, in the order the
  file stores them, through a bounded per-dataset cache: a shuffled pass
  decompresses each chunk about once per visit instead of once per row.
* Anything else (compact storage, external files, a chunk larger than the cache)
  goes through h5py with as few calls as the rows allow.

Values are then cast to float32 by the project's casting rule: an overflow to
infinity or an integer that float32 does not hold exactly is a RecordError naming
the file, dataset and row (:func:`feedstock.casting.cast_rows`).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from ..casting import cast_rows
from ..errors import RecordError

if TYPE_CHECKING:
    import h5py

# An h5py call costs about as much as reading this many more bytes in one slice (~25 us vs ~2.5 GB/s
# here): rows are read as one bounding slice when it spans at most this much per run of rows it
# replaces, else as one slice per run (rows of a shuffled batch scattered over a large file).
BYTES_PER_CALL = 64 << 10
CHUNK_CACHE_BYTES = 32 << 20  # decompressed chunks kept per dataset and process
MEMMAP = True  # contiguous datasets through a memory map (False: always h5py, e.g. to compare)


class DatasetRows:
    """One dataset of one file: ``rows(r)`` returns ``ds[r]`` for any int64 rows, cast to float32."""

    def __init__(self, path: str, ds: "h5py.Dataset", *, memmap: bool = True):
        self.path, self.name, self.ds = path, ds.name.lstrip("/"), ds
        self.row_bytes = int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize
        self.map: Optional[np.ndarray] = None  # the file's bytes mapped, for contiguous datasets
        self.chunk_rows = 0
        offset = ds.id.get_offset() if ds.chunks is None and ds.size and memmap and MEMMAP else None
        if offset is not None:
            # a plain ndarray over the map (np.memmap's subclass hooks cost more than a small batch's copy)
            self.map = np.asarray(np.memmap(path, dtype=ds.dtype, mode="r", offset=offset, shape=ds.shape))
        elif ds.chunks is not None and ds.chunks[0] * self.row_bytes * 4 <= CHUNK_CACHE_BYTES:
            self.chunk_rows = int(ds.chunks[0])
            self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()
            self._cache_len = max(4, CHUNK_CACHE_BYTES // max(1, self.chunk_rows * self.row_bytes))
        self.kind = "memmap" if self.map is not None else "chunks" if self.chunk_rows else "h5py"

    def run(self, first: int, count: int) -> np.ndarray:
        """Rows ``first .. first + count - 1``, float32."""
        if self.map is not None:
            block = np.array(self.map[first : first + count])  # a copy: the map is read-only, the file may go
        elif self.chunk_rows and count < self.chunk_rows:
            return self.rows(np.arange(first, first + count, dtype=np.int64))
        else:
            block = self.ds[first : first + count]
        return self.float32(block, first)

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows in the order given (duplicates allowed), float32."""
        if self.map is not None:
            return self.float32(self.map[rows], rows)
        if self.chunk_rows:
            return self.float32(self._from_chunks(rows), rows)
        unique, where = np.unique(rows, return_inverse=True)
        return self.float32(self._h5py_rows(unique)[where.reshape(-1)], rows)

    def take_into(self, rows: np.ndarray, dst: np.ndarray) -> bool:
        """``dst[...] = rows`` with no intermediate array, where the map holds float32 already (else False)."""
        if self.map is None or self.map.dtype != np.float32 or dst.dtype != np.float32 \
                or dst.shape != (len(rows), *self.map.shape[1:]):
            return False
        np.take(self.map, rows, axis=0, out=dst)
        return True

    def _chunk(self, c: int) -> np.ndarray:
        block = self._cache.get(c)
        if block is None:
            block = self.ds[c * self.chunk_rows : (c + 1) * self.chunk_rows]
            self._cache[c] = block
            if len(self._cache) > self._cache_len:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(c)
        return block

    def _from_chunks(self, rows: np.ndarray) -> np.ndarray:
        chunks = rows // self.chunk_rows
        out = np.empty((len(rows), *self.ds.shape[1:]), self.ds.dtype)
        order = np.argsort(chunks, kind="stable")  # chunks in the order the file stores them
        bounds = np.flatnonzero(np.diff(chunks[order])) + 1
        for sel in np.split(order, bounds):
            c = int(chunks[sel[0]])
            out[sel] = self._chunk(c)[rows[sel] - c * self.chunk_rows]
        return out

    def _h5py_rows(self, rows: np.ndarray) -> np.ndarray:
        """Sorted unique rows through h5py: one bounding slice when it is cheaper than one call per run
        of consecutive rows; else one point selection for many short runs (measured: ~55 us + ~7.5 us
        a run + ~0.9 us a row, against ~18 us a call per run), or one slice per run."""
        ds, lo, hi = self.ds, int(rows[0]), int(rows[-1]) + 1
        cuts = np.flatnonzero(np.diff(rows) != 1) + 1
        if len(cuts) == 0:
            return ds[lo:hi]
        if (hi - lo) * self.row_bytes <= (len(cuts) + 1) * BYTES_PER_CALL or hi - lo <= 2 * len(rows):
            return ds[lo:hi][rows - lo]
        if len(cuts) + 1 > 8 + len(rows) // 12:
            return ds[rows]  # many short runs (a shuffled batch): one point selection, ~2x faster here
        return np.concatenate([ds[int(r[0]) : int(r[-1]) + 1] for r in np.split(rows, cuts)])

    def float32(self, block: np.ndarray, rows: Union[int, np.ndarray]) -> np.ndarray:
        """``block`` as float32 (a view when it already is), or a RecordError naming file, dataset, row."""
        block = np.asarray(block)
        if block.dtype == np.float32:
            return block
        cast, bad, problem = cast_rows(block, np.dtype(np.float32))
        if bad < 0:
            return cast
        row = int(rows + bad) if np.isscalar(rows) or np.ndim(rows) == 0 else int(np.asarray(rows)[bad])
        raise RecordError(f"{self.path}:{row}", f"dataset {self.name!r} is {block.dtype}: {problem}; feedstock "
                          "reads HDF5 as float32 (as Caffe's HDF5Data does) and never changes a value silently: "
                          "store values float32 holds (scale them, or keep labels below 2**24)")
