"""Operators' verdicts back into the model: a real broker and service, real Dagster runs.

Alerts raised by the worker are resolved as false alarms; `verdicts_sensor` asks for the
day's labels, then for training once enough verdicts are labelled; the next training run
holds those readings as label 0 and its report's operator figures change; the
performance report shows the alerts' record."""

import uuid
from datetime import datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from smoke_platform import modelstore
from smoke_platform.core.verdicts import acknowledge, resolve
from smoke_platform.defs.common.resources import (
    KafkaResource,
    LocalFilesIOManager,
    ModelStoreResource,
    NotifierResource,
    PlatformSettingsResource,
    TrainingSettingsResource,
)
from smoke_platform.defs.ingest.assets import raw_sensor_readings
from smoke_platform.defs.monitoring.assets import model_performance_report
from smoke_platform.defs.monitoring.outcomes import (
    CHAMPION_ALERTS,
    operator_labels,
    verdicts_sensor,
)
from smoke_platform.defs.training import assets as training
from streaming.producer import produce, scenario_records
from streaming.verdicts import lifecycles, publish
from streaming.worker import StreamWorker

pytestmark = [pytest.mark.kafka, pytest.mark.bentoml, pytest.mark.dagster, pytest.mark.slow]

TRAINING = [
    raw_sensor_readings,
    training.training_dataset,
    training.candidate_models,
    training.real_reference_evaluation,
    training.smoke_classifier,
    training.training_report,
]


def _resources(tmp_path, settings):
    platform = PlatformSettingsResource(
        data_dir=str(tmp_path / "data"),
        reports_dir=str(tmp_path / "reports"),
        stream_dir=settings.stream_dir,
        service_url=settings.service_url,
    )
    return {
        "settings": platform,
        "io_manager": LocalFilesIOManager(settings=platform),
        "kafka": KafkaResource(
            kafka_bootstrap=settings.kafka_bootstrap,
            alerts_topic=settings.alerts_topic,
            trouble_topic=settings.trouble_topic,
            verdicts_topic=settings.verdicts_topic,
        ),
        "training": TrainingSettingsResource(
            candidates=["hist_gradient_boosting"],
            retrain_after_verdicts=2,
            operator_max_sensor_share=0.5,
        ),
        "model_store": ModelStoreResource(model_name=f"loop_{uuid.uuid4().hex[:8]}"),
        "notifier": NotifierResource(),
    }


def _tick(instance, resources, cursor):
    needed = {k: resources[k] for k in ("settings", "kafka", "training", "model_store")}
    with dg.build_sensor_context(instance=instance, resources=needed, cursor=cursor) as context:
        result = verdicts_sensor(context)
    assert isinstance(result, dg.SensorResult), result
    for req in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    by_job: dict[str, list] = {}
    for req in result.run_requests:
        by_job.setdefault(req.job_name, []).append(req)
    return by_job, result.cursor


def _labels(instance, resources, requests):
    for req in requests:
        run = dg.materialize(
            [operator_labels], partition_key=req.partition_key, instance=instance,
            resources=resources,
        )  # fmt: skip
        assert run.success


def _train(instance, resources):
    run = dg.materialize(TRAINING, instance=instance, resources=resources)
    assert run.success
    meta = run.asset_materializations_for_node("training_dataset")[0].metadata
    return run, {k: v.value for k, v in meta.items()}


