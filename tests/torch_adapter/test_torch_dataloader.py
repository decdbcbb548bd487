"""feedstock.torch.DataLoader against torch.utils.data.DataLoader: same batches, resume, samplers, training."""
from __future__ import annotations

import collections

import numpy as np
import pytest
from dataset_helpers import WhichWorker, note_worker

torch = pytest.importorskip("torch")
import torch.utils.data as tud  # noqa: E402

from feedstock.torch import DataLoader  # noqa: E402

Sample = collections.namedtuple("Sample", ["x", "y"])


class Mixed(tud.Dataset):
    """Every value kind torch's default_collate takes, in a tuple, dict or namedtuple record."""

    def __init__(self, kind: str, n: int = 11):
        self.kind, self.n = kind, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng(i)  # per-index: the same record wherever it is read
        img = rng.integers(0, 255, (3, 4, 5), dtype=np.uint8)
        values = [img, torch.from_numpy(rng.standard_normal(6).astype(np.float32)), int(i), float(i) / 3,
                  bool(i % 2), np.float32(i) * 2, np.int32(-i)]
        if self.kind == "tuple":
            return tuple(values)
        if self.kind == "namedtuple":
            return Sample(values[0], values[2])
        return {f"v{j}": v for j, v in enumerate(values)}


def _same(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b)
        a, b = list(a.values()), list(b.values())
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), (x, y)


@pytest.mark.parametrize("kind", ["tuple", "dict", "namedtuple"])
def test_the_same_batches_as_torch_with_shuffle_off(kind, no_leaks):
    want = list(tud.DataLoader(Mixed(kind), batch_size=4))
    for workers in (0, 2):
        got = list(DataLoader(Mixed(kind), batch_size=4, num_workers=workers, copy=True))
        assert len(got) == len(want) == 3
        for g, w in zip(got, want):
            _same(g, w)


def test_a_custom_collate_gets_the_samples_and_matches_torch(no_leaks):
    def collate(samples):
        return torch.stack([torch.as_tensor(s[0]) for s in samples]).float() / 2, [int(s[2]) for s in samples]

    want = list(tud.DataLoader(Mixed("tuple"), batch_size=4, collate_fn=collate))
    got = list(DataLoader(Mixed("tuple"), batch_size=4, num_workers=2, collate_fn=collate))
    assert [g[1] for g in got] == [w[1] for w in want] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert all(torch.equal(g[0], w[0]) for g, w in zip(got, want))
    default = list(DataLoader(Mixed("dict"), batch_size=4, collate_fn=tud.default_collate, copy=True))
    _same(default[0], next(iter(tud.DataLoader(Mixed("dict"), batch_size=4))))


def test_tensors_are_views_of_the_slots(no_leaks):
    loader = DataLoader(Mixed("dict"), batch_size=4, num_workers=2, persistent_workers=True)
    with loader:
        for batch in loader:
            slots = loader.loader.slot_arrays()
            assert batch["v0"].data_ptr() in {s["v0"].ctypes.data for s in slots}
            assert not batch["v0"].is_pinned()  # pin_memory off


def test_shuffle_is_a_seeded_permutation_per_epoch():
    def order(**kw):
        loader = DataLoader(Mixed("tuple", 12), batch_size=4, shuffle=True, drop_last=True, **kw)
        return [[int(v) for b in loader for v in b[2]] for _ in range(2)]

    g = torch.Generator()
    g.manual_seed(7)
    first = order(generator=g)
    assert sorted(first[0]) == list(range(12)) and first[0] != first[1]  # epoch 1 reshuffles
    assert order(seed=7) == first and order(seed=8) != first
    torch.manual_seed(3)
    drawn = order()
    torch.manual_seed(3)
    assert order() == drawn  # torch.manual_seed fixes the order, as for torch's DataLoader


