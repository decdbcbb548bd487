"""Batches against what a model takes: data layout (Caffe's InnerProduct flattening) and labels.

The layout is checked on the first batch of the training and of the validation data, before the first step, with a
one-line error naming the data, the field, its shape and what was expected;
label values are checked on the host for every batch (cheap: one value per
record), before the device feeder casts them.
"""
from __future__ import annotations

from typing import Any, Callable, Generator, Iterable, Mapping, Optional, Protocol, Sequence, Tuple

import numpy as np

from ..backend import Array
from ..protocols import Source
from .nn.layers import Shape

# Layers that keep any shape: an InnerProduct behind them still sees the input blob.
_SHAPE_FREE = ("ReLU", "Dropout")


def flattens_input(layers: Sequence[Mapping[str, Any]]) -> bool:
    """True when the first shape-dependent layer is an InnerProduct (Caffe flattens from axis 1 there)."""
    for spec in layers:
        kind = spec.get("type")
        if kind not in _SHAPE_FREE:
            return kind == "InnerProduct"
    return False


def input_reshape(shape: Sequence[int], input_shape: Shape, flatten: bool, where: str) -> Optional[Shape]:
    """None when per-record ``shape`` is the model's input; the input shape when it is a flattenable
    equivalent ((93, 1, 1) for (93,)); ValueError naming ``where`` otherwise."""
    shape = tuple(int(d) for d in shape)
    if shape == tuple(input_shape):
        return None
    size = int(np.prod(input_shape))
    if flatten and int(np.prod(shape)) == size:
        return tuple(input_shape)
    if flatten:
        want = f"{tuple(input_shape)} or any shape of {size} values (its first layer is an InnerProduct)"
    else:
        want = f"{tuple(input_shape)}"
    raise ValueError(f"{where}: records of shape {shape}, the model takes {want}")


class CheckedNet(Protocol):
    """What a BatchCheck asks of a net (Net and SegNet; nn.net imports this module, so not the class)."""

    def input_reshape(self, shape: Sequence[int], where: str) -> Optional[Tuple[int, ...]]: ...

    def check_labels(self, labels: np.ndarray, where: str) -> None: ...

    def loss_labels(self, labels: Array) -> Array: ...


class BatchCheck:
    """One batch iterator for one net (``what`` names it in errors): the layout (the net's ``input_reshape``) checked on the first
    batch, labels (its ``check_labels``) on every batch; ``device`` gives the layouts the net takes."""

    def __init__(self, net: CheckedNet, *, what: str, data_field: str = "data", label_field: str = "label",
                 labels: bool = True) -> None:
        self.net, self.what = net, what
        self.data_field, self.label_field, self.labels = data_field, label_field, bool(labels)
        self.reshape: Optional[Shape] = None

    def first(self, batch: Mapping[str, np.ndarray]) -> None:
        """Check the fields and the data layout of the first batch."""
        for name in (self.data_field,) + ((self.label_field,) if self.labels else ()):
            if name not in batch:
                raise ValueError(f"{self.what}: batches have fields {sorted(batch)}, the model needs {name!r}")
        data = batch[self.data_field]
        self.reshape = self.net.input_reshape(
            data.shape[1:], f"{self.what} field {self.data_field!r} (batch shape {tuple(data.shape)})")

    def check_labels(self, batch: Mapping[str, np.ndarray], k: int,
                     keys: Optional[Callable[[int], Optional[str]]] = None) -> None:
        """Labels in range; a bad one names its record (``keys(row)``: its key) where it can."""
        labels = batch[self.label_field]
        try:
            self.net.check_labels(labels, f"{self.what} field {self.label_field!r}, batch {k}")
        except ValueError:
            if not self._ok(np.zeros_like(labels[:1])):  # the layout (shape, dtype), not a record's value
                raise
            row = next((r for r in range(len(labels)) if not self._ok(labels[r:r + 1])), None)
            key = None if keys is None or row is None else keys(row)
            if key is None or row is None:
                raise
            try:  # the same check on that record alone, for its message
                self.net.check_labels(labels[row:row + 1], f"{self.what} record {key}, field {self.label_field!r}")
            except ValueError as one:
                raise ValueError(f"{str(one).replace(': row 0 holds', ': holds')}: fix that record's "
                                 "label (or mask), or leave the record out") from None
            raise

    def _ok(self, labels: np.ndarray) -> bool:
        try:
            self.net.check_labels(labels, "")
            return True
        except ValueError:
            return False

    def host(self, batches: Iterable[Mapping[str, np.ndarray]]) -> Generator[Mapping[str, np.ndarray], None, None]:
        """``batches`` checked; closing this closes them."""
        it = iter(batches)
        keys = getattr(it, "record_key", None)  # a Loader's batches can name a row's record
        try:
            for k, batch in enumerate(it):
                if k == 0:
                    self.first(batch)
                if self.labels:
                    self.check_labels(batch, k, keys)
                yield batch
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def data(self, batch: Mapping[str, Array]) -> Array:
        """The device data batch in the model's input layout (a view)."""
        x = batch[self.data_field]
        return x if self.reshape is None else x.reshape((x.shape[0],) + self.reshape)

    def device(self, batch: Mapping[str, Array]) -> Tuple[Array, Array]:
        """(data, labels) of a device batch in the layouts the net and its loss take."""
        return self.data(batch), self.net.loss_labels(batch[self.label_field])


