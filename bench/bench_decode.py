"""JPEG decoding at the machine's limit: the decoder choice, decode-only rates, and the opt-in reduced decode.

Measured in one run on the real photos (``/work/shared/data/photos``, or
``$FEEDSTOCK_PHOTOS``, a glob of JPEGs):

1. The decoder this process chose (feedstock/loaders/jpeg.py: simplejpeg where it is
   bit-identical to OpenCV and faster, else OpenCV) and its single-core MP/s.
2. Decode-only rates of each decoder per CPU second of one thread, on the photos re-encoded at 256x256
   (the ImageNet recipe's LMDB) and on the originals (500x375), with a bit-identity
   check of every image in every mode.
3. ``--fast-decode`` (stream key ``decode_scale: auto``): full-size JPEGs (the
   500x375 originals, and the same photos upscaled 2x and 4x before encoding, as
   camera-sized files) resized to 256x256 then cropped 224 by a Loader with
   ``--workers`` workers: images/s exact vs fast, and the pixel difference of the
   resized images (mean absolute error, PSNR) against the exact decode + resize.

Each figure is the best of ``--repeats`` interleaved rounds (the machine is shared).

Usage: python bench/bench_decode.py [--workers 2] [--records 600] [--repeats 3]
"""
from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np

from feedstock.caffe_pb import encoded_datum
from feedstock.loaders import jpeg
from feedstock.loaders.decode import decode_image
from feedstock.stream import Stream
from feedstock.writers.lmdb_writer import LmdbWriter

PHOTOS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "photos", "*.jpg")
MODES = {"color": cv2.IMREAD_COLOR, "gray": cv2.IMREAD_GRAYSCALE, "native": cv2.IMREAD_UNCHANGED}


def photos() -> List[bytes]:
    files = sorted(glob.glob(os.environ.get("FEEDSTOCK_PHOTOS", PHOTOS)))
    if not files:
        raise SystemExit(f"no photos at {PHOTOS} (set FEEDSTOCK_PHOTOS to a glob of JPEGs)")
    return [open(f, "rb").read() for f in files]


def reencode(payloads: List[bytes], size: Tuple[int, int] = (256, 256), factor: float = 0.0) -> List[bytes]:
    """The photos resized to ``size`` (w, h), or scaled by ``factor``, re-encoded at quality 90."""
    out = []
    for data in payloads:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        dims = (int(img.shape[1] * factor), int(img.shape[0] * factor)) if factor else size
        img = cv2.resize(img, dims, interpolation=cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA)
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def check_identical(payloads: List[bytes]) -> int:
    """Every image in every mode: the chosen decoder's pixels are OpenCV's; returns the images checked."""
    for data in payloads:
        for mode, flag in MODES.items():
            want = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
            got = decode_image(data, mode=mode).transpose(1, 2, 0)
            if got.reshape(want.shape).tobytes() != want.tobytes():
                raise SystemExit(f"decoder {jpeg.choose().name} changed pixels in mode {mode}")
    return len(payloads)


def decode_rate(payloads: List[bytes], decoder: str, seconds: float = 0.6) -> Tuple[float, float]:
    """(images/s, MP/s) per CPU second of ``decode_image`` (mode color) with ``decoder`` forced, one core."""
    cv2.setNumThreads(1)
    jpeg.choose(force=decoder)
    arrays = [np.frombuffer(p, np.uint8) for p in payloads]
    pixels = sum(decode_image(a).size // 3 for a in arrays)
    n, start = 0, time.thread_time()  # CPU time of this thread: what one core decodes, whatever the load
    while time.thread_time() - start < seconds:
        for a in arrays:
            decode_image(a)
        n += 1
    elapsed = time.thread_time() - start
    jpeg._choice = None  # the next caller measures again
    return n * len(arrays) / elapsed, n * pixels / elapsed / 1e6


def best_rates(payloads: List[bytes], repeats: int) -> Dict[str, Tuple[float, float]]:
    names = ["opencv"] + (["simplejpeg"] if jpeg.choose(force="simplejpeg").name == "simplejpeg" else [])
    jpeg._choice = None
    got: Dict[str, List[Tuple[float, float]]] = {n: [] for n in names}
    for _ in range(repeats):
        for n in names:
            got[n].append(decode_rate(payloads, n))
    return {n: max(r) for n, r in got.items()}


def write_lmdb(path: str, payloads: List[bytes], records: int) -> None:
    with LmdbWriter(path) as w:
        for i in range(records):
            w.put_datum(i, f"img{i}.jpg", encoded_datum(payloads[i % len(payloads)], i % 10))


def stream_rate(path: str, workers: int, fast: bool) -> float:
    """Images/s of a whole epoch: resize 256x256, random crop 224 + mirror, mean values."""
    s = Stream(source=path, new_height=256, new_width=256, crop_size=224, mirror=True, mean_value=(104, 117, 123),
               force_color=True, batch_size=64, workers=workers, seed=0, start_method="fork",
               decode_scale="auto" if fast else 1)
    with s.build_loader("train") as loader:
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch["data"])
        return n / (time.perf_counter() - start)


