"""The one settings tree (`PlatformSettings`): every SMOKE_* variable, declared once, in
its section, with a description. The only module that reads the environment.

Over 400 lines: it is the one table of settings (a section per concern, each setting with
its description); split, the table users and the docs read would be scattered."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic_settings import BaseSettings, SettingsConfigDict

KAFKA_LOG = logging.getLogger("smoke.kafka")


def _f(default: Any, description: str, **limits: Any) -> Any:
    """A setting: its default and what it is for (the configuration page prints both)."""
    return pydantic.Field(default, description=description, **limits)


class InputSettings(BaseSettings):
    """What every entry point (service, worker, producer) accepts as a reading."""

    model_config = SettingsConfigDict(env_prefix="SMOKE_", frozen=True, extra="ignore")

    # History stays replayable (the public file is from 2022); 1970 or 9999 is a clock fault.
    reading_max_age_days: float = _f(3650.0, "oldest reading accepted, in days before now", gt=0)
    # Kafka itself refuses records stamped more than 1 h ahead (log.message.timestamp.after.max.ms).
    reading_max_ahead_s: float = _f(3600.0, "latest reading accepted, in seconds after now", ge=0)


@functools.cache
def input_settings() -> InputSettings:
    return InputSettings()


class HomeSettings(BaseSettings):
    """The root of every relative path."""

    model_config = SettingsConfigDict(env_prefix="SMOKE_", frozen=True, extra="ignore")

    # A deployment's volume, a test's temporary folder.
    home: Path = _f(Path("."), "the folder every relative path setting is resolved under")


def home() -> Path:
    """SMOKE_HOME (default: the current directory), read when asked (tests change it)."""
    return HomeSettings().home


def under_home(path: str | Path) -> Path:
    """An absolute path as it is; a relative one under SMOKE_HOME."""
    p = Path(path)
    return p if p.is_absolute() else home() / p


def _settings(**extra: object) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix="SMOKE_", frozen=True, extra="ignore", **extra)  # type: ignore[typeddict-item]


class PathSettings(HomeSettings):
    """Where the platform keeps its data (relative paths are under SMOKE_HOME)."""

    model_config = _settings()

    data_dir: str = _f("data", "raw and derived data sets, the Dagster assets' files")
    reports_dir: str = _f("reports", "training, performance, drift and insights reports")
    stack_dir: Path = _f(Path(".stack"), "`smoke up`'s logs, process ids and supervisor states")
    kaggle_csv: str = _f("", "a Kaggle-format CSV to ingest instead of simulated readings")
    reference_csv: str = _f(
        "",
        "labelled real readings every model is also judged on (empty: the public excerpts "
        "shipped in smoke_platform/reference_data/)",
    )


class DataSettings(BaseSettings):
    """What the simulator generates when no CSV is given."""

    model_config = _settings()

    seed: int = _f(0, "the simulator's seed")
    rows: int = _f(60_000, "readings the simulator generates", gt=0)
    sensors: int = _f(8, "sensors the simulator spreads its sessions over", gt=0)


def _tls_files(settings: BaseSettings, what: str, cert: str, key: str, ca: str) -> None:
    """A certificate comes with its key, and every PEM file named exists (the message
    names the variables; the settings' prefix is SMOKE_)."""
    if bool(getattr(settings, cert)) != bool(getattr(settings, key)):
        raise ValueError(
            f"{what} needs both SMOKE_{cert.upper()} and SMOKE_{key.upper()} (given: cert "
            f"{getattr(settings, cert)!r}, key {getattr(settings, key)!r})"
        )
    for name in (cert, key, ca):
        path = getattr(settings, name)
        if path and not under_home(path).is_file():
            raise ValueError(f"SMOKE_{name.upper()}={path!r}: no such file")


class KafkaSettings(BaseSettings):
    """The Kafka connection, topics and consumer group of the streaming side."""

    model_config = _settings()

    kafka_bootstrap: str = _f("127.0.0.1:9092", "Kafka bootstrap servers (host:port, ...)")
    # How every client connects (`kafka()`, `spark_kafka_options()`), as Kafka's security
    # documentation describes: TLS, SASL/SCRAM or PLAIN, mutual TLS.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = _f(
        "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = _f(
        "SCRAM-SHA-512", "SASL mechanism (with SASL_*): SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN"
    )
    kafka_sasl_username: str = _f("", "SASL user name (with SASL_*)")
    kafka_sasl_password: pydantic.SecretStr = _f(pydantic.SecretStr(""), "SASL password")
    kafka_ssl_ca_file: str = _f("", "PEM file of the CA that signed the brokers' certificates")
    kafka_ssl_cert_file: str = _f("", "PEM client certificate (mutual TLS)")
    kafka_ssl_key_file: str = _f("", "PEM private key of the client certificate (mutual TLS)")
    kafka_ssl_verify_hostname: bool = _f(
        True, "check that a broker's certificate names the host connected to"
    )
    topic: str = _f("smoke_sensor_data", "the readings topic")
    dlq_topic: str = _f("smoke_sensor_data.dlq", "dead letters: invalid messages with reasons")
    predictions_topic: str = _f("smoke_predictions", "one scored row per reading")
    alerts_topic: str = _f("smoke_alerts", "alert events (open, escalate, close)")
    trouble_topic: str = _f("smoke_trouble", "trouble signals: silent, stuck, implausible, ...")
    verdicts_topic: str = _f(
        "smoke_alert_verdicts", "operators' acknowledgements and verdicts (compacted, by alert id)"
    )
    group_id: str = _f("smoke-stream-worker", "the stream workers' consumer group")
    session_timeout_ms: int = _f(10_000, "consumer group session timeout", gt=0)
    # With the group id it forms the transactional id, so a restarted instance fences its
    # zombie; `smoke up` names its workers worker-0, -1, ...
    worker_id: str = _f("", "this worker instance's stable name (empty: the host name)")
    transaction_timeout_ms: int = _f(30_000, "Kafka transaction timeout", gt=0)

    def instance_id(self) -> str:
        import socket

        return self.worker_id or socket.gethostname()

    @pydantic.model_validator(mode="after")
    def _connection(self) -> KafkaSettings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            raise ValueError(
                f"SMOKE_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "SMOKE_KAFKA_SASL_USERNAME and SMOKE_KAFKA_SASL_PASSWORD"
            )
        secret = self.kafka_sasl_password.get_secret_value()
        if any(c in text for text in (self.kafka_sasl_username, secret) for c in "\r\n\0"):
            raise ValueError(
                "SMOKE_KAFKA_SASL_USERNAME and SMOKE_KAFKA_SASL_PASSWORD may not hold line "
                "breaks or NUL characters"
            )
        _tls_files(
            self, "mutual TLS", "kafka_ssl_cert_file", "kafka_ssl_key_file", "kafka_ssl_ca_file"
        )
        return self

    def _files(self) -> dict[str, str]:
        names = ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file")
        return {n: str(under_home(getattr(self, n))) for n in names if getattr(self, n)}

    def kafka(self, **extra: object) -> dict[str, object]:
        """librdkafka config shared by every producer, consumer and admin client: the
        bootstrap servers and the connection's security (its logs go to Python logging,
        not straight to stderr)."""
        conf: dict[str, object] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "client.id": "smoke-platform",
            "logger": KAFKA_LOG,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL_"):
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
            conf["sasl.username"] = self.kafka_sasl_username
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            files = self._files()
            for name, key in (
                ("kafka_ssl_ca_file", "ssl.ca.location"),
                ("kafka_ssl_cert_file", "ssl.certificate.location"),
                ("kafka_ssl_key_file", "ssl.key.location"),
            ):
                if name in files:
                    conf[key] = files[name]
            verify = "https" if self.kafka_ssl_verify_hostname else "none"
            conf["ssl.endpoint.identification.algorithm"] = verify
        return {**conf, **extra}

    def spark_kafka_options(self) -> dict[str, str]:
        """The same connection as Spark's Kafka source and sink options (`kafka.` + the
        Java client's names; PEM files read into the options, as Kafka allows)."""
        opts = {
            "kafka.bootstrap.servers": self.kafka_bootstrap,
            "kafka.security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL_"):
            module = (
                "plain.PlainLoginModule"
                if self.kafka_sasl_mechanism == "PLAIN"
                else "scram.ScramLoginModule"
            )
            user = self.kafka_sasl_username.replace("\\", "\\\\").replace('"', '\\"')
            secret = self.kafka_sasl_password.get_secret_value()
            secret = secret.replace("\\", "\\\\").replace('"', '\\"')
            opts["kafka.sasl.mechanism"] = self.kafka_sasl_mechanism
            opts["kafka.sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.{module} required "
                f'username="{user}" password="{secret}";'
            )
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            files = self._files()
            if "kafka_ssl_ca_file" in files:
                opts["kafka.ssl.truststore.type"] = "PEM"
                opts["kafka.ssl.truststore.location"] = files["kafka_ssl_ca_file"]
            if "kafka_ssl_cert_file" in files:
                opts["kafka.ssl.keystore.type"] = "PEM"
                opts["kafka.ssl.keystore.certificate.chain"] = Path(
                    files["kafka_ssl_cert_file"]
                ).read_text()
                opts["kafka.ssl.keystore.key"] = Path(files["kafka_ssl_key_file"]).read_text()
            verify = "https" if self.kafka_ssl_verify_hostname else ""
            opts["kafka.ssl.endpoint.identification.algorithm"] = verify
        return opts


