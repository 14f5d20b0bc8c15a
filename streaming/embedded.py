"""The embedded Apache Kafka for the demo, `smoke up` and the tests (the deployment runs its
own brokers; `streaming.admin` is what talks to either).

Apache Kafka (the version docker-compose.yml runs) in KRaft mode, no ZooKeeper, started
from the jars `make setup` resolves from Maven Central into `.jars/kafka`
(`jvm/kafka/pom.xml`). Each node is a combined broker + controller listening on
127.0.0.1 only, with its log under the given data folder and its own log4j output in a
file. One starter serves the demo, the local stack and the test fixtures; `KafkaCluster`
starts 1 or more nodes (3 for the broker-failure test: replication factor 3,
`min.insync.replicas=2`).
"""

from __future__ import annotations

import base64
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smoke_platform.core.settings import SparkSettings
from smoke_platform.procs import ManagedProcess, ProcessFailed, free_port
from streaming.admin import answers_metadata
from streaming.config import KAFKA_LOG

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_POM = REPO_ROOT / "jvm" / "kafka" / "pom.xml"
KAFKA_MAIN = "kafka.Kafka"
# The broker settings the embedded nodes and docker-compose.yml's `kafka` service share
# (a test compares them, and the Kafka version in jvm/kafka/pom.xml with compose's image).
BROKER_SETTINGS: dict[str, Any] = {
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "auto.create.topics.enable": "false",  # topics are created with their partition counts
}
STORAGE_TOOL = "kafka.tools.StorageTool"


def kafka_jars(jars_dir: str | Path | None = None) -> Path:
    """The folder of Apache Kafka's jars (fails naming the command that fetches them)."""
    folder = Path(jars_dir or SparkSettings().kafka_jars_dir)
    if not folder.is_absolute():
        folder = REPO_ROOT / folder
    if not any(folder.glob("kafka_2.13-*.jar")):
        raise FileNotFoundError(
            f"Apache Kafka's jars are not in {folder}: run 'make setup' (it resolves "
            f"{KAFKA_POM.relative_to(REPO_ROOT)} from Maven Central with mvn), or set "
            "SMOKE_KAFKA_JARS_DIR to a folder holding them"
        )
    return folder


def java() -> str:
    found = shutil.which("java")
    if not found:
        raise FileNotFoundError("java not found: Apache Kafka and Spark need a Java 17 runtime")
    return found


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 without padding, never starting
    with '-' (like Kafka's own `Uuid.randomUuid`: command-line tools would read it as an
    option; one id in 64 did, and formatting failed)."""
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not found.startswith("-"):
            return found


_LOG4J = """\
status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


@dataclass(frozen=True)
class Security:
    """A node secured as Kafka's security documentation describes: clients and the other
    brokers on a SASL_SSL listener (SCRAM-SHA-512 users, created when the log folder is
    formatted), the controller listener on mutual TLS (the node's certificate is its
    principal), `StandardAuthorizer` with no access unless an ACL grants it. `keystore`:
    PEM holding the node's private key (PKCS#8) then its certificate, for 127.0.0.1;
    `ca`: the PEM CA that signed it. `users` name -> password; `admin` is the super user.
    `mtls`: also a client listener on SSL requiring a certificate of `ca` (mutual TLS, on
    each node's `mtls_port`); such a client's principal is `User:CN=<its certificate's CN>`."""

    keystore: Path
    ca: Path
    users: dict[str, str] = field(repr=False)  # passwords: never in a test's failure output
    node_principal: str = "User:CN=smoke-kafka"  # the node certificate's subject
    mtls: bool = False

    def properties(self, node: KafkaNode) -> dict[str, Any]:
        admin = self.users["admin"]
        props: dict[str, Any] = {
            "listeners": f"SASL_SSL://127.0.0.1:{node.port},"
            f"CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{node.port}",
            "listener.security.protocol.map": "CONTROLLER:SSL,SASL_SSL:SASL_SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="admin" password="{admin}";'
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": self.keystore,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": self.ca,
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:admin;{self.node_principal}",
            "allow.everyone.if.no.acl.found": "false",
        }
        if self.mtls:
            mtls = f",MTLS://127.0.0.1:{node.mtls_port}"
            props["listeners"] += mtls
            props["advertised.listeners"] += mtls
            props["listener.security.protocol.map"] += ",MTLS:SSL"
            props["listener.name.mtls.ssl.client.auth"] = "required"
        return props

    def format_args(self) -> list[str]:
        return [
            arg
            for name, password in self.users.items()
            for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
        ]

    def client(self, bootstrap: str, user: str = "admin") -> dict[str, Any]:
        """librdkafka configuration of `user` for this cluster."""
        return {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": self.users[user],
            "ssl.ca.location": str(self.ca),
        }


