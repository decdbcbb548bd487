"""What a feed server needs of a Loader beyond the public face: its batch shard and leased batches.

Several servers split one epoch: server j of n serves batches j, j+n, ... of
each epoch (:func:`serve_shard`, ``serve --batch-shard j/n``; interleaving the n
batch shards batch by batch gives back the whole epoch, whatever n is). A server sends each batch straight from
the loader's shared-memory slot, so it holds several batches at once
(:func:`leased`) until ZeroMQ has let go of their frames. Both are the Loader's
public seams (``use_sampler``, ``leased``), named here for the feed.
"""
from __future__ import annotations

from typing import Tuple

from ..pipeline.loader import Leases, Loader
from ..shard import check_shard, deprecated


def serve_shard(loader: Loader, batch_shard: Tuple[int, int]) -> Loader:
    """``loader`` narrowed to batches j, j+n, ... of each epoch (``batch_shard=(j, n)``: server j of n).

    Positions (``state_dict``, ``len``) then count this shard's batches. Call it
    before the loader starts (it restarts a started one); returns ``loader``.
    """
    loader.use_sampler(loader.sampler.replace(batch_shard=check_shard(batch_shard, "batch_shard")))
    return loader


def serve_part(loader: Loader, part: Tuple[int, int]) -> Loader:
    """The old name of :func:`serve_shard`."""
    deprecated("serve_part", "serve_shard")
    return serve_shard(loader, part)


def leased(loader: Loader) -> Leases:
    """One pass like ``iter(loader)``, yielding ``(batch, release)``: the batch's slot stays valid until
    ``release()`` (fewer than ``prefetch`` may be held at once; a repositioned loader drops its leases)."""
    return loader.leased()
