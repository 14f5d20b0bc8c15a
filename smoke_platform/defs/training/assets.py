"""Training: session-aware dataset, candidate models, the promotion gate, the report."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from smoke_platform.core.explain import normal_profile
from smoke_platform.core.features import MODEL_FEATURES
from smoke_platform.core.metrics import HEADLINE, REAL_FIGURES, evaluate
from smoke_platform.core.modeling import (
    LABEL,
    META_COLUMNS,
    CandidateResult,
    operator_frame,
    promotion_decision,
    rank_key,
    real_eligible,
    session_holdout,
    train_candidate,
    training_frame,
)
from smoke_platform.core.outcomes import cap_per_sensor, is_operator, operator_figures
from smoke_platform.core.scoring import ScoringModel
from smoke_platform.defs.common.resources import (
    ModelStoreResource,
    PlatformSettingsResource,
    TrainingSettingsResource,
)
from smoke_platform.defs.ingest.assets import fingerprint
from smoke_platform.defs.monitoring.outcomes import CHAMPION_ALERTS, read_labels
from smoke_platform.reports.markdown import markdown_table, report_metadata

HOLDOUT = "holdout"
NOT_FEATURES = {*META_COLUMNS, LABEL, HOLDOUT}


def model_features(frame: pd.DataFrame) -> list[str]:
    """The columns of the training dataset a model learns from: the one list of model
    features (`MODEL_FEATURES`: no site-dependent reading, no sensor's raw baseline, see
    features.py), never a label, split or meta column."""
    return [c for c in MODEL_FEATURES if c in frame.columns and c not in NOT_FEATURES]


def headline(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The numbers worth a glance (and the model store's metadata)."""
    out: dict[str, float | None] = {k: round(float(metrics[k]), 6) for k in HEADLINE}
    out["median_latency_s"] = metrics["latency"]["median_s"]
    out["p90_latency_s"] = metrics["latency"]["p90_s"]
    out["missed_fire_sessions"] = metrics["latency"]["missed_sessions"]
    return out


def best_candidate(candidates: dict[str, CandidateResult]) -> CandidateResult:
    return max(candidates.values(), key=lambda c: rank_key(c.holdout))


