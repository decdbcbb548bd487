"""Per-record work of a build, run in worker processes: read, decode, resize, encode to Datum bytes.

Images follow convert_imageset's ReadImageToDatum (docs/caffe-compat.md, notes 5-6): decode with
OpenCV COLOR (3-channel BGR) or GRAYSCALE, squash-resize with INTER_LINEAR only
when both sizes are set, then either a raw Datum (CHW BGR bytes, explicit
``encoded=false``) or an encoded one (no channels/height/width): the original
file bytes when nothing changed and the extension matches, else ``cv2.imencode``
with OpenCV's defaults (JPEG quality 95). As Caffe, a kept file is kept whatever it
decodes to natively: a grey JPEG, a 16-bit or BGRA PNG in a colour build is stored byte
for byte and flagged (``Encoded.forced``: readers must decode it with force_color, or
force_gray in a --gray build); ``reencode`` stores such files re-encoded instead.
Unreadable images come back as errors (the caller skips or aborts), never as exceptions.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ...caffe_pb import array_to_datum, encoded_datum
from ...chw import to_chw, to_hwc
from ...errors import RecordError
from ...loaders.base import Source
from ...loaders.decode import color_mode, decode_image, limit_opencv_threads, read_bytes
from ...rng import sample_rng

Shape = Tuple[int, ...]
RESIZE_MODES = ("squash", "crop", "fill", "half_crop")
# Formats whose re-encoding gives back exactly the pixels encoded: the mean can use them as is.
_LOSSLESS = ("png", "bmp", "ppm", "pgm", "pbm", "tif", "tiff")
# A listing item: (line_id, listing index, path, label).
ImageItem = Tuple[int, int, str, int]


@dataclass(frozen=True)
class ImageJob:
    """What to do with every image of a build (picklable, sent with each chunk)."""

    color: bool = True
    height: int = 0
    width: int = 0
    resize_mode: str = "squash"
    encoding: Optional[str] = None  # None: raw Datums; "": guess from each file's extension
    want_sum: bool = False  # return per-chunk pixel sums for the mean image
    seed: int = 0
    throttle_s: float = 0.0  # test hook: sleep per record so a test can kill a build mid-way
    reencode: bool = False  # re-encode kept files a reader would decode to other channels or bit depth

    @property
    def channels(self) -> int:
        """The dataset's channel count: 3 (BGR) or 1 (--gray)."""
        return 3 if self.color else 1

    @property
    def resizes(self) -> bool:
        return self.height > 0 and self.width > 0


@dataclass
class Encoded:
    """One record's outcome: Datum bytes and the stored pixel shape, or an error message."""

    line_id: int
    value: Optional[bytes]
    shape: Shape = ()
    error: str = ""
    forced: str = ""  # a kept file whose native decode is not the dataset's channels in 8 bits: what it is


@dataclass
class ChunkResult:
    """A chunk's records in line order plus, when asked, pixel sums per shape (for the mean)."""

    records: List[Encoded]
    sums: Dict[Shape, Tuple[np.ndarray, int, int]] = field(default_factory=dict)  # shape -> (sum, count, line_id)

    def add_pixels(self, chw: np.ndarray, line_id: int) -> None:
        entry = self.sums.get(chw.shape)
        if entry is None:
            self.sums[chw.shape] = (chw.astype(np.float64), 1, line_id)
        else:
            np.add(entry[0], chw, out=entry[0], casting="unsafe")
            self.sums[chw.shape] = (entry[0], entry[1] + 1, entry[2])


def reason_of(error: RecordError) -> str:
    """The message without its ``key: `` prefix (the build names the record itself)."""
    text = str(error)
    prefix = f"{error.key}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def extension_matches(path: str, encoding: str) -> bool:
    """Caffe's matchExt: the lower-cased extension equals the encoding; jpg and jpeg match each other."""
    ext = os.path.splitext(path)[1][1:].lower()
    enc = encoding.lower()
    jpeg = ("jpg", "jpeg")
    return ext == enc or (ext in jpeg and enc in jpeg)


