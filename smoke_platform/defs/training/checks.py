"""Blocking checks: no leakage into the features, disjoint sessions, and the model bars;
and a warning when the champion misses the targets on real readings."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from smoke_platform.core.features import FORBIDDEN_FEATURES
from smoke_platform.core.metrics import REAL_FIGURES
from smoke_platform.core.modeling import LABEL, CandidateResult
from smoke_platform.defs.common.resources import TrainingSettingsResource
from smoke_platform.defs.training.assets import (
    HOLDOUT,
    NOT_FEATURES,
    best_candidate,
    candidate_models,
    model_features,
    smoke_classifier,
    training_dataset,
)


@dg.asset_check(asset=training_dataset, blocking=True)
def training_dataset_no_leakage_features(training_dataset: pd.DataFrame) -> dg.AssetCheckResult:
    """UTC/ts, CNT, row index, sensor and session ids are never model features: none is in
    the dataset beside the label, the split and the meta columns carried for grouping."""
    leaked = sorted(
        f
        for f in training_dataset.columns
        if f not in NOT_FEATURES and f.lower() in FORBIDDEN_FEATURES
    )
    return dg.AssetCheckResult(
        passed=not leaked,
        description=(
            f"feature column(s) {leaked} identify the session or the clock (never allowed: "
            f"{sorted(FORBIDDEN_FEATURES)})"
            if leaked
            else "no session identifier or clock among the features"
        ),
        metadata={"features": dg.MetadataValue.json(model_features(training_dataset))},
    )


@dg.asset_check(asset=training_dataset, blocking=True)
def training_dataset_sessions_disjoint(training_dataset: pd.DataFrame) -> dg.AssetCheckResult:
    """No session is in both train and holdout, and the holdout has fires and non-fires."""
    split = training_dataset.groupby("session_id")[HOLDOUT].nunique()
    shared = split[split > 1].index.tolist()
    labels = set(training_dataset.loc[training_dataset[HOLDOUT], LABEL].unique())
    problems = []
    if shared:
        problems.append(f"{len(shared)} session(s) in both train and holdout, e.g. {shared[:5]}")
    if labels != {0, 1}:
        problems.append(f"holdout labels are {sorted(labels)}; both 0 and 1 are needed")
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(problems) or "train and holdout sessions are disjoint",
    )


BARS = ("recall", "false_alarm_rate", "detection_latency")


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            f"challenger_{bar}",
            asset=candidate_models,
            blocking=True,
            description=f"the best candidate meets the {bar.replace('_', ' ')} bar on the holdout",
        )
        for bar in BARS
    ],
)
def challenger_bars(
    training: TrainingSettingsResource, candidate_models: dict[str, CandidateResult]
) -> Iterator[dg.AssetCheckResult]:
    """The challenger must meet every bar before the promotion gate even looks at it."""
    challenger = best_candidate(candidate_models)
    for bar, (passed, text) in training.bars().evaluate(challenger.holdout).items():
        yield dg.AssetCheckResult(
            check_name=f"challenger_{bar}",
            passed=passed,
            description=f"{challenger.name}: {text}",
            metadata={"challenger": challenger.name},
        )


@dg.asset_check(asset=smoke_classifier)
def champion_meets_the_real_reference_targets(smoke_classifier: dict) -> dg.AssetCheckResult:
    """The champion (after the gate) on real readings: recall >= 0.75, false alarms <= 2 %,
    ROC-AUC >= 0.90, no alert on a normal excerpt (a warning)."""
    from smoke_platform.reference import Targets, shortfalls

    champion = smoke_classifier["champion_real"]
    if champion is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="no champion to judge: materialise smoke_classifier first",
        )
    missed = shortfalls(champion, Targets())
    return dg.AssetCheckResult(
        passed=not missed,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(missed) or "all real-reading targets met",
        metadata={k: float(champion[k]) for k in REAL_FIGURES},
    )
