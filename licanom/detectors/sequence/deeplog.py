"""DeepLog's next-event model (Du, Li, Zheng & Srikumar, CCS 2017) for per-key sequences.

    det = DeepLogDetector(window=10, top_g=9, event_columns=EVENT_COLUMNS).fit(X)
    det.decision_function(X)   # (n,) higher = more anomalous; > 0: some step outside the top g
    det.predict(X)             # (n,) int8, 1 where the score exceeds det.threshold_
    det.step_scores(X)         # per sequence, one margin per predicted step (and the end)

An LSTM reads the last ``window`` steps of a sequence and predicts the next step's *event*;
a step whose event is not among the ``top_g`` most likely is a miss, and a sequence with a miss
is anomalous (DeepLog's rule). ``X`` is a list of float arrays ``(n_i, p)``, as for the other
sequence models. The event of a step is the tuple of its ``event_columns`` values (for per-key
sequences the State's group, outcome and detail: licanom.detectors.sequence.sessions.EVENT_COLUMNS); the events
seen in training form the model's vocabulary, so no identity is involved. The other columns
(the gap since the key's previous request, what is new to the key, ...) go in beside the
event's embedding.

Choices:

* Tokens: 0 = before the start (left padding, so the first ``window`` steps are predicted
  too), 1 = an event never seen in training, 2 = the end of the sequence (``end_token``: the
  model also predicts that a sequence stops, so a sequence cut short is a miss), then the known
  events. Only the end and known events are ever predicted.
* A step's margin is ``log p(g-th most likely) − log p(actual)``: positive exactly when the
  actual event is outside the top g (a miss), and a step whose event was never seen in
  training gets ``UNSEEN_MARGIN``. A sequence's score is its largest margin, so DeepLog's
  "any miss" rule is ``score > 0`` and the score still ranks sequences for AUROC.
* ``threshold_``: the rule's boundary 0 unless ``contamination`` is set (then at most that
  share of training sequences lies above); in both cases between two distinct training
  scores (licanom.detectors.sequence.decide).
* The end of a sequence has its own candidates (``top_g_end``; None: ``top_g``): whether a
  sequence stops here is a different question from which event comes next, and on HDFS normal
  sessions end at the model's 5th choice while sessions cut short end at its 7th.
* ``validation`` > 0 holds that share of the training sequences out of training (seeded) and
  chooses g on them: the smallest ``g`` (and ``g_end``) whose misses flag at most
  ``validation_fpr`` of the held-out sequences (events and ends counted apart, each within the
  budget; an event never seen in training is a miss at any g). The held-out sequences are
  normal by assumption, as the training ones are; the chosen values are ``g_`` and ``g_end_``.
  Without it ``g_`` = ``top_g`` and ``g_end_`` = ``top_g_end`` (or ``top_g``).
* Training sees each distinct (window, next event) pair once, weighted by how often it occurs
  (logs repeat: HDFS's sessions, a key's heartbeat), so an epoch costs the distinct windows,
  not all of them; the loss is the weighted mean cross-entropy. Adam, a fixed number of epochs
  (``converged_`` is None: no claim is made). Sequences labelled anomalous (y = -1) are left
  out of training.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from licanom.detectors.base import BaseDetector
from licanom.detectors.autoencoders.detector import (_quiet_lightning, _threads, fit_interruptible, load_payload,
                                                     save_payload)
from licanom.detectors.sequence.data import Sequences
from licanom.detectors.sequence.decide import Convergence, tie_safe_threshold
from licanom.detectors.sequence.detector import SAVE_FORMAT, TrainingHistory

log = logging.getLogger(__name__)
PAD, UNSEEN, END = 0, 1, 2
N_SPECIAL = 3
UNSEEN_MARGIN = 100.0
SCORE_BATCH = 4096
BLOCK_STEPS = 100_000  # predicted steps windowed at once when scoring


class NextEventNet(nn.Module):
    """Event embedding + other step columns -> stacked LSTM -> logits of the next event."""

    def __init__(self, n_tokens: int, n_extra: int, embedding: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.n_tokens, self.n_extra = n_tokens, n_extra
        self.embed = nn.Embedding(n_tokens, embedding, padding_idx=PAD)
        self.rnn = nn.LSTM(embedding + n_extra, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, n_tokens)

    def features(self, tokens: Tensor, extra: Tensor) -> Tensor:
        """The top layer's state after the window ``(b, hidden)``."""
        x = self.embed(tokens)
        if self.n_extra:
            x = torch.cat([x, extra], dim=2)
        out, _ = self.rnn(x)
        return out[:, -1]

    def forward(self, tokens: Tensor, extra: Tensor) -> Tensor:
        return self.out(self.features(tokens, extra))


