"""Variable-length sequences as one checked container, batched by similar length.

``X`` is either a list of float arrays ``(n_i, p)`` (``n_i ≥ 1`` may differ) or one array
``(n, T, p)`` of fixed chunks. A batch is zero-padded (after each sequence's end) to its longest
member and carries the true lengths; the encoder pools over the real steps only.
Sorting by length before cutting batches keeps the padding (and so the wasted work) small.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence as SequenceABC

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset, Sampler

BUCKET = 16  # batches per bucket when shuffling for training


class Sequences:
    """Checked float32 sequences; ``batch(idx)`` -> padded ``(b, T_max, p)`` and lengths ``(b,)``."""

    def __init__(self, X: np.ndarray | SequenceABC[np.ndarray], n_features: int | None = None) -> None:
        self.dense: Tensor | None = None
        self.items: list[Tensor] = []
        if isinstance(X, np.ndarray) and X.dtype != object:
            if X.ndim != 3:
                raise ValueError(
                    f"X must be an array (n, T, n_features) or a list of (n_i, n_features) arrays, got shape {X.shape}"
                )
            arrays: list[np.ndarray] | None = None
            dense = np.asarray(X, dtype=np.float32)
        elif isinstance(X, (list, tuple)) or (isinstance(X, np.ndarray) and X.dtype == object):
            arrays = [np.asarray(x, dtype=np.float32) for x in X]
            dense = None
        else:
            raise ValueError(
                f"X must be a list of (n_i, n_features) arrays or an (n, T, n_features) array, got {type(X).__name__}"
            )
        if dense is not None:
            if dense.shape[0] == 0:
                raise ValueError("X holds no sequences")
            if dense.shape[1] == 0:
                raise ValueError("X has sequences of length 0")
            self._check_values(dense, n_features, dense.shape[2])
            self.dense = torch.from_numpy(np.ascontiguousarray(dense))
            self.lengths = np.full(dense.shape[0], dense.shape[1], dtype=np.int64)
            self.n_features = int(dense.shape[2])
            return
        assert arrays is not None
        if not arrays:
            raise ValueError("X holds no sequences")
        widths = set()
        for i, a in enumerate(arrays):
            if a.ndim != 2:
                raise ValueError(f"sequence {i} must have shape (n_i, n_features), got {a.shape}")
            if a.shape[0] == 0:
                raise ValueError(f"sequence {i} has no steps")
            widths.add(a.shape[1])
        if len(widths) > 1:
            raise ValueError(f"the sequences have different feature counts: {sorted(widths)}")
        width = widths.pop()
        for a in arrays:
            self._check_values(a, n_features, width)
        self.lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        self.n_features = int(width)
        if (self.lengths == self.lengths[0]).all():  # equal lengths: one dense tensor is faster
            self.dense = torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))
        else:
            self.items = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]

    @staticmethod
    def _check_values(a: np.ndarray, n_features: int | None, width: int) -> None:
        if n_features is not None and width != n_features:
            raise ValueError(f"X has {width} features per step, the model was fitted on {n_features}")
        if width == 0:
            raise ValueError("X has 0 features per step")
        if not np.isfinite(a).all():
            raise ValueError("X holds NaN or infinite values")

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, idx: np.ndarray | SequenceABC[int]) -> tuple[Tensor, Tensor]:
        """Padded batch ``(b, max length, p)`` float32 and lengths ``(b,)`` int64 (CPU)."""
        idx = np.asarray(idx, dtype=np.int64)
        lengths = torch.from_numpy(self.lengths[idx])
        if self.dense is not None:
            return self.dense[torch.from_numpy(idx)], lengths
        return pad_sequence([self.items[i] for i in idx], batch_first=True), lengths


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Index batches of similar length.

    Without ``rng``: all indices sorted by length, cut into consecutive batches (for scoring).
    With ``rng``: a random permutation cut into buckets of ``BUCKET`` batches, each bucket
    sorted by length and cut, and the batches shuffled (for training: random, but little padding).
    """
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[s:s + batch_size] for s in range(0, n, batch_size)]
    perm = rng.permutation(n)
    span = batch_size * BUCKET
    batches = []
    for s in range(0, n, span):
        bucket = perm[s:s + span]
        bucket = bucket[np.argsort(lengths[bucket], kind="stable")]
        batches.extend(bucket[k:k + batch_size] for k in range(0, len(bucket), batch_size))
    return [batches[k] for k in rng.permutation(len(batches))]


class BucketBatchSampler(Sampler[list[int]]):
    """Yields :func:`length_batches` with a fresh, seeded shuffle each epoch."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.epoch = 0

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for b in length_batches(self.lengths, self.batch_size, rng):
            yield b.tolist()

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


class TrainingSet(Dataset[tuple[Tensor, Tensor, Tensor, Tensor]]):
    """Whole batches ``(x, lengths, y, weight)`` gathered at once (``__getitems__``, no collate)."""

    def __init__(self, data: Sequences, y: np.ndarray, weight: np.ndarray) -> None:
        self.data = data
        self.y = torch.as_tensor(y, dtype=torch.float32)
        self.weight = torch.as_tensor(weight, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.__getitems__([i])

    def __getitems__(self, idx: SequenceABC[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x, lengths = self.data.batch(np.asarray(idx))
        t = torch.as_tensor(idx)
        return x, lengths, self.y[t], self.weight[t]


def whole_batch(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """``collate_fn`` for :class:`TrainingSet`: the batch is already assembled."""
    return batch
