"""The deployment instance: the repository's dagster.yaml against a real PostgreSQL server."""

import shutil
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from smoke_platform.definitions import defs

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres, pytest.mark.dagster]


def test_graph_runs_and_checks_are_stored_in_postgres(postgres_url, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_url)
    # Settings reach the resources through EnvVar, as in a deployment.
    monkeypatch.setenv("SMOKE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SMOKE_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("SMOKE_ROWS", "3000")

    definitions = defs()
    job = definitions.resolve_job_def("data_quality_job")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = job.execute_in_process(instance=instance)
        assert result.success
        run_id = result.run_id

    raw = result.asset_materializations_for_node("raw_sensor_readings")[0].metadata
    assert raw["dagster/row_count"].value == 3000
    assert (tmp_path / "reports" / "data_quality" / "report.md").exists()

    conn = psycopg2.connect(postgres_url.replace("+psycopg2", ""))
    with conn, conn.cursor() as cur:
        cur.execute("select status from runs where run_id = %s", (run_id,))
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute(
            "select check_name, execution_status from asset_check_executions where run_id = %s",
            (run_id,),
        )
        stored = dict(cur.fetchall())
    conn.close()
    # Six blocking checks and the ceiling-share warning (3,000 rows: within the real range).
    assert len(stored) == 7 and set(stored.values()) == {"SUCCEEDED"}, stored
