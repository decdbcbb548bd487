"""The training and validation batches of one run, from sources, a Stream or ready loaders."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from ..errors import KeyedError
from ..loaders.base import Source
from ..pipeline.loader import Loader
from ..protocols import BatchLoader
from ..stream import TEST, TRAIN, Stream
from .deploy import class_names_of
from .feeding import LoaderBatches, as_source, holdout_split, loader_batches, source_batches

# Stream keys that set the values the net sees: the model's own input scaling then stays off.
_VALUE_KEYS = ("scale", "mean_file", "mean_value", "to_range")


def sets_values(stream: Stream) -> bool:
    """True when the stream maps values itself (scale, mean, to_range), as DIGITS' recipe does."""
    return bool(stream.scale != 1.0 or stream.mean_file or stream.mean_value or stream.to_range)


@dataclass
class Feeds:
    """What train() reads: both loaders' batches and what the snapshot must remember about them."""

    train: LoaderBatches
    val: Optional[LoaderBatches]
    batch_size: int
    seed: int
    model_scaling: bool  # apply the ModelDef's scale/mean/log1p on the device
    stream: Optional[Dict[str, Any]]  # the Stream's fields (predict builds its TEST phase); None: none
    class_names: Optional[List[str]]

    def close(self) -> None:
        self.train.close()
        if self.val is not None:
            self.val.close()


def open_feeds(train_source: Any, val_source: Any, *, holdout: float, batch_size: Optional[int], workers: int,
               seed: Optional[int], model_scaling: Optional[bool], class_names: Optional[List[str]],
               loader_kwargs: Mapping[str, Any]) -> Feeds:
    """Sources (paths, arrays, Splits) get an untransformed Loader; a Stream builds its TRAIN and TEST
    Loaders; a ready loader (Loader, RemoteLoader: any transforms, any workers) is taken as it is.
    ``holdout``: validate on this seeded fraction of the training records instead of ``val_source``."""
    if holdout and val_source is not None:
        raise ValueError("give either a validation source or a holdout fraction, not both")
    if loader_kwargs and isinstance(train_source, (Stream, BatchLoader)):
        raise ValueError(f"loader options {sorted(loader_kwargs)} apply to sources; a Stream or a ready loader "
                         "carries its own")
    if isinstance(train_source, Stream):
        return _stream_feeds(train_source, val_source, holdout, batch_size, seed, model_scaling, class_names)
    if isinstance(train_source, BatchLoader):
        if holdout:
            raise ValueError("a holdout split needs a source or a Stream, not a ready loader")
        train = loader_batches(train_source, batch_size=batch_size, seed=seed)
        state = train_source.state_dict()
        names = class_names or (class_names_of(train_source.source) if isinstance(train_source, Loader) else None)
        val = _val_batches(val_source, names, state["batch_size"], workers, loader_kwargs)
        return Feeds(train, val, state["batch_size"], state["seed"], model_scaling is not False, None, names)
    source = as_source(train_source)
    size, seed = 64 if batch_size is None else batch_size, 0 if seed is None else seed
    names = class_names or class_names_of(source)
    if holdout:
        source, val_source = holdout_split(source, holdout, seed=seed)
    train = source_batches(source, batch_size=size, workers=workers, shuffle=True, seed=seed, drop_last=True,
                           **loader_kwargs)
    try:
        val = _val_batches(val_source, names, size, workers, loader_kwargs)
    except BaseException:
        train.close()
        raise
    return Feeds(train, val, size, seed, model_scaling is not False, None, names)


def _val_batches(val: Any, names: Optional[List[str]], batch_size: int, workers: int,
                 loader_kwargs: Mapping[str, Any]) -> Optional[LoaderBatches]:
    if val is None:
        return None
    if isinstance(val, BatchLoader):
        return LoaderBatches(val)
    source = val_source(Stream(source=os.fspath(val)), names) if isinstance(val, (str, os.PathLike)) else as_source(val)
    return source_batches(source, batch_size=batch_size, workers=workers, shuffle=False, seed=0, drop_last=False,
                          **loader_kwargs)


def val_source(stream: Stream, names: Optional[List[str]]) -> Source:
    """The stream's Source with the training set's codes (one mapping per dataset: a validation file
    without Class_1 must not shift Class_3 to code 1, a folder without dog/ must not make emu 1);
    opened by the stream's kind (:func:`feedstock.stream.kinds.source_of`) like every other Source."""
    source = stream.build_source(caffe_layout=True, class_names=names or None)
    if names:  # kinds whose codes are fixed when built (an LMDB's labels.txt) must agree
        check_same_classes(source, names, stream.source)
    return source


def check_same_classes(source: Source, names: List[str], where: str) -> None:
    """A database built with its own class list (labels.txt) must have the training set's codes."""
    own = class_names_of(source)
    if own is not None and own != list(names):
        raise ValueError(f"{where}: its labels.txt lists classes {own[:8]}, the training data {list(names)[:8]}: "
                         "the same class has another code; rebuild it with build-lmdb --classes "
                         "TRAIN_BUILD/labels.txt")


def _stream_feeds(stream: Stream, val: Any, holdout: float, batch_size: Optional[int], seed: Optional[int],
                  model_scaling: Optional[bool], class_names: Optional[List[str]]) -> Feeds:
    """TRAIN: shuffled as the stream says, full batches; TEST: the same stream on ``val``, in order,
    every record. CSV rows come as (F, 1, 1) blobs: Caffe's layout, which InnerProduct flattens."""
    changes: Dict[str, Any] = {}
    if batch_size is not None:
        changes["batch_size"] = batch_size
    if seed is not None or stream.seed is None:
        changes["seed"] = 0 if seed is None else seed  # a training run's order is reproducible
    stream = stream.replace(**changes)
    order_seed = int(stream.seed or 0)
    source: Source = stream.build_source(caffe_layout=True)
    names = class_names or class_names_of(source)
    val_stream = val if isinstance(val, Stream) else stream
    held: Optional[Source] = None
    if holdout:
        source, held = holdout_split(source, holdout, seed=order_seed)
    elif isinstance(val, (str, os.PathLike)):
        if stream.masks:  # the training masks would match the validation images' stems silently
            raise ValueError(f"validation images {os.fspath(val)!r} of a pairs stream need their own masks: pass "
                             "stream.replace(source=IMAGES, masks=MASKS) as the validation set (CLI: --val-masks)")
        val_stream = stream.replace(source=os.fspath(val))
        held = val_source(val_stream, names)
    elif val is not None and not isinstance(val, Stream):
        held = as_source(val)
    try:
        train = LoaderBatches(stream.build_loader(TRAIN, drop_last=True, caffe_layout=True, source=source))
    except KeyedError as e:  # training always drops the short batch: keeping it is no fix to offer
        raise KeyedError(e.what + " (training takes full batches only)",
                         [f for f in e.fixes if "drop_last" not in f]) from None
    try:
        val_batches = None if val is None and not holdout else LoaderBatches(val_stream.build_loader(
            TEST, shuffle=False, drop_last=False, caffe_layout=True, source=held))
    except BaseException:
        train.close()
        raise
    scaling = not sets_values(stream) if model_scaling is None else model_scaling
    record = dict(stream.as_dict(), source="")  # predict names its own data
    return Feeds(train, val_batches, stream.batch_size, order_seed, scaling, record, names)
