"""The platform's long-running processes, started the same way by the demo, the
Docker-free stack (`smoke up`) and the tests."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from smoke_platform.core.settings import (
    KafkaSettings,
    PathSettings,
    is_set,
    under_home,
    variable,
)
from smoke_platform.procs import (
    ManagedProcess,
    ProcessFailed,
    free_port,
    group_alive,
    port_in_use,
    stop_group,
)
from smoke_platform.serving import REPO_ROOT, bentoml_serve


def dagster_dev(
    log_path: Path, port: int | None = None, env: dict[str, str] | None = None
) -> tuple[ManagedProcess, str]:
    """`dagster dev` (webserver + daemon + code server) on 127.0.0.1; waits for the UI."""
    port = port or free_port()
    # The workspace file names the code location `smoke_platform`, however it is started
    # (`make ui` reads the same file), so URLs and run records agree.
    # Its daemon logs at INFO one "checking sensor X" line per sensor per 30 s tick (about
    # 700 lines an hour that say nothing new: found by a 10-minute `smoke up`); warnings and
    # errors stay, and every sensor tick and run is on the UI's pages.
    cmd = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(REPO_ROOT / "workspace.yaml"),
        "-h", "127.0.0.1", "-p", str(port),
        "--log-level", "warning",
    ]  # fmt: skip
    proc = ManagedProcess("dagster dev", cmd, log_path, env=env, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    proc.start().wait_http(f"{url}/server_info", timeout=240)
    return proc, url


# ---- the Docker-free stack: `smoke up` / `smoke down` (`make up` / `make down`) ---------
PIDS_FILE = "pids.json"


FLEET_PREFIX = "sensor-"


@dataclass
class StackConfig:
    """Where the stack keeps its logs and process ids, its ports, and what the producer sends."""

    state_dir: Path = field(default_factory=lambda: under_home(PathSettings().stack_dir))
    broker_port: int = 9092
    service_port: int = 3001
    dagster_port: int = 3000
    dashboard_port: int = 3002
    worker_metrics_port: int = 9108
    partitions: int = 3
    workers: int = 1
    sensors: int = 8
    scenarios: list[str] = field(default_factory=list)
    speed: str = "realtime"
    count: int | None = None
    spark: bool = True

    def producer_args(self) -> list[str]:
        """`smoke produce` for the simulated fleet: its sensors are sensor-NNN (readings
        sent by hand default to manual-NNN, so they never touch the fleet's state)."""
        args = ["produce", "--sensors", str(self.sensors), "--speed", self.speed]
        args += ["--sensor-prefix", FLEET_PREFIX]
        for scenario in self.scenarios:
            args += ["--scenario", scenario]
        return args + (["--count", str(self.count)] if self.count is not None else [])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "smoke_platform.cli", *args]


def _alive_groups(pids: dict[str, int]) -> dict[str, int]:
    """The recorded process groups that still have a process in them."""
    return {name: pgid for name, pgid in pids.items() if group_alive(pgid)}


def read_pids(cfg: StackConfig) -> dict[str, int]:
    path = cfg.state_dir / PIDS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def ensure_champion(
    log_path: Path, env: dict[str, str] | None = None, echo: Callable[[str], object] = print
) -> tuple[str, str]:
    """The initial training: when no model has been promoted yet, materialise the asset graph
    (raw data, checks, training, gate, bento) in a `smoke materialize` process recorded in
    DAGSTER_HOME. Then make sure the champion has a bento. Returns (bento tag, model tag)."""
    from smoke_platform import modelstore
    from smoke_platform.defs.serving.assets import build_bento, default_build_ctx, find_bento

    if modelstore.model_info(modelstore.served_model_tag()) is None:
        echo("no promoted model yet: initial training (the whole asset graph) ...")
        training = ManagedProcess(
            "initial training", _cli("materialize"), log_path, env=env, cwd=REPO_ROOT
        ).start()
        if training.proc is None or training.proc.wait() != 0:
            raise ProcessFailed(f"initial training failed; log {log_path}:\n{training.log_tail()}")
    champion = modelstore.model_info(modelstore.served_model_tag())
    if champion is None:
        raise ProcessFailed("training ran but promoted no model (see the training report)")
    bento = find_bento(champion["tag"]) or build_bento(champion["tag"], default_build_ctx())
    return str(bento.tag), str(champion["tag"])


