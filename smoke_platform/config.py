"""Every setting of the platform in one tree: section, variable, value, default, source.

The sections are those of `PlatformSettings` (each variable declared once, in its
section); `smoke config` prints the tree with secrets masked.
"""

from __future__ import annotations

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
    description: str = ""
    secret: bool = False  # a SecretStr setting (passwords, keys)

    def shown(self) -> str:
        if (self.secret or self.variable in SECRETS) and self.value not in ("", None):
            return MASK
        return "" if self.value is None else str(self.value)


def _section(section: str, cls: Any) -> list[Setting]:
    from smoke_platform.core.settings import is_set, variable

    values = cls()
    out = []
    for name, info in cls.model_fields.items():
        var = variable(cls, name)
        value = getattr(values, name)
        secret = hasattr(value, "get_secret_value")
        if secret:
            value = value.get_secret_value()
        default = (
            info.default.get_secret_value()
            if hasattr(info.default, "get_secret_value")
            else info.default
        )
        source = "environment" if is_set(var) else "default"
        out.append(Setting(section, var, value, default, source, info.description or "", secret))
    return out


def settings_tree() -> dict[str, list[Setting]]:
    """The effective settings of this process's environment, by section of the one tree
    (`smoke_platform.core.settings.PlatformSettings`), then the tools' own variables."""
    from smoke_platform.core.settings import env_value, is_set, sections

    tree = {name: _section(name, cls) for name, cls in sections().items()}
    tree["tools"] = [
        Setting(
            "tools",
            name,
            env_value(name),
            None,
            "environment" if is_set(name) else "unset",
            what,
        )
        for name, what in EXTERNAL.items()
    ]
    return tree


def variables() -> set[str]:
    """Every variable the tree knows (the docs' configuration page lists exactly these)."""
    return {s.variable for section in settings_tree().values() for s in section}


def render(tree: dict[str, list[Setting]]) -> str:
    """The tree as text: one block per section, one line per variable."""
    lines = []
    for section, settings in tree.items():
        lines.append(f"[{section}]")
        width = max(len(s.variable) for s in settings)
        for s in settings:
            lines.append(f"  {s.variable:<{width}} = {s.shown()}  ({s.source})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def reference_markdown() -> str:
    """The configuration reference (the docs' configuration page): one table per section
    of the tree, each setting's variable, default and description; then the tools'."""
    from smoke_platform.core.settings import sections, variable

    out = []
    for name, cls in sections().items():
        out += [f"## `{name}`", "", (cls.__doc__ or "").strip().splitlines()[0], ""]
        out += ["| variable | default | what it is for |", "|---|---|---|"]
        for field, info in cls.model_fields.items():
            default = info.default
            if hasattr(default, "get_secret_value"):
                default = default.get_secret_value()
            shown = "*(empty)*" if default in ("", None) else f"`{default}`"
            description = (info.description or "").replace("|", "\\|")
            out.append(f"| `{variable(cls, field)}` | {shown} | {description} |")
        out.append("")
    out += ["## Tools underneath", "", "| variable | what it is for |", "|---|---|"]
    out += [f"| `{name}` | {what} |" for name, what in EXTERNAL.items()]
    return "\n".join(out) + "\n"