def all_labels(source: Source, field: str) -> Optional[np.ndarray]:
    """Every record's ``field`` from an index the source keeps (no image decode), else None."""
    from ..loaders import ArraySource, CaffeLmdb
    from .feeding import Subset

    if isinstance(source, Subset):
        inner = all_labels(source.source, field)
        return None if inner is None else inner[source.indices]
    if isinstance(source, ArraySource):
        return source.arrays.get(field)
    labels = getattr(source, "labels", None)  # LabeledImages, CsvTable: the index built at open
    if field == "label" and isinstance(labels, np.ndarray):
        return labels
    if field == "label" and isinstance(source, CaffeLmdb):
        return source.read_labels()
    return None


def label_values(source: Source, field: str) -> np.ndarray:
    """The distinct values of ``field`` over every record of ``source`` (the data's first pass, made
    before training): a label index when the source has one, mask files alone for image+mask
    folders, else each record read once."""
    from ..loaders.decode import read_mask
    from ..loaders.pairs import Pairs

    labels = all_labels(source, field)
    if labels is not None:
        return np.unique(labels)
    seen: set = set()
    for i in range(len(source)):
        if isinstance(source, Pairs):
            values = read_mask(source.paths(i)[1])  # masks only: no image decode
        else:
            values = np.asarray(source[i][field])
        seen.update(np.unique(values).tolist())
    return np.asarray(sorted(seen), dtype=np.int64)


def check_masks(values: np.ndarray, ignore_label: Optional[int], where: str) -> None:
    """ValueError before training when every non-zero class of a mask set is the ignore label (binary
    masks exported 0/255 with 255 ignored: the net would see background only, silently)."""
    if ignore_label is None or ignore_label == 0:
        return
    present = set(int(v) for v in values.tolist())
    if ignore_label in present and present <= {0, ignore_label}:
        raise ValueError(
            f"{where}: the masks hold only 0 and {ignore_label}, and {ignore_label} is the ignore label "
            f"(--ignore-label): every foreground pixel would be ignored. If {ignore_label} marks the "
            f"foreground (binary masks saved 0/{ignore_label}), remap it to class 1 (e.g. "
            f"mask[mask == {ignore_label}] = 1, or cv2.imwrite(path, (cv2.imread(path, 0) > 0).astype('uint8'))) "
            f"and rebuild; if it is no void label, pass --ignore-label with a value the masks do not use")

