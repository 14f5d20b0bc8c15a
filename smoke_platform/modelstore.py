"""The BentoML model store: where promoted models live, versioned, under one name.

Only the promotion gate saves under `MODEL_NAME`, so `smoke_detector:latest` is
always the current champion (a stable tag the service and the worker use), and
every earlier champion stays addressable by its version. The store lives in
`$BENTOML_HOME` (the Makefile sets `.bentoml/` in the project).
"""

from __future__ import annotations

from typing import Any

from smoke_platform.core.scoring import ScoringModel
from smoke_platform.core.settings import ModelSettings, default

MODEL_NAME: str = default(ModelSettings, "model_name")
CHAMPION = f"{MODEL_NAME}:latest"


def served_model_tag() -> str:
    """The tag the service packages/serves: `SMOKE_MODEL_TAG`, else `<SMOKE_MODEL_NAME>:latest`."""
    return ModelSettings().served_tag()


def save_model(
    model: ScoringModel,
    name: str = MODEL_NAME,
    labels: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Save a model version; returns its tag (`name:version`)."""
    import bentoml

    meta = {"threshold": model.threshold, "features": list(model.features), **(metadata or {})}
    saved = bentoml.sklearn.save_model(
        name,
        model.pipeline,
        labels=labels or {},
        metadata=meta,
        signatures={"predict_proba": {"batchable": True, "batch_dim": 0}},
    )
    return str(saved.tag)


def model_info(tag: str = CHAMPION) -> dict[str, Any] | None:
    """Tag, labels, metadata and creation time of a stored model, or None if absent."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        stored = bentoml.models.get(tag)
    except NotFound:
        return None
    return {
        "tag": str(stored.tag),
        "labels": dict(stored.info.labels),
        "metadata": dict(stored.info.metadata),
        "created": stored.info.creation_time.isoformat(),
    }


def normal_profile(tag: str) -> dict[str, list[float]] | None:
    """The clean-air profile stored with a model version (None if absent or older)."""
    info = model_info(tag)
    return None if info is None else info["metadata"].get("normal_profile")


def load_explainer(tag: str) -> Any:
    """How alerts scored by a stored model version are explained (a `core.explain`
    `Explainer`; imported here, so the service's bento needs none of it)."""
    from smoke_platform.core.explain import explainer_for

    return explainer_for(load_model(tag))


def load_model(tag: str = CHAMPION) -> ScoringModel:
    """Load a stored model as a `ScoringModel` (raises bentoml NotFound if absent)."""
    import bentoml

    stored = bentoml.models.get(tag)
    return scoring_model_from_stored(stored)


def scoring_model_from_stored(stored: Any) -> ScoringModel:
    """`ScoringModel` from a bentoml stored model (also used by the service)."""
    import bentoml

    meta = dict(stored.info.metadata)
    return ScoringModel(
        pipeline=bentoml.sklearn.load_model(stored),
        threshold=float(meta["threshold"]),
        features=list(meta["features"]),
        version=str(stored.tag),
        metadata=meta,
    )


def list_versions(name: str = MODEL_NAME) -> list[str]:
    """All stored versions of `name`, newest first."""
    import bentoml

    models = [m for m in bentoml.models.list(name)]
    models.sort(key=lambda m: m.info.creation_time, reverse=True)
    return [str(m.tag) for m in models]