@dataclass
class KafkaNode:
    """One combined broker + controller."""

    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    proc: ManagedProcess | None = None
    mtls_port: int = 0  # the mutual-TLS client listener's (`Security.mtls`), else 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class KafkaCluster:
    """Apache Kafka nodes on 127.0.0.1 sharing one KRaft quorum.

    `start()` formats each node's log folder once (a restarted node keeps its data) and
    waits until every node answers a metadata request; `kill(i)` / `restart(i)` simulate a
    broker crash; `stop()` sends SIGTERM (Kafka shuts down cleanly) and waits."""

    root: Path
    nodes_count: int = 1
    heap: str = "512m"
    ports: list[int] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    jars_dir: str | Path | None = None
    security: Security | None = None
    nodes: list[KafkaNode] = field(default_factory=list)
    cluster_id: str = ""

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def mtls_bootstrap(self) -> str:
        """The mutual-TLS client listeners (`Security.mtls`)."""
        return ",".join(f"127.0.0.1:{n.mtls_port}" for n in self.nodes)

    def _properties(self, node: KafkaNode) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        rf = min(3, self.nodes_count)
        props: dict[str, Any] = {
            **BROKER_SETTINGS,
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},"
            f"CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": node.data_dir / "log",
            "num.partitions": 1,
            "default.replication.factor": rf,
            "min.insync.replicas": max(1, rf - 1),
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": max(1, rf - 1),
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": max(1, rf - 1),
            # One local node: no reason to wait for more members before the first rebalance.
            "group.initial.rebalance.delay.ms": 0,
            **(self.security.properties(node) if self.security else {}),
            **self.settings,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _cmd(self, main: str, *args: str) -> list[str]:
        classpath = str(kafka_jars(self.jars_dir) / "*")
        return [
            java(),
            f"-Xms{min(128, _mb(self.heap))}m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            "-cp",
            classpath,
            main,
            *args,
        ]

    def start(self, timeout: float = 90.0) -> KafkaCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        ports = list(self.ports or [])
        id_file = self.root / "cluster.id"
        self.cluster_id = (
            id_file.read_text().strip() if id_file.exists() else self.cluster_id or new_cluster_id()
        )
        id_file.write_text(self.cluster_id)
        if not self.nodes:
            for i in range(self.nodes_count):
                port = ports[i] if i < len(ports) and ports[i] else free_port()
                node = KafkaNode(i + 1, port, free_port(), self.root / f"node-{i + 1}")
                node.mtls_port = free_port() if self.security and self.security.mtls else 0
                self.nodes.append(node)
        for node in self.nodes:
            self._format(node)
        for node in self.nodes:
            self._launch(node)
        for node in self.nodes:
            self._wait(node, timeout)
        return self

    def _format(self, node: KafkaNode) -> None:
        import subprocess

        node.data_dir.mkdir(parents=True, exist_ok=True)
        config = node.data_dir / "server.properties"
        config.write_text(self._properties(node))
        (node.data_dir / "log4j2.properties").write_text(
            _LOG4J.format(log=node.data_dir / "kafka.log")
        )
        if (node.data_dir / "log" / "meta.properties").exists():
            return  # formatted before: a restart keeps the node's data
        scram = self.security.format_args() if self.security else []
        done = subprocess.run(
            self._cmd(
                STORAGE_TOOL,
                "format",
                f"--cluster-id={self.cluster_id}",
                "--config",
                str(config),
                *scram,
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise ProcessFailed(
                f"formatting Kafka's log folder {node.data_dir / 'log'} failed "
                f"({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )

    def _launch(self, node: KafkaNode) -> None:
        cmd = self._cmd(KAFKA_MAIN, str(node.data_dir / "server.properties"))
        cmd.insert(1, f"-Dlog4j2.configurationFile={node.data_dir / 'log4j2.properties'}")
        node.proc = ManagedProcess(
            f"kafka node {node.node_id} (127.0.0.1:{node.port})",
            cmd,
            node.data_dir / "console.log",
        ).start()

    def _wait(self, node: KafkaNode, timeout: float) -> None:
        assert node.proc is not None
        try:
            conn = self.security.client(node.bootstrap) if self.security else node.bootstrap
            node.proc.wait_until(lambda: answers_metadata(conn), timeout, "ready")
        except ProcessFailed as exc:
            kafka_log = node.data_dir / "kafka.log"
            tail = kafka_log.read_text(errors="replace")[-3000:] if kafka_log.exists() else ""
            raise ProcessFailed(f"{exc}\n{kafka_log}:\n{tail}") from None

    def kill(self, index: int) -> None:
        """SIGKILL one node (crash)."""
        proc = self.nodes[index].proc
        if proc is not None:
            proc.kill()

    def restart(self, index: int, timeout: float = 90.0) -> None:
        node = self.nodes[index]
        if node.proc is not None and node.proc.alive():
            node.proc.stop()
        self._launch(node)
        self._wait(node, timeout)

    def stop(self, timeout: float = 30.0) -> list[int | None]:
        codes = []
        for node in self.nodes:
            if node.proc is not None and node.proc.alive():
                codes.append(node.proc.stop(timeout))
        return codes


def _mb(size: str) -> int:
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    return int(float(size[:-1]) * units[size[-1].lower()]) if size[-1].isalpha() else int(size)


def start_broker(
    log_path: Path, port: int | None = None, data_dir: Path | None = None, heap: str = "512m"
) -> tuple[ManagedProcess, str]:
    """Start one Apache Kafka node (KRaft) on 127.0.0.1 and wait until it answers a
    metadata request; returns (process, bootstrap servers). Its data lives in `data_dir`
    (default: a `kafka` folder beside `log_path`); the console output goes to `log_path`."""
    root = data_dir or log_path.parent / "kafka"
    cluster = KafkaCluster(root, 1, heap=heap, ports=[port] if port else None)
    started = time.monotonic()
    cluster.start()
    node = cluster.nodes[0]
    assert node.proc is not None
    KAFKA_LOG.info("Apache Kafka ready on %s in %.1f s", node.bootstrap, time.monotonic() - started)
    _link_log(node.data_dir / "console.log", log_path)
    return node.proc, node.bootstrap


def _link_log(console: Path, log_path: Path) -> None:
    """Point `log_path` (where callers look) at the node's console log."""
    if log_path == console:
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if log_path.is_symlink() or not log_path.exists():
        log_path.unlink(missing_ok=True)
        log_path.symlink_to(console)