def test_resume_mid_epoch_exactly(no_leaks):
    kw = dict(batch_size=2, shuffle=True, seed=4, drop_last=False)
    whole = [[int(v) for v in b[2]] for b in DataLoader(Mixed("tuple"), num_workers=0, **kw)]
    loader = DataLoader(Mixed("tuple"), num_workers=2, **kw)
    it = iter(loader)
    head = [[int(v) for v in next(it)[2]] for _ in range(3)]
    state = loader.state_dict()
    loader.close()
    assert state["next_batch"] == 3 and state["epoch"] == 0
    again = DataLoader(Mixed("tuple"), num_workers=1, **kw)
    again.load_state_dict(state)
    tail = [[int(v) for v in b[2]] for b in again]
    assert head + tail == whole
    assert again.state_dict()["epoch"] == 1 and again.state_dict()["next_batch"] == 0
    again.set_epoch(0)
    assert [[int(v) for v in b[2]] for b in again] == whole


def test_each_iter_is_a_whole_pass_as_in_torch(no_leaks):
    for make in (lambda: DataLoader(Mixed("tuple", 12), batch_size=4, shuffle=True, seed=2, num_workers=2),
                 lambda: tud.DataLoader(Mixed("tuple", 12), batch_size=4, shuffle=True)):
        loader = make()
        next(iter(loader))  # a peek at one batch
        labels = [int(v) for b in loader for v in b[2]]
        assert sorted(labels) == list(range(12))  # the next pass has every batch
    loader = DataLoader(Mixed("tuple", 12), batch_size=4, shuffle=True, seed=2)
    epoch0 = [int(v) for b in loader for v in b[2]]
    loader.set_epoch(0)
    next(iter(loader))
    loader.set_epoch(0)
    assert [int(v) for b in loader for v in b[2]] == epoch0


def test_a_distributed_sampler_gives_rank_world_size_shuffle_and_seed():
    shards = []
    for rank in (0, 1):
        sampler = tud.distributed.DistributedSampler(Mixed("tuple", 12), num_replicas=2, rank=rank, shuffle=True,
                                                     seed=9)
        loader = DataLoader(Mixed("tuple", 12), batch_size=3, sampler=sampler)
        epoch0 = [int(v) for b in loader for v in b[2]]
        sampler.set_epoch(1)
        epoch1 = [int(v) for b in loader for v in b[2]]
        assert len(epoch0) == 6 and sorted(epoch0) != epoch0 or epoch0 != epoch1
        assert epoch0 != epoch1  # the sampler's epoch orders each pass
        shards.append(epoch0)
        assert loader.loader.sampler.rank == rank and loader.loader.sampler.seed == 9
    assert sorted(shards[0] + shards[1]) == list(range(12))  # disjoint shards covering the dataset


@pytest.mark.parametrize("kw, message", [
    (dict(batch_sampler=tud.BatchSampler(tud.SequentialSampler(range(11)), 4, False)), "batch_sampler is not supported"),
    (dict(sampler=tud.WeightedRandomSampler([1.0] * 11, 11)), "sampler=WeightedRandomSampler is not supported"),
    (dict(sampler=tud.RandomSampler(range(11), replacement=True)), "sampler=RandomSampler is not supported"),
    (dict(sampler=tud.SequentialSampler(range(11)), shuffle=True), "mutually exclusive with shuffle"),
    (dict(batch_size=None), r"batch_size=None \(no batching\) is not supported"),
    (dict(prefetch_factor=2), "prefetch_factor option could only be specified in multiprocessing"),
    (dict(device="cuda"), "CUDA is not available here"),
])
def test_arguments_feedstock_cannot_honour_are_clear_errors(kw, message):
    if kw.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available")
    with pytest.raises(ValueError, match=message):
        DataLoader(Mixed("tuple"), **dict(dict(batch_size=4), **kw))


def test_an_iterable_dataset_is_refused():
    class Stream(tud.IterableDataset):
        def __iter__(self):
            return iter(range(4))

        def __len__(self):
            return 4

    with pytest.raises(TypeError, match="needs random access"):
        DataLoader(Stream(), batch_size=2)


