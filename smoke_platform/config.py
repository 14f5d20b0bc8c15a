"""Every setting of the platform in one tree: section, variable, value, default, source.

The sections are the settings classes each process reads (pydantic-settings) and the
tables that bind the Dagster resources to their variables; `smoke config` prints the
tree with secrets masked, and a test holds README's configuration table to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

MASK = "********"
# Values that carry credentials: never printed.
SECRETS = frozenset({"SMOKE_API_KEY", "SMOKE_WEBHOOK_URL", "DAGSTER_POSTGRES_URL"})
# Variables of the tools underneath that the platform sets or reads.
EXTERNAL = {
    "DAGSTER_HOME": "Dagster instance folder (smoke: <SMOKE_HOME>/.dagster_home when unset)",
    "BENTOML_HOME": "BentoML model and bento store (smoke: <SMOKE_HOME>/.bentoml when unset)",
    "DAGSTER_POSTGRES_URL": "the deployment dagster.yaml's PostgreSQL URL",
    "OMP_NUM_THREADS": "OpenMP threads per model call (the service: 1)",
    "DAGSTER_DISABLE_TELEMETRY": "set by make",
    "BENTOML_DO_NOT_TRACK": "set by make",
}


@dataclass(frozen=True)
class Setting:
    section: str
    variable: str
    value: Any
    default: Any
    source: str  # "environment" or "default"

    def shown(self) -> str:
        if self.variable in SECRETS and self.value not in ("", None):
            return MASK
        return "" if self.value is None else str(self.value)


def _from_settings_class(section: str, cls: Any) -> list[Setting]:
    prefix = cls.model_config.get("env_prefix", "")
    values = cls()
    out = []
    for name, info in cls.model_fields.items():
        variable = f"{prefix}{name}".upper()
        value = getattr(values, name)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        source = "environment" if variable in os.environ else "default"
        out.append(Setting(section, variable, value, info.default, source))
    return out


def _from_resource_table(section: str, cls: Any, table: dict[str, tuple[str, type]]) -> list:
    from smoke_platform.defs.common.resources import from_env

    resolved = from_env(cls, table, resolved=True)
    return [
        Setting(
            section,
            variable,
            getattr(resolved, field),
            cls.model_fields[field].default,
            "environment" if variable in os.environ else "default",
        )
        for field, (variable, _) in table.items()
    ]


def settings_tree() -> dict[str, list[Setting]]:
    """The effective settings of this process's environment, by section."""
    from smoke_platform.core import settings as core
    from smoke_platform.defs.common import resources as res
    from streaming.config import StreamSettings

    tree: dict[str, list[Setting]] = {
        "paths": _from_settings_class("paths", core.HomeSettings)
        + _from_settings_class("paths", core.StackSettings),
        "data (Dagster)": _from_resource_table(
            "data (Dagster)", res.PlatformSettingsResource, res.SETTINGS_ENV
        ),
        "training (Dagster)": _from_resource_table(
            "training (Dagster)", res.TrainingSettingsResource, res.TRAINING_ENV
        ),
        "monitoring (Dagster)": _from_resource_table(
            "monitoring (Dagster)", res.MonitoringSettingsResource, res.MONITORING_ENV
        ),
        "notifications (Dagster)": _from_resource_table(
            "notifications (Dagster)", res.NotifierResource, res.NOTIFIER_ENV
        ),
        "model": _from_settings_class("model", core.ModelSettings),
        "service": _from_settings_class("service", core.ServiceSettings),
        "readings": _from_settings_class("readings", core.InputSettings),
        "stream and spark": _from_settings_class("stream and spark", StreamSettings),
        "cli": _from_settings_class("cli", core.CliSettings),
        "tools": [
            Setting(
                "tools",
                name,
                os.environ.get(name),
                None,
                "environment" if name in os.environ else "unset",
            )
            for name in EXTERNAL
        ],
    }
    return tree


def variables() -> set[str]:
    """Every variable the tree knows (the README table must list exactly these)."""
    return {s.variable for section in settings_tree().values() for s in section}


def render(tree: dict[str, list[Setting]]) -> str:
    """The tree as text: one block per section, one line per variable (shared variables,
    e.g. SMOKE_STREAM_DIR read by Dagster and by the worker, appear in each section)."""
    lines = []
    for section, settings in tree.items():
        lines.append(f"[{section}]")
        width = max(len(s.variable) for s in settings)
        for s in settings:
            lines.append(f"  {s.variable:<{width}} = {s.shown()}  ({s.source})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
