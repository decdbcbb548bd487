"""Model definitions: Caffe's MNIST LeNet, the Otto MLP, and nets from plain layer-spec lists."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from ..protocols import Source
from .checks import check_masks, label_values
from .modeldef import ModelDef
from .nn.solver import SolverConfig
from .seg.models import fcn_small

_XAVIER = {"type": "xavier"}
_CONST0 = {"type": "constant"}
_BIAS_MULTS = [{"lr_mult": 1}, {"lr_mult": 2}]  # Caffe's examples: biases learn twice as fast


def _conv(name: str, n: int, k: int) -> Dict[str, Any]:
    return {"type": "Convolution", "name": name, "num_output": n, "kernel_size": k, "stride": 1,
            "weight_filler": _XAVIER, "bias_filler": _CONST0, "param": _BIAS_MULTS}


def _ip(name: str, n: int, filler: Mapping[str, Any] = _XAVIER) -> Dict[str, Any]:
    return {"type": "InnerProduct", "name": name, "num_output": n,
            "weight_filler": filler, "bias_filler": _CONST0, "param": _BIAS_MULTS}


def lenet(*, num_classes: int = 10) -> ModelDef:
    """examples/mnist/lenet_train_test.prototxt and lenet_solver.prototxt."""
    layers = (
        _conv("conv1", 20, 5),
        {"type": "Pooling", "name": "pool1", "pool": "MAX", "kernel_size": 2, "stride": 2},
        _conv("conv2", 50, 5),
        {"type": "Pooling", "name": "pool2", "pool": "MAX", "kernel_size": 2, "stride": 2},
        _ip("ip1", 500),
        {"type": "ReLU", "name": "relu1"},
        _ip("ip2", num_classes),
        {"type": "SoftmaxWithLoss", "name": "loss"},
        {"type": "Accuracy", "name": "accuracy"},
    )
    solver = SolverConfig(base_lr=0.01, momentum=0.9, weight_decay=0.0005, lr_policy="inv",
                          gamma=0.0001, power=0.75, display=100, max_iter=10000,
                          test_interval=500, test_iter=0, snapshot=5000, snapshot_prefix="lenet")
    return ModelDef("lenet", layers, (1, 28, 28), scale=0.00390625, solver=solver)


def otto_mlp(*, hidden: Sequence[int] = (512, 256), dropout: float = 0.3, num_features: int = 93,
             num_classes: int = 9) -> ModelDef:
    """93 count features -> (InnerProduct, ReLU, Dropout) per hidden width -> 9 classes."""
    if not hidden or min(hidden) <= 0:
        raise ValueError(f"hidden={tuple(hidden)} must be non-empty positive widths")
    layers = []
    for i, width in enumerate(hidden, 1):
        layers.append(_ip(f"ip{i}", width, {"type": "msra"}))
        layers.append({"type": "ReLU", "name": f"relu{i}"})
        if dropout:
            layers.append({"type": "Dropout", "name": f"drop{i}", "dropout_ratio": dropout})
    layers.append(_ip(f"ip{len(hidden) + 1}", num_classes))
    solver = SolverConfig(base_lr=0.01, momentum=0.9, weight_decay=0.0005, lr_policy="step",
                          gamma=0.5, stepsize=2000, max_iter=6000, display=200,
                          test_interval=1000, snapshot_prefix="otto_mlp")
    # Counts are heavy-tailed: log(1 + x) makes them a sane input scale.
    return ModelDef("otto_mlp", tuple(layers), (num_features,), log1p=True, solver=solver)


MODELS: Dict[str, Callable[..., ModelDef]] = {"lenet": lenet, "otto_mlp": otto_mlp, "fcn_small": fcn_small}


def get_model(model: Any, **kwargs: Any) -> ModelDef:
    """A ModelDef from a name in MODELS, a ModelDef, or a dict with layers and input_shape."""
    if isinstance(model, ModelDef):
        return model
    if isinstance(model, str):
        if model not in MODELS:
            raise ValueError(f"model={model!r} must be one of {sorted(MODELS)}")
        return MODELS[model](**kwargs)
    if isinstance(model, Mapping):
        fields = dict(model)
        if "layers" not in fields or "input_shape" not in fields:
            raise ValueError("a model dict needs 'layers' and 'input_shape'")
        if isinstance(fields.get("solver"), Mapping):
            fields["solver"] = SolverConfig.from_dict(fields["solver"])
        fields["layers"] = tuple(fields["layers"])
        fields["input_shape"] = tuple(fields["input_shape"])
        return ModelDef(**{"name": "custom", **fields})
    raise ValueError(f"model={model!r} must be a name, a ModelDef or a dict")


def class_count(values: Iterable[int], ignore_label: Optional[int] = None) -> int:
    """Classes implied by label values: the largest one (the ignore label left out) plus one."""
    kept = [int(v) for v in values if ignore_label is None or int(v) != ignore_label]
    if kept and min(kept) < 0:
        raise ValueError(f"labels include {min(kept)}: class labels are codes 0, 1, 2, ...")
    return max(kept) + 1 if kept else 0


def sized_model(model: Any, num_classes: Optional[int], *, data_classes: int = 0,
                **kwargs: Any) -> ModelDef:
    """A bundled model (a name in MODELS) sized for the data: ``num_classes`` when given (it must cover
    ``data_classes``), else ``data_classes``, else its default. Anything else is taken as it is."""
    if not isinstance(model, str) or model not in MODELS:
        if num_classes is not None:
            raise ValueError("num_classes (--num-classes) sizes a bundled model; this model has its own layers")
        return get_model(model)
    if num_classes is not None:
        if num_classes < 2:
            raise ValueError(f"--num-classes {num_classes} must be at least 2")
        if data_classes > num_classes:
            raise ValueError(f"--num-classes {num_classes} is fewer than the {data_classes} classes of the "
                             "training data (labels up to " f"{data_classes - 1})")
    count = num_classes or max(data_classes, 2 if data_classes else 0)
    return get_model(model, **({"num_classes": count} if count else {}), **kwargs)


def data_classes(source: Optional[Source], names: Optional[Sequence[str]], *, ignore_label: Optional[int], count: bool,
                 where: str = "training data") -> int:
    """The class count of the training data: its class names, else (``count``) the largest label of a
    first pass plus one; 0 when unknown. Mask sets (a ``mask`` field) are always scanned and checked."""
    segmentation = source is not None and "mask" in source.spec()
    names = names or label_lmdb_classes(source)
    if source is None or not (segmentation or (count and not names)):
        return len(names) if names else 0
    values = label_values(source, "mask" if segmentation else "label")
    if segmentation:
        check_masks(values, ignore_label, where)
    return len(names) if names else class_count(values, ignore_label if segmentation else None)


def label_lmdb_classes(source: Optional[Source]) -> Optional[List[str]]:
    """The class names of a label LMDB's labels.txt (in the LMDB folder or the build folder above it)."""
    import os

    from ..loaders import LmdbPairs
    from ..loaders.csv_classes import read_classes

    if not isinstance(source, LmdbPairs):
        return None
    for folder in (source.labels, os.path.dirname(os.path.abspath(source.labels))):
        if os.path.isfile(os.path.join(folder, "labels.txt")):
            return read_classes(os.path.join(folder, "labels.txt"))
    return None


def fit_model(model: Any, feeds: Any, num_classes: Optional[int]) -> Any:
    """The ModelDef to train on ``feeds`` (inputs.Feeds): a bundled model (a name) gets the data's class
    count (class names, the labels' first pass) unless ``num_classes`` overrides it; a mask set whose
    classes would all be ignored is refused here, before the first step."""
    from ..pipeline.loader import Loader

    loader = feeds.train.loader
    source = loader.source if isinstance(loader, Loader) else None
    stream = feeds.stream or {}
    ignore = int(stream.get("ignore_label", 255))
    bundled = isinstance(model, str) and model in MODELS
    if feeds.class_names is None:
        feeds.class_names = label_lmdb_classes(source)  # saved in the snapshot, named in the metrics
    count = data_classes(source, feeds.class_names, ignore_label=ignore, count=bundled and num_classes is None)
    extra = {"ignore_label": ignore} if model == "fcn_small" else {}
    return sized_model(model, num_classes, data_classes=count, **extra)
