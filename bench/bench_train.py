"""Training time at the default data size: every candidate, grouped CV, holdout, leaky split."""

from __future__ import annotations

import time

from bench.common import report
from smoke_platform.core.modeling import (
    CANDIDATES,
    session_holdout,
    train_candidate,
    training_frame,
)
from smoke_platform.core.simulate import DEFAULT_ROWS, generate_readings

DEFAULT_CANDIDATES = [n for n in CANDIDATES if n != "prior_baseline"]


def run() -> None:
    frame = training_frame(generate_readings(DEFAULT_ROWS, seed=0))
    holdout = session_holdout(frame, 0.25, seed=0)
    total = 0.0
    for name in DEFAULT_CANDIDATES:
        started = time.perf_counter()
        result = train_candidate(name, frame, holdout, folds=4)
        seconds = time.perf_counter() - started
        total += seconds
        report(
            "train",
            f"{name}_seconds",
            seconds,
            "s",
            "4-fold grouped CV + fit + holdout + random split",
        )
        report("train", f"{name}_recall_at_far1", result.holdout["recall_at_far"], "ratio")
    report(
        "train",
        "seconds",
        total,
        "s",
        f"all {len(DEFAULT_CANDIDATES)} candidates, {DEFAULT_ROWS} rows",
    )