class NextEventModule(L.LightningModule):
    """Weighted cross-entropy of the next event; ``train/loss`` per epoch (kept in ``history``)."""

    def __init__(self, net: NextEventNet, lr: float) -> None:
        super().__init__()
        self.net, self.lr = net, lr
        self.history: list[float] = []
        self.seconds: list[float] = []
        self._t0, self._sum, self._weight = 0.0, 0.0, 0.0

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        tokens, extra, target, weight = batch
        per = nn.functional.cross_entropy(self.net(tokens, extra), target, reduction="none")
        loss = (weight * per).sum() / weight.sum()
        self._sum += float((weight * per).sum().detach())
        self._weight += float(weight.sum())
        return loss

    def on_train_epoch_start(self) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        mean = self._sum / max(self._weight, 1e-12)
        self.history.append(mean)
        self.seconds.append(time.perf_counter() - self._t0)
        self._sum, self._weight = 0.0, 0.0
        self.log("train/loss", mean, on_step=False, on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)


@dataclass(frozen=True)
class _Windows:
    """Every predicted step of a set of sequences: its window of tokens and extra columns, the
    target token, and which sequence it belongs to; ``inverse`` maps each to its distinct row."""

    tokens: np.ndarray      # (w, window) int64, distinct windows
    extra: np.ndarray       # (w, window, n_extra) float32
    target: np.ndarray      # (w,) int64
    count: np.ndarray       # (w,) how often each distinct (window, target) occurs
    inverse: np.ndarray     # (N,) distinct row of every predicted step
    owner: np.ndarray       # (N,) sequence of every predicted step