def guess_encoding(path: str) -> str:
    """convert_imageset's guess for ``--encoded`` without ``--encode_type``: the file's extension."""
    ext = os.path.splitext(path)[1][1:].lower()
    if not ext:
        raise RecordError(path, "cannot guess the encoding (no file extension); pass --encode-type")
    return ext


def resize_image(hwc: np.ndarray, job: ImageJob, index: int) -> np.ndarray:
    """Squash with cv2 INTER_LINEAR (Caffe), or a DIGITS mode with noise from a per-record seeded rng."""
    if job.resize_mode == "squash":
        return cv2.resize(hwc, (job.width, job.height), interpolation=cv2.INTER_LINEAR)
    from ...transforms.resize import Resize

    sample = {"data": to_chw(hwc)}
    out = Resize(job.height, job.width, mode=job.resize_mode)(sample, sample_rng(job.seed, 0, index))
    return to_hwc(out["data"])


def keeps_file(job: ImageJob, path: str) -> bool:
    """Caffe keeps the file's bytes when nothing changes: no resize and the extension is the encoding."""
    return job.encoding is not None and not job.resizes and extension_matches(path, job.encoding or guess_encoding(path))


def native_problem(buf: bytes, job: ImageJob, path: str) -> Tuple[str, Optional[np.ndarray]]:
    """What a reader decoding the kept bytes natively (IMREAD_UNCHANGED, as Caffe's DecodeDatumNative,
    verify and the default Loader) would get: ("", CHW pixels) when it matches the dataset's
    8-bit channel count, else (the problem, None)."""
    limit_opencv_threads()
    hwc = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_UNCHANGED) if buf else None
    if hwc is None:
        raise RecordError(path, f"cannot decode image ({len(buf)} bytes; not a JPEG/PNG/BMP/PPM?)")
    channels = hwc.shape[2] if hwc.ndim == 3 else 1
    problems = []
    if channels != job.channels:
        kind = {1: "grayscale", 2: "grayscale+alpha", 4: "BGRA (alpha)"}.get(channels, f"{channels}-channel")
        problems.append(f"a {kind} file ({channels} channels; the dataset has {job.channels})")
    if hwc.dtype != np.uint8:
        problems.append(f"{hwc.dtype.itemsize * 8}-bit samples (readers take 8-bit)")
    if not problems:
        return "", to_chw(hwc)
    return " and ".join(problems), None


def encode_image(job: ImageJob, item: ImageItem, result: ChunkResult) -> Encoded:
    """One image to Datum bytes; read/decode/encode failures become ``Encoded.error``."""
    line_id, index, path, label = item
    try:
        buf = read_bytes(path)
        if keeps_file(job, path):
            kept = _kept_value(job, path, buf, label)
            if kept is not None:
                value, pixels, forced = kept
                if job.want_sum:
                    result.add_pixels(pixels, line_id)
                return Encoded(line_id, value, tuple(int(s) for s in pixels.shape), forced=forced)
        chw = decode_image(buf, mode=color_mode(job.color), key=path)
        hwc = to_hwc(chw)
        if job.resizes:
            hwc = resize_image(hwc, job, index)
        pixels = to_chw(hwc)
        if job.encoding is None:
            value = array_to_datum(pixels, label, encoded_false=True).SerializeToString()
        else:
            value, pixels = _encoded_value(job, path, buf, hwc, label)
    except RecordError as e:
        return Encoded(line_id, None, error=reason_of(e))
    if job.want_sum:
        result.add_pixels(pixels, line_id)
    return Encoded(line_id, value, tuple(int(s) for s in to_chw(hwc).shape))


