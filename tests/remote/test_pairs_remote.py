"""feedstock serve with pairs: RemoteLoader clients get the local stream's aligned image + label batches."""
from __future__ import annotations

import numpy as np
from pairs_helpers import IGNORE, PAD_VALUE, check_batch, write_threshold_pairs
from remote_helpers import ServeProcess, assert_same_batches, copies, local_loader

from feedstock.remote import RemoteLoader

SIZES = [(40, 52), (64, 48), (30, 30), (57, 71), (48, 48), (36, 60), (44, 44)]


def _args(images, masks, *extra) -> list:
    return [str(images), "--source-type", "pairs", "--masks", str(masks), "--scales", "0.6,1,1.4",
            "--crop-size", "40", "--mirror", "--shuffle", "--seed", "7", "--pad-value", str(PAD_VALUE),
            "--batch-size", "3", *extra]


def test_served_pairs_equal_the_local_stream_and_stay_aligned(tmp_path):
    images, masks, _ = write_threshold_pairs(tmp_path, SIZES)
    args = _args(images, masks)
    with local_loader(args) as local:  # workers=0 in this process: the reference
        want = [copies(local) for _ in range(2)]
    server = ServeProcess(args + ["--workers", "2"])
    try:
        with RemoteLoader([server.endpoint]) as remote:
            got = [copies(remote) for _ in range(2)]
    finally:
        assert server.stop() == 0, "\n".join(server.lines)
    assert_same_batches(got[0] + got[1], want[0] + want[1])
    padded = 0
    for batch in got[0] + got[1]:
        assert batch["data"].shape[1:] == (3, 40, 40) and batch["label"].shape[1:] == (1, 40, 40)
        padded += check_batch(batch)[1]
    assert padded > 0
    assert not np.array_equal(got[0][0]["label"], got[1][0]["label"])  # epochs draw anew
    assert set(np.unique(np.concatenate([b["label"] for b in got[0]])).tolist()) <= {0, 1, 2, 3, IGNORE}