def up(cfg: StackConfig, echo: Callable[[str], object] = print) -> dict[str, str]:
    """Start broker -> (initial training) -> service -> workers -> producer -> Spark job ->
    Dagster (webserver + daemon), each in its own process group; record them for `down`.
    Returns the URLs. On any failure everything started so far is stopped again."""
    from streaming.admin import create_topics, platform_topics
    from streaming.config import StreamSettings
    from streaming.embedded import start_broker

    running = _alive_groups(read_pids(cfg))
    if running:
        raise ProcessFailed(f"the stack is already running ({', '.join(running)}): `make down`")
    ports = {
        "--broker-port": cfg.broker_port,
        "--service-port": cfg.service_port,
        "--dagster-port": cfg.dagster_port,
        "--dashboard-port": cfg.dashboard_port,
        **{
            f"--worker-metrics-port (+{i})": cfg.worker_metrics_port + i for i in range(cfg.workers)
        },
    }
    busy = [f"{port} ({option})" for option, port in ports.items() if port_in_use(port)]
    if busy:
        from smoke_platform.errors import UserError

        raise UserError(
            f"port {', '.join(busy)} on 127.0.0.1 is already in use: stop what holds it "
            "(an earlier stack: `make down`) or choose another port with that option"
        )
    logs = cfg.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started: dict[str, ManagedProcess] = {}

    def spawn(name: str, args: list[str], env: dict[str, str]) -> ManagedProcess:
        proc = ManagedProcess(name, _cli(*args), logs / f"{name}.log", env=env, cwd=REPO_ROOT)
        return proc.start()

    def record() -> None:
        pids = {n: p.proc.pid for n, p in started.items() if p.proc is not None}
        (cfg.state_dir / PIDS_FILE).write_text(json.dumps(pids, indent=1))

    try:
        broker, bootstrap = start_broker(
            logs / "broker.log", cfg.broker_port, data_dir=cfg.state_dir / "kafka"
        )
        started["broker"] = broker
        record()
        # The stack's own broker speaks PLAINTEXT on 127.0.0.1: a cluster's security
        # settings exported in the shell are not for it, and every process is told so.
        local = StreamSettings(kafka_bootstrap=bootstrap, kafka_security_protocol="PLAINTEXT")
        create_topics(bootstrap, platform_topics(local, cfg.partitions))
        echo(f"broker        {bootstrap} (topics with {cfg.partitions} partitions)")
        protocol = variable(KafkaSettings, "kafka_security_protocol")
        if is_set(protocol):
            echo(
                f"              {protocol} (set in this shell) is not used: the stack's "
                "processes talk PLAINTEXT to its own broker"
            )
        service_url = f"http://127.0.0.1:{cfg.service_port}"
        env = {
            "SMOKE_KAFKA_BOOTSTRAP": bootstrap,
            "SMOKE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            "SMOKE_SERVICE_URL": service_url,
            "PYTHONUNBUFFERED": "1",
        }
        bento, champion = ensure_champion(logs / "initial-training.log", env, echo)
        started["service"], _ = bentoml_serve(bento, logs / "service.log", cfg.service_port, env)
        record()
        echo(f"service       {service_url} (bentoml serve {bento}, model {champion})")
        for i in range(cfg.workers):
            port = cfg.worker_metrics_port + i
            name = f"worker-{i}"
            supervised = [
                "supervise", "--name", name,
                "--status-file", str(cfg.state_dir / "status" / f"{name}.json"),
                "--", *_cli("worker"),
            ]  # fmt: skip
            worker_env = {**env, "SMOKE_WORKER_METRICS_PORT": str(port), "SMOKE_WORKER_ID": name}
            worker = spawn(name, supervised, worker_env)
            started[worker.name] = worker
            record()
            worker.wait_port(port, timeout=120)
            echo(f"worker-{i}      metrics http://127.0.0.1:{port}/metrics")
        dashboard = ["dashboard", "--port", str(cfg.dashboard_port)]
        for i in range(cfg.workers):
            metrics = f"http://127.0.0.1:{cfg.worker_metrics_port + i}/metrics"
            dashboard += ["--worker-metrics", metrics]
        started["dashboard"] = spawn("dashboard", dashboard, env)
        record()
        started["dashboard"].wait_port(cfg.dashboard_port, timeout=60)
        echo(f"dashboard     http://127.0.0.1:{cfg.dashboard_port}/ (live predictions and alarms)")
        started["producer"] = spawn("producer", cfg.producer_args(), env)
        record()
        echo(f"producer      {cfg.sensors} simulated sensors at {cfg.speed} speed")
        if cfg.spark:
            started["spark"] = spawn("spark", ["spark"], env)
            record()
            echo(f"spark         5-minute windows (log {logs / 'spark.log'})")
        started["dagster"], ui = dagster_dev(logs / "dagster.log", cfg.dagster_port, env)
        record()
        echo(f"dagster       {ui} (webserver + daemon: schedules and sensors run)")
    except BaseException:
        for proc in reversed(started.values()):
            proc.stop()
        (cfg.state_dir / PIDS_FILE).unlink(missing_ok=True)
        raise
    return {"broker": bootstrap, "service": service_url, "dagster": ui}


def down(
    cfg: StackConfig, echo: Callable[[str], object] = print, timeout: float = 30.0
) -> list[str]:
    """Stop what `up` started, newest first, each with `stop_group` (the worker drains and
    commits, Dagster stops its webserver and daemon). Returns the names of groups that had
    to be killed (normally none)."""
    pids = read_pids(cfg)
    killed = []
    for name, pgid in reversed(list(pids.items())):
        if not group_alive(pgid):
            continue
        if stop_group(pgid, timeout):
            killed.append(name)
        echo(f"stopped {name}" + (f" (killed after {timeout:.0f} s)" if name in killed else ""))
    (cfg.state_dir / PIDS_FILE).unlink(missing_ok=True)
    return killed