class ServiceSettings(BaseSettings):
    """The scoring service: where it is, its keys, and its guard's limits (bentos/guard.py)."""

    model_config = _settings()

    service_url: str = _f("http://127.0.0.1:3001", "the scoring service the worker calls")
    api_key: pydantic.SecretStr = _f(
        pydantic.SecretStr(""),
        "comma-separated API keys (several valid at once, for rotation); empty: the API is open",
    )
    rate_limit_per_s: Annotated[float, pydantic.Field(ge=0)] = _f(
        0.0, "requests per second per client; 0 = unlimited"
    )
    rate_limit_burst: Annotated[float | None, pydantic.Field(gt=0)] = _f(
        None, "the rate limit's burst (default 2 x the rate)"
    )
    max_request_bytes: Annotated[int, pydantic.Field(gt=0)] = _f(
        4 * 1024 * 1024, "largest request body accepted"
    )
    auth_failures_per_s: Annotated[float, pydantic.Field(ge=0)] = _f(
        1.0, "failed authentications per second per address; 0 = no limit"
    )
    auth_failures_burst: Annotated[float, pydantic.Field(gt=0)] = _f(
        10.0, "burst of failed authentications per address"
    )
    service_workers: str = _f("1", "API worker processes: a whole number >= 1, or cpu_count")
    service_ssl_cert_file: str = _f(
        "", "the service's PEM certificate: `bentoml serve` answers HTTPS (with the key)"
    )
    service_ssl_key_file: str = _f("", "the PEM private key of the service's certificate")
    service_ca_file: str = _f(
        "", "PEM CA the service's certificate is checked against (empty: the system's CAs)"
    )

    @pydantic.model_validator(mode="after")
    def _tls(self) -> ServiceSettings:
        _tls_files(
            self, "HTTPS", "service_ssl_cert_file", "service_ssl_key_file", "service_ca_file"
        )
        return self

    def ssl(self) -> dict[str, Any]:
        """BentoML's `ssl` service configuration: HTTPS when a certificate is set."""
        if not self.service_ssl_cert_file:
            return {}
        return {
            "enabled": True,
            "certfile": str(under_home(self.service_ssl_cert_file)),
            "keyfile": str(under_home(self.service_ssl_key_file)),
        }

    def verify(self) -> str | bool:
        """How a client checks the service's certificate (httpx's `verify`)."""
        return str(under_home(self.service_ca_file)) if self.service_ca_file else True

    @pydantic.field_validator("service_workers")
    @classmethod
    def _workers(cls, raw: str) -> str:
        raw = raw.strip() or "1"
        if raw != "cpu_count" and (not raw.isdigit() or int(raw) < 1):
            raise ValueError(
                f"SMOKE_SERVICE_WORKERS={raw!r}: allowed is a whole number >= 1 or 'cpu_count'"
            )
        return raw

    def keys(self) -> list[bytes]:
        return [k.strip().encode() for k in self.api_key.get_secret_value().split(",") if k.strip()]

    def workers(self) -> int:
        if self.service_workers == "cpu_count":
            return os.cpu_count() or 1
        return int(self.service_workers)


