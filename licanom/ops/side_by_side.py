"""One variant's fit in a process of its own (``train.parallel``; :func:`licanom.ops.training.fit_side_by_side`).

Kept apart from :mod:`licanom.ops.training` so that a fresh process imports only what a fit needs (not
MLflow), and is handed only the variant's inputs (not the vendor's log).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from licanom.config import Config
from licanom.ops.detect import ModelOutcome, evaluate_model, make_detector


def one_thread() -> None:
    """A side-by-side process's start: one torch thread (the other variants have the others)."""
    import torch

    torch.set_num_threads(1)


def fit(cfg: Config, model: str, X: Any, test_mask: np.ndarray, checkpoint_dir: str,
        days: np.ndarray | None = None) -> ModelOutcome:
    """Fit ``model`` on its inputs ``X`` as :func:`licanom.ops.training.train_variant` does (its settings,
    its checkpoints, the chunks' ``days``) and score them."""
    detector = make_detector(model, cfg.train, cfg.detect, cfg.sequence, cfg.context, cfg.encode,
                             checkpoint_dir=checkpoint_dir)
    return evaluate_model(detector, X, test_mask, cfg.detect, days=days)
