"""make gpu-check: the CPU fallback CI runs, the verdict lines and exit status, the loss comparison."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feedstock import gpu_check

ROOT = Path(__file__).resolve().parents[1]


def test_without_a_gpu_it_says_so_and_exits_0():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "feedstock.gpu_check"], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == gpu_check.NO_GPU


def test_makefile_target_runs_the_check():
    text = (ROOT / "Makefile").read_text()
    assert "\ngpu-check:" in text and "-m feedstock.gpu_check" in text
    target = text.split("\ngpu-check:")[1].split("\n\n")[0]
    assert "nvidia-smi" in target and ".[gpu" in target  # cupy only where a GPU is


def test_one_verdict_line_per_part_and_exit_status():
    def ok(cp):
        return "fine"

    def skip(cp):
        raise gpu_check.Skip("no API")

    def bad(cp):
        raise AssertionError("losses differ")

    out = io.StringIO()
    assert gpu_check.run([("a", ok), ("b", skip)], None, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("PASS a: fine") and lines[1].startswith("SKIP b: no API")
    out = io.StringIO()
    assert gpu_check.run([("a", bad), ("b", ok)], None, out) == 1  # a failure does not stop the others
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("FAIL a: AssertionError: losses differ") and lines[1].startswith("PASS b")
    assert "FAILED 1 part(s)" in lines[-1]


def test_loss_comparison_tolerance():
    steps = gpu_check.STEPS
    base = np.linspace(2.3, 0.5, steps)
    assert "max |loss numpy - loss cupy| = 5.0e-05" in gpu_check._same_losses("m", base, base + 5e-5)
    with pytest.raises(AssertionError, match="differ by up to 2.00e-04"):
        gpu_check._same_losses("m", base, base + 2e-4)
    with pytest.raises(AssertionError, match="expected 20"):
        gpu_check._same_losses("m", base[:5], base[:5])
    with pytest.raises(AssertionError):
        gpu_check._same_losses("m", base, np.where(np.arange(steps) == 3, np.nan, base))


def test_trainer_part_runs_on_cpu_against_itself(monkeypatch, no_leaks):
    """The trainer part's own code path (data, train, history), numpy against numpy: identical losses."""
    monkeypatch.setattr(gpu_check, "BACKENDS", ("numpy", "numpy"))
    monkeypatch.setattr(gpu_check, "STEPS", 3)
    assert "max |loss numpy - loss cupy| = 0.0e+00" in gpu_check.check_lenet(None)