@dg.asset(group_name="training", kinds={"pandas", "parquet"}, owners=["team:ml"])
def training_dataset(
    settings: PlatformSettingsResource,
    training: TrainingSettingsResource,
    raw_sensor_readings: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Features from the one feature function, labels, and a held-out set of whole sessions:
    the raw readings, and the readings operators labelled by resolving alerts as fire or
    false alarm (`operator_labels`; each alert one session, at most
    `SMOKE_OPERATOR_MAX_SENSOR_SHARE` of the rows from any one sensor). The labels are
    read, not a declared dependency: labels come from alerts of the model this dataset
    trains, a loop Dagster's graph cannot hold; `verdicts_sensor` closes it."""
    frame = training_frame(raw_sensor_readings)
    cap = max(1, int(training.operator_max_sensor_share * len(frame)))
    labels = cap_per_sensor(read_labels(settings), cap)
    if len(labels):
        ops = operator_frame(labels)
        ops["ts"] = _like(ops["ts"], frame["ts"])
        frame = pd.concat([frame, ops], ignore_index=True)
    frame[HOLDOUT] = session_holdout(frame, training.holdout_fraction, settings.seed).to_numpy()
    operator = is_operator(frame)
    test = frame[frame[HOLDOUT] & ~operator]
    return dg.Output(
        frame,
        metadata={
            "dagster/row_count": len(frame),
            "features": dg.MetadataValue.json(model_features(frame)),
            "train_sessions": int(frame.loc[~frame[HOLDOUT], "session_id"].nunique()),
            "holdout_sessions": int(test["session_id"].nunique()),
            "holdout_fire_share": float(test[LABEL].mean()),
            "operator_rows": int(operator.sum()),
            "operator_alerts": int(frame.loc[operator, "session_id"].nunique()),
            "operator_labels": dg.MetadataValue.json(
                {str(k): int(v) for k, v in frame.loc[operator, LABEL].value_counts().items()}
            ),
            "operator_holdout_alerts": int(
                frame.loc[operator & frame[HOLDOUT], "session_id"].nunique()
            ),
            "data_fingerprint": fingerprint(frame),
        },
    )


def _like(values: pd.Series, like: pd.Series) -> pd.Series:
    """`values` (ISO text from the stream) as timestamps of `like`'s kind."""
    if not pd.api.types.is_datetime64_any_dtype(like):
        return values.astype(str)
    stamps = pd.to_datetime(values, utc=True, format="ISO8601")
    tz = getattr(like.dtype, "tz", None)
    return stamps.dt.tz_convert(tz) if tz is not None else stamps.dt.tz_convert(None)


@dg.asset(group_name="training", kinds={"scikitlearn"}, owners=["team:ml"])
def candidate_models(
    context: dg.AssetExecutionContext,
    settings: PlatformSettingsResource,
    training: TrainingSettingsResource,
    training_dataset: pd.DataFrame,
) -> dg.Output[dict[str, CandidateResult]]:
    """Candidates cross-validated by session, each evaluated on the same session holdout."""
    holdout = training_dataset[HOLDOUT]
    features = model_features(training_dataset)
    results = {}
    for name in training.candidates:
        context.log.info("training %s on %d features", name, len(features))
        results[name] = train_candidate(
            name,
            training_dataset,
            holdout,
            folds=training.cv_folds,
            target_far=training.target_false_alarm_rate,
            seed=settings.seed,
            features=features,
        )
    table = pd.DataFrame(
        {
            n: {
                **headline(r.holdout),
                "random_split_accuracy": r.random_split_accuracy,
                "session_holdout_accuracy": r.holdout["accuracy"],
            }
            for n, r in results.items()
        }
    ).T
    return dg.Output(
        results,
        metadata={
            "challenger": best_candidate(results).name,
            "holdout_metrics": dg.MetadataValue.md(markdown_table(table)),
        },
    )


@dg.asset(group_name="training", kinds={"pandas"}, owners=["team:ml"])
def real_reference_evaluation(
    settings: PlatformSettingsResource,
    model_store: ModelStoreResource,
    candidate_models: dict[str, CandidateResult],
) -> dg.Output[dict[str, Any]]:
    """Every candidate and the current champion on real sensor readings, the external
    validation set no model is trained on: recall and false-alarm rate at the model's own
    threshold, ROC-AUC, and per excerpt the alerts the worker's own alert rule would
    open. The promotion gate weighs these beside the simulated holdout."""
    from smoke_platform.reference import REFERENCE_CSV, evaluate_on_reference, load_reference

    source = settings.reference_csv or str(REFERENCE_CSV)
    frame = load_reference(source)
    figures = {
        name: evaluate_on_reference(ScoringModel(c.model, c.threshold, c.features), frame)
        for name, c in candidate_models.items()
    }
    info = model_store.champion_info()
    champion = (
        evaluate_on_reference(model_store.load(info["tag"]), frame) if info is not None else None
    )
    shown = {**figures, **({"current champion": champion} if champion else {})}
    table = pd.DataFrame(
        {
            name: {
                **{k: f[k] for k in REAL_FIGURES},
                "normal excerpts alerted": f"{f['normal_excerpts_alerted']} of "
                f"{len(f['excerpts']) - f['fire_excerpts']}",
                "fire excerpts alerted": f"{f['fire_excerpts_alerted']} of {f['fire_excerpts']}",
            }
            for name, f in shown.items()
        }
    ).T
    return dg.Output(
        {
            "source": source,
            "figures": figures,
            "champion_tag": info["tag"] if info else None,
            "champion": champion,
        },
        metadata={
            "source": dg.MetadataValue.path(source),
            "dagster/row_count": len(frame),
            "real_figures": dg.MetadataValue.md(markdown_table(table)),
        },
    )


def _champion_on_holdout(
    store: ModelStoreResource, holdout: pd.DataFrame, target_far: float
) -> tuple[dict[str, Any] | None, str | None, dict[str, Any] | None]:
    """The current champion re-scored on today's holdout, so both face the same data: the
    simulated sessions' figures, and the held-out operator-labelled alerts' apart."""
    info = store.champion_info()
    if info is None:
        return None, None, None
    champion = store.load(info["tag"])
    missing = [f for f in champion.features if f not in holdout.columns]
    if missing:
        raise dg.Failure(f"champion {info['tag']} needs features {missing} no longer produced")
    scores = champion.proba_from_features(holdout)
    ops = is_operator(holdout).to_numpy()
    simulated = evaluate(holdout[~ops], scores[~ops], champion.threshold, target_far)
    operator = (
        operator_figures(holdout[ops], scores[ops], champion.threshold) if ops.any() else None
    )
    return simulated, info["tag"], operator


@dg.asset(group_name="training", kinds={"bentoml"}, owners=["team:ml"])
def smoke_classifier(
    context: dg.AssetExecutionContext,
    training: TrainingSettingsResource,
    model_store: ModelStoreResource,
    training_dataset: pd.DataFrame,
    candidate_models: dict[str, CandidateResult],
    real_reference_evaluation: dict[str, Any],
) -> dg.Output[dict[str, Any]]:
    """The promoted model. The challenger is the best candidate on the simulated holdout
    among those near the best on real readings (recall and false alarms at their own
    thresholds, ROC-AUC); it replaces the champion only if it is not worse on real
    readings (beyond tolerance) and better on the holdout."""
    real = real_reference_evaluation["figures"]
    eligible = real_eligible({name: real[name] for name in candidate_models})
    challenger = best_candidate({n: c for n, c in candidate_models.items() if n in eligible})
    holdout = training_dataset[training_dataset[HOLDOUT]]
    champion_metrics, champion_tag, champion_operator = _champion_on_holdout(
        model_store, holdout, training.target_false_alarm_rate
    )
    previous_real = real_reference_evaluation["champion"]
    decision = promotion_decision(
        challenger.holdout,
        champion_metrics,
        training.bars(),
        challenger_real_auc=real[challenger.name]["roc_auc"],
        champion_real_auc=previous_real["roc_auc"] if previous_real else None,
    )
    if decision.promote:
        champion_tag = _save(context, model_store, challenger, training_dataset, decision.reasons)
    context.log.info("promotion decision: %s", "; ".join(decision.reasons))
    champion_real = real[challenger.name] if decision.promote else previous_real
    record = {
        "promoted": decision.promote,
        "reasons": decision.reasons,
        "champion_tag": champion_tag,
        "challenger": challenger.name,
        "challenger_metrics": challenger.holdout,
        "previous_champion_metrics": champion_metrics,
        "challenger_real": real[challenger.name],
        "champion_real": champion_real,
        # Figures on held-out operator-labelled alerts: shown beside the others, not a bar.
        "challenger_operator": challenger.operator,
        "previous_champion_operator": champion_operator,
    }
    return dg.Output(
        record,
        metadata={
            "decision": "promoted challenger" if decision.promote else "kept champion",
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons)),
            "champion_tag": str(champion_tag),
            "challenger": challenger.name,
            "challenger_holdout": dg.MetadataValue.json(headline(challenger.holdout)),
            "challenger_real": dg.MetadataValue.json(
                {k: real[challenger.name][k] for k in REAL_FIGURES}
            ),
            **{
                f"champion_real_{k}": float(champion_real[k]) if champion_real else float("nan")
                for k in REAL_FIGURES
            },
            "challenger_operator": dg.MetadataValue.json(challenger.operator or {}),
            "previous_champion_operator": dg.MetadataValue.json(champion_operator or {}),
        },
    )


