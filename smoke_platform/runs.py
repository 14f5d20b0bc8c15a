"""Orchestration the command line, the demo and the tests share: materialising the asset
graph in process, registering stream days as partitions, the champion's summary, the demo's
run folder, and the default tool homes under SMOKE_HOME."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def selected_keys(definitions: object, selection: str) -> list:
    """Unpartitioned asset keys for `selection`; "*" leaves out monitoring, which needs
    stream output (the demo runs it after streaming), and the tables' maintenance (on its
    schedules). Partitioned assets run per partition (see `register_stream_days`)."""
    import dagster as dg

    graph = definitions.resolve_asset_graph()  # type: ignore[attr-defined]
    chosen = dg.AssetSelection.from_string(selection)
    if selection == "*":
        chosen = chosen - dg.AssetSelection.groups("monitoring", "maintenance")
    return sorted(k for k in chosen.resolve(graph) if not graph.get(k).is_partitioned)


# In-process runs keep their full event log in the instance (the UI shows it); the
# terminal gets the assets' own progress lines and warnings, not Dagster's DEBUG events.
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def materialize_all(
    selection: str = "*", settings: dict[str, Any] | None = None
) -> tuple[bool, float, dict[str, str]]:
    """Run the asset graph in process against the configured instance (DAGSTER_HOME);
    `settings` overrides fields of the `settings` resource for this run (run config, the
    Dagster way: nothing is written into the environment)."""
    import dagster as dg

    from smoke_platform.definitions import defs

    ensure_dagster_home()
    definitions = defs()
    keys = selected_keys(definitions, selection)
    job = definitions.resolve_implicit_global_asset_job_def()
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        run_config: dict[str, Any] = dict(QUIET)
        if settings:
            run_config["resources"] = {"settings": {"config": settings}}
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, asset_selection=keys, run_config=run_config
        )
    elapsed = time.perf_counter() - started
    return result.success, elapsed, _report_paths(result)


def register_stream_days() -> list[str]:
    """Add a partition per day of stream output and materialise the stream assets that have
    files for it, as `stream_partition_sensor` does under the Dagster daemon."""
    import dagster as dg

    from smoke_platform.definitions import defs
    from smoke_platform.defs.common.resources import PlatformSettingsResource, bind
    from smoke_platform.defs.monitoring.assets import days_by_source
    from smoke_platform.defs.monitoring.partitions import stream_dates

    ensure_dagster_home()
    settings = bind(PlatformSettingsResource, resolved=True)
    sources = days_by_source(settings)
    days = sorted({d for ds in sources.values() for d in ds})
    job = defs().resolve_job_def("stream_outputs_job")
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(stream_dates.name or "", days)
        for day in days:
            keys = [key for key, ds in sources.items() if day in ds]
            job.execute_in_process(
                instance=instance,
                partition_key=day,
                asset_selection=keys,
                raise_on_error=False,
                run_config=QUIET,
            )
    return days


def _report_paths(result: object) -> dict[str, str]:
    paths = {}
    for event in result.get_asset_materialization_events():  # type: ignore[attr-defined]
        mat = event.step_materialization_data.materialization
        meta = mat.metadata.get("report_path")
        if meta is not None:
            paths[mat.asset_key.to_user_string()] = str(meta.value)
    return paths


def champion_summary() -> list[str]:
    """The served model's honest (session-holdout) metrics, for people to read."""
    from smoke_platform.modelstore import model_info, served_model_tag

    info = model_info(served_model_tag())
    if info is None:
        return ["No promoted model in the BentoML store yet."]
    meta = info["metadata"]
    h = meta.get("holdout_metrics", {})
    return [
        f"Champion {info['tag']} ({meta.get('algorithm')}, trained {meta.get('trained_at')}):",
        f"  on held-out sessions: recall {h.get('recall', 0):.4f}, false-alarm rate "
        f"{h.get('false_alarm_rate', 0):.4f}, recall at FAR<=1% {h.get('recall_at_far', 0):.4f}",
        f"  precision {h.get('precision', 0):.4f}, F1 {h.get('f1', 0):.4f}, ROC-AUC "
        f"{h.get('roc_auc', 0):.4f}, PR-AUC {h.get('pr_auc', 0):.4f}",
        f"  detection latency: median {h.get('median_latency_s')} s, "
        f"p90 {h.get('p90_latency_s') or 0:.0f} s, missed fire sessions "
        f"{h.get('missed_fire_sessions')}",
        f"  (leaky random-row split accuracy: {meta.get('random_split_accuracy', 0):.4f},"
        " shown only for comparison)",
        *_real_summary(info["tag"]),
    ]


