"""The Lightning data module: KITTI-layout train/val sets, seeded and sharded loaders."""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from monokd.config import get, setting
from monokd.data.dataset import build_dataset, collate
from monokd.data.unlabeled import MixedDataset, unlabeled_options
from monokd.training.sampling import EpochBatchSampler, MixedEpochBatchSampler, SeededDataset, ShardSampler
from monokd.training.validation import eval_batch_size


def default_collate() -> Callable:
    return collate


class KittiDataModule(L.LightningDataModule):
    """Loaders of ``data.train_split`` and ``data.val_split``.

    With ``data.unlabeled`` the training loader draws labeled and unlabeled frames together
    (MixedDataset, MixedEpochBatchSampler: an epoch is one pass over the labeled frames,
    ``data.unlabeled.share`` of each batch's frames unlabeled).

    Datasets and collate may be given directly (tests, custom data); otherwise they are
    built from ``cfg``. The data position of an interrupted epoch is part of the checkpoint
    (``state_dict``) so that a resumed run sees exactly the batches it had not trained on.
    """

    def __init__(self, cfg: dict, train_set: Dataset | None = None, val_set: Dataset | None = None,
                 collate_fn: Callable | None = None, unlabeled_set: Dataset | None = None):
        super().__init__()
        self.cfg = cfg
        self._train_set = train_set
        self._val_set = val_set
        self._unlabeled_set = unlabeled_set
        self._collate = collate_fn
        self._resume: dict | None = None
        self.train_sampler: EpochBatchSampler | None = None

    # -- datasets ---------------------------------------------------------------------------
    @property
    def collate_fn(self) -> Callable:
        if self._collate is None:
            self._collate = default_collate()
        return self._collate

    @property
    def train_set(self) -> Dataset:
        if self._train_set is None:
            self._train_set = build_dataset(self.cfg, setting(self.cfg, "data.train_split"), train=True)
        return self._train_set

    @property
    def unlabeled_set(self) -> Dataset | None:
        """The frames of ``data.unlabeled`` (monokd.data.unlabeled.UnlabeledDataset: the
        leakage guard runs when it is built); None without the section."""
        if self._unlabeled_set is None and get(self.cfg, "data.unlabeled") is not None:
            from monokd.data.unlabeled import UnlabeledDataset

            self._unlabeled_set = UnlabeledDataset(self.cfg)
        return self._unlabeled_set

    @property
    def val_set(self) -> Dataset:
        if self._val_set is None:
            self._val_set = build_dataset(self.cfg, setting(self.cfg, "data.val_split"), train=False)
        return self._val_set

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _workers(self) -> dict:
        workers = int(setting(self.cfg, "train.num_workers"))
        return {"num_workers": workers, "persistent_workers": False,
                "pin_memory": torch.cuda.is_available()} if workers else {"num_workers": 0}

    # -- loaders ----------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        seed = int(setting(self.cfg, "train.seed"))
        rank, world = self._rank_world()
        batch_size = int(setting(self.cfg, "train.batch_size"))
        dataset = self.train_set
        if self.unlabeled_set is not None:  # labeled frames 0 .. L-1, then the unlabeled ones
            share = float(unlabeled_options(get(self.cfg, "data.unlabeled"))["share"])
            sampler = MixedEpochBatchSampler(len(self.train_set), len(self.unlabeled_set), batch_size, share, seed,
                                             rank, world)
            dataset = MixedDataset(self.train_set, self.unlabeled_set)
        else:
            sampler = EpochBatchSampler(len(self.train_set), batch_size, seed, rank, world)
        if self._resume is not None:
            epoch, done = self._resume["epoch"], self._resume["batches_done"]
            if done >= len(sampler):
                epoch, done = epoch + 1, 0
            sampler.resume(epoch, done)
            self._resume = None
        self.train_sampler = sampler
        # A generator of its own keeps loader start-up from drawing on the global one.
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(SeededDataset(dataset, seed), batch_sampler=sampler,
                          collate_fn=self.collate_fn, generator=generator, **self._workers())

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        batch = eval_batch_size(self.cfg)
        return DataLoader(self.val_set, batch_size=batch, sampler=ShardSampler(len(self.val_set), rank, world),
                          collate_fn=self.collate_fn, **self._workers())

    # -- resume -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        module = self.trainer.lightning_module if self.trainer is not None else None
        return {"epoch": int(self.trainer.current_epoch) if self.trainer is not None else 0,
                "batches_done": int(getattr(module, "batches_done", 0))}

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state)
