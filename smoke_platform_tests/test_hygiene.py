"""The suite's own hygiene: every test has its own data root, so output a demo (or a
deployment) left at the default root changes no result, and nothing a test writes lands
in the checkout (the session fixture `_checkout_untouched` fails the run otherwise)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from smoke_platform.core.settings import home, under_home
from smoke_platform.defs.common.resources import PlatformSettingsResource
from smoke_platform_tests.conftest import REPO

SENSOR_TEST = (
    "smoke_platform_tests/defs/test_monitoring.py"
    "::test_a_partition_appears_for_each_day_of_stream_output"
)


def _demo_like_output(root: Path) -> list[Path]:
    """What `make demo` used to leave at the default root: window and prediction files."""
    frame = pd.DataFrame({"sensor_id": ["s"], "ts": ["2026-11-28T10:00:00+00:00"], "n": [1]})
    paths = [
        root / "data" / "windowed" / "date=2026-11-28" / "part-0.parquet",
        root / "data" / "processed_stream" / "predictions" / "date=2026-11-28" / "p0.parquet",
    ]
    for path in paths:
        path.parent.mkdir(parents=True)
        frame.to_parquet(path)
    return paths


def test_every_default_path_is_under_the_tests_own_root(_own_root):
    settings = PlatformSettingsResource()
    assert home() == _own_root and Path.cwd() == _own_root
    for path in (settings.path("assets", "x"), settings.report_dir("r")):
        assert path.is_relative_to(_own_root)
    assert settings.stream_root.is_relative_to(_own_root)
    assert settings.windowed_root.is_relative_to(_own_root)
    assert under_home("/abs/olute") == Path("/abs/olute")
    for name in ("SMOKE_DATA_DIR", "SMOKE_STREAM_DIR", "SMOKE_WINDOWED_DIR"):
        assert name not in os.environ


@pytest.mark.dagster
def test_output_at_the_default_root_changes_no_test_result(tmp_path):
    """A test that once failed after `make demo` (it read the demo's data/windowed) runs in
    a pytest of its own, started in a folder full of demo-like output that is also the
    shell's SMOKE_HOME: it passes, and the folder is left as it was."""
    shell_root = tmp_path / "shell"
    written = _demo_like_output(shell_root)
    before = {p: p.stat().st_mtime_ns for p in written}
    env = {**os.environ, "SMOKE_HOME": str(shell_root), "SMOKE_WINDOWED_DIR": "data/windowed"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(REPO),
            "-c",
            str(REPO / "pyproject.toml"),
            str(REPO / SENSOR_TEST),
        ],
        cwd=shell_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in written} == before
    assert sorted(p for p in shell_root.rglob("*") if p.is_file()) == sorted(written)


def test_each_demo_run_gets_a_folder_of_its_own_and_ignores_deployment_paths(
    _own_root, monkeypatch
):
    """`smoke demo` writes under a new data/demo/<time>/ folder made its SMOKE_HOME, and
    ignores path settings that point elsewhere (a deployment's stream output)."""
    from smoke_platform.runs import demo_run_folder

    deployment = _own_root / "srv" / "stream"
    _demo_like_output(deployment)
    kept = sorted(deployment.rglob("*"))
    monkeypatch.setenv("SMOKE_STREAM_DIR", str(deployment))
    said: list[str] = []
    first = demo_run_folder(said.append)
    assert "SMOKE_STREAM_DIR" not in os.environ
    assert any("ignores SMOKE_STREAM_DIR" in line for line in said)
    assert home() == first and first.parent == _own_root / "data" / "demo"
    assert PlatformSettingsResource().stream_root.is_relative_to(first)
    monkeypatch.setenv("SMOKE_HOME", str(_own_root))
    second = demo_run_folder(said.append)
    assert second != first and second.parent == first.parent
    assert sorted(deployment.rglob("*")) == kept


SETTINGS_MODULES = {"smoke_platform/core/settings.py", "smoke_platform/config.py"}
# Outside them the environment is only written (variables for the tools underneath or
# for child processes) or copied whole for a child: never read for a setting of ours.
_WRITES = re.compile(
    r"os\.environ(\[[^\]]+\]\s*=(?!=)|\.setdefault\(|\.pop\(|\.update\()|\{\*\*os\.environ\b"
)


def test_only_the_settings_modules_read_the_environment():
    """`grep -rn os.environ smoke_platform streaming bentos`: reads only where the settings
    tree lives; a new `os.environ.get("SMOKE_...")` elsewhere fails here."""
    reads = []
    for package in ("smoke_platform", "streaming", "bentos"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = str(path.relative_to(REPO))
            if rel in SETTINGS_MODULES:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                uses = line.count("os.environ") + line.count("os.getenv")
                if uses and len(_WRITES.findall(line)) < uses:
                    reads.append(f"{rel}:{n}: {line.strip()}")
    assert reads == [], "\n".join(reads)
    # ... and the check itself catches a read.
    assert not _WRITES.search('x = os.environ.get("SMOKE_SEED")')
    assert not _WRITES.search('if "DAGSTER_HOME" not in os.environ:')


def test_no_module_over_400_lines_without_a_reason_in_its_docstring():
    import ast

    long = {}
    for folder in ("smoke_platform", "streaming", "bentos"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            if text.count("\n") <= 400:
                continue
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "Over 400 lines:" not in doc:
                long[str(path.relative_to(REPO))] = text.count("\n")
    assert not long, f"modules over 400 lines without 'Over 400 lines: <why>': {long}"
