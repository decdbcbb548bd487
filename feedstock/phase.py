"""Caffe's phase (``enum Phase { TRAIN = 0; TEST = 1; }``): the one parser every entry point uses."""
from __future__ import annotations

TRAIN, TEST = 0, 1
_NAMES = {"TRAIN": TRAIN, "TEST": TEST}


def parse_phase(value: object) -> int:
    """0 for "TRAIN"/"train"/0, 1 for "TEST"/"test"/1 (pycaffe sets ``layer.phase`` to the int)."""
    if isinstance(value, str) and value.upper() in _NAMES:
        return _NAMES[value.upper()]
    # bool is an int subclass: True must not pass as TEST. numpy ints come from pycaffe builds.
    if not isinstance(value, bool) and hasattr(value, "__index__"):
        index = value.__index__()
        if index in (TRAIN, TEST):
            return int(index)
    raise ValueError(f"phase={value!r} must be 0 (TRAIN) or 1 (TEST) (or the names 'TRAIN', 'TEST')")


def phase_name(phase: int) -> str:
    return "TRAIN" if phase == TRAIN else "TEST"
