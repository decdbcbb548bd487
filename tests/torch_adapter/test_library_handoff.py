"""Batches reach any framework without a host copy: numpy views, ``__array_interface__`` and DLPack on the slots."""
from __future__ import annotations

import numpy as np
from dataset_helpers import Records, image

from feedstock.pipeline.loader import Loader


def _slot_pointers(loader):
    return {name: {slot[name].__array_interface__["data"][0] for slot in loader.slot_arrays()}
            for name in loader.slot_arrays()[0]}


def test_batches_are_views_of_the_slots_and_dlpack_hands_them_over_without_a_copy(no_leaks):
    with Loader(Records("tuple", n=12), batch_size=4, workers=2, prefetch=2, shuffle=False) as loader:
        for k, (images, labels) in enumerate(loader):
            slots = loader.slot_arrays()
            pointers = _slot_pointers(loader)
            assert images.__array_interface__["data"][0] in pointers["0"]  # no copy between slot and batch
            assert any(np.shares_memory(images, s["0"]) for s in slots)
            handed = np.from_dlpack(images)  # what jax.dlpack / torch.from_dlpack receive
            assert handed.__array_interface__["data"][0] == images.__array_interface__["data"][0]
            assert np.array_equal(handed, np.stack([image(i) for i in range(4 * k, 4 * k + 4)]))
            assert labels.tolist() == list(range(4 * k, 4 * k + 4))


def test_copy_true_batches_own_their_memory(no_leaks):
    with Loader(Records("dict", n=8), batch_size=4, workers=0, shuffle=False, copy=True) as loader:
        batches = list(loader)
        slots = loader.slot_arrays()
    assert not any(np.shares_memory(b["image"], s["image"]) for b in batches for s in slots)
    assert np.array_equal(batches[1]["image"][0], image(4))
