"""Every mistake a user can make at the command line ends in a line or two that names the
problem and the value and says what to do; never a traceback (that is behind --debug)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from smoke_platform.cli.app import SCENARIO_NAMES
from smoke_platform.errors import EXIT_CONFIG


def smoke(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "smoke_platform.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def _short_error(result, *expected: str, code: int = 2) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == code, out
    assert "Traceback" not in out and "╭" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) <= 2, out
    assert lines[0].startswith("error: "), out
    for text in expected:
        assert text in lines[0], out


def test_a_missing_csv(tmp_path):
    missing = tmp_path / "nope.csv"
    _short_error(smoke("produce", "--source", "csv", "--csv", str(missing)), str(missing))


def test_a_malformed_csv(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    _short_error(
        smoke("produce", "--source", "csv", "--csv", str(bad)),
        "not a Kaggle-format CSV",
        "missing column(s)",
    )


@pytest.mark.parametrize("command", ["produce", "up"])
def test_a_speed_that_is_not_one(command):
    _short_error(smoke(command, "--speed", "fast"), "'fast'", "realtime")


@pytest.mark.parametrize("command", ["produce", "up"])
def test_an_unknown_scenario_lists_the_scenarios(command):
    _short_error(smoke(command, "--scenario", "volcano"), "'volcano'", "wood_fire, gas_fire")


def test_the_help_lists_the_scenarios_in_full_width():
    out = smoke("produce", "--help", env={"COLUMNS": "200"}).stdout
    assert all(name in out for name in SCENARIO_NAMES)
    assert "--debug" in smoke("--help").stdout


def test_scenario_names_are_the_simulators():
    from smoke_platform.core.simulate import SCENARIOS

    assert set(SCENARIO_NAMES) == set(SCENARIOS)


def test_a_setting_that_is_not_a_number_names_the_variable():
    _short_error(
        smoke("worker", env={"SMOKE_BATCH_SIZE": "abc"}),
        "SMOKE_BATCH_SIZE='abc'",
        "integer",
        code=EXIT_CONFIG,  # a wrong setting: `smoke up` does not restart it
    )


@pytest.mark.slow
def test_a_dagster_setting_that_is_not_a_number_names_the_variable():
    _short_error(
        smoke("materialize", env={"SMOKE_ROWS": "abc"}),
        "SMOKE_ROWS='abc'",
        "SMOKE_ROWS=60000",
        code=EXIT_CONFIG,
    )


@pytest.mark.slow
def test_an_unreachable_broker_names_the_setting():
    _short_error(
        smoke("produce", "--count", "1", env={"SMOKE_KAFKA_BOOTSTRAP": "127.0.0.1:9"}),
        "127.0.0.1:9",
        "SMOKE_KAFKA_BOOTSTRAP",
    )


def test_a_busy_port_for_the_stack_names_the_port_and_the_option(tmp_path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = smoke(
            "up", "--broker-port", str(port), env={"SMOKE_STACK_DIR": str(tmp_path / "stack")}
        )
    _short_error(result, str(port), "--broker-port", "already in use")


@pytest.mark.parametrize(
    "args",
    [
        ("produce", "--count", "-5"),
        ("produce", "--seed", "-5"),
        ("worker", "--idle-stop", "-5"),
        ("generate", "--seed", "-5"),
        ("generate", "--rows", "99999999999999999999"),
        ("up", "--count", "-1"),
    ],
)
def test_a_number_out_of_range_names_the_option_and_the_range(args, tmp_path):
    """Refused by the command line's own parsing (its usage line and a boxed message),
    before anything runs."""
    work = tmp_path / "work"
    work.mkdir()
    result = smoke(*args, cwd=work)
    out = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in out, out
    assert f"Invalid value for '{args[1]}'" in out and ("greater" in out or "less" in out), out
    assert list(work.iterdir()) == []


def test_generate_into_a_folder_or_import_from_a_file_says_which_it_is(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    _short_error(smoke("generate", "--out", str(folder), "--overwrite"), "is a folder")
    assert list(folder.iterdir()) == []
    file = tmp_path / "predictions.parquet"
    file.write_bytes(b"PAR1")
    _short_error(smoke("tables", "import", str(file)), str(file), "a file")


def test_generate_never_replaces_a_file_unless_told(tmp_path):
    out = tmp_path / "readings.csv"
    out.write_text("mine\n")
    result = smoke("generate", "--out", str(out), "--rows", "100")
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert out.read_text() == "mine\n"
    assert smoke("generate", "--out", str(out), "--rows", "100", "--overwrite").returncode == 0
    assert out.read_text().startswith(",UTC,")


def test_debug_shows_the_traceback(tmp_path):
    result = smoke("--debug", "produce", "--source", "csv", "--csv", str(tmp_path / "x.csv"))
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.dagster
def test_by_hand_without_make_the_instance_and_store_default_under_smoke_home(tmp_path):
    """`smoke materialize` outside `make` (no DAGSTER_HOME, no BENTOML_HOME): the instance
    is made under SMOKE_HOME (once a 65-line DagsterHomeNotSetError)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "BENTOML_HOME")}
    env.update(SMOKE_HOME=str(tmp_path), SMOKE_ROWS="3000")
    result = subprocess.run(
        [sys.executable, "-m", "smoke_platform.cli", "materialize", "--select",
         "key:raw_sensor_readings"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
    assert (tmp_path / ".dagster_home" / "dagster.yaml").is_file()
    assert (tmp_path / "data" / "assets" / "raw_sensor_readings.parquet").is_file()
