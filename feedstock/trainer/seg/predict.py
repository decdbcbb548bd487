"""Segmentation predictions: a snapshot's SegNet on whole images, masks written as palette PNGs, IoU when labelled."""
from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...device import DeviceFeeder
from ...loaders.decode import color_mode, read_image
from ...loaders.image_folder import images_under
from ...loaders.open_source import lmdb_dir
from ...loaders.pairs import Pairs
from ...palette import write_palette_png, write_segmentation_sheet
from ...phase import TEST
from ...protocols import Source
from ...spec import Sample
from ...stream import Stream
from ..feeding import LoaderBatches
from ..predict import Predictor, _conversion, deploy_stream, write_scores

if TYPE_CHECKING:
    pass

PathLike = Union[str, Path]
SHEET_ROWS = 8  # images on the truth | prediction | overlay sheet


class UnlabelledImages(Pairs):
    """Images without masks for the pairs TEST chain: each mask is all ``ignore_label`` (nothing scored)."""

    def __init__(self, images: Sequence[str], *, ignore_label: int = 255, color: bool = True) -> None:
        super().__init__([(p, "") for p in images], color=color)
        self.ignore_label = int(ignore_label)

    def __getitem__(self, i: int) -> Sample:
        data = read_image(self.paths(i)[0], mode=color_mode(self.color), rgb=self.rgb)
        return {"data": data, "mask": np.full((1,) + data.shape[1:], self.ignore_label, np.uint8)}


def predict_stream(stream: Stream, masks: str) -> Stream:
    """The training stream's TEST-phase settings on its data: whole images (no crop, scale 1), pairs."""
    return stream.replace(masks=masks, source_type="pairs", root_folder="", crop_size=0, scales=(),
                          mirror=False, occlude=False)


def seg_source(stream: Stream) -> Tuple[Any, bool]:
    """(source, labelled): pairs when masks are named (folder + masks, list file, LMDB pair), else the
    images under the folder without masks."""
    color = bool(stream.is_color) or bool(stream.force_color)
    if stream.masks or not os.path.isdir(stream.source) or lmdb_dir(stream.source):
        return stream.replace(source_type="pairs").build_source(), True
    images = images_under(stream.source)
    if not images:
        raise ValueError(f"{stream.source!r} holds no images to predict")
    return UnlabelledImages(images, ignore_label=stream.ignore_label, color=color), False


RESERVED = frozenset({"metrics.json", "confusion.png", "sheet.png"})  # what predict writes beside the masks


def mask_names(source: Source) -> List[str]:
    """A relative .png name per record, unique, always inside the output folder: the image path below
    the images' common folder, or the record key (an LMDB's), sanitised (:func:`safe_relative`)."""
    keys = [source.key(i) for i in range(len(source))]
    prefix = f"{getattr(source, 'images', '')}:"  # an LMDB pair's key is "<images db>:<record key>"
    keys = [k[len(prefix):] if len(prefix) > 1 and k.startswith(prefix) else k for k in keys]
    if isinstance(source, Pairs) and keys:
        root = os.path.commonpath([os.path.dirname(os.path.abspath(k)) for k in keys])
        keys = [os.path.relpath(os.path.abspath(k), root) for k in keys]
    names, seen = [], set(RESERVED)
    for i, key in enumerate(keys):
        name = os.path.splitext(safe_relative(key))[0] + ".png"
        if name in seen:  # two keys that sanitise alike keep apart by record number
            name = f"{os.path.splitext(name)[0]}_{i:08d}.png"
        seen.add(name)
        names.append(name)
    return names


def safe_relative(key: str) -> str:
    """A relative path made from a record key: no root, no drive, no ``..`` or ``.`` parts, no ``:``."""
    parts = [p.replace(":", "_") for p in key.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return os.path.join(*parts) if parts else "record"


def predict_masks(predictor: Predictor, data: PathLike, out_dir: PathLike, *, masks: str = "", batch_size: int = 16,
                  workers: int = 0, echo: Optional[Callable[[str], object]] = None) -> List[Path]:
    """Masks of ``data`` as palette PNGs under ``out_dir`` (one per image, its own size); with masks,
    also ``metrics.json`` (loss, pixel accuracy, mean and per-class IoU) and ``confusion.png``."""
    net, deploy = predictor.net, predictor.deploy
    with deploy_stream(deploy, os.fspath(data)) as stored:
        stream = predict_stream(stored, os.fspath(masks) if masks else "")
        source, labelled = seg_source(stream)
        # the pairs TEST chain on this source (the stream would build its own, which needs masks)
        loader = stream.build_loader(TEST, source=source, batch_size=batch_size, workers=workers, shuffle=False,
                                     seed=0, drop_last=False)
    if not labelled and echo is not None:
        echo(f"{os.fspath(data)}: no masks given: masks predicted only, no pixel accuracy, IoU or confusion matrix")
    out = Path(out_dir)
    names, meter, row, shown = mask_names(source), net.meter() if labelled else None, 0, []
    batches = LoaderBatches(loader)
    with DeviceFeeder(net.backend, dtype=net.dtype, **_conversion(deploy)) as feeder, closing(batches):
        for batch in feeder.feed(batches.epoch(0), slots=batches.slot_arrays):
            scores = net.forward(batch["data"], train=False)
            if meter is not None:
                meter.update(scores, net.loss_labels(batch["label"]))
            pred = net.backend.to_numpy(scores.argmax(axis=1)).astype(np.uint8)
            for p in pred:  # the TEST chain pads at the bottom and right: the image is the top-left corner
                h, w = source.image_hw(row)
                write_palette_png(out / names[row], p[:h, :w])
                shown += [(row, p[:h, :w])] if row < SHEET_ROWS else []
                row += 1
    classes = list(deploy.class_names) if deploy.class_names else [str(i) for i in range(net.num_classes)]
    sheet = write_segmentation_sheet(out / "sheet.png", [(source[r]["data"], source[r]["mask"] if labelled else None, p)
                                                         for r, p in shown], class_names=classes,
                                     captions=[names[r] for r, _ in shown], ignore_label=stream.ignore_label)
    if meter is None:
        return [out, sheet]
    return [out, sheet] + write_scores(meter.result(), meter.confusion, out / "metrics.json", out / "confusion.png",
                                       fields={"data": os.fspath(data)}, count="images", n=row, class_names=classes,
                                       echo=echo, confusion_in_json=True, unit="pixels")
