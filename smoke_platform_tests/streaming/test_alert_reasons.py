"""The model's own reasons for an alert (`core.explain.Attribution`), through the worker's
core, on the real reference file's fires: what a person reads next to the alarm."""

import json

import numpy as np
import pandas as pd
import pytest

from smoke_platform.core.explain import Attribution, driver_names, explainer_for
from smoke_platform.core.features import MODEL_FEATURES, SENSOR_BASELINE, build_features
from smoke_platform.core.io import to_records
from smoke_platform.core.modeling import CANDIDATES, session_holdout, train_candidate
from smoke_platform.core.scoring import ScoringModel
from smoke_platform.core.simulate import generate_readings
from smoke_platform.reference import Targets, load_reference
from streaming.alerts import RAISING, AlertConfig
from streaming.processor import InMessage, Processor
from streaming.scoring import LocalScorer

# The SGP30 computes eCO2 from the same metal-oxide VOC signal as TVOC: both are its VOC
# channels. A feature's channel: `log_tvoc_ppb`, `rise_tvoc_ppb` -> `tvoc_ppb`.
VOC_CHANNELS = {"tvoc_ppb", "eco2_ppm"}


def channel(feature: str) -> str:
    if feature == "log_eco2_excess":
        return "eco2_ppm"
    for prefix in ("log_", "rise_"):
        if feature.startswith(prefix):
            return feature.removeprefix(prefix)
    return feature


@pytest.fixture(scope="module")
def frame():
    from smoke_platform.core.modeling import training_frame

    return training_frame(generate_readings(n_rows=30_000, seed=21))


@pytest.fixture(scope="module")
def models(frame, served_model):
    """The served champion (gradient boosting) and a random forest, trained alike."""
    holdout = session_holdout(frame)
    forest = train_candidate("random_forest", frame, holdout, folds=3)
    forest_model = ScoringModel(forest.model, forest.threshold, forest.features, "forest:1")
    return {"hist_gradient_boosting": served_model, "random_forest": forest_model}


@pytest.mark.parametrize("kind", ["hist_gradient_boosting", "random_forest"])
def test_every_smoky_real_fire_alerts_for_its_vocs_and_names_only_model_features(models, kind):
    """Each real fire excerpt with TVOC over 1,000 ppb, streamed through the worker's core
    with the model in process, raises an alert whose top reason is a VOC channel (level,
    log or rate of rise); every reason is a feature of the model, never temperature,
    pressure or a raw MOX signal; the values shown are the ones the model saw."""
    model = models[kind]
    explainer = explainer_for(model)
    reference = load_reference()
    smoky = [
        part
        for _, part in reference.groupby("excerpt")
        if part["fire_alarm"].max() == 1 and part["tvoc_ppb"].max() > Targets.must_alert_tvoc_ppb
    ]
    assert len(smoky) == 4  # the shared file's four smoky fires
    for part in smoky:
        records = to_records(part.assign(sensor_id="real"))
        msgs = [
            InMessage("t", 0, i, b"real", json.dumps(r).encode()) for i, r in enumerate(records)
        ]
        proc = Processor(AlertConfig.from_settings(), 65_536, explainers=lambda _v: explainer)
        out = proc.process(msgs, LocalScorer.of(model))
        raised = [a for a in out.alerts if a["event"] in RAISING]
        assert raised, f"excerpt {part['excerpt'].iloc[0]}: no alert"
        for alert in raised:
            names = driver_names(alert["reasons"])
            assert len(names) == 3 and set(names) <= set(model.features), alert["reasons"]
            assert channel(names[0]) in VOC_CHANNELS, alert["reasons"]
            assert not {channel(n) for n in names} & (SENSOR_BASELINE | {"temperature_c"})
            assert alert["reasons"].endswith(explainer.attribution.unit + ")")
            assert not set(driver_names(alert["drivers"])) & SENSOR_BASELINE
        first = raised[0]
        top = driver_names(first["reasons"])[0]
        row = next(r for r in out.rows if r["offset"] == first["offset"])  # as scored
        seen = float(build_features(pd.DataFrame([row]))[top].iloc[0])
        shown = float(first["reasons"].split("=", 1)[1].split(" ", 1)[0])
        assert shown == pytest.approx(seen, rel=0.01, abs=0.01)


@pytest.mark.parametrize("kind", [k for k in CANDIDATES if k != "prior_baseline"])
def test_contributions_add_up_to_the_models_own_output(frame, kind):
    """Exact (linear) or TreeSHAP (trees): base value plus the contributions is the model's
    output for the row, in the unit the reasons name; a class-prior model explains nothing."""
    sample = frame.sample(2_000, random_state=1)
    pipe = CANDIDATES[kind]().fit(sample[list(MODEL_FEATURES)], sample["fire_alarm"])
    model = ScoringModel(pipe, 0.5, list(MODEL_FEATURES), f"{kind}:1")
    attribution = Attribution(model)
    rows = build_features(frame.iloc[::997])
    contrib = attribution.contributions(rows)
    assert contrib.shape == (len(rows), len(MODEL_FEATURES))
    proba = model.proba_from_features(rows)
    if attribution.unit == "log-odds":
        logit = np.log(proba / (1 - proba))
        spread = logit - contrib.sum(axis=1)  # the base value: the same for every row
        assert np.ptp(spread) == pytest.approx(0.0, abs=1e-4)
    else:
        assert kind == "random_forest" and attribution.unit == "probability"
        base = attribution._tree.expected_value[1]
        assert base + contrib.sum(axis=1) == pytest.approx(proba, abs=1e-6)
    x, y = sample[list(MODEL_FEATURES)], sample["fire_alarm"]
    prior = Attribution(ScoringModel(CANDIDATES["prior_baseline"]().fit(x, y), 0.5, list(x)))
    assert not prior.supported and prior.reasons([frame.iloc[0].to_dict()]) == [""]
