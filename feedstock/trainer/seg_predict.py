"""Segmentation predictions: a snapshot's SegNet on whole images, masks written as palette PNGs, IoU when labelled."""
from __future__ import annotations

import json
import os
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..device import DeviceFeeder
from ..loaders.decode import color_mode, read_image
from ..loaders.image_folder import images_under
from ..loaders.pairs import Pairs
from ..loaders.pairs_source import open_pairs
from ..phase import TEST
from ..pipeline.loader import Loader
from ..spec import Sample
from ..stream import Stream
from .feeding import LoaderBatches

PathLike = Union[str, Path]


def voc_palette() -> List[int]:
    """PASCAL VOC's colour map (the devkit's bit-interleaving of the index), 768 RGB values."""
    out = []
    for index in range(256):
        rgb, c = [0, 0, 0], index
        for bit in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - bit)
            c >>= 3
        out += rgb
    return out


def write_palette_png(path: PathLike, mask: np.ndarray, palette: Optional[Sequence[int]] = None) -> Path:
    """An (H, W) class-index mask as an 8-bit palette PNG (indices kept, VOC colours by default)."""
    from PIL import Image

    m = np.asarray(mask)
    if m.ndim != 2 or m.dtype.kind not in "iu" or (m.size and (m.min() < 0 or m.max() > 255)):
        raise ValueError(f"{path}: a palette PNG needs an (H, W) mask of indices 0..255, got {m.dtype} {m.shape}")
    image = Image.fromarray(np.ascontiguousarray(m, dtype=np.uint8), mode="P")
    image.putpalette(list(palette) if palette is not None else voc_palette())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


class UnlabelledImages(Pairs):
    """Images without masks for the pairs TEST chain: each mask is all ``ignore_label`` (nothing scored)."""

    def __init__(self, images: Sequence[str], *, ignore_label: int = 255, color: bool = True) -> None:
        super().__init__([(p, "") for p in images], color=color)
        self.ignore_label = int(ignore_label)

    def __getitem__(self, i: int) -> Sample:
        data = read_image(self.paths(i)[0], mode=color_mode(self.color), rgb=self.rgb)
        return {"data": data, "mask": np.full((1,) + data.shape[1:], self.ignore_label, np.uint8)}


def predict_stream(record: Optional[Dict[str, Any]], data: str, masks: str) -> Stream:
    """The training stream's TEST-phase settings on ``data``: whole images (no crop, scale 1), pairs."""
    values: Dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in (record or {}).items()}
    base = Stream(**values) if values else Stream()
    return base.replace(source=data, masks=masks, source_type="pairs", root_folder="", crop_size=0, scales=(),
                        mirror=False, occlude=False)


def seg_source(stream: Stream) -> Tuple[Any, bool]:
    """(source, labelled): pairs when masks are named (folder + masks, list file, LMDB pair), else the
    images under the folder without masks."""
    color = bool(stream.is_color) or bool(stream.force_color)
    if stream.masks or not os.path.isdir(stream.source) or os.path.isfile(os.path.join(stream.source, "data.mdb")):
        return open_pairs(stream.source, stream.masks, color=color), True
    images = images_under(stream.source)
    if not images:
        raise ValueError(f"{stream.source!r} holds no images to predict")
    return UnlabelledImages(images, ignore_label=stream.ignore_label, color=color), False


def mask_names(source: Any) -> List[str]:
    """A relative .png name per record: the image path below the images' common folder, or the key."""
    keys = [source.key(i) for i in range(len(source))]
    if isinstance(source, Pairs):
        root = os.path.commonpath([os.path.dirname(os.path.abspath(k)) for k in keys])
        keys = [os.path.relpath(os.path.abspath(k), root) for k in keys]
    return [os.path.splitext(k.replace(":", "_"))[0] + ".png" for k in keys]


def predict_masks(predictor: Any, data: PathLike, out_dir: PathLike, *, masks: str = "", batch_size: int = 16,
                  workers: int = 0, echo: Optional[Callable[[str], Any]] = None) -> List[Path]:
    """Masks of ``data`` as palette PNGs under ``out_dir`` (one per image, its own size); with masks,
    also ``metrics.json`` (loss, pixel accuracy, mean and per-class IoU) and ``confusion.png``."""
    net, deploy = predictor.net, predictor.deploy
    stream = predict_stream(deploy.stream, os.fspath(data), os.fspath(masks) if masks else "")
    source, labelled = seg_source(stream)
    loader = Loader(source, _test_chain(stream, source),
                    batch_size=batch_size, workers=workers, shuffle=False, seed=0, drop_last=False)
    out = Path(out_dir)
    names, meter, row = mask_names(source), net.meter() if labelled else None, 0
    conv = {k: deploy.conversion[k] for k in ("scale", "mean", "log1p")}
    batches = LoaderBatches(loader)
    with DeviceFeeder(net.backend, dtype=net.dtype, **conv) as feeder, closing(batches):
        for batch in feeder.feed(batches.epoch(0), slots=batches.slot_arrays):
            scores = net.forward(batch["data"], train=False)
            if meter is not None:
                meter.update(scores, net.loss_labels(batch["label"]))
            pred = net.backend.to_numpy(scores.argmax(axis=1)).astype(np.uint8)
            for p in pred:  # the TEST chain pads at the bottom and right: the image is the top-left corner
                h, w = source.image_hw(row)
                write_palette_png(out / names[row], p[:h, :w])
                row += 1
    files = [out]
    if meter is not None:
        files += _scores(meter, predictor, out, os.fspath(data), row, echo)
    return files


def _test_chain(stream: Stream, source: Any) -> list:
    """The pairs TEST chain on ``source`` (the stream would build its own, which needs masks)."""
    from ..transforms.pairs import pairs_transforms

    return pairs_transforms(stream, TEST, source=source)


def _scores(meter: Any, predictor: Any, out: Path, data: str, n: int, echo: Optional[Callable[[str], Any]]) -> List[Path]:
    from .plots import plot_confusion

    result = meter.result()
    if echo is not None:
        echo(f"{n} images: " + ", ".join(f"{k.replace('_', '-')} {v:.4f}" for k, v in result.items()))
    metrics = out / "metrics.json"
    finite = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in result.items()}
    metrics.write_text(json.dumps({"data": data, "images": n, **finite,
                                   "confusion": meter.confusion.tolist()}, indent=1) + "\n")
    names = [str(i) for i in range(predictor.net.num_classes)]
    return [metrics, plot_confusion(meter.confusion, out / "confusion.png", class_names=names)]
