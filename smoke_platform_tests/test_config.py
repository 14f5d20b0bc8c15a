"""One settings tree: `smoke config` shows every setting with its source, secrets masked,
and README's configuration table lists exactly the variables the tree knows."""

import re
import subprocess
import sys

from smoke_platform.config import MASK, settings_tree, variables
from smoke_platform_tests.conftest import REPO


def _readme_variables() -> set[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    found: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            found |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return found


def test_readme_lists_exactly_the_settings_the_tree_knows():
    documented, known = _readme_variables(), variables()
    assert documented - known == set(), "in README, not in the settings tree"
    assert known - documented == set(), "in the settings tree, not in README"


def test_values_and_sources_follow_the_environment(monkeypatch):
    monkeypatch.setenv("SMOKE_ROWS", "123")
    monkeypatch.setenv("SMOKE_RATE_LIMIT_PER_S", "7.5")
    rows = {s.variable: s for section in settings_tree().values() for s in section}
    assert (rows["SMOKE_ROWS"].value, rows["SMOKE_ROWS"].source) == (123, "environment")
    assert (rows["SMOKE_RATE_LIMIT_PER_S"].value, rows["SMOKE_RATE_LIMIT_PER_S"].source) == (
        7.5,
        "environment",
    )
    assert (rows["SMOKE_SEED"].value, rows["SMOKE_SEED"].source) == (0, "default")


def test_smoke_config_masks_secrets(monkeypatch):
    env = {
        "SMOKE_API_KEY": "key-that-must-not-print",
        "SMOKE_WEBHOOK_URL": "https://hooks.example/T0/secret-path",
    }
    import os

    done = subprocess.run(
        [sys.executable, "-m", "smoke_platform.cli", "config"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "must-not-print" not in done.stdout and "secret-path" not in done.stdout
    assert re.search(rf"SMOKE_API_KEY\s+= {re.escape(MASK)}\s+\(environment\)", done.stdout)
    assert "[service]" in done.stdout and "[stream and spark]" in done.stdout