def _real_summary(tag: str) -> list[str]:
    """The champion on the real reference readings (the external validation set)."""
    from smoke_platform.defs.common.resources import PlatformSettingsResource, bind
    from smoke_platform.modelstore import load_model
    from smoke_platform.reference import evaluate_on_reference, load_reference

    source = bind(PlatformSettingsResource, resolved=True).reference_csv
    f = evaluate_on_reference(load_model(tag), load_reference(source or None))
    normal = len(f["excerpts"]) - f["fire_excerpts"]
    return [
        f"  on {f['rows']:,} real readings (never trained on): recall {f['recall']:.4f}, "
        f"false-alarm rate {f['false_alarm_rate']:.4f}, ROC-AUC {f['roc_auc']:.4f}",
        f"  alerts on {f['normal_excerpts_alerted']} of {normal} normal excerpts and "
        f"{f['fire_excerpts_alerted']} of {f['fire_excerpts']} fire excerpts",
    ]


# Reports over the stream output (the drift sensor reads `feature_drift`).
MONITORING_REPORTS = "key:model_performance_report or key:feature_drift or key:weekly_insights"


# Path settings the demo always takes from its own run folder: pointed at a deployment's
# folders, a demo must never write into them.
DEMO_OWNED = (
    "SMOKE_DATA_DIR",
    "SMOKE_REPORTS_DIR",
    "SMOKE_STREAM_DIR",
    "SMOKE_WINDOWED_DIR",
    "SMOKE_SPARK_CHECKPOINT_DIR",
)


def demo_run_folder(echo: Any) -> Path:
    """A new folder for this demo run, data/demo/<UTC time>[-n]/, made SMOKE_HOME of this
    process (and of the processes it starts), so every default path lands in it."""
    import os
    from datetime import UTC, datetime

    from smoke_platform.core.settings import under_home

    base = under_home("data") / "demo"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        run = base / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            run.mkdir()
            break
        except FileExistsError:
            continue
    for var in DEMO_OWNED:
        if os.environ.pop(var, None) is not None:
            echo(f"(the demo ignores {var}: it writes only under its own run folder)")
    os.environ["SMOKE_HOME"] = str(run.resolve())
    echo(f"This demo run writes under {run}/")
    return run.resolve()


def default_homes() -> None:
    """Outside `make` (which exports them), the Dagster instance and the BentoML store are
    the same folders under SMOKE_HOME: `.dagster_home/` (SQLite, telemetry off, made on
    first use) and `.bentoml/`. Set either variable to use another."""
    import os

    from smoke_platform.core.settings import ToolHomes, home

    root = home().resolve()
    os.environ.setdefault("BENTOML_HOME", str(root / ".bentoml"))
    if ToolHomes().dagster_home is None:
        os.environ["DAGSTER_HOME"] = str(root / ".dagster_home")
        DEFAULT_DAGSTER_HOME["made_here"] = True


DEFAULT_DAGSTER_HOME: dict[str, bool] = {"made_here": False}


def ensure_dagster_home() -> None:
    """The instance folder exists before Dagster opens it (the default one is made here)."""
    from smoke_platform.core.settings import ToolHomes

    folder = ToolHomes().dagster_home
    if folder is None:
        raise RuntimeError("DAGSTER_HOME is set by `smoke` before Dagster opens it")
    if DEFAULT_DAGSTER_HOME["made_here"] and not folder.exists():
        folder.mkdir(parents=True)
        (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
