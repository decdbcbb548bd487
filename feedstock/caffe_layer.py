"""Drop-in Caffe Python layers: a prefetching DataLayer fed by feedstock's Loader, and OccludeLayer.

Use from any prototxt (``type: "Python"``, ``module: "feedstock.caffe_layer"``,
``layer: "DataLayer"``). Its param_str holds the stream keys of docs/stream.md plus
the layer's own (``tops``, ``state_file``, ``backend``, ``remote``: see the README);
docs/caffe-compat.md lists the Caffe behaviours it keeps. Without Caffe installed the
layers work with any blob objects offering ``.data`` (a numpy array),
``.diff`` and ``.reshape(*dims)``, the way pycaffe's blobs behave.
"""
from __future__ import annotations

import json
import logging
import os
import weakref
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from .caffe_params import (
    TRAIN,
    build_loader,
    data_layer_params,
    occlude_layer_params,
    parse_param_str,
)
from .phase import parse_phase, phase_name
from .protocols import BatchLoader
from .transforms import occlude_batch


class Blob(Protocol):
    """What the layers use of a pycaffe blob (see the module doc)."""

    @property
    def data(self) -> np.ndarray: ...

    @property
    def diff(self) -> np.ndarray: ...

    def reshape(self, *dims: int) -> None: ...

try:  # pycaffe instantiates subclasses of caffe.Layer; without Caffe any object will do.
    import caffe as _caffe

    _LayerBase: type = getattr(_caffe, "Layer", object)  # a module named caffe that is not pycaffe
except ImportError:
    _LayerBase = object

log = logging.getLogger(__name__)

STATE_FORMAT = "feedstock.caffe_layer/1"
DEFAULT_TOPS = ("data", "label")


class BatchFeed:
    """Fixed-size batches from a Loader, epoch after epoch, wrapping mid-batch like Caffe's data layers.

    Holds the loader's current batch (numpy views into a shared-memory slot,
    valid until the next one is requested) and how many of its rows were used.
    It never refers to the layer, so the layer's finalizer can close it.
    """

    def __init__(self, loader: BatchLoader, fields: Sequence[str], batch_size: int):
        self._loader = loader
        self._fields = tuple(fields)
        self._batch_size = int(batch_size)
        self._iter: Optional[Any] = None
        self._pending: Optional[Dict[str, np.ndarray]] = None
        self._pending_state: Optional[Dict[str, int]] = None
        self._offset = 0
        self._closed = False

    def _advance(self) -> None:
        """Make the loader's next batch pending, starting the next epoch when one ends."""
        for _ in range(3):  # at most: end of an epoch, then the first batch of the next
            state = self._loader.state_dict()
            if self._iter is None:
                self._iter = iter(self._loader)
            try:
                batch = next(self._iter)
            except StopIteration:
                self._iter = None
                continue
            missing = [f for f in self._fields if f not in batch]
            if missing:
                raise ValueError(f"the source yields fields {sorted(batch)}, not {missing}: set 'tops' in param_str")
            self._pending, self._pending_state, self._offset = batch, state, 0
            return
        raise RuntimeError("the loader yields no batches: is the source empty?")

    def _rows_left(self) -> int:
        return 0 if self._pending is None else len(self._pending[self._fields[0]]) - self._offset

    def shapes(self) -> List[Tuple[int, ...]]:
        """Top shapes: (batch_size,) + the per-sample shape of each field."""
        if self._pending is None:
            self._advance()
        assert self._pending is not None
        return [(self._batch_size,) + tuple(self._pending[f].shape[1:]) for f in self._fields]

    def fill(self, outs: Sequence[np.ndarray]) -> None:
        """Copy the next batch_size rows into ``outs`` (one array per field); one copy when aligned."""
        row = 0
        while row < self._batch_size:
            if self._rows_left() == 0:
                self._advance()
            take = min(self._batch_size - row, self._rows_left())
            src = slice(self._offset, self._offset + take)
            pending = self._pending
            assert pending is not None  # _advance() made a batch pending
            for out, field in zip(outs, self._fields):
                np.copyto(out[row : row + take], pending[field][src], casting="unsafe")
            row += take
            self._offset += take

    def state(self) -> Dict[str, object]:
        """Where the layer's batches stand: the loader's state before the pending batch plus rows used of it."""
        if self._pending is None or self._rows_left() == 0:
            return {"loader": self._loader.state_dict(), "offset": 0}
        return {"loader": self._pending_state, "offset": self._offset}

    def _drop_iterator(self) -> None:
        """Abandon the loader's current pass (it drains in-flight work) and the pending batch."""
        it, self._iter, self._pending = self._iter, None, None
        if it is not None:
            it.close()

    def restore(self, state: Dict[str, Any]) -> None:
        """Continue exactly where :meth:`state` was taken."""
        self._drop_iterator()
        self._loader.load_state_dict(state["loader"])
        offset = int(state["offset"])
        if offset:
            self._advance()
            if offset > self._rows_left():
                raise ValueError(f"state offset {offset} exceeds the batch of {self._rows_left()} rows")
            self._offset = offset

    def close(self) -> None:
        """Stop the worker pool and free the slots; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._drop_iterator()
        finally:
            self._loader.close()


def blob_list(blobs: Sequence[Blob]) -> List[Blob]:
    """The blobs of a pycaffe blob vector, by index: its iterator cannot convert ``Blob*`` to Python."""
    return [blobs[i] for i in range(len(blobs))]


def default_tops(n: int) -> Tuple[str, ...]:
    """Caffe's convention: one top is data only, two are data and label."""
    if not 1 <= n <= len(DEFAULT_TOPS):
        raise ValueError(f"DataLayer has {n} tops: name their fields with the param_str key 'tops'")
    return DEFAULT_TOPS[:n]


