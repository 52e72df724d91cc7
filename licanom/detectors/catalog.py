"""The registry's entries: each family's names and how a detector is built from the settings."""

from __future__ import annotations

from typing import Any

from licanom.detectors.registry import DetectorSpec, Settings, register

# The names, here rather than read from the families' modules, so that looking a name up never
# imports torch or Lightning (a context model's night does not need them); a test keeps these
# equal to the families' own lists.
AUTOENCODERS: tuple[str, ...] = ("LSTM_AE", "LSTM_AE_Small", "LSTM_AE_Deep", "LSTM_AE_Deep2", "TCN_AE", "TCN_AE2",
                                 "TCN_AE_Small", "TCN_AE_Small2")
ERGEN_MODELS: tuple[str, ...] = ("LSTM_OCSVM", "LSTM_SVDD", "GRU_OCSVM", "GRU_SVDD")
NEXT_EVENT_MODELS: tuple[str, ...] = ("DeepLog",)
CONTEXT_MODELS: tuple[str, ...] = ("Tail_context", "IForest_context", "LOF_context")
BASELINES: tuple[str, ...] = ("IForest_summary", "IForest_flat", "LOF_summary", "LOF_flat")


def _autoencoder(name: str, s: Settings, **extra: Any) -> Any:
    from licanom.data.encode import input_mode
    from licanom.detectors.autoencoders.detector import AutoencoderDetector

    t, d = s.train, s.detect
    return AutoencoderDetector(
        model=name, inputs=input_mode(s.encode.encoder), threshold=d.threshold, threshold_params=tuple(sorted(d.threshold_params.items())),
        epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, val_fraction=t.val_fraction, patience=t.patience,
        seed=t.seed, threads=t.threads, m1_max_rounds=d.m1_max_rounds, **extra,
    )


def _sequence(name: str, s: Settings, **extra: Any) -> Any:
    from licanom.detectors.sequence.detector import NEXT_EVENT_MODELS, SequenceDetector

    seq, t = s.sequence, s.train
    extra.pop("checkpoint_dir", None)  # the sequence models train in one go
    if name in NEXT_EVENT_MODELS:
        from licanom.data.columns import FEATURES
        from licanom.detectors.sequence.sessions import EVENT_COLUMNS
        from licanom.detectors.sequence.deeplog import DeepLogDetector

        # per-key steps: the State's categories are the event; on thesis chunks, success and action
        # (and nothing else: the chunks' other columns are identity indices)
        from licanom.data.encode import input_mode

        if seq.mode == "chunks" and input_mode(s.encode.encoder) != "thesis":
            raise ValueError(f"{name} on chunks reads the thesis's success and action columns: set "
                             "encode.encoder: thesis, or sequence.mode: key (or key-machine)")
        events = EVENT_COLUMNS if seq.mode != "chunks" else (FEATURES.index("success"), FEATURES.index("action"))
        return DeepLogDetector(
            model=name, window=seq.window, top_g=seq.top_g, hidden=seq.next_event_hidden, top_g_end=seq.top_g_end,
            validation=seq.next_event_validation, validation_fpr=seq.next_event_validation_fpr,
            epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, event_columns=events,
            extra_columns=None if seq.mode != "chunks" else (), contamination=seq.contamination,
            seed=t.seed, threads=t.threads, **extra,
        )
    pooling = seq.pooling or ("mean-max" if seq.mode == "chunks" else "max")
    return SequenceDetector(
        model=name, solver=seq.solver, hidden=seq.hidden, pooling=pooling, lam=seq.lam, tau=seq.tau,
        epochs=t.epochs, lr=seq.lr,
        batch_size=t.batch_size, labeled_weight=seq.labeled_weight, contamination=seq.contamination,
        seed=t.seed, threads=t.threads, **extra,
    )


def _context(name: str, s: Settings, **extra: Any) -> Any:
    from licanom.config import AUTO
    from licanom.detectors.context import ContextDetector

    ctx, t = s.context, s.train
    extra.pop("checkpoint_dir", None)
    extra.pop("progress_bar", None)
    if ctx.threshold == AUTO:
        raise ValueError("context.threshold is auto, which depends on the vendor's size: resolve it first "
                         "(Config.for_size, or ContextConfig.resolved)")
    return ContextDetector(model=name, threshold=ctx.threshold,
                           threshold_params=tuple(sorted(ctx.threshold_params.items())),
                           n_estimators=ctx.n_estimators, n_neighbors=ctx.n_neighbors,
                           tail_quantile=ctx.tail_quantile, seed=t.seed, m1_max_rounds=s.detect.m1_max_rounds,
                           **extra)


def _baseline(name: str, s: Settings, **extra: Any) -> Any:
    from licanom.detectors.baselines import SklearnDetector

    kind, inputs = name.split("_")
    extra.pop("checkpoint_dir", None)
    extra.pop("progress_bar", None)
    return SklearnDetector(model=name, kind="iforest" if kind == "IForest" else "lof",
                           scale=kind == "LOF" and inputs == "summary", seed=s.train.seed,
                           threshold=s.detect.threshold, **extra)


def _ae_cls() -> Any:
    from licanom.detectors.autoencoders.detector import AutoencoderDetector

    return AutoencoderDetector


def _seq_cls() -> Any:
    from licanom.detectors.sequence.detector import SequenceDetector

    return SequenceDetector


def _deeplog_cls() -> Any:
    from licanom.detectors.sequence.deeplog import DeepLogDetector

    return DeepLogDetector


def _ctx_cls() -> Any:
    from licanom.detectors.context import ContextDetector

    return ContextDetector


def _base_cls() -> Any:
    from licanom.detectors.baselines import SklearnDetector

    return SklearnDetector


def register_all() -> None:
    for name in AUTOENCODERS:
        register(DetectorSpec(name, "autoencoder", "chunks", _autoencoder, _ae_cls,
                              "the thesis's autoencoder (Appendix B) on the chunks' rows",
                              score="reconstruction error (MAE)", loss="MAE"))
    for name in (*ERGEN_MODELS, *NEXT_EVENT_MODELS):
        if name in NEXT_EVENT_MODELS:
            register(DetectorSpec(name, "sequence", "chunks", _sequence, _deeplog_cls,
                                  "DeepLog's next-event LSTM on per-key sequences (or the chunks' actions)",
                                  score="next-event miss margin (largest step outside the top g)",
                                  loss="cross-entropy"))
        else:
            boundary = ("squared distance beyond the SVDD sphere" if name.endswith("SVDD")
                        else "margin beyond the one-class SVM boundary")
            register(DetectorSpec(name, "sequence", "chunks", _sequence, _seq_cls,
                                  "LSTM/GRU + OC-SVM/SVDD (Ergen and Kozat) on the chunks or per-key sequences",
                                  score=boundary, loss="objective"))
    for name in CONTEXT_MODELS:
        register(DetectorSpec(name, "context", "context", _context, _ctx_cls,
                              "what each chunk's keys, machines and addresses did around it",
                              score=_OUTLIER_SCORE[name.split("_")[0]] + " of the context vector"))
    for name in BASELINES:
        kind, inputs = name.split("_")
        register(DetectorSpec(name, "classical", inputs, _baseline, _base_cls,
                              "scikit-learn's IsolationForest or LocalOutlierFactor, a baseline",
                              score=f"{_OUTLIER_SCORE[kind]} of the "
                                    + ("summary vector" if inputs == "summary" else "flattened chunk")))


# What a context or classical model's score is, by its estimator.
_OUTLIER_SCORE = {"Tail": "summed surprisal (nats)", "IForest": "isolation score", "LOF": "local outlier factor"}
