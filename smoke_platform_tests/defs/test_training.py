"""Training through Dagster: honest metrics, the gate, the BentoML store, the bento, triggers."""

import pickle
import re

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from smoke_platform import modelstore
from smoke_platform.core.explain import EXPLAINED
from smoke_platform.definitions import defs
from smoke_platform.defs.common.resources import (
    LocalFilesIOManager,
    ModelStoreResource,
    PlatformSettingsResource,
    TrainingSettingsResource,
)
from smoke_platform.defs.ingest.assets import raw_sensor_readings
from smoke_platform.defs.quality.checks import raw_sensor_readings_quality
from smoke_platform.defs.serving.assets import smoke_detector_bento
from smoke_platform.defs.training import assets as training_assets
from smoke_platform.defs.training import checks as training_checks
from smoke_platform_tests.conftest import assert_html_twin

pytestmark = [pytest.mark.dagster, pytest.mark.slow]

TRAINING = [
    training_assets.training_dataset,
    training_checks.training_dataset_no_leakage_features,
    training_checks.training_dataset_sessions_disjoint,
    training_assets.candidate_models,
    training_checks.challenger_bars,
    training_assets.real_reference_evaluation,
    training_assets.smoke_classifier,
    training_checks.champion_meets_the_real_reference_targets,
    training_assets.training_report,
    smoke_detector_bento,
]


