"""Client mutual TLS against a real broker: `SMOKE_KAFKA_SECURITY_PROTOCOL=SSL` with
`SMOKE_KAFKA_SSL_CA_FILE`, `SMOKE_KAFKA_SSL_CERT_FILE` and `SMOKE_KAFKA_SSL_KEY_FILE`, as
`KafkaSettings.kafka()` hands them to librdkafka, on the embedded node's SSL listener that
requires a client certificate (`Security(mtls=True)`; the principal is `User:CN=<cn>`).
The producer writes and a reader reads back with only their ACLs; a client with no
certificate, or one from another CA, ends `smoke produce` / `smoke worker` within seconds
with exit code 78 and one line naming the certificate's settings; a trusted one without
the ACLs, one line naming its principal."""

import os
import secrets
import subprocess
import sys
import time
import uuid

import pytest

from smoke_platform.core.settings import environment
from smoke_platform.errors import EXIT_CONFIG
from smoke_platform_tests.pki import Authority
from smoke_platform_tests.streaming.conftest import stream_names
from streaming.admin import create_topics, platform_topics, read_topic
from streaming.config import StreamSettings
from streaming.embedded import KafkaCluster, Security
from streaming.producer import produce, scenario_records

pytestmark = [pytest.mark.kafka]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Authority(tmp_path_factory.mktemp("mtls-pki"))


@pytest.fixture(scope="module")
def mtls(tmp_path_factory, pki):
    """A secured single-node cluster with a mutual-TLS client listener: (cluster, security).
    `start()` raises (with the node's log) when the broker does not come up."""
    root = tmp_path_factory.mktemp("mtls-kafka")
    node = pki.issue("smoke-kafka")
    security = Security(node.bundle, pki.ca, {"admin": secrets.token_urlsafe(18)}, mtls=True)
    cluster = KafkaCluster(root / "kafka", 1, security=security).start()
    try:
        yield cluster, security
    finally:
        cluster.stop()


def _settings(mtls, pki, cn, tmp_path, tag, **over) -> StreamSettings:
    """Settings as a deployment sets them for the principal `User:CN=<cn>` (cn None: no
    client certificate at all)."""
    cluster, _ = mtls
    issued = pki.issue(cn) if cn else None
    fields = dict(
        kafka_bootstrap=cluster.mtls_bootstrap,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=str(pki.ca),
        kafka_ssl_cert_file=str(issued.cert) if issued else "",
        kafka_ssl_key_file=str(issued.key) if issued else "",
        **stream_names("mtls-", tag),
        worker_id="w",
        stream_dir=str(tmp_path / f"stream-{tag}"),
        service_url="http://127.0.0.1:9",
        api_key="",
    )
    return StreamSettings(**{**fields, **over})