def pixel_difference(payloads: List[bytes]) -> Tuple[float, float]:
    """(mean absolute error, PSNR dB) of reduced decode + resize to 256x256 against exact decode + resize."""
    err, sq, count = 0.0, 0.0, 0
    for data in payloads:
        exact = cv2.resize(decode_image(data).transpose(1, 2, 0), (256, 256), interpolation=cv2.INTER_LINEAR)
        fast = cv2.resize(decode_image(data, target=(256, 256)).transpose(1, 2, 0), (256, 256),
                          interpolation=cv2.INTER_LINEAR)
        d = exact.astype(np.float64) - fast
        err, sq, count = err + np.abs(d).sum(), sq + (d * d).sum(), count + d.size
    mse = sq / count
    return err / count, (10 * np.log10(255.0**2 / mse) if mse else float("inf"))


def fast_decode_case(originals: List[bytes], args: argparse.Namespace, tmp: str) -> None:
    print(f"[3] --fast-decode: resize 256x256, crop 224, mirror, mean; {args.workers} workers, "
          f"{args.records} records per LMDB")
    for label, factor in (("500x375 originals", 0.0), ("upscaled 2x (1000x750)", 2.0), ("upscaled 4x (2000x1500)", 4.0)):
        payloads = originals if not factor else reencode(originals, factor=factor)
        path = os.path.join(tmp, f"full{factor}")
        write_lmdb(path, payloads, args.records)
        runs: List[Callable[[], float]] = [lambda: stream_rate(path, args.workers, False),  # noqa: B023
                                           lambda: stream_rate(path, args.workers, True)]  # noqa: B023
        exact, fast = (max(r) for r in zip(*[[run() for run in runs] for _ in range(args.repeats)]))
        mae, psnr = pixel_difference(payloads)
        scales = sorted({jpeg.reduced_scale(np.frombuffer(p, np.uint8), "color", (256, 256)) for p in payloads})
        print(f"    {label:<24}: exact {exact:7,.0f}/s, fast {fast:7,.0f}/s = {fast / exact:.2f}x (DCT scale "
              f"1/{'/'.join(map(str, scales))}); pixels after the resize: MAE {mae:.2f}, PSNR {psnr:.1f} dB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--records", type=int, default=600)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    originals = photos()
    small = reencode(originals)
    choice = jpeg.choose()
    print(f"[1] decoder: {choice.name} ({choice.reason}); short check {choice.mps:.0f} MP/s per core "
          f"(OpenCV {choice.opencv_mps:.0f}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    checked = check_identical(small + originals)
    print(f"[2] decode only, one core, best of {args.repeats} ({checked} images checked bit-identical in 3 modes):")
    for label, payloads in (("256x256", small), ("500x375", originals)):
        rates = best_rates(payloads, args.repeats)
        line = ", ".join(f"{n} {r[0]:,.0f} img/s = {r[1]:.0f} MP/s" for n, r in rates.items())
        ratio = f" -> simplejpeg/OpenCV {rates['simplejpeg'][0] / rates['opencv'][0]:.2f}x" if len(rates) > 1 else ""
        print(f"    {label}: {line}{ratio}")
    with tempfile.TemporaryDirectory(prefix="feedstock-decode-") as tmp:
        fast_decode_case(originals, args, tmp)


if __name__ == "__main__":
    main()
