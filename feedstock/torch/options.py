"""torch DataLoader arguments as Loader options: the sampler, the seed, the start method, the slots."""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Optional, Sized, Union

from ..rng import MAX_SEED

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

    from torch import Generator
    from torch.utils.data import Sampler
    from torch.utils.data.distributed import DistributedSampler


@dataclass(frozen=True)
class Order:
    """What the sampler arguments come to: shuffle, seed and the rank's shard (DDP)."""

    shuffle: bool
    seed: int
    rank: int
    world_size: int
    distributed: Optional[DistributedSampler] = None  # the DistributedSampler given, whose ``epoch`` each pass follows


def resolve_order(torch: ModuleType, dataset: Sized, *, shuffle: Optional[bool], sampler: Optional[Sampler],
                  batch_sampler: object, generator: Optional[Generator], seed: Optional[int], rank: Optional[int], world_size: Optional[int]) -> Order:
    """The Loader's order from torch's arguments; ValueError for a sampler feedstock cannot honour."""
    if batch_sampler is not None:
        raise ValueError("batch_sampler is not supported: feedstock makes batch k from (seed, epoch, k) so any "
                         "worker count gives the same batches and a run resumes mid-epoch; use batch_size and "
                         "shuffle (or a DistributedSampler)")
    data = torch.utils.data
    if sampler is not None and shuffle:
        raise ValueError("sampler option is mutually exclusive with shuffle")  # torch's own rule
    shuffle = bool(shuffle)
    distributed = None
    if sampler is None or isinstance(sampler, data.SequentialSampler):
        pass
    elif isinstance(sampler, data.RandomSampler) and not sampler.replacement and \
            sampler.num_samples == len(dataset):
        shuffle = True
        generator = sampler.generator if generator is None else generator
    elif isinstance(sampler, data.distributed.DistributedSampler):
        distributed = sampler
        shuffle, rank, world_size = bool(sampler.shuffle), int(sampler.rank), int(sampler.num_replicas)
        seed = int(sampler.seed) if seed is None else seed
    else:
        raise ValueError(f"sampler={type(sampler).__name__} is not supported: feedstock samples a permutation "
                         "from (seed, epoch) (shuffle=True), in order (shuffle=False) or sharded by a "
                         "DistributedSampler; weighted or custom orders are not available")
    return Order(shuffle, pick_seed(torch, seed, generator), 0 if rank is None else int(rank),
                 1 if world_size is None else int(world_size), distributed)


def pick_seed(torch: ModuleType, seed: Optional[int], generator: Optional[Generator]) -> int:
    """``seed``; else the generator's initial seed; else one drawn from torch's global generator (so
    ``torch.manual_seed`` fixes the order, as it does for torch's DataLoader)."""
    if seed is not None:
        return int(seed)
    if generator is not None:
        return int(generator.initial_seed()) % MAX_SEED
    return int(torch.randint(0, 2**62, (), dtype=torch.int64).item())


def start_method(multiprocessing_context: Union[str, BaseContext, None]) -> str:
    """The Loader's start method from torch's ``multiprocessing_context`` (a name or a context)."""
    if multiprocessing_context is None:
        return "auto"
    if isinstance(multiprocessing_context, str):
        return multiprocessing_context
    return str(multiprocessing_context.get_start_method())


SLOT_BUDGET = 128 << 20  # bytes of slots beyond the few every loader needs


def slots(num_workers: int, prefetch_factor: Optional[int], batch_bytes: Optional[int] = None) -> int:
    """Shared-memory slots, counting the one being consumed.

    torch keeps ``prefetch_factor`` batches in advance per worker. feedstock's workers share each batch (a
    batch is split across them), so ``prefetch_factor`` batches in advance keep them all busy; with the
    batch size known, slots are added while they stay within ``SLOT_BUDGET``, up to 4x torch's count: small
    batches then go several to a task, one message for several batches (see pipeline/run.py).
    """
    if num_workers < 0:
        raise ValueError(f"num_workers={num_workers} must be >= 0")
    if num_workers == 0:
        if prefetch_factor is not None:  # torch's own rule
            raise ValueError("prefetch_factor option could only be specified in multiprocessing. "
                             "let num_workers > 0 to enable multiprocessing")
        return 2
    factor = 2 if prefetch_factor is None else int(prefetch_factor)
    if factor < 1:
        raise ValueError(f"prefetch_factor={prefetch_factor} must be >= 1")
    if batch_bytes is None or batch_bytes <= 0:
        return max(2, num_workers * factor) + 1
    return max(factor + 1, min(4 * num_workers * factor + 1, SLOT_BUDGET // batch_bytes))


def worker_timeout(timeout: float) -> Optional[float]:
    """torch's ``timeout`` (0: wait for ever) as the seconds a worker may spend on one batch; 0 keeps
    feedstock's hang detection (120 s), a positive value is used as given."""
    if timeout < 0:
        raise ValueError(f"timeout={timeout} must be >= 0")
    return 120.0 if timeout == 0 else float(timeout)
