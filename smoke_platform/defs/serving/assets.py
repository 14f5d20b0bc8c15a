"""The bento: the BentoML service packaged with the promoted model, ready to `bentoml serve`."""

from pathlib import Path
from typing import Any

import dagster as dg

import smoke_platform

BENTO_NAME = "smoke_detector"


def default_build_ctx() -> Path:
    """The repository root (holds `bentos/` and `smoke_platform/`)."""
    return Path(smoke_platform.__file__).resolve().parents[1]


def find_bento(model_tag: str) -> Any | None:
    """An existing bento already built for this model version, if any."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentos = bentoml.bentos.list(BENTO_NAME)
    except NotFound:
        return None
    for bento in bentos:
        if bento.info.labels.get("model") == model_tag:
            return bento
    return None


def build_bento(model_tag: str, build_ctx: Path) -> Any:
    """Build from `bentos/bentofile.yaml`, packaging exactly `model_tag` (a bento argument,
    so the built bento serves that version whatever the store's `latest` becomes)."""
    import bentoml

    return bentoml.bentos.build_bentofile(
        bentofile=str(build_ctx / "bentos" / "bentofile.yaml"),
        build_ctx=str(build_ctx),
        labels={"model": model_tag},
        args={"model_tag": model_tag},
        reload=True,  # re-import the service so it sees this build's arguments
    )


@dg.asset(group_name="serving", kinds={"bentoml"}, owners=["team:ml"])
def smoke_detector_bento(
    context: dg.AssetExecutionContext, smoke_classifier: dict[str, Any]
) -> dg.MaterializeResult:
    """The `smoke_detector` bento serving the champion; rebuilt when the champion changes."""
    model_tag = smoke_classifier["champion_tag"]
    if not model_tag:
        raise dg.Failure(
            "no promoted model yet: the challenger failed the gate and no champion exists"
        )
    bento = find_bento(model_tag)
    built = bento is None
    if bento is None:
        bento = build_bento(model_tag, default_build_ctx())
    packaged = [str(m.tag) for m in bento.info.all_models]
    if model_tag not in packaged:
        raise dg.Failure(f"bento {bento.tag} packages {packaged}, not the champion {model_tag}")
    context.log.info("%s bento %s for %s", "built" if built else "reused", bento.tag, model_tag)
    return dg.MaterializeResult(
        metadata={
            "bento_tag": str(bento.tag),
            "model_tag": model_tag,
            "built": built,
            "path": dg.MetadataValue.path(str(bento.path)),
            "serve": dg.MetadataValue.text(f"bentoml serve {bento.tag}"),
        }
    )
