"""Samplers whose order depends on (seed, epoch) only, sharded over DDP ranks.

Training uses :class:`EpochBatchSampler`, which yields ``(epoch, index)`` keys that
:class:`SeededDataset` turns into a sample drawn with a generator seeded by
(seed, epoch, index): a frame's augmentation is then the same whatever the number of
workers, the prefetching or an interruption. After a resume the sampler skips the batches
the interrupted run had already trained on.
"""

from __future__ import annotations

import math

import numpy as np
from torch.utils.data import Dataset, Sampler

from monokd.data.unlabeled import unlabeled_per_batch
from monokd.training.seeding import sample_seed, seeded


class SeededDataset(Dataset):
    """Wraps a dataset; item ``(epoch, index)`` is ``dataset[index]`` drawn under the global
    generators seeded by (seed, epoch, index)."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        if hasattr(self.dataset, "_draws"):
            # KittiDataset mixes a per-process draw counter into its generator; the seed
            # below already differs per draw, and the counter would differ after a resume.
            self.dataset._draws = 0
        with seeded(sample_seed(self.seed, epoch, index)):
            return self.dataset[index]


def shard(indices: list[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s share of ``indices``, padded (by wrapping around) so that every rank
    gets the same count: ranks must step the same number of times under DDP."""
    per_rank = math.ceil(len(indices) / world_size)
    padded = (indices * math.ceil(per_rank * world_size / max(len(indices), 1)))[: per_rank * world_size]
    return padded[rank::world_size]


class EpochBatchSampler(Sampler):
    """Batches of ``(epoch, index)`` keys: a permutation seeded by (seed, epoch), sharded."""

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True):
        if size == 0:
            raise ValueError("EpochBatchSampler: the training set is empty")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self._skip: dict[int, int] = {}

    @property
    def sampler(self) -> "EpochBatchSampler":
        # Lightning calls ``set_epoch`` on ``loader.batch_sampler.sampler`` before each epoch.
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches_done: int) -> None:
        """The next pass over ``epoch`` starts after its first ``batches_done`` batches."""
        self._skip = {epoch: batches_done}
        self.epoch = epoch

    def order(self, epoch: int) -> list[int]:
        indices = list(range(self.size))
        if self.shuffle:
            indices = np.random.default_rng(sample_seed(self.seed, epoch)).permutation(self.size).tolist()
        return shard(indices, self.rank, self.world_size)

    def __len__(self) -> int:
        return math.ceil(math.ceil(self.size / self.world_size) / self.batch_size)

    def __iter__(self):
        epoch = self.epoch
        mine = self.order(epoch)
        start = self._skip.pop(epoch, 0)
        for b in range(start, len(self)):
            yield [(epoch, i) for i in mine[b * self.batch_size:(b + 1) * self.batch_size]]


class ShardSampler(Sampler):
    """Rank ``rank``'s frames, in order, for evaluation (padding duplicates are harmless:
    detections are gathered into a dict keyed by frame id)."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1):
        self.indices = shard(list(range(size)), rank, world_size) if size else []

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


class MixedEpochBatchSampler(EpochBatchSampler):
    """Batches of ``(epoch, index)`` keys over labeled frames 0 .. L-1 and unlabeled frames
    L .. L+U-1 (monokd.data.unlabeled.MixedDataset).

    Batch b of an epoch holds ``unlabeled_per_batch(b, batch_size, share)`` unlabeled frames
    and labeled ones for the rest; an epoch is one pass over this rank's labeled frames (in
    EpochBatchSampler's order), so its length does not depend on U. The unlabeled frames
    come from permutations seeded by (seed, epoch, pass, rank), taken in turn: every frame is
    seen once before any is seen again on a rank (ranks draw their own permutations rather
    than shards). Resuming skips the batches already trained on, as the
    parent does.
    """

    def __init__(self, labeled: int, unlabeled: int, batch_size: int, share: float, seed: int,
                 rank: int = 0, world_size: int = 1):
        super().__init__(labeled, batch_size, seed, rank, world_size)
        if unlabeled == 0 and share > 0:
            raise ValueError("MixedEpochBatchSampler: no unlabeled frames to draw")
        self.unlabeled = unlabeled
        self.share = share

    def batches(self, epoch: int) -> list[list[int]]:
        """The index lists of every batch of ``epoch`` on this rank."""
        labeled = self.order(epoch)
        drawn: list[int] = []
        out, start, passes = [], 0, 0
        while start < len(labeled):
            extra = unlabeled_per_batch(len(out), self.batch_size, self.share)
            take = self.batch_size - extra
            while len(drawn) < extra:
                passes += 1
                permutation = np.random.default_rng(sample_seed(self.seed, epoch, passes, self.rank + 1))
                drawn.extend(int(i) + self.size for i in permutation.permutation(self.unlabeled))
            out.append(labeled[start:start + take] + drawn[:extra])
            drawn, start = drawn[extra:], start + take
        return out

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

    def __iter__(self):
        epoch = self.epoch
        start = self._skip.pop(epoch, 0)
        for batch in self.batches(epoch)[start:]:
            yield [(epoch, i) for i in batch]