def _grant(mtls, settings: StreamSettings) -> None:
    """The platform's topics, and only these ACLs: `CN=smoke-producer` writes the readings
    topic; `CN=smoke-reader` reads it (its reader groups: `smoke-reader-*`); `CN=smoke-spark`
    reads it (Spark's batch source groups: `spark-kafka-relation-*`) and writes alerts."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    cluster, security = mtls
    admin_conf = security.client(cluster.bootstrap)  # the SASL_SSL super user
    create_topics(admin_conf, platform_topics(settings, 1))

    def allow(kind, name, cn, op, pattern=ResourcePatternType.LITERAL):
        return AclBinding(kind, name, pattern, f"User:CN={cn}", "*", op, AclPermissionType.ALLOW)

    bindings = [
        allow(ResourceType.TOPIC, settings.topic, "smoke-producer", AclOperation.WRITE),
        allow(ResourceType.TOPIC, settings.topic, "smoke-reader", AclOperation.READ),
        allow(
            ResourceType.GROUP,
            "smoke-reader-",
            "smoke-reader",
            AclOperation.READ,
            ResourcePatternType.PREFIXED,
        ),
        allow(ResourceType.TOPIC, settings.topic, "smoke-spark", AclOperation.READ),
        allow(ResourceType.TOPIC, settings.alerts_topic, "smoke-spark", AclOperation.WRITE),
        allow(
            ResourceType.GROUP,
            "spark-kafka-relation-",
            "smoke-spark",
            AclOperation.READ,
            ResourcePatternType.PREFIXED,
        ),
    ]
    admin = AdminClient(admin_conf)  # kept while its futures complete
    for future in admin.create_acls(bindings).values():
        future.result(30)
    time.sleep(1.0)  # ACLs reach the authorizer through the metadata log


def _smoke(settings: StreamSettings, *command: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "smoke_platform.cli", *command],
        env={**os.environ, **environment(settings)},
        capture_output=True,
        text=True,
        timeout=90,
    )
    return done, time.monotonic() - started


def test_a_client_certificate_produces_and_reads_back_through_kafka_settings(mtls, pki, tmp_path):
    tag = uuid.uuid4().hex[:6]
    producer = _settings(mtls, pki, "smoke-producer", tmp_path, tag)
    reader = _settings(mtls, pki, "smoke-reader", tmp_path, tag)
    _grant(mtls, producer)
    conf = producer.kafka()
    assert conf["security.protocol"] == "SSL" and "sasl.username" not in conf
    assert conf["ssl.certificate.location"] == producer.kafka_ssl_cert_file
    assert conf["ssl.key.location"] == producer.kafka_ssl_key_file
    assert conf["ssl.ca.location"] == str(pki.ca)

    records = scenario_records(["wood_fire", "normal_indoor"], seconds=60, seed=3)
    stats = produce(records, producer, echo=lambda *_: None)
    assert stats.failed == 0 and stats.sent == len(records)
    # `smoke produce` as a deployment runs it: its preflight (probe, ACLs) passes too.
    done, _ = _smoke(producer, "produce", "--count", "20", "--sensors", "2")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]

    got = read_topic(reader.kafka(), reader.topic, timeout=60)
    assert len(got) == len(records) + 20
    keys = {m.key().decode() for m in got}
    assert {r["sensor_id"] for r in records} | {"manual-000", "manual-001"} == keys
    # Each certificate is its own principal (`User:CN=...`) with its own ACLs: the
    # producer's may write the readings, not read them.
    with pytest.raises(RuntimeError, match=r"(?i)authoriz"):
        read_topic(producer.kafka(), producer.topic, timeout=10)


def _refused_in_one_line(settings: StreamSettings, command: list[str]) -> str:
    """`smoke <command>` ends with exit code 78 within 15 s; its one error line."""
    done, took = _smoke(settings, *command)
    out = done.stdout + done.stderr
    assert done.returncode == EXIT_CONFIG, out[-3000:]
    assert took < 15, (command, took)
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out[-3000:]
    return errors[0]


@pytest.mark.parametrize("fault", ["no-certificate", "other-ca"])
def test_a_client_without_a_trusted_certificate_is_refused_in_one_line(mtls, pki, tmp_path, fault):
    """`smoke produce` and `smoke worker`: exit code 78 (not restarted by `smoke up`)
    within 15 s, one error line naming the client certificate's settings."""
    tag = uuid.uuid4().hex[:6]
    good = _settings(mtls, pki, "smoke-producer", tmp_path, tag)
    _grant(mtls, good)
    if fault == "no-certificate":
        bad = _settings(mtls, pki, None, tmp_path, tag)
    else:  # a certificate with the producer's name, signed by a CA the broker does not trust
        other = Authority(tmp_path / "other-ca", "another-ca").issue("smoke-producer")
        bad = good.model_copy(
            update={"kafka_ssl_cert_file": str(other.cert), "kafka_ssl_key_file": str(other.key)}
        )
    for command in (["produce", "--count", "5"], ["worker"]):
        error = _refused_in_one_line(bad, command)
        assert "SMOKE_KAFKA_SSL_CERT_FILE" in error, error
        assert "SMOKE_KAFKA_SSL_KEY_FILE" in error, error
        assert "certificate" in error.split(":", 2)[1], error
    # The same listener, with the good certificate: accepted (the refusal was the
    # certificate's, not the listener's).
    done, _ = _smoke(good, "produce", "--count", "5")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


