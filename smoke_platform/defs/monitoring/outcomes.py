"""Operators' verdicts back into the model's loop.

- `operator_labels` (a partition per day of stream output): the day's alerts and trouble
  signals with what operators said of them (`outcomes`), and the scored readings each
  alert resolved as `fire` or `false_alarm` covers, labelled (`labels`). Training adds the
  labels (`training_dataset`); the performance report shows the outcomes.
- `verdicts_sensor`: a labels run for each day whose verdicts changed, and a training run
  once `SMOKE_RETRAIN_AFTER_VERDICTS` labelled alerts are not yet in the champion's data.
"""

import hashlib
import json
from datetime import date, timedelta

import dagster as dg
import pandas as pd

from smoke_platform.core.outcomes import OPERATOR_LABELS, labelled_readings, outcomes_table
from smoke_platform.defs.common.resources import (
    KafkaResource,
    ModelStoreResource,
    PlatformSettingsResource,
    TrainingSettingsResource,
)
from smoke_platform.defs.monitoring.assets import stream_predictions
from smoke_platform.defs.monitoring.partitions import stream_dates
from smoke_platform.defs.training.schedules import training_job
from streaming.sink import atomic_write
from streaming.tables import read_outputs

CHAMPION_ALERTS = "operator_alerts"  # the champion's metadata: the alerts it learnt from


def read_labels(settings: PlatformSettingsResource, kind: str = "labels") -> pd.DataFrame:
    """Every day's operator labels (or `outcomes`) written so far, from
    `<data>/operator_labels/{labels,outcomes}/date=YYYY-MM-DD/part.parquet`."""
    return read_outputs(settings.labels_root, kind)


def _lifecycles(kafka: KafkaResource, timeout: float = 30.0) -> pd.DataFrame:
    from streaming.verdicts import lifecycles

    try:
        return outcomes_table(lifecycles(kafka.stream_settings(), timeout).values())
    except Exception as exc:  # the broker's errors are many types; all mean "not readable"
        raise dg.Failure(
            f"alerts and verdicts not readable from {kafka.kafka_bootstrap} "
            f"(SMOKE_KAFKA_BOOTSTRAP): {type(exc).__name__}: {exc}"
        ) from exc


@dg.asset(
    group_name="monitoring",
    kinds={"kafka", "parquet"},
    owners=["team:ml"],
    partitions_def=stream_dates,
    deps=[stream_predictions],
)
def operator_labels(
    context: dg.AssetExecutionContext,
    settings: PlatformSettingsResource,
    kafka: KafkaResource,
) -> dg.MaterializeResult:
    """One day's alerts with operators' verdicts, and the readings they label: `fire` -> 1,
    `false_alarm` -> 0 for the alert's sensor from its open to its close (`test` and
    `unknown` label nothing)."""
    day = context.partition_key
    outcomes = _lifecycles(kafka)
    outcomes = outcomes[outcomes["day"] == day]
    next_day = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    preds = read_outputs(settings.stream_root, "predictions", [day, next_day])
    labels = labelled_readings(outcomes, preds)
    root = settings.labels_root
    for kind, frame in (("outcomes", outcomes), ("labels", labels)):
        path = root / kind / f"date={day}" / "part.parquet"
        atomic_write(path, lambda tmp, f=frame: f.to_parquet(tmp, index=False))
    alerts = outcomes[outcomes["source"] == "alert"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(labels),
            "alerts": len(alerts),
            "trouble_signals": int((outcomes["source"] == "trouble").sum()),
            "verdicts": dg.MetadataValue.json(
                alerts["verdict"].fillna("unresolved").value_counts().to_dict()
            ),
            "labelled_alerts": int(labels["alert_id"].nunique()) if len(labels) else 0,
            "label_counts": dg.MetadataValue.json(
                {str(k): int(v) for k, v in labels["fire_alarm"].value_counts().items()}
                if len(labels)
                else {}
            ),
            "path": dg.MetadataValue.path(str(root.resolve())),
        }
    )


operator_labels_job = dg.define_asset_job(
    "operator_labels_job",
    selection=[operator_labels],
    description="Fold a day's alerts and operators' verdicts into labelled readings.",
)


def _fingerprint(frame: pd.DataFrame) -> str:
    text = frame.sort_values("alert_id").to_json(orient="records")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dg.sensor(
    jobs=[operator_labels_job, training_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def verdicts_sensor(
    context: dg.SensorEvaluationContext,
    settings: PlatformSettingsResource,
    kafka: KafkaResource,
    training: TrainingSettingsResource,
    model_store: ModelStoreResource,
) -> dg.SensorResult | dg.SkipReason:
    """Operators' verdicts reach the model: a labels run for each day whose alerts or
    verdicts changed, then a training run once `retrain_after_verdicts` alerts judged fire
    or false alarm are labelled but not in the champion's training data."""
    try:
        outcomes = _lifecycles(kafka, timeout=8.0)  # a tick has 60 s
    except dg.Failure as exc:
        return dg.SkipReason(exc.description or str(exc))
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    days = {day: _fingerprint(rows) for day, rows in outcomes.groupby("day") if day}
    changed = sorted(day for day, fp in days.items() if seen.get(day) != fp)
    known = set(context.instance.get_dynamic_partitions(stream_dates.name or ""))
    requests = [
        dg.RunRequest(
            run_key=f"labels:{day}:{days[day]}",
            partition_key=day,
            job_name=operator_labels_job.name,
        )
        for day in changed
    ]
    labels = read_labels(settings)
    labelled = set(labels["alert_id"]) if len(labels) else set()
    info = model_store.champion_info()
    learnt = set((info or {}).get("metadata", {}).get(CHAMPION_ALERTS, []))
    new = sorted(labelled - learnt)
    if len(new) >= training.retrain_after_verdicts:
        digest = hashlib.sha256("\n".join(new).encode()).hexdigest()[:16]
        requests.append(
            dg.RunRequest(
                run_key=f"verdicts:{digest}",
                job_name=training_job.name,
                tags={"smoke/trigger": "operator_verdicts", "smoke/new_verdicts": str(len(new))},
            )
        )
    why = (
        f"{len(new)} labelled alerts ({', '.join(OPERATOR_LABELS)}) not in the champion's "
        f"data; training at {training.retrain_after_verdicts}; {len(changed)} days changed"
    )
    context.log.info(why)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[stream_dates.build_add_request(sorted(set(days) - known))]
        if set(days) - known
        else [],
        cursor=json.dumps({**seen, **days}, sort_keys=True),
        skip_reason=None if requests else why,
    )