class WorkerSettings(BaseSettings):
    """The stream worker: batches, scoring deadline, circuit breaker, outputs, metrics."""

    model_config = _settings()

    batch_size: int = _f(5_000, "most messages per batch and transaction", gt=0)
    poll_timeout_s: float = _f(
        0.5, "longest wait for a first message; a batch is what has arrived by then", gt=0
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = _f(
        "exactly_once",
        "exactly_once: outputs and offsets in one Kafka transaction per batch; at_least_once: "
        "outputs delivered, then offsets committed (a crash can publish a batch twice; the "
        "tables still hold each row once)",
    )
    max_message_bytes: int = _f(65_536, "larger messages go to the DLQ as oversized", gt=0)
    request_timeout_s: float = _f(5.0, "timeout of a probe of a service the circuit took out")
    scoring_deadline_s: float = _f(
        0.5, "a service answer later than this and the batch is scored locally", gt=0
    )
    breaker_failures: int = _f(3, "failed calls that open the circuit to the service", gt=0)
    breaker_reset_s: float = _f(5.0, "seconds between probes while the circuit is open", gt=0)
    stream_dir: str = _f("data/processed_stream", "the worker's predictions, alerts and state")
    table_commit_interval_s: float = _f(
        10.0, "seconds between the worker's commits to its tables (fewer, larger files)", gt=0
    )
    table_commit_max_rows: int = _f(100_000, "rows that make the worker commit sooner", gt=0)
    worker_metrics_port: int = _f(0, "Prometheus metrics port (0: none)", ge=0)
    worker_metrics_host: str = _f("127.0.0.1", "metrics address (0.0.0.0 in a container)")


class AlertSettings(BaseSettings):
    """When a sensor's readings raise, escalate and close an alert."""

    model_config = _settings()

    alert_consecutive: int = _f(3, "consecutive fire predictions that open an alert", gt=0)
    alert_critical_probability: float = _f(
        0.98, "probability that makes an alert critical", ge=0, le=1
    )
    alert_close_after: int = _f(30, "consecutive calm readings that close an alert", gt=0)
    zscore_threshold: float = _f(4.0, "robust |z| that flags a reading as anomalous", gt=0)
    rolling_window: int = _f(120, "readings per sensor the z-scores look back over", gt=1)


class TroubleSettings(BaseSettings):
    """When a detector, a feed or the platform itself raises a trouble signal."""

    model_config = _settings()

    silent_after_s: float = _f(
        60.0, "a known sensor silent this long (or 10 of its own intervals) is `silent`", gt=0
    )
    feed_silent_fraction: float = _f(
        0.5, "this share of a partition's sensors silent at once is one `feed_silent`", gt=0, le=1
    )
    feed_silent_min_sensors: int = _f(3, "fewest silent sensors that make a `feed_silent`", ge=1)
    implausible_dead_letters: int = _f(
        10, "a sensor with more dead letters than this in the window is `implausible`", ge=1
    )
    implausible_window_s: float = _f(300.0, "the window dead letters are counted in", gt=0)
    trouble_lag_messages: int = _f(
        100_000, "consumer lag (messages) over which the platform raises `consumer_lag`", ge=1
    )
    trouble_dead_letters_per_min: int = _f(
        600, "dead letters per minute over which the platform raises `dead_letter_rate`", ge=1
    )


class SparkSettings(BaseSettings):
    """The Spark window job (`smoke spark`) and the jars `make setup` resolves."""

    model_config = _settings()

    windowed_dir: str = _f("data/windowed", "the window job's output")
    spark_checkpoint_dir: str = _f("data/checkpoints/windows", "the window job's checkpoints")
    spark_master: str = _f("local[2]", "Spark master URL")
    spark_shuffle_partitions: int = _f(2, "spark.sql.shuffle.partitions (200 is 5x slower here)")
    spark_driver_host: str = _f("127.0.0.1", "spark.driver.host")
    spark_bind_address: str = _f("127.0.0.1", "spark.driver.bindAddress")
    spark_log_level: str = _f("WARN", "Spark's own driver log level")
    kafka_jars_dir: str = _f(".jars/kafka", "Apache Kafka's jars (relative to the checkout)")
    spark_kafka_jars_dir: str = _f(".jars/spark-kafka", "Spark's Kafka connector jars")
    spark_delta_jars_dir: str = _f(".jars/spark-delta", "Delta Lake's Spark connector jars")


class NotifySettings(BaseSettings):
    """Where alerts and run events are posted."""

    model_config = _settings()

    webhook_url: str = _f("", "Slack-compatible incoming webhook; empty: log only")


class StreamSettings(
    KafkaSettings,
    WorkerSettings,
    AlertSettings,
    TroubleSettings,
    SparkSettings,
    ServiceSettings,
    NotifySettings,
):
    """What the producer, the stream worker and the Spark job read: the union of their
    sections (each setting is declared once, in its section)."""

    model_config = _settings()


class ModelSettings(BaseSettings):
    """Which model the service packages and serves (smoke_platform/modelstore.py)."""

    model_config = _settings(protected_namespaces=())

    model_name: str = _f("smoke_detector", "the model's name (`<name>:latest` is the champion)")
    model_tag: str = _f("", "an exact model version to serve; empty: the champion")

    def served_tag(self) -> str:
        return self.model_tag or f"{self.model_name}:latest"


class TrainingSettings(BaseSettings):
    """How candidates are evaluated."""

    model_config = _settings()

    cv_folds: int = _f(4, "session-aware cross-validation folds", ge=2)
    operator_max_sensor_share: float = _f(
        0.02, "most of the training rows one sensor's operator labels may be", gt=0, le=1
    )
    retrain_after_verdicts: int = _f(
        20, "new fire / false-alarm verdicts since the champion's data that request training", ge=1
    )


class MonitoringSettings(BaseSettings):
    """Drift and retention of derived stream output (raw data is always kept)."""

    model_config = _settings()

    drift_psi_threshold: float = _f(0.25, "PSI over which a feature has drifted", gt=0)
    drift_window_days: int = _f(7, "days of live readings drift looks at", gt=0)
    # PSI compares populations: a handful of sensors for minutes is not the training
    # population, so below this many live readings drift is reported, never acted on.
    drift_min_rows: int = _f(5_000, "live readings below which drift is never acted on", ge=0)
    stream_retention_days: int = _f(30, "days of stream output kept", gt=0)
    table_vacuum_retention_hours: int = _f(
        168, "hours of table history (time travel) a vacuum keeps the files of", ge=0
    )
    stream_refresh_minutes: int = _f(
        60, "how often today's stream output is registered with Dagster", gt=0
    )


class CliSettings(BaseSettings):
    """How `smoke` reports a mistake."""

    model_config = _settings()

    debug: bool = _f(False, "tracebacks, as `--debug`")


def _section(cls: type[BaseSettings]) -> Any:
    return pydantic.Field(default_factory=lambda: cls())


class PlatformSettings(pydantic.BaseModel):
    """The one settings tree: a section per concern, each read from its SMOKE_* variables
    (flat names: deployments set them). `smoke config` walks it; the docs' configuration
    page is generated from it."""

    model_config = pydantic.ConfigDict(frozen=True)

    paths: PathSettings = _section(PathSettings)
    data: DataSettings = _section(DataSettings)
    kafka: KafkaSettings = _section(KafkaSettings)
    stream: WorkerSettings = _section(WorkerSettings)
    alerts: AlertSettings = _section(AlertSettings)
    trouble: TroubleSettings = _section(TroubleSettings)
    spark: SparkSettings = _section(SparkSettings)
    service: ServiceSettings = _section(ServiceSettings)
    model: ModelSettings = _section(ModelSettings)
    training: TrainingSettings = _section(TrainingSettings)
    monitoring: MonitoringSettings = _section(MonitoringSettings)
    notify: NotifySettings = _section(NotifySettings)
    readings: InputSettings = _section(InputSettings)
    cli: CliSettings = _section(CliSettings)


def sections() -> dict[str, type[BaseSettings]]:
    """Section name -> its settings class, in the tree's order."""
    return {
        name: info.annotation  # type: ignore[misc]
        for name, info in PlatformSettings.model_fields.items()
    }


def variable(cls: type[BaseSettings], field: str) -> str:
    """The environment variable of a section's field."""
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def default(cls: type[BaseSettings], field: str) -> Any:
    """A section field's default (for code that must mirror it, e.g. a Dagster resource)."""
    return cls.model_fields[field].default


def environment(*settings: BaseSettings) -> dict[str, str]:
    """Settings objects as the environment variables that give a child process the same
    values (secrets in clear: for a child's environment, never for printing; unset
    optional values left out)."""
    out: dict[str, str] = {}
    for obj in settings:
        for field in type(obj).model_fields:
            value = getattr(obj, field)
            if value is None:
                continue
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            if isinstance(value, bool):
                value = "true" if value else "false"
            out[variable(type(obj), field)] = str(value)
    return out


def where_set(cls: type[BaseSettings]) -> dict[str, str]:
    """The section's fields whose variable is set in this process's environment, with the
    variable's name: how the Dagster resources bind to them (`EnvVar`)."""
    return {f: variable(cls, f) for f in cls.model_fields if variable(cls, f) in os.environ}


class ToolHomes(BaseSettings):
    """Where the tools underneath keep their state, by their own variables (BENTOML_HOME,
    DAGSTER_HOME; `smoke` sets both under SMOKE_HOME when they are unset)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    bentoml_home: Path | None = None
    dagster_home: Path | None = None


def is_set(name: str) -> bool:
    """Whether a variable is set in this process's environment (`smoke config`'s source)."""
    return name in os.environ


def env_value(name: str) -> str | None:
    return os.environ.get(name)
