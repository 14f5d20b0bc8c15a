"""Kafka administration every deployment needs: whether a broker answers, the platform's
topics (created when missing), a topic's id, and reading a topic to its end (reports,
`smoke alerts`, tests). No broker is started here: `streaming.embedded` does that."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from streaming.config import KAFKA_LOG, StreamSettings

log = KAFKA_LOG  # where librdkafka and these calls log

# A broker to talk to: its bootstrap servers (an unsecured broker: the embedded one, tests)
# or a whole client configuration (`KafkaSettings.kafka()`: bootstrap and security).
Connection = str | Mapping[str, Any]


def client_config(conn: Connection, **extra: Any) -> dict[str, Any]:
    base = {"bootstrap.servers": conn} if isinstance(conn, str) else dict(conn)
    return {"logger": KAFKA_LOG, **base, **extra}


# What a refused connection means, and the setting that fixes it (librdkafka error names).
_FIXES = {
    "_AUTHENTICATION": "SMOKE_KAFKA_SASL_USERNAME / SMOKE_KAFKA_SASL_PASSWORD "
    "(and SMOKE_KAFKA_SASL_MECHANISM)",
    "_SSL": "SMOKE_KAFKA_SSL_CA_FILE (the CA that signed the brokers' certificates), "
    "SMOKE_KAFKA_SSL_VERIFY_HOSTNAME and SMOKE_KAFKA_SECURITY_PROTOCOL",
    "_CLIENT_CERT": "SMOKE_KAFKA_SSL_CERT_FILE / SMOKE_KAFKA_SSL_KEY_FILE (mutual TLS: a "
    "certificate and its key, signed by a CA the brokers trust)",
}
# A TLS alert the broker sent about this client's certificate (OpenSSL names a received
# alert "... alert bad certificate", "... alert unknown ca", "... alert certificate required";
# a broker certificate this client rejects reads "certificate verify failed" instead).
_REFUSED_CERT = re.compile(
    r"alert (bad certificate|unsupported certificate|certificate \w+|unknown ca)"
)


def probe(conn: Connection, timeout: float = 10.0) -> str | None:
    """None when a broker answers a metadata request with itself registered; else why not,
    in one line naming the setting to fix (wrong credentials or an unknown CA: within a
    second or so; no broker: after `timeout`)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list[KafkaError] = []
    lines = _Lines()  # librdkafka's own log, kept here (a probe prints nothing)
    admin = AdminClient(
        client_config(conn, log_level=6, logger=lines.logger, error_cb=errors.append)
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            if admin.list_topics(timeout=max(0.1, min(1.0, deadline - time.monotonic()))).brokers:
                return None
        except KafkaException as exc:
            errors.append(exc.args[0])
        admin.poll(0)  # the error callbacks are served here
        for err in errors:
            if err.name() == "_AUTHENTICATION":
                return f"the broker refused this client: {err.str()}; check {_FIXES[err.name()]}"
            if _REFUSED_CERT.search(err.str()):  # the broker's alert, not this client's check
                if client_config(conn).get("ssl.certificate.location"):
                    why = "the broker refused this client's certificate"
                else:
                    why = "the broker requires a client certificate and none is set"
                return f"{why}: {err.str()}; check {_FIXES['_CLIENT_CERT']}"
            if err.name() == "_SSL" or "SSL handshake" in err.str() or "certificate" in err.str():
                return f"the TLS handshake failed: {err.str()}; check {_FIXES['_SSL']}"

        closed = [m for m in lines.messages if "in state APIVERSION_QUERY" in m]
        if len(closed) >= 3:  # it accepts connections, then hangs up on the first request
            return (
                f"the broker closes every connection before answering ({closed[-1]}): a TLS "
                "or SASL listener spoken to in plain text? check SMOKE_KAFKA_SECURITY_PROTOCOL "
                "and SMOKE_KAFKA_BOOTSTRAP's port"
            )
        if time.monotonic() >= deadline:
            servers = client_config(conn)["bootstrap.servers"]
            return f"no Kafka broker answers at {servers} within {timeout:g} s"


def principal(conn: Connection) -> str:
    """Who this client is to the broker's ACLs: `User:<name>` with SASL; with mutual TLS
    `User:<its certificate's subject>`, as Kafka's default principal mapping writes it
    (RFC 2253: `CN=...,O=...`); else a description."""
    conf = conn if isinstance(conn, Mapping) else {}
    protocol = str(conf.get("security.protocol", "PLAINTEXT"))
    user = conf.get("sasl.username")
    if protocol.startswith("SASL_") and user:
        return f"User:{user}"
    cert = conf.get("ssl.certificate.location")
    if protocol == "SSL" and cert:
        from cryptography import x509

        try:
            with open(str(cert), "rb") as pem:
                subject = x509.load_pem_x509_certificate(pem.read()).subject
        except (OSError, ValueError):  # the connection reports the file itself
            return f"the principal of the certificate in {cert}"
        return f"User:{subject.rfc4514_string()}"
    return "this client's principal"


def missing_acls(
    conn: Connection,
    reads: Sequence[str] = (),
    writes: Sequence[str] = (),
    group: str | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """What the broker's ACLs deny this client of what it needs (`READ topic x`, `WRITE
    topic y`, `READ group g`), asked of the broker (authorized operations, KIP-430): []
    when it may do all of it, or when the broker runs no authorizer."""
    from confluent_kafka import KafkaException, TopicCollection
    from confluent_kafka.admin import AclOperation, AdminClient

    admin = AdminClient(client_config(conn))
    need = {t: {AclOperation.READ} for t in reads}
    for t in writes:
        need.setdefault(t, set()).add(AclOperation.WRITE)
    missing: list[str] = []
    if need:
        described = admin.describe_topics(
            TopicCollection(list(need)), request_timeout=timeout, include_authorized_operations=True
        )
        for topic, future in described.items():
            try:
                ops = future.result().authorized_operations
            except KafkaException as exc:  # e.g. no such topic yet: not an ACL's doing
                ops = [] if "AUTHORIZATION" in exc.args[0].name() else None
            allowed = set(ops) if ops is not None else set(need[topic])  # None: not told
            if AclOperation.ALL in allowed:
                continue
            missing += [f"{op.name} topic {topic}" for op in sorted(need[topic] - allowed, key=str)]
    if group:
        [future] = admin.describe_consumer_groups(
            [group], request_timeout=timeout, include_authorized_operations=True
        ).values()
        try:
            ops = future.result().authorized_operations
        except KafkaException as exc:  # a new cluster has no group coordinator yet: not told
            ops = [] if "AUTHORIZATION" in exc.args[0].name() else None
        if ops is not None and not set(ops) & {AclOperation.READ, AclOperation.ALL}:
            missing.append(f"READ group {group}")
    return missing


class _Lines(logging.Handler):
    """librdkafka's log lines of one client, kept in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.logger = logging.Logger("smoke.kafka.probe")  # unregistered: never printed
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def answers_metadata(conn: Connection, timeout: float = 2.0) -> bool:
    """Whether the broker answers a metadata request with itself registered."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(conn, log_level=0))
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(meta.brokers)


def create_topics(
    conn: Connection,
    topics: dict[str, int],
    timeout: float = 30.0,
    replication: int = -1,
    config: dict[str, str] | None = None,
) -> None:
    """Create topics with the given partition counts (existing ones are left alone).
    `replication` -1 takes the broker's `default.replication.factor`."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(client_config(conn))
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(t, num_partitions=n, replication_factor=replication, config=config or {})
        for t, n in topics.items()
        if t not in existing
    ]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {topic}: {exc}") from exc


def platform_topics(settings: StreamSettings, partitions: int = 3) -> dict[str, int]:
    """The platform's topics and partition counts (DLQ, alerts and trouble signals: one
    partition, ordered)."""
    return {
        settings.topic: partitions,
        settings.dlq_topic: 1,
        settings.predictions_topic: partitions,
        settings.alerts_topic: 1,
        settings.trouble_topic: 1,
    }


def read_topic(conn: Connection, topic: str, timeout: float = 60.0) -> list:
    """Every committed message of a topic (`read_committed`), read up to the end of each
    partition as the broker reports it (the last stable offset)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        client_config(
            conn,
            **{
                "group.id": f"smoke-reader-{uuid.uuid4().hex[:8]}",  # never joined
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            },
        )
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        if meta.error is not None:
            raise RuntimeError(f"cannot read topic {topic}: {meta.error}")
        ends: dict[int, int] = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list = []
        positions = dict.fromkeys(ends, -1)
        deadline = time.monotonic() + timeout
        while any(positions[p] + 1 < ends[p] for p in ends):
            if time.monotonic() > deadline:
                missing = {p: (positions[p] + 1, ends[p]) for p in ends}
                raise TimeoutError(f"{topic}: not read to the end in {timeout} s: {missing}")
            for msg in consumer.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if "AUTHORIZATION" in err.name():  # no waiting for a timeout
                        raise RuntimeError(f"cannot read topic {topic}: {err.str()}")
                    continue
                out.append(msg)
                positions[int(msg.partition() or 0)] = int(msg.offset() or 0)
            # Transaction markers and aborted records take offsets too: past them the
            # consumer's position (not the last message) tells where it stands.
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= 0:
                    positions[tp.partition] = max(positions[tp.partition], tp.offset - 1)
    finally:
        consumer.close()
    return out


def topic_id(settings: StreamSettings, timeout: float = 10.0) -> str | None:
    """The topic's Kafka id (KIP-516), or None where the broker does not report one."""
    from confluent_kafka import KafkaException, TopicCollection
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka())  # type: ignore[arg-type]  # logger is allowed
    try:
        [future] = admin.describe_topics(
            TopicCollection([settings.topic]), request_timeout=timeout
        ).values()
        found = future.result()
    except KafkaException as exc:
        log.warning("topic id of %s unknown (%s): offsets trusted as they are", settings.topic, exc)
        return None
    return str(found.topic_id) if found.topic_id is not None else None