def test_worker_init_fn_and_persistent_workers(no_leaks):
    loader = DataLoader(WhichWorker(), batch_size=2, num_workers=2, worker_init_fn=note_worker, seed=1)
    workers = {int(w) for b in loader for w in b[1]}
    assert workers and workers <= {0, 1}
    assert loader.loader.worker_pids() == []  # persistent_workers=False: stopped after the pass, as torch
    with DataLoader(WhichWorker(), batch_size=2, num_workers=2, persistent_workers=True) as kept:
        list(kept)
        assert len(kept.loader.worker_pids()) == 2


def test_pin_memory_is_a_no_op_without_cuda_and_pins_the_slots_with_it(no_leaks):
    with DataLoader(Mixed("dict"), batch_size=4, num_workers=2, pin_memory=True, persistent_workers=True) as loader:
        batches = [b["v0"].is_pinned() for b in loader]
        if torch.cuda.is_available():
            assert all(batches) and loader._pinned.registered
        else:
            assert not any(batches) and loader._pinned is None


def test_spawned_workers_read_torch_tensor_records(no_leaks):
    want = list(tud.DataLoader(Mixed("dict", 6), batch_size=3))
    got = list(DataLoader(Mixed("dict", 6), batch_size=3, num_workers=1, multiprocessing_context="spawn", copy=True))
    for g, w in zip(got, want):
        _same(g, w)


class Fashion(tud.Dataset):
    def __init__(self, split):
        self.images, self.labels = split.images, split.labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i].astype(np.float32) / 255.0, int(self.labels[i])


def test_a_torch_model_trains_on_fashion_mnist_through_the_dataloader(no_leaks):
    from feedstock.trainer.datasets import load_fashion_mnist

    train, test = load_fashion_mnist()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the cores are the workers' (2 cores: torch's threads would fight them)
    try:
        accuracy = _train(train, test)
    finally:
        torch.set_num_threads(threads)
    assert accuracy >= 0.78  # 0.791 here: the seeds fix batches and weights


def _train(train, test):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with DataLoader(Fashion(train), batch_size=64, shuffle=True, seed=0, num_workers=1, persistent_workers=True,
                    drop_last=True) as loader:
        for _ in range(2):
            for images, labels in loader:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(images), labels).backward()
                opt.step()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in DataLoader(Fashion(test), batch_size=500))
    return correct / len(test.labels)


def test_slots_follow_prefetch_factor_and_the_batch_size():
    from feedstock.torch.options import SLOT_BUDGET, slots

    assert slots(2, None) == 5 and slots(3, 4) == 13  # torch's batches in advance, plus the one in use
    assert slots(2, 2, batch_bytes=SLOT_BUDGET // 3) == 3  # large batches: prefetch_factor ahead in all
    assert slots(2, 2, batch_bytes=1000) == 17  # small ones: more, so several go to one task
    assert slots(0, None) == 2
    with pytest.raises(ValueError, match="prefetch_factor=0 must be >= 1"):
        slots(2, 0)


class Tensors(tud.Dataset):
    """Records of torch tensors; record 3's image is another shape."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        image = torch.full((2, 3) if i != 3 else (3, 2), float(i))
        return {"image": image.requires_grad_(i == 1), "label": torch.tensor(i)}


def test_tensor_records_are_checked_like_arrays():
    from feedstock.errors import WorkerError

    loader = DataLoader(Tensors(), batch_size=3, copy=True)
    with pytest.raises(WorkerError, match=r"record 3: field 'image' has shape \(3, 2\) float32, record 0 had shape "
                                          r"\(2, 3\) float32"):
        list(loader)
    with pytest.raises(TypeError, match="field 'x': a torch.bfloat16 tensor has no numpy form"):
        DataLoader([{"x": torch.zeros(2, dtype=torch.bfloat16)}], batch_size=1)
    first = next(iter(DataLoader(Tensors(), batch_size=3, copy=True)))
    assert torch.equal(first["image"][1], torch.full((2, 3), 1.0)) and first["label"].tolist() == [0, 1, 2]