def _resources(tmp, **training):
    settings = PlatformSettingsResource(
        data_dir=str(tmp / "data"), reports_dir=str(tmp / "reports")
    )
    return {
        "settings": settings,
        "io_manager": LocalFilesIOManager(settings=settings),
        "training": TrainingSettingsResource(**training),
        "model_store": ModelStoreResource(model_name="smoke_detector_test"),
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("training")


@pytest.fixture(scope="module")
def first_run(workdir):
    """The whole graph on the default generated data (60k rows), as `make demo` runs it."""
    result = dg.materialize(
        [raw_sensor_readings, raw_sensor_readings_quality, *TRAINING], resources=_resources(workdir)
    )
    assert result.success
    return result


def _meta(result, node):
    return result.asset_materializations_for_node(node)[0].metadata


def test_first_training_promotes_a_model_meeting_the_targets(first_run):
    decision = _meta(first_run, "smoke_classifier")
    assert decision["decision"].value == "promoted challenger"
    info = modelstore.model_info("smoke_detector_test:latest")
    assert info is not None and info["tag"] == decision["champion_tag"].value
    holdout = info["metadata"]["holdout_metrics"]
    # The promoted model meets every operational bar on whole held-out sessions, and on
    # the default data the detection targets too: recall >= 0.99 at <= 1 % false alarms,
    # a median alarm within 10 s of ignition (README: other seeds, and why seed 2 misses).
    assert holdout["recall_at_far"] >= 0.99, holdout
    assert holdout["median_latency_s"] <= 10, holdout
    bars = TrainingSettingsResource().bars()
    assert holdout["false_alarm_rate"] <= bars.max_false_alarm_rate, holdout
    assert holdout["recall"] >= bars.min_recall, holdout
    assert holdout["median_latency_s"] <= bars.max_median_latency_s, holdout
    assert holdout["missed_fire_sessions"] == 0
    assert holdout["recall_at_far"] >= holdout["recall"] - 1e-9
    meta = info["metadata"]
    assert meta["features"] and not {"cnt", "ts", "session_id"} & set(meta["features"])
    # What the asset trains on is the one list of model features: no site's climate, no
    # sensor's raw baseline (an earlier asset trained on raw_h2/raw_ethanol regardless).
    from smoke_platform.core.features import MODEL_FEATURES, SENSOR_BASELINE, SITE_DEPENDENT

    assert meta["features"] == list(MODEL_FEATURES)
    assert not (SITE_DEPENDENT | SENSOR_BASELINE) & set(meta["features"])
    assert meta["data_fingerprint"] and meta["trained_at"] and meta["algorithm"]
    assert info["labels"]["stage"] == "champion"
    # Clean air in training, kept with the model: what alerts' drivers are measured against.
    assert set(meta["normal_profile"]) == set(EXPLAINED)
    assert modelstore.normal_profile(info["tag"]) == meta["normal_profile"]


def test_all_blocking_checks_passed_and_the_real_reference_check_tells_the_truth(
    first_run, workdir
):
    from smoke_platform.reference import shortfalls

    evaluations = {e.check_name: e for e in first_run.get_asset_check_evaluations()}
    real = evaluations.pop("champion_meets_the_real_reference_targets")
    assert len(evaluations) == 6 + 2 + 3
    failed = [e.description for e in evaluations.values() if not e.passed]
    assert not failed, failed
    # A warning, and passed exactly when the champion's real figures meet every target.
    champion = pickle.loads((workdir / "data/assets/smoke_classifier.pkl").read_bytes())[
        "champion_real"
    ]
    missed = shortfalls(champion)
    assert real.severity == dg.AssetCheckSeverity.WARN
    assert real.passed == (not missed)
    assert all(m in (real.description or "") for m in missed)


def test_every_model_is_judged_on_the_real_readings(first_run, workdir):
    """Seven real excerpts (two normal, five fire); each candidate and the champion get
    recall, false-alarm rate and ROC-AUC on them, in the metadata and the report."""
    meta = _meta(first_run, "real_reference_evaluation")
    assert meta["dagster/row_count"].value == 1_206
    table = meta["real_figures"].value
    for model in ("logistic_regression", "random_forest", "hist_gradient_boosting"):
        assert model in table
    decision = _meta(first_run, "smoke_classifier")
    for name in ("champion_real_recall", "champion_real_false_alarm_rate", "champion_real_roc_auc"):
        assert 0 <= decision[name].value <= 1
    text = (workdir / "reports/training/report.md").read_text()
    assert "On real sensor readings (external validation)" in text
    assert "54203-54375" in text and "simulated recall" in text


def test_saved_model_round_trips_through_the_store(first_run, workdir):
    candidates = pickle.loads((workdir / "data/assets/candidate_models.pkl").read_bytes())
    challenger = candidates[_meta(first_run, "smoke_classifier")["challenger"].value]
    raw = pd.read_parquet(workdir / "data/assets/raw_sensor_readings.parquet").sample(
        2_000, random_state=1
    )
    stored = modelstore.load_model("smoke_detector_test:latest")
    from smoke_platform.core.features import build_features

    in_memory = challenger.model.predict_proba(build_features(raw)[challenger.features])[:, 1]
    # Same predictions (forest votes are summed in parallel: equal to the last bit or two).
    np.testing.assert_allclose(stored.predict_proba(raw), in_memory, rtol=1e-12, atol=1e-12)
    scored = stored.score(raw)["is_fire"].to_numpy()
    np.testing.assert_array_equal(scored, in_memory >= challenger.threshold)
    assert stored.threshold == challenger.threshold


def test_bento_packages_the_champion(first_run):
    import bentoml

    meta = _meta(first_run, "smoke_detector_bento")
    bento = bentoml.bentos.get(meta["bento_tag"].value)
    assert [str(m.tag) for m in bento.info.all_models] == [meta["model_tag"].value]
    assert (bento.path_of("src/bentos/service.py")) and bento.info.labels["model"] == meta[
        "model_tag"
    ].value


def test_training_report_is_written(first_run, workdir):
    report = workdir / "reports/training/report.md"
    assert_html_twin(report, charts=4)
    text = report.read_text()
    assert "PROMOTED" in text and "accuracy (random rows, leaky)" in text
    # The rule that chose the challenger, and every candidate's deciding figure.
    why = re.search(r"\*\*Why `(\w+)`:\*\* the challenger is the candidate with the highest recall "
                    r"at a false-alarm rate <= 0\.01 on the held-out sessions.*", text)  # fmt: skip
    assert why and why.group(1) == _meta(first_run, "smoke_classifier")["challenger"].value
    for name in ("logistic_regression", "random_forest", "hist_gradient_boosting"):
        assert f"`{name}` 0." in why.group(0)
    # The calibration section: a KS row per class and per simulated scenario.
    section = text.split("## The simulator against real sensors", 1)[1]
    assert re.search(r"^\| scenario wood_fire +\| +0\.\d+ ", section, re.MULTILINE), section
    assert "0-186" in section  # a known gap (a sensor's warm-up), named
    for png in ("curves", "confusion", "importances", "latency"):
        assert (report.parent / f"{png}.png").stat().st_size > 5_000


def test_no_skill_challenger_is_blocked_and_champion_kept(first_run, workdir):
    champion = modelstore.model_info("smoke_detector_test:latest")["tag"]
    versions = modelstore.list_versions("smoke_detector_test")
    result = dg.materialize(
        [raw_sensor_readings, *TRAINING],
        resources=_resources(workdir, candidates=["prior_baseline"]),
        selection=dg.AssetSelection.groups("training", "serving"),
        raise_on_error=False,
    )
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert "challenger_recall" in failed
    assert not result.asset_materializations_for_node("smoke_classifier")
    assert not result.asset_materializations_for_node("smoke_detector_bento")
    assert modelstore.model_info("smoke_detector_test:latest")["tag"] == champion
    assert modelstore.list_versions("smoke_detector_test") == versions


def test_leaky_training_dataset_fails_its_blocking_check():
    frame = pd.DataFrame({"tvoc_ppb": [1.0], "CNT": [3], "fire_alarm": [1], "holdout": [False]})
    result = training_checks.training_dataset_no_leakage_features(frame)
    assert not result.passed and "CNT" in result.description


def test_training_schedule_and_sensor_targets():
    definitions = defs()
    schedule = definitions.resolve_schedule_def("training_job_schedule")
    assert (schedule.cron_schedule, schedule.job_name) == ("0 2 * * *", "training_job")
    sensor = definitions.resolve_sensor_def("new_raw_data_sensor")
    assert sensor.job_name == "training_job"
    job = definitions.resolve_job_def("training_job")
    selected = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert "raw_sensor_readings" not in selected and "smoke_detector_bento" in selected
    assert job.op_retry_policy is not None and job.op_retry_policy.max_retries == 2


def test_training_runs_when_the_raw_data_changed_not_when_it_was_re_read(monkeypatch):
    """The 6-hourly quality job re-materialises the raw readings: on unchanged data two
    quality runs cause 0 training requests; new data causes exactly 1 (and once the
    training dataset is built from it, no more)."""
    monkeypatch.setenv("SMOKE_ROWS", "12000")
    monkeypatch.setenv("SMOKE_SEED", "1")
    definitions = defs()
    sensor = definitions.resolve_sensor_def("new_raw_data_sensor")
    quality_job = definitions.resolve_job_def("data_quality_job")
    implicit = definitions.resolve_implicit_global_asset_job_def()

    def tick(instance, cursor):
        ctx = dg.build_sensor_context(instance=instance, definitions=definitions, cursor=cursor)
        return sensor.evaluate_tick(ctx)

    with dg.DagsterInstance.ephemeral() as instance:
        assert not tick(instance, None).run_requests  # nothing landed yet
        built = implicit.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey("raw_sensor_readings"), dg.AssetKey("training_dataset")],
        )
        assert built.success
        result = tick(instance, None)
        cursor, requests = result.cursor, list(result.run_requests)
        for _ in range(2):
            assert quality_job.execute_in_process(instance=instance).success
            result = tick(instance, cursor)
            cursor = result.cursor
            requests += result.run_requests
            assert "raw readings unchanged" in (result.skip_message or "")
        assert requests == []

        monkeypatch.setenv("SMOKE_SEED", "2")  # new readings arrive
        definitions = defs()
        quality_job = definitions.resolve_job_def("data_quality_job")
        assert quality_job.execute_in_process(instance=instance).success
        result = tick(instance, cursor)
        assert len(result.run_requests) == 1
        assert result.run_requests[0].tags["trigger"] == "new_raw_data"
        again = tick(instance, result.cursor)  # the same event: no second request
        assert not again.run_requests