def test_false_alarm_verdicts_become_label_0_the_next_model_learns_and_training_is_requested(
    make_settings, open_service, tmp_path
):
    settings = make_settings(open_service)
    # Three fires that happened in the last ten minutes (the alerts stay open: the fires
    # do not end), so operators resolve them after their readings.
    records = scenario_records(["wood_fire"] * 3, seconds=600, seed=11)
    for rec in records:
        rec["ts"] = (datetime.fromisoformat(rec["ts"]) - timedelta(seconds=620)).isoformat()
    produce(records, settings, echo=lambda *_: None)
    StreamWorker(settings).run(idle_stop_s=4)
    resources = _resources(tmp_path, settings)
    instance = dg.DagsterInstance.ephemeral()
    alerts = sorted(r.alert_id for r in lifecycles(settings).values() if r.source == "alert")
    assert len(alerts) == 3

    # Raised, nobody has judged them: labels for their day, nothing to learn, no training.
    by_job, cursor = _tick(instance, resources, None)
    assert "training_job" not in by_job
    [day_request] = by_job["operator_labels_job"]
    _labels(instance, resources, [day_request])
    first, first_meta = _train(instance, resources)
    assert first_meta["operator_rows"] == 0
    promoted = first.asset_materializations_for_node("smoke_classifier")[0].metadata
    assert promoted["decision"].value == "promoted challenger"
    info = modelstore.model_info(f"{resources['model_store'].model_name}:latest")
    assert info["metadata"][CHAMPION_ALERTS] == []  # the champion learnt from no verdict
    report = tmp_path / "reports" / "training" / "report.md"
    assert "No operator-labelled readings yet" in report.read_text()
    assert _tick(instance, resources, cursor)[0] == {}  # nothing changed: nothing asked

    # Two alerts resolved as false alarms (one acknowledged first): one verdict short of
    # nothing, the day's labels change, then the training the verdicts ask for.
    known = lifecycles(settings)
    publish(settings, acknowledge(known, alerts[0], "Ana"))
    for alert in alerts[:2]:
        publish(settings, resolve(known, alert, "false_alarm", "Ana", "a test of the loop"))
    by_job, cursor = _tick(instance, resources, cursor)
    assert "training_job" not in by_job  # the labels are not written yet
    _labels(instance, resources, by_job["operator_labels_job"])
    by_job, cursor = _tick(instance, resources, cursor)
    [train_request] = by_job["training_job"]
    assert train_request.tags["smoke/new_verdicts"] == "2"

    second, meta = _train(instance, resources)
    dataset = pd.read_parquet(tmp_path / "data" / "assets" / "training_dataset.parquet")
    ops = dataset[dataset["scenario"] == "operator_false_alarm"]
    assert sorted(ops["session_id"].unique()) == alerts[:2]
    assert (ops["fire_alarm"] == 0).all()
    assert meta["operator_rows"] == len(ops) > 0
    assert meta["operator_labels"] == {"0": len(ops)}
    # Those readings are what the worker scored for the alerts' sensors, from open on.
    preds = pd.concat(
        pd.read_parquet(p) for p in tmp_path.joinpath(settings.stream_dir).rglob("*.parquet")
        if "predictions" in p.parts
    )  # fmt: skip
    flagged = preds[preds["sensor_id"].isin({a.split("@")[0] for a in alerts[:2]})]
    assert len(ops) <= len(flagged)
    text = report.read_text()
    assert "No operator-labelled readings yet" not in text
    assert f"{len(ops):,} readings from 2 alerts (0 judged fire, 2 false alarm)" in text
    assert "of which 1 held out" in text  # one whole alert
    assert "false_alarm_alerts_still_flagged" in text
    decision = second.asset_materializations_for_node("smoke_classifier")[0].metadata
    assert decision["challenger_operator"].value["alerts"] == 1

    # The same verdicts never ask twice: nothing more once a champion learnt from them,
    # else the same run key (Dagster launches a run key once).
    again = _tick(instance, resources, cursor)[0].get("training_job", [])
    assert [r.run_key for r in again] in ([], [train_request.run_key])

    # The performance report shows the alerts' record.
    perf = dg.materialize([model_performance_report], instance=instance, resources=resources)
    assert perf.success
    pmeta = perf.asset_materializations_for_node("model_performance_report")[0].metadata
    assert pmeta["alerts_by_verdict"].value == {"false_alarm": 2, "unresolved": 1}
    assert pmeta["alert_precision_by_verdict"].value == 0.0
    ptext = (tmp_path / "reports" / "performance" / "report.md").read_text()
    assert "3 alerts: " in ptext and "Time to acknowledge (2 acknowledged)" in ptext
    assert "False alarms per sensor and ISO week" in ptext
