"""The compose file, the image and the scrape config agree with the code (no Docker engine
here, so this is what can be verified: the stack itself runs in tests/stack without it)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smoke_platform.cli import app

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if s.get("image") == "smoke-platform:latest"}
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)")


def test_every_python_service_runs_an_entry_point_that_exists():
    smoke_commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert len(OURS) >= 9
    for name, service in OURS.items():
        cmd = service["command"]
        assert shutil.which(cmd[0]) or (Path(sys.executable).parent / cmd[0]).exists(), name
        if cmd[0] == "smoke":
            assert cmd[1] in smoke_commands, (name, cmd)
            continue
        # dagster / dagster-webserver / dagster-daemon / bentoml: the same subcommand parses.
        words = [w for w in cmd[1:] if not w.startswith("-")][:2]
        if cmd[0] == "bentoml":
            words = words[:1]
        exe = Path(sys.executable).parent / cmd[0]
        done = subprocess.run(
            [str(exe), *words, "--help"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (name, cmd, done.stderr[-500:])
    modules = {w for s in OURS.values() for w in s["command"] if w.endswith(".definitions")}
    assert modules == {"smoke_platform.definitions"}


def test_every_variable_it_uses_is_documented():
    text = (REPO / "docker-compose.yml").read_text()
    from smoke_platform.config import reference_markdown

    docs = [(REPO / "README.md").read_text(), reference_markdown()]
    docs += [page.read_text() for page in (REPO / "docs").glob("*.md")]
    readme = "\n".join(docs)  # the docs site, its generated configuration page included
    used = set(INTERPOLATION.findall(text))
    for service in OURS.values():
        used |= set(service.get("environment", {}))
    undocumented = sorted(v for v in used if f"`{v}`" not in readme)
    assert not undocumented, undocumented
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    example = (REPO / ".env.example").read_text()
    assert required and all(f"\n{v}=" in f"\n{example}" for v in required), required
    assert not re.search(r"PASSWORD:\s*['\"]?[A-Za-z0-9]", text), "no secret values in the file"


def test_ports_do_not_clash_and_match_the_scrape_config():
    host_ports = [p.split(":")[0] for s in SERVICES.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), host_ports
    assert "ports" not in SERVICES["worker"] and "container_name" not in SERVICES["worker"]
    prometheus = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    [target] = jobs["smoke-service"]["static_configs"][0]["targets"]
    assert target == "service:3000" and "--port" in SERVICES["service"]["command"]
    assert SERVICES["service"]["command"][-1] == "3000"
    assert jobs["smoke-worker"]["dns_sd_configs"][0]["port"] == int(
        SERVICES["worker"]["environment"]["SMOKE_WORKER_METRICS_PORT"]
    )


def _needs(service: str) -> dict:
    return SERVICES[service].get("depends_on", {})


@pytest.mark.parametrize(
    ("service", "needs", "condition"),
    [
        ("kafka-topics", "kafka", "service_healthy"),
        ("initial-training", "postgres", "service_healthy"),
        ("initial-training", "kafka-topics", "service_completed_successfully"),
        ("service", "initial-training", "service_completed_successfully"),
        ("producer", "service", "service_healthy"),
        ("worker", "producer", "service_started"),
        ("spark", "worker", "service_started"),
        ("dagster-daemon", "spark", "service_started"),
        ("dagster-webserver", "code-location", "service_healthy"),
    ],
)
def test_start_order(service, needs, condition):
    assert _needs(service)[needs]["condition"] == condition


def test_long_running_services_restart_and_data_lives_in_volumes():
    one_shot = {"kafka-topics", "initial-training"}
    for name, service in SERVICES.items():
        expected = "no" if name in one_shot else "unless-stopped"
        assert service.get("restart") == expected, name
    for name in ("postgres", "kafka"):
        assert "healthcheck" in SERVICES[name]
    volumes = {v.split(":")[0] for s in OURS.values() for v in s["volumes"]}
    assert {"models", "data", "checkpoints"} <= volumes <= set(COMPOSE["volumes"])


def test_the_image_uses_the_lock_the_makefile_uses_and_a_non_root_user():
    dockerfile = (REPO / "Dockerfile").read_text()
    makefile = (REPO / "Makefile").read_text()
    uv = re.search(r"UV_VERSION := (\S+)", makefile)[1]
    assert f'"uv=={uv}"' in dockerfile
    assert "-r requirements/lock.txt" in dockerfile and "-r requirements/lock.txt" in makefile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    workspace = yaml.safe_load((REPO / "deploy/dagster/workspace.yaml").read_text())
    [location] = workspace["load_from"]
    assert location["grpc_server"]["host"] == "code-location"
    assert str(location["grpc_server"]["port"]) in SERVICES["code-location"]["command"]


def _stage(dockerfile: str, name: str) -> str:
    """The text of the build stage `FROM ... AS name`, continuation lines joined."""
    joined = dockerfile.replace("\\\n", " ")
    stages = re.split(r"^FROM ", joined, flags=re.M)
    [stage] = [s for s in stages if re.match(rf"\S+ AS {name}\b", s)]
    return stage


@pytest.mark.slow  # Maven resolves two dependency trees
def test_the_image_gives_the_spark_job_its_connectors_resolved_by_maven(tmp_path):
    """The image's jars stage runs the Makefile's Maven command on the pinned poms; its
    commands, run here into a temporary folder, give `connector_jars` every jar it needs
    where the final stage's settings point."""
    from streaming.config import StreamSettings
    from streaming.spark_job import connector_jars

    dockerfile = (REPO / "Dockerfile").read_text()
    mvn_copy = re.search(r"^MVN_COPY = (.+)$", (REPO / "Makefile").read_text(), re.M)[1]
    runs = re.findall(r"^RUN (.+)$", _stage(dockerfile, "jars"), re.M)
    assert runs and all(re.sub(r"\s+", " ", r).startswith(mvn_copy + " ") for r in runs), runs
    for run in runs:
        cmd = run.replace("/jvm/", f"{REPO}/jvm/").replace("/jars/", f"{tmp_path}/jars/")
        done = subprocess.run(cmd.split(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    [(source, target)] = re.findall(r"^COPY --from=jars (\S+) (\S+)$", dockerfile, re.M)
    env = dict(re.findall(r"(SMOKE_SPARK_\w+_JARS_DIR)=(\S+)", dockerfile))
    assert set(env) == {"SMOKE_SPARK_KAFKA_JARS_DIR", "SMOKE_SPARK_DELTA_JARS_DIR"}
    here = {
        k.removeprefix("SMOKE_").lower(): v.replace(target, f"{tmp_path}{source}", 1)
        for k, v in env.items()
    }
    jars = connector_jars(StreamSettings(**here))
    assert any("spark-sql-kafka" in j for j in jars) and any("delta-spark" in j for j in jars)
    assert all(j.startswith(str(tmp_path)) for j in jars)


def _pom_property(pom: Path, name: str) -> str:
    import xml.etree.ElementTree as ET

    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    found = ET.parse(pom).getroot().find(f"m:properties/m:{name}", ns)
    assert found is not None and found.text, (pom, name)
    return found.text


def test_the_embedded_kafka_is_the_version_and_settings_compose_runs():
    from streaming.embedded import BROKER_SETTINGS

    version = _pom_property(REPO / "jvm" / "kafka" / "pom.xml", "kafka.version")
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{version}"
    env = SERVICES["kafka"]["environment"]
    for key, value in BROKER_SETTINGS.items():
        assert str(env["KAFKA_" + key.upper().replace(".", "_")]) == value, key


def test_the_runtime_lock_pins_the_same_versions_as_the_dev_lock_without_test_tools():
    """`make demo` installs requirements/lock.txt; `make test` adds dev-lock.txt on top."""

    def pins(name):
        text = (REPO / "requirements" / name).read_text()
        return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M))

    runtime, dev = pins("lock.txt"), pins("dev-lock.txt")
    assert runtime and {k: dev.get(k) for k in runtime} == runtime
    assert not {"pytest", "ruff", "mypy", "playwright", "hypothesis"} & set(runtime)


def test_spark_kafka_connector_matches_the_pinned_pyspark():
    import pyspark

    connector = _pom_property(REPO / "jvm" / "spark-kafka" / "pom.xml", "spark.version")
    assert connector == pyspark.__version__
    lock = (REPO / "requirements" / "lock.txt").read_text()
    assert f"pyspark=={connector}" in lock


def test_spark_delta_connector_is_built_for_the_pinned_pyspark():
    import pyspark

    minor = _pom_property(REPO / "jvm" / "spark-delta" / "pom.xml", "spark.minor")
    assert minor == ".".join(pyspark.__version__.split(".")[:2])