class DataLayer(_LayerBase):
    """Caffe ``Python`` data layer: batches decoded in the background, forward() only copies them."""

    _feed: Optional[BatchFeed] = None
    _finalizer: Optional[weakref.finalize] = None

    def setup(self, bottom: Sequence[Blob], top: Sequence[Blob]) -> None:
        """Parse param_str, start the pipeline, shape the tops (Caffe calls this once)."""
        if len(bottom):
            raise ValueError(f"DataLayer takes no bottom blobs, got {len(bottom)}")
        params = data_layer_params(parse_param_str(getattr(self, "param_str", "")))
        phase = parse_phase(getattr(self, "phase", None))
        tops = params.tops or default_tops(len(top))
        if len(tops) != len(top):
            raise ValueError(f"param_str 'tops' names {len(tops)} fields {list(tops)} but the layer has {len(top)} tops")
        self.close()
        feed = BatchFeed(build_loader(params, phase, tops), tops, params.batch_size)
        self._feed = feed
        self._finalizer = weakref.finalize(self, feed.close)  # no reference to self: the net may die
        self._params, self._tops = params, tops
        try:
            if params.state_file:
                self._restore_if_present(params.state_file)
            self._shapes = feed.shapes()
        except BaseException:
            self.close()  # a failed setup leaves no workers behind
            raise
        for blob, shape in zip(blob_list(top), self._shapes):
            blob.reshape(*shape)
        log.info("DataLayer %s phase=%s tops=%s", params.remote or params.stream.source, phase_name(phase), self._shapes)

    def _restore_if_present(self, path: str) -> None:
        if Path(path).is_file():
            self.restore_state(path)
        else:
            log.warning("state_file %s does not exist yet: starting from the beginning", path)

    def reshape(self, bottom: Sequence[Blob], top: Sequence[Blob]) -> None:
        """Called before every forward: only restores the shapes if someone changed them."""
        for blob, shape in zip(blob_list(top), self._shapes):
            if blob.data.shape != shape:
                blob.reshape(*shape)

    def forward(self, bottom: Sequence[Blob], top: Sequence[Blob]) -> None:
        """Copy the ready batch into the tops (float32 in pycaffe)."""
        self._live_feed().fill([blob.data for blob in blob_list(top)])

    def backward(self, top: Sequence[Blob], propagate_down: Sequence[bool], bottom: Sequence[Blob]) -> None:
        """Data layers have nothing to propagate."""

    def _live_feed(self) -> BatchFeed:
        if self._feed is None:
            raise RuntimeError("DataLayer is not set up (or was closed): call setup() first")
        return self._feed

    def state_dict(self) -> Dict[str, object]:
        """A few integers saying which sample comes next (JSON-serialisable)."""
        state = self._live_feed().state()
        return {"format": STATE_FORMAT, "batch_size": self._params.batch_size, "tops": list(self._tops), **state}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; the batch size and tops must be the same."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a DataLayer state (format {state.get('format')!r}, expected {STATE_FORMAT!r})")
        if state["batch_size"] != self._params.batch_size or tuple(state["tops"]) != self._tops:
            raise ValueError(
                f"state was saved with batch_size={state['batch_size']} tops={state['tops']}, "
                f"this layer has batch_size={self._params.batch_size} tops={list(self._tops)}"
            )
        self._live_feed().restore(state)

    def save_state(self, path: str | os.PathLike) -> None:
        """Write the state beside a solver snapshot (atomically: a crash never leaves half a file)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.state_dict(), indent=1))
        os.replace(tmp, path)

    def restore_state(self, path: str | os.PathLike) -> None:
        """Read a file written by :meth:`save_state` and continue from it."""
        try:
            state = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a DataLayer state file ({exc})") from exc
        self.load_state_dict(state)

    def close(self) -> None:
        """Shut the worker pool down now (also done when the layer is collected or at exit)."""
        if self._finalizer is not None:
            self._finalizer()
        self._feed = self._finalizer = None


def close_layers(*nets: Any) -> int:
    """Stop the worker pools of the DataLayers in pycaffe nets; returns how many were closed.

    pycaffe never frees a Python layer (its C++ side holds a strong reference to
    the Python object, a cycle the garbage collector cannot see), so deleting a
    net does not stop the pool: call this before dropping a net or solver in a
    process that goes on (``close_layers(solver.net, *solver.test_nets)``).
    Otherwise the pools stop at interpreter exit.
    """
    closed = 0
    for net in nets:
        for layer in net.layers:
            if isinstance(layer, DataLayer) and layer._feed is not None:
                layer.close()
                closed += 1
    return closed


class OccludeLayer(_LayerBase):
    """Zeroes a random quarter of each item (blank-square occlusion); gradient flows where not zeroed.

    Active in TRAIN; in TEST it passes data through unless param_str says ``'in_test': True``.
    """

    def setup(self, bottom: Sequence[Blob], top: Sequence[Blob]) -> None:
        """Parse the optional seed; one bottom, one top."""
        if len(bottom) != 1 or len(top) != 1:
            raise ValueError(f"OccludeLayer needs 1 bottom and 1 top, got {len(bottom)} and {len(top)}")
        params = occlude_layer_params(parse_param_str(getattr(self, "param_str", "")))
        self._active = parse_phase(getattr(self, "phase", None)) == TRAIN or params.in_test
        self._rng = np.random.Generator(np.random.PCG64(params.seed))
        self._mask: Optional[np.ndarray] = None

    def reshape(self, bottom: Sequence[Blob], top: Sequence[Blob]) -> None:
        """Top has the bottom's shape (set unconditionally: Caffe aborts on reading an unshaped top's data)."""
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom: Sequence[Blob], top: Sequence[Blob]) -> None:
        """top = bottom with a random quarter of each item zeroed (a fresh draw every call)."""
        x = bottom[0].data
        if not self._active:
            np.copyto(top[0].data, x)
            return
        if self._mask is None or self._mask.shape != x.shape:
            self._mask = np.empty(x.shape, dtype=np.float32)
        self._mask.fill(1.0)
        occlude_batch(self._mask, self._rng, out=self._mask)
        np.multiply(x, self._mask, out=top[0].data)

    def backward(self, top: Sequence[Blob], propagate_down: Sequence[bool], bottom: Sequence[Blob]) -> None:
        """d(bottom) = d(top) where the forward kept the input, 0 where it zeroed it."""
        if not propagate_down[0]:
            return
        if not self._active:
            np.copyto(bottom[0].diff, top[0].diff)
        elif self._mask is not None:  # a forward ran: its mask says what was kept
            np.multiply(top[0].diff, self._mask, out=bottom[0].diff)
