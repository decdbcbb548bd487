"""``feedstock inspect`` on an HDF5 file whose label dataset has another name (``--label-column``)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from feedstock.cli.main import main


@pytest.fixture()
def h5(tmp_path):
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(7 * 4, dtype=np.float32).reshape(7, 1, 2, 2)
        f["target"] = np.array([2, 0, 2, 1, 2, 0, 2])  # 0: 2, 1: 1, 2: 4
    return path


def test_inspect_reads_the_named_label_dataset(h5, capsys):
    assert main(["inspect", str(h5), "--label-column", "target"]) == 0
    out = capsys.readouterr().out
    assert "records: 7" in out and "labels: 3 distinct, 0..2" in out
    assert "  0: 2\n  1: 1\n  2: 4" in out
    assert "field 'label'" in out and "field 'target'" not in out


def test_without_the_flag_the_error_names_the_datasets(h5, capsys):
    assert main(["inspect", str(h5)]) == 1
    err = capsys.readouterr().err
    assert "no dataset 'label'" in err and "target" in err


def test_a_label_column_that_is_not_there_is_named(h5, capsys):
    assert main(["inspect", str(h5), "--label-column", "y"]) == 1
    assert "'y'" in capsys.readouterr().err