def _save(
    context: dg.AssetExecutionContext,
    store: ModelStoreResource,
    challenger: CandidateResult,
    dataset: pd.DataFrame,
    reasons: list[str],
) -> str:
    data_version = fingerprint(dataset)
    model = ScoringModel(challenger.model, challenger.threshold, challenger.features)
    return store.save(
        model,
        labels={"stage": "champion", "algorithm": challenger.name, "data": data_version},
        metadata={
            "algorithm": challenger.name,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data_fingerprint": data_version,
            "training_rows": int((~dataset[HOLDOUT]).sum()),
            # What clean air looked like in training: every alert names the measurements
            # furthest from it (smoke_platform/core/explain.py).
            "normal_profile": normal_profile(
                dataset[~dataset[HOLDOUT] & (dataset[LABEL] == 0) & ~is_operator(dataset)]
            ),
            "holdout_metrics": headline(challenger.holdout),
            "cv_metrics": headline(challenger.cv),
            "random_split_accuracy": challenger.random_split_accuracy,
            "promotion_reasons": reasons,
            CHAMPION_ALERTS: sorted(dataset.loc[is_operator(dataset), "session_id"].unique()),
            "dagster_run_id": context.run.run_id,
        },
    )


@dg.asset(group_name="training", kinds={"markdown"}, owners=["team:ml"])
def training_report(
    settings: PlatformSettingsResource,
    training_dataset: pd.DataFrame,
    candidate_models: dict[str, CandidateResult],
    smoke_classifier: dict[str, Any],
    real_reference_evaluation: dict[str, Any],
) -> dg.MaterializeResult:
    """Training report (Markdown + PNG): candidates, curves, importances, latency, decision,
    and every model's figures on real readings beside the simulated holdout's."""
    from smoke_platform.reports.training import write_training_report

    path = write_training_report(
        training_dataset,
        candidate_models,
        smoke_classifier,
        settings.report_dir("training"),
        real_reference_evaluation,
    )
    return dg.MaterializeResult(
        metadata={
            **report_metadata(path),
        }
    )