def _kept_value(job: ImageJob, path: str, buf: bytes, label: int) -> Optional[Tuple[bytes, np.ndarray, str]]:
    """(Datum bytes of the file as it is, the pixels a reader gets, "" or what the file is natively) as
    convert_imageset --encoded keeps it; None to re-encode a file that a native reader would decode to
    another channel count or depth (``job.reencode``). Such a file kept is decoded here as a reader told
    force_color (force_gray for --gray) decodes it: the dataset's channels in 8 bits."""
    problem, native = native_problem(buf, job, path)
    value = encoded_datum(buf, label).SerializeToString()
    if native is not None:
        return value, native, ""
    if job.reencode:
        return None
    return value, decode_image(buf, mode=color_mode(job.color), key=path), problem


def _encoded_value(job: ImageJob, path: str, buf: bytes, hwc: np.ndarray, label: int) -> Tuple[bytes, np.ndarray]:
    """(Datum bytes, the pixels a reader decodes natively from them) for a re-encoded record
    (kept files are :func:`_kept_value`'s): the decoded pixels, 8 bits, the dataset's channels."""
    encoding = job.encoding or guess_encoding(path)
    try:
        ok, out = cv2.imencode("." + encoding, hwc)
    except cv2.error as e:
        raise RecordError(path, f"cannot encode as {encoding!r}: {e}") from None
    if not ok:
        raise RecordError(path, f"OpenCV could not encode the image as {encoding!r}")
    payload = out.tobytes()
    value = encoded_datum(payload, label).SerializeToString()
    if encoding.lower() in _LOSSLESS or not job.want_sum:
        return value, to_chw(hwc)
    # compute_image_mean decodes natively (IMREAD_UNCHANGED): lossy bytes must be decoded.
    return value, decode_image(payload, mode="native", key=path)


def encode_images(job: ImageJob, items: Sequence[ImageItem]) -> ChunkResult:
    """Worker entry point: a chunk of images in line order (picklable, module level)."""
    limit_opencv_threads()
    result = ChunkResult([])
    for item in items:
        if job.throttle_s:
            time.sleep(job.throttle_s)
        result.records.append(encode_image(job, item, result))
    return result


def table_datum(sample: dict, key: str, label: int) -> Tuple[bytes, np.ndarray]:
    """A table row as a raw Datum: features (F,) become float Datums of shape (F, 1, 1).
    ``label`` is the listing's (the label column the build was told, already checked integer)."""
    data = np.asarray(sample["data"])
    if data.ndim == 1:
        data = data.reshape(-1, 1, 1)
    elif data.ndim == 2:
        data = data[None]
    elif data.ndim != 3:
        raise RecordError(key, f"record has shape {data.shape}; a Datum holds at most 3 dims (C, H, W)")
    if data.dtype != np.uint8:
        data = data.astype(np.float32, copy=False)
    if not -(2**31) <= label < 2**31:
        raise RecordError(key, f"label {label} does not fit Datum.label (int32)")
    datum = array_to_datum(data, int(label), encoded_false=True)
    return datum.SerializeToString(), data


def encode_table(source: Source, items: Sequence[Tuple[int, int, int]], want_sum: bool,
                 throttle_s: float = 0.0, bad_rows: Optional[Dict[int, str]] = None) -> ChunkResult:
    """Rows ``(line_id, listing index, label)`` of a table source to float (or uint8) Datums; rows in
    ``bad_rows`` (a label the listing could not read) come back as errors, skipped as images are."""
    result = ChunkResult([])
    for line_id, index, label in items:
        if throttle_s:
            time.sleep(throttle_s)
        key = source.key(index)
        if bad_rows and index in bad_rows:
            result.records.append(Encoded(line_id, None, error=f"{key}: {bad_rows[index]}"))  # HDF5 rows have no name
            continue
        try:
            value, pixels = table_datum(source[index], key, label)
        except RecordError as e:
            result.records.append(Encoded(line_id, None, error=reason_of(e)))
            continue
        if want_sum:
            result.add_pixels(pixels, line_id)
        result.records.append(Encoded(line_id, value, tuple(int(s) for s in pixels.shape)))
    return result
