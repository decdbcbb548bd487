"""Pairs: images with aligned segmentation masks, e.g. ``images/x.jpg`` with ``masks/x.png``.

Yields ``{"data": uint8 (C, H, W) BGR, "mask": uint8 (1, H, W)}``; a mask must have
the image's height and width. Masks are read as grey, except palette PNGs (PASCAL
VOC style) whose palette indices (the class ids) are kept.
"""
from __future__ import annotations

import io
import logging
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import RecordError
from ..spec import ArraySpec, Sample, Spec
from .base import Source
from .decode import channels_of, color_mode, read_image, read_mask
from .image_folder import images_under
from .strings import StringTable

PathPair = Tuple[str, str]
log = logging.getLogger(__name__)
_ORIENTATION = 0x0112  # the EXIF tag


def encoded_hw(data: bytes | str, key: str, *, exif: bool = True) -> Tuple[int, int]:
    """(H, W) of an encoded image (bytes, or a file path) from its header, without decoding the pixels.

    With ``exif`` an EXIF orientation that turns the picture (5-8) swaps them, as OpenCV's
    colour and grey decoders turn it (``IMREAD_UNCHANGED``, LMDB's native mode, does not).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            turned = exif and im.format == "JPEG" and im.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
            return (im.width, im.height) if turned else (im.height, im.width)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise RecordError(key, f"cannot read the image header: {e}") from None


def _mask_for(image: str, images: str, masks: str, suffixes: Sequence[str]) -> Optional[str]:
    stem = os.path.splitext(os.path.relpath(image, images))[0]
    for suffix in suffixes:
        candidate = os.path.join(masks, stem + suffix)
        if os.path.isfile(candidate):
            return candidate
    return None


def match_masks(images: str, masks: str, suffixes: Sequence[str], *, allow_missing: bool = False) -> List[PathPair]:
    """(image, mask) for every image below ``images``; error listing the images without a mask.

    With ``allow_missing`` an image without a mask is kept with mask ``""``: reading it is a
    RecordError naming both (so ``on_error="skip"`` skips and reports it).
    """
    for folder, role in ((images, "images"), (masks, "masks")):
        if not os.path.isdir(folder):
            raise ValueError(f"{role} folder {folder!r} is not a directory")
    found = images_under(images, exclude=[masks])  # masks kept inside the images folder are not images
    if not found:
        raise ValueError(f"images folder {images!r} holds no images")
    pairs = [(image, _mask_for(image, images, masks, suffixes)) for image in found]
    missing = [image for image, mask in pairs if mask is None]
    if missing and not allow_missing:
        shown = ", ".join(repr(os.path.relpath(m, images)) for m in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise ValueError(
            f"{len(missing)} of {len(pairs)} images in {images!r} have no mask in {masks!r} "
            f"with suffix {tuple(suffixes)}: {shown}{more}"
        )
    if missing:
        log.warning("%d of %d images in %r have no mask in %r; reading them is a record error",
                    len(missing), len(pairs), images, masks)
    return [(image, mask or "") for image, mask in pairs]


class Pairs(Source):
    """Image + mask pairs from two folders (same relative stem) or an explicit list of path pairs."""

    def __init__(self, images: str | os.PathLike | Sequence[PathPair], masks: str | os.PathLike | None = None, *,
                 mask_suffixes: Sequence[str] = (".png", ".bmp"), color: bool = True, rgb: bool = False,
                 allow_missing: bool = False):
        if isinstance(mask_suffixes, str) or not mask_suffixes:
            raise ValueError(f"mask_suffixes={mask_suffixes!r} must be a non-empty sequence like ('.png',)")
        if not isinstance(color, bool):
            raise ValueError(f"color={color!r} must be a bool")
        if isinstance(images, (str, os.PathLike)):
            if masks is None:
                raise ValueError("masks= (the masks folder) is required when images is a folder")
            pairs = match_masks(os.fspath(images), os.fspath(masks), tuple(mask_suffixes),
                                allow_missing=bool(allow_missing))
        else:
            if masks is not None:
                raise ValueError("masks= must be None when images is a list of (image, mask) pairs")
            pairs = [(os.fspath(a), os.fspath(b)) for a, b in images]
            if not pairs:
                raise ValueError("the list of (image, mask) pairs is empty")
        self._images = StringTable([a for a, _ in pairs])
        self._masks = StringTable([b for _, b in pairs])
        self.color = color
        self.rgb = bool(rgb)

    def __len__(self) -> int:
        return len(self._images)

    def paths(self, i: int) -> PathPair:
        i = self._check_index(i)
        return self._images[i], self._masks[i]

    def key(self, i: int) -> str:
        return self.paths(i)[0]

    def image_hw(self, i: int) -> Tuple[int, int]:
        """(H, W) of image ``i`` from its file header (no decode)."""
        path = self.paths(i)[0]
        return encoded_hw(path, path)

    def __getitem__(self, i: int) -> Sample:
        image_path, mask_path = self.paths(i)
        if not mask_path:
            raise RecordError(image_path, "has no mask (no file with its stem in the masks folder)")
        data = read_image(image_path, mode=color_mode(self.color), rgb=self.rgb)
        try:
            mask = read_mask(mask_path)
        except RecordError as e:  # name the pair: the image is the record, the mask the culprit
            raise RecordError(image_path, f"mask {mask_path!r}: {str(e)[len(e.key) + 2:]}") from None
        if mask.shape[1:] != data.shape[1:]:
            raise RecordError(
                image_path, f"mask {mask_path!r} is {mask.shape[1]}x{mask.shape[2]} but the image is "
                f"{data.shape[1]}x{data.shape[2]} (H x W)"
            )
        return {"data": data, "mask": mask}

    def spec(self) -> Spec:
        channels = channels_of(color_mode(self.color))
        return {"data": ArraySpec((channels, None, None), np.uint8), "mask": ArraySpec((1, None, None), np.uint8)}

    def __repr__(self) -> str:
        return f"Pairs({len(self)} image/mask pairs, color={self.color})"
