"""build-lmdb pairs: engine flags, --strict on the worker pool, --force replacing OUT."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from pairs_helpers import run_cli, write_threshold_pairs

from feedstock.loaders.caffe_lmdb import release_env

SIZES = [(40, 52), (64, 48), (30, 30), (57, 71), (48, 48)]


def _release(out) -> None:
    for name in ("images_lmdb", "labels_lmdb"):
        release_env(str(out / name))


@pytest.mark.parametrize("flag", [["--address", "auto"], ["--partitions", "2"]])
def test_ray_engine_flags_are_refused_for_pairs(tmp_path, flag):
    images, masks, _ = write_threshold_pairs(tmp_path, SIZES[:1])
    code, _, err = run_cli("build-lmdb", images, tmp_path / "db", "--masks", masks, "-q", *flag)
    assert code == 1 and f"{flag[0]} applies to --engine ray only" in err
    assert not os.path.exists(tmp_path / "db")


def test_strict_on_the_worker_pool_leaves_nothing(tmp_path):
    images, masks, _ = write_threshold_pairs(tmp_path / "src", SIZES * 8)  # 40 pairs: several pool tasks
    cv2.imwrite(str(masks / "p030.png"), np.zeros((2, 2), np.uint8))
    code, _, err = run_cli("build-lmdb", images, tmp_path / "db", "--masks", masks, "--workers", 2, "--strict", "-q")
    assert code == 1 and "p030.png" in err
    assert not os.path.exists(tmp_path / "db") and not os.path.exists(tmp_path / "db.partial")


def test_force_replaces_out_with_the_same_bytes(tmp_path):
    images, masks, _ = write_threshold_pairs(tmp_path / "src", SIZES)
    out = tmp_path / "db"
    code, first, err = run_cli("build-lmdb", images, out, "--masks", masks, "-q")
    assert code == 0, err
    _release(out)
    code, _, err = run_cli("build-lmdb", images, out, "--masks", masks, "-q")
    assert code == 1 and "exists; pass --force" in err
    (tmp_path / "db.partial").mkdir()  # left by a killed build: replaced
    code, again, err = run_cli("build-lmdb", images, out, "--masks", masks, "--force", "-q")
    assert code == 0 and again == first, err
    assert not os.path.exists(tmp_path / "db.partial")
    code, stdout, _ = run_cli("verify", out, "-q")
    assert code == 0 and "5 pairs OK" in stdout
    _release(out)