@dataclass
class DeepLogDetector(BaseDetector):
    """DeepLog's next-event LSTM in the PyOD style (see the module docstring).

    Settings: window (h), top_g (g), hidden and layers of the LSTM, embedding (event vector
    size), epochs, lr (Adam), batch_size, event_columns (None: every column is the event),
    extra_columns (the other inputs; None: every column not in the event), end_token, contamination, seed, threads, accelerator, progress_bar, loggers.
    """

    family: ClassVar[str] = "sequence"
    reads: ClassVar[str] = "chunks"  # or per-entity sequences (licanom.detectors.sequence.sessions), of any length

    model: str = "DeepLog"
    window: int = 10
    top_g: int = 9
    hidden: int = 64
    layers: int = 2
    embedding: int = 16
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 256
    event_columns: tuple[int, ...] | None = None
    extra_columns: tuple[int, ...] | None = None
    end_token: bool = True
    top_g_end: int | None = None
    validation: float = 0.0
    validation_fpr: float = 0.002
    contamination: float | None = None
    seed: int = 0
    threads: int | None = None
    accelerator: str = "cpu"
    progress_bar: bool = False
    loggers: tuple[Any, ...] = field(default=(), repr=False)

    net_: NextEventNet | None = field(default=None, init=False, repr=False)
    n_features_: int | None = field(default=None, init=False)
    events_: np.ndarray | None = field(default=None, init=False, repr=False)  # (n_events, n_event_columns)
    decision_scores_: np.ndarray | None = field(default=None, init=False, repr=False)
    threshold_: float | None = field(default=None, init=False)
    labels_: np.ndarray | None = field(default=None, init=False, repr=False)
    history_: TrainingHistory | None = field(default=None, init=False, repr=False)
    converged_: bool | None = field(default=None, init=False)
    convergence_: Convergence | None = field(default=None, init=False, repr=False)
    g_: int | None = field(default=None, init=False)       # the candidates of an event in use
    g_end_: int | None = field(default=None, init=False)   # the candidates of the end in use
    n_validation_: int = field(default=0, init=False)      # training sequences held out to choose them
    # per held-out sequence: the worst rank of its events' and of its end's actual token (inf: unseen)
    held_ranks_: np.ndarray | None = field(default=None, init=False, repr=False)

    # --- the event vocabulary and windows -------------------------------------------------
    def _columns(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        ev = np.arange(p) if self.event_columns is None else np.asarray(self.event_columns, dtype=np.int64)
        if ev.size == 0 or ev.min() < 0 or ev.max() >= p or len(set(ev.tolist())) != ev.size:
            raise ValueError(f"event_columns must be distinct column positions in 0..{p - 1}, got {self.event_columns}")
        if self.extra_columns is None:
            return ev, np.setdiff1d(np.arange(p), ev)
        extra = np.asarray(self.extra_columns, dtype=np.int64).reshape(-1)
        if extra.size and (extra.min() < 0 or extra.max() >= p or np.isin(extra, ev).any()):
            raise ValueError(f"extra_columns must be column positions in 0..{p - 1} outside event_columns, "
                             f"got {self.extra_columns}")
        return ev, extra

    def _tokens(self, steps: np.ndarray, ev: np.ndarray) -> np.ndarray:
        """Token of every step: its event's place in ``events_`` + N_SPECIAL, else UNSEEN."""
        assert self.events_ is not None
        rows = np.ascontiguousarray(steps[:, ev])
        known = np.ascontiguousarray(self.events_)
        both = np.concatenate([known, rows])
        _, inv = np.unique(both, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        lookup = np.full(inv.max() + 1, UNSEEN, dtype=np.int64)
        lookup[inv[: len(known)]] = np.arange(len(known)) + N_SPECIAL
        return lookup[inv[len(known):]]

    def _windows(self, data: Sequences, X: list[np.ndarray], ev: np.ndarray, other: np.ndarray) -> _Windows:
        h = self.window
        steps = np.concatenate(X)
        tokens = self._tokens(steps, ev)
        extra = steps[:, other].astype(np.float32)
        lengths = data.lengths
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        n_pred = lengths + (1 if self.end_token else 0)
        N = int(n_pred.sum())
        owner = np.repeat(np.arange(len(lengths)), n_pred)
        j = np.arange(N) - np.repeat(np.concatenate([[0], np.cumsum(n_pred)[:-1]]), n_pred)  # position predicted
        base = offsets[owner]
        # the window of position j: steps j-h..j-1 of its sequence, -1 before the start
        k = j[:, None] - h + np.arange(h)[None, :]
        idx = np.where(k >= 0, base[:, None] + k, -1)
        tok_pad = np.concatenate([tokens, [PAD]])
        ext_pad = np.concatenate([extra, np.zeros((1, extra.shape[1]), np.float32)])
        w_tok = tok_pad[idx]
        w_ext = ext_pad[idx]
        at_end = j >= lengths[owner]
        target = np.where(at_end, END, tokens[np.minimum(base + j, len(tokens) - 1)])
        key = np.concatenate([w_tok.astype(np.float64), w_ext.reshape(N, -1).astype(np.float64),
                              target[:, None].astype(np.float64)], axis=1)
        _, first, inverse, count = np.unique(key, axis=0, return_index=True, return_inverse=True, return_counts=True)
        return _Windows(tokens=w_tok[first], extra=w_ext[first], target=target[first], count=count,
                        inverse=inverse.reshape(-1), owner=owner)

    # --- training -----------------------------------------------------------------------
    def fit(self, X: Any, y: np.ndarray | None = None) -> DeepLogDetector:
        """Train on sequences ``X``; ``y`` (optional, (n,)): sequences at -1 are left out."""
        self._check_settings()
        data = Sequences(X)
        seqs = _as_list(data)
        if y is not None:
            y = np.asarray(y)
            if y.shape != (len(seqs),) or not np.isin(y, (-1, 0, 1)).all():
                raise ValueError(f"y must have shape ({len(seqs)},) and hold +1, -1 or 0")
        keep = np.ones(len(seqs), dtype=bool) if y is None else (y != -1)
        if not keep.any():
            raise ValueError("every training sequence is labelled anomalous: nothing to learn normal behaviour from")
        held = np.zeros(len(seqs), dtype=bool)
        if self.validation > 0:
            usable = np.flatnonzero(keep)
            n_val = int(round(self.validation * len(usable)))
            if n_val < 1 or n_val >= len(usable):
                raise ValueError(f"validation {self.validation} of {len(usable)} training sequences holds out "
                                 f"{n_val}: at least one must be held out and one left to train on")
            held[np.random.default_rng(self.seed).permutation(usable)[:n_val]] = True
            keep = keep & ~held
        ev, other = self._columns(data.n_features)
        train = [s for s, k in zip(seqs, keep, strict=True) if k]
        self.events_ = np.unique(np.concatenate(train)[:, ev], axis=0)
        n_tokens = N_SPECIAL + len(self.events_)
        torch.manual_seed(self.seed)
        net = NextEventNet(n_tokens, len(other), self.embedding, self.hidden, self.layers)
        windows = self._windows(Sequences(train), train, ev, other)
        with _threads(self.threads):
            module = self._train(net, windows)
        self.net_ = net.cpu().eval()
        self.n_features_ = data.n_features
        self.g_, self.g_end_ = self.top_g, (self.top_g_end or self.top_g)
        self.n_validation_ = int(held.sum())
        if held.any():
            self.held_ranks_ = self._held_ranks([s for s, h in zip(seqs, held, strict=True) if h])
            self.g_, self.g_end_ = self.choose_g()
        self.history_ = TrainingHistory(tuple(module.history), tuple(module.seconds), None)
        self.convergence_ = Convergence(None, f"fixed {self.epochs} epochs (Adam); no convergence test", self.epochs)
        self.converged_ = None
        self.decision_scores_ = self._scores(data, seqs)
        self.threshold_ = tie_safe_threshold(self.decision_scores_, self.contamination)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int8)
        return self

    def _check_settings(self) -> None:
        if self.model != "DeepLog":
            raise ValueError(f"unknown model {self.model!r}; valid: DeepLog")
        if min(self.window, self.top_g, self.hidden, self.layers, self.embedding, self.epochs, self.batch_size) < 1:
            raise ValueError("window, top_g, hidden, layers, embedding, epochs and batch_size must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.top_g_end is not None and self.top_g_end < 1:
            raise ValueError(f"top_g_end must be >= 1 (or None: top_g), got {self.top_g_end}")
        if not 0.0 <= self.validation < 1.0 or not 0.0 <= self.validation_fpr < 1.0:
            raise ValueError(f"validation and validation_fpr must lie in [0, 1), got {self.validation}, {self.validation_fpr}")
        if self.contamination is not None and not 0.0 < self.contamination < 1.0:
            raise ValueError(f"contamination must be in (0, 1), got {self.contamination}")
        if self.accelerator not in ("cpu", "auto", "gpu", "cuda"):
            raise ValueError(f"unknown accelerator {self.accelerator!r}; valid: cpu, auto, gpu")

    def _train(self, net: NextEventNet, w: _Windows) -> NextEventModule:
        module = NextEventModule(net, self.lr)
        dataset = TensorDataset(torch.from_numpy(w.tokens), torch.from_numpy(w.extra),
                                torch.from_numpy(w.target), torch.from_numpy(w.count.astype(np.float32)))
        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=True, num_workers=0,
                            generator=torch.Generator().manual_seed(self.seed))
        gpu = self.accelerator != "cpu" and torch.cuda.is_available()
        quiet = _quiet_lightning()
        quiet.__enter__()
        try:
            trainer = L.Trainer(
                max_epochs=self.epochs, accelerator="gpu" if gpu else "cpu", devices=1,
                logger=list(self.loggers) if self.loggers else False, enable_checkpointing=False,
                enable_progress_bar=bool(self.progress_bar and sys.stderr.isatty()),
                enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, deterministic=False,
            )
            fit_interruptible(trainer, module, train_dataloaders=loader)
        finally:
            quiet.__exit__(None, None, None)
        return module

    # --- scoring ------------------------------------------------------------------------
    def _net(self) -> NextEventNet:
        if self.net_ is None:
            raise RuntimeError("this detector is not fitted yet: call fit() or load()")
        return self.net_

    def _blocks(self, seqs: list[np.ndarray]) -> list[tuple[int, int]]:
        """Consecutive ranges of sequences of about BLOCK_STEPS steps each (bounded memory)."""
        cuts, start, steps = [], 0, 0
        for i, s in enumerate(seqs):
            steps += len(s) + 1
            if steps >= BLOCK_STEPS:
                cuts.append((start, i + 1))
                start, steps = i + 1, 0
        if start < len(seqs):
            cuts.append((start, len(seqs)))
        return cuts

    def _margins(self, data: Sequences, seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Margin of every predicted step and the sequence it belongs to."""
        ev, other = self._columns(data.n_features)
        margins, owners = [], []
        for a, b in self._blocks(seqs):
            part = seqs[a:b]
            w = self._windows(Sequences(part), part, ev, other)
            margins.append(self._window_margins(w)[w.inverse])
            owners.append(w.owner + a)
        return np.concatenate(margins), np.concatenate(owners)

    def _candidates(self) -> int:
        """How many tokens can be predicted: END and the known events."""
        return self._net().n_tokens - N_SPECIAL + 1

    def _logp(self, w: _Windows, at: slice) -> tuple[Tensor, Tensor]:
        """For the distinct windows ``at``: the log-probabilities of the next token (PAD and
        UNSEEN never predicted; END only with ``end_token``) and the target tokens. Call under
        ``torch.inference_mode()``."""
        net = self._net()
        logits = net(torch.from_numpy(w.tokens[at]), torch.from_numpy(w.extra[at]))
        logits[:, :END] = -torch.inf
        if not self.end_token:
            logits[:, END] = -torch.inf
        return torch.log_softmax(logits.double(), dim=1), torch.from_numpy(w.target[at])

    def _window_margins(self, w: _Windows) -> np.ndarray:
        n = self._candidates()
        g = min(self.g_ or self.top_g, n)
        g_end = min(self.g_end_ or self.top_g_end or self.top_g, n)
        out = np.empty(len(w.target), dtype=np.float64)
        with torch.inference_mode(), _threads(self.threads):
            for s in range(0, len(w.target), SCORE_BATCH):
                at = slice(s, s + SCORE_BATCH)
                logp, target = self._logp(w, at)
                top = torch.topk(logp, max(g, g_end), dim=1).values
                gth = torch.where(target == END, top[:, g_end - 1], top[:, g - 1])
                actual = logp.gather(1, target.clamp(min=END).unsqueeze(1)).squeeze(1)
                margin = torch.where(target == UNSEEN, torch.full_like(gth, UNSEEN_MARGIN), gth - actual)
                out[at] = margin.numpy()
        return out

    def choose_g(self, validation_fpr: float | None = None) -> tuple[int, int]:
        """The smallest g for events and for ends whose misses flag at most ``validation_fpr``
        (None: the setting) of the held-out sequences; the most candidates when none does. Set
        ``g_`` and ``g_end_`` to the result to decide at another budget without retraining."""
        if self.held_ranks_ is None:
            raise RuntimeError("no training sequences were held out: fit with validation > 0")
        fpr = self.validation_fpr if validation_fpr is None else validation_fpr
        n = self._candidates()

        def smallest(ranks: np.ndarray) -> int:
            return next((g for g in range(1, n + 1) if (ranks > g).mean() <= fpr), n)

        return smallest(self.held_ranks_[0]), smallest(self.held_ranks_[1])

    def _held_ranks(self, held: list[np.ndarray]) -> np.ndarray:
        """``(2, len(held))``: per sequence, the worst rank among candidates of its events'
        actual tokens (inf for an event never seen in training), and of its end's."""
        ev, other = self._columns(self.n_features_ or held[0].shape[1])
        event_rank, end_rank = np.zeros(len(held)), np.zeros(len(held))
        for a, b in self._blocks(held):
            part = held[a:b]
            w = self._windows(Sequences(part), part, ev, other)
            rank = np.empty(len(w.target))
            with torch.inference_mode(), _threads(self.threads):
                for s in range(0, len(w.target), SCORE_BATCH):
                    at = slice(s, s + SCORE_BATCH)
                    logp, target = self._logp(w, at)
                    actual = logp.gather(1, target.clamp(min=END).unsqueeze(1))
                    r = (logp > actual).sum(dim=1).double() + 1
                    rank[at] = torch.where(target == UNSEEN, torch.full_like(r, np.inf), r).numpy()
            steps, is_end = rank[w.inverse], w.target[w.inverse] == END
            np.maximum.at(event_rank, w.owner + a, np.where(is_end, 0.0, steps))
            np.maximum.at(end_rank, w.owner + a, np.where(is_end, steps, 0.0))
        return np.stack([event_rank, end_rank])

    def _scores(self, data: Sequences, seqs: list[np.ndarray]) -> np.ndarray:
        margins, owner = self._margins(data, seqs)
        scores = np.full(len(seqs), -np.inf)
        np.maximum.at(scores, owner, margins)
        return scores

    def _data(self, X: Any) -> tuple[Sequences, list[np.ndarray]]:
        data = Sequences(X, n_features=self.n_features_ if self.net_ is not None else None)
        self._net()
        return data, _as_list(data)

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly score per sequence ``(n,)``: its largest step margin (> 0: a miss)."""
        return self._scores(*self._data(X))

    def step_scores(self, X: Any) -> list[np.ndarray]:
        """Per sequence, the margin of each step (and, with ``end_token``, of its end)."""
        data, seqs = self._data(X)
        margins, owner = self._margins(data, seqs)
        return np.split(margins, np.cumsum(np.bincount(owner, minlength=len(seqs)))[:-1])

    def misses(self, X: Any) -> np.ndarray:
        """Steps outside the top g per sequence ``(n,)`` int64 (DeepLog's count)."""
        return np.array([int((m > 0).sum()) for m in self.step_scores(X)], dtype=np.int64)

    def predict(self, X: Any) -> np.ndarray:
        """1 for sequences whose score exceeds ``threshold_``, else 0 (int8, ``(n,)``)."""
        if self.threshold_ is None:
            raise RuntimeError("this detector is not fitted yet: call fit() or load()")
        return (self.decision_function(X) > self.threshold_).astype(np.int8)

    def encode(self, X: Any) -> np.ndarray:
        """Per sequence, the mean over its windows of the LSTM's top state ``(n, hidden)``."""
        data, seqs = self._data(X)
        net = self._net()
        ev, other = self._columns(data.n_features)
        out = np.empty((len(seqs), self.hidden), dtype=np.float32)
        for a, b in self._blocks(seqs):
            part = seqs[a:b]
            w = self._windows(Sequences(part), part, ev, other)
            feats = np.empty((len(w.target), self.hidden), dtype=np.float32)
            with torch.inference_mode(), _threads(self.threads):
                for s in range(0, len(w.target), SCORE_BATCH):
                    feats[s:s + SCORE_BATCH] = net.features(torch.from_numpy(w.tokens[s:s + SCORE_BATCH]),
                                                            torch.from_numpy(w.extra[s:s + SCORE_BATCH])).numpy()
            sums = np.zeros((len(part), self.hidden), dtype=np.float64)
            np.add.at(sums, w.owner, feats[w.inverse])
            out[a:b] = sums / np.bincount(w.owner, minlength=len(part))[:, None]
        return out

    # --- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to one file (tensors and plain values only)."""
        net = self._net()
        assert self.events_ is not None and self.decision_scores_ is not None
        settings = {k: getattr(self, k) for k in (
            "model", "window", "top_g", "hidden", "layers", "embedding", "epochs", "lr", "batch_size",
            "end_token", "top_g_end", "validation", "validation_fpr", "contamination", "seed")}
        for name in ("event_columns", "extra_columns"):
            cols = getattr(self, name)
            settings[name] = None if cols is None else [int(c) for c in cols]
        history = self.history_ or TrainingHistory((), (), None)
        return save_payload({
            "format": SAVE_FORMAT, "settings": settings, "n_features": self.n_features_,
            "n_extra": net.n_extra, "state_dict": net.state_dict(),
            "events": torch.from_numpy(np.ascontiguousarray(self.events_)),
            "threshold": self.threshold_,
            "decision_scores": torch.from_numpy(np.asarray(self.decision_scores_, dtype=np.float64)),
            "history": {"objective": list(history.objective), "seconds": list(history.seconds)},
            "chosen": {"g": self.g_, "g_end": self.g_end_, "n_validation": self.n_validation_,
                       "held_ranks": None if self.held_ranks_ is None else torch.from_numpy(self.held_ranks_)},
        }, path)

    @classmethod
    def load(cls, path: str | Path) -> DeepLogDetector:
        payload = load_payload(path, SAVE_FORMAT)
        settings = dict(payload["settings"])
        for name in ("event_columns", "extra_columns"):
            if settings.get(name) is not None:
                settings[name] = tuple(settings[name])
        det = cls(**settings)
        det.events_ = payload["events"].numpy()
        net = NextEventNet(N_SPECIAL + len(det.events_), payload["n_extra"], det.embedding, det.hidden, det.layers)
        net.load_state_dict(payload["state_dict"])
        det.net_ = net.eval()
        det.n_features_ = payload["n_features"]
        det.threshold_ = payload["threshold"]
        det.decision_scores_ = payload["decision_scores"].numpy()
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(np.int8)
        h = payload["history"]
        det.history_ = TrainingHistory(tuple(h["objective"]), tuple(h["seconds"]), None)
        det.convergence_ = Convergence(None, f"fixed {det.epochs} epochs (Adam); no convergence test", det.epochs)
        chosen = payload.get("chosen") or {}  # absent from files written before g was chosen
        det.g_ = chosen.get("g", det.top_g)
        det.g_end_ = chosen.get("g_end", det.top_g_end or det.top_g)
        det.n_validation_ = chosen.get("n_validation", 0)
        det.held_ranks_ = None if chosen.get("held_ranks") is None else chosen["held_ranks"].numpy()
        return det


def _as_list(data: Sequences) -> list[np.ndarray]:
    """The sequences of ``data`` as float32 arrays (real steps only)."""
    if data.dense is not None:
        return [a.numpy() for a in data.dense]
    return [t.numpy() for t in data.items]