@pytest.mark.spark
def test_spark_reads_and_writes_with_the_client_certificate_of_spark_kafka_options(
    mtls, pki, tmp_path
):
    """`spark_kafka_options()` on SSL: the CA as a PEM trust store, the certificate chain
    and key read into PEM keystore options; Spark's Kafka source reads the readings and
    its sink writes, as `User:CN=smoke-spark` with its own ACLs."""
    from streaming.spark_job import spark_session

    tag = uuid.uuid4().hex[:6]
    producer = _settings(mtls, pki, "smoke-producer", tmp_path, tag)
    spark = _settings(mtls, pki, "smoke-spark", tmp_path, tag)
    _grant(mtls, producer)
    records = scenario_records(["normal_indoor"], seconds=30, seed=5)
    assert produce(records, producer, echo=lambda *_: None).failed == 0
    opts = spark.spark_kafka_options()
    assert opts["kafka.security.protocol"] == "SSL"
    assert opts["kafka.ssl.keystore.type"] == "PEM" and "kafka.sasl.jaas.config" not in opts
    session = spark_session("local[1]", app="smoke-mtls")
    try:
        readings = (
            session.read.format("kafka")
            .options(**opts)
            .option("subscribe", spark.topic)
            .option("startingOffsets", "earliest")
            .option("endingOffsets", "latest")
            .load()
        )
        assert readings.count() == len(records)
        (
            readings.limit(3)
            .selectExpr("key", "value")
            .write.format("kafka")
            .options(**opts)
            .option("topic", spark.alerts_topic)
            .save()
        )
    finally:
        session.stop()
    cluster, security = mtls
    assert len(read_topic(security.client(cluster.bootstrap), spark.alerts_topic, 60)) == 3


def test_a_certificate_the_acls_do_not_allow_is_named_by_its_principal(mtls, pki, tmp_path):
    """A trusted certificate without the ACLs a command needs: exit code 78 within 15 s,
    one error line naming the certificate's principal (`User:CN=...`) as the broker's
    ACLs name it, and what it lacks."""
    tag = uuid.uuid4().hex[:6]
    producer = _settings(mtls, pki, "smoke-producer", tmp_path, tag)
    _grant(mtls, producer)
    reader = _settings(mtls, pki, "smoke-reader", tmp_path, tag)
    for settings, command, who, lacks in (
        (reader, ["produce", "--count", "5"], "User:CN=smoke-reader", "WRITE topic"),
        (producer, ["worker"], "User:CN=smoke-producer", "READ topic"),
    ):
        error = _refused_in_one_line(settings, command)
        assert who in error and lacks in error, error
        assert "this client's principal" not in error, error


def test_the_principal_named_is_the_sasl_user_or_the_certificates_subject(pki, tmp_path):
    from streaming.admin import principal

    issued = pki.issue("smoke-worker")
    tls = {"security.protocol": "SSL", "ssl.certificate.location": str(issued.cert)}
    assert principal(tls) == "User:CN=smoke-worker"
    missing = str(tmp_path / "gone.pem")
    assert missing in principal({**tls, "ssl.certificate.location": missing})
    sasl = {**tls, "security.protocol": "SASL_SSL", "sasl.username": "smoke-worker-svc"}
    assert principal(sasl) == "User:smoke-worker-svc"  # SASL names the client, not TLS
    assert principal({"security.protocol": "PLAINTEXT"}) == "this client's principal"
    assert principal("127.0.0.1:9092") == "this client's principal"