def test_training_job_refuses_raw_data_that_fails_checks(tmp_path, monkeypatch, kaggle_sample_csv):
    bad = tmp_path / "bad.csv"
    lines = kaggle_sample_csv.read_text().splitlines()
    lines[3] = lines[3].replace(",939.756,", ",9.756,")  # pressure 9.756 hPa
    bad.write_text("\n".join(lines) + "\n")
    for var, value in {
        "SMOKE_DATA_DIR": tmp_path / "data",
        "SMOKE_REPORTS_DIR": tmp_path / "reports",
        "SMOKE_KAGGLE_CSV": bad,
    }.items():
        monkeypatch.setenv(var, str(value))
    definitions = defs()
    with dg.DagsterInstance.ephemeral() as instance:
        quality = definitions.resolve_job_def("data_quality_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert not quality.success
        training = definitions.resolve_job_def("training_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
    failed = [e for e in training.get_asset_check_evaluations() if not e.passed]
    assert [e.check_name for e in failed] == ["raw_sensor_readings_physical_ranges"]
    assert "pressure_hpa" in failed[0].description
    assert not training.asset_materializations_for_node("training_dataset")


def _decisions(model, frame):
    return model.predict_proba(frame) >= model.threshold


def decisions_that_move_with_the_site(model, frame) -> int:
    """Alarm decisions on the real excerpts that change when every reading is moved to a
    colder or hotter, drier or wetter site (-25/+25 °C, -10/+10 %RH)."""
    base = _decisions(model, frame)
    changed = 0
    for dt, dh in ((-25, -10), (25, 10)):
        moved = frame.assign(
            temperature_c=frame["temperature_c"] + dt,
            humidity_pct=(frame["humidity_pct"] + dh).clip(0, 100),
        )
        changed += int((_decisions(model, moved) != base).sum())
    return changed


def test_the_champion_decides_the_same_at_any_site_and_a_site_bound_model_would_not(
    first_run, workdir
):
    """Invariance on the real excerpts: the champion's decisions do not move with the
    site's temperature and humidity. The same test on a model trained on them fails."""
    from smoke_platform.core.features import FEATURE_COLUMNS
    from smoke_platform.core.modeling import train_candidate
    from smoke_platform.core.scoring import ScoringModel
    from smoke_platform.reference import load_reference

    real = load_reference()
    champion = modelstore.load_model("smoke_detector_test:latest")
    assert decisions_that_move_with_the_site(champion, real) == 0
    # The same training data, the site's temperature, humidity and pressure as features.
    frame = pd.read_parquet(workdir / "data/assets/training_dataset.parquet")
    bound = train_candidate(
        "logistic_regression", frame, frame["holdout"], folds=2, features=list(FEATURE_COLUMNS)
    )
    model = ScoringModel(bound.model, bound.threshold, bound.features)
    assert decisions_that_move_with_the_site(model, real) > 0


def test_readmes_example_requests_are_real_readings_scored_as_a_user_expects(first_run):
    """The quick start's curl examples: real rows of the public file, clean air and a fire; the
    champion the demo trains (this module's, same data and seed) calls them so."""
    import json
    import re

    from smoke_platform.core.io import read_kaggle_csv, to_canonical
    from smoke_platform.core.schema import MEASUREMENTS
    from smoke_platform.reference import REFERENCE_CSV
    from smoke_platform_tests.conftest import REPO

    text = (REPO / "docs" / "quickstart.md").read_text()
    body = re.search(r"predict_columns .*?-d '(\{\"columns\".*?\})'", text, re.S)[1]
    columns = json.loads(body)["columns"]
    examples = pd.DataFrame({n: columns[n] for n in MEASUREMENTS})
    real = to_canonical(read_kaggle_csv(REFERENCE_CSV)).set_index("row_index").loc[[0, 13800]]
    pd.testing.assert_frame_equal(
        examples, real[list(MEASUREMENTS)].reset_index(drop=True), check_dtype=False
    )
    assert list(real["fire_alarm"]) == [0, 1]
    champion = modelstore.load_model("smoke_detector_test:latest")
    assert list(champion.predict_proba(examples) >= champion.threshold) == [False, True]
    single = json.loads(re.search(r"/predict -H .*?-d '(\{\"reading\".*?\})'", text, re.S)[1])
    assert {n: single["reading"][n] for n in MEASUREMENTS} == {
        n: columns[n][0] for n in MEASUREMENTS
    }
