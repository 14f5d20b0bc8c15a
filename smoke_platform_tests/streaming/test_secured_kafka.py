"""Kafka secured as its documentation describes: a SASL_SSL listener (SCRAM-SHA-512 users
made when the log folder is formatted), a certificate from a CA this module generates,
`StandardAuthorizer` with ACLs; and the service over HTTPS with a certificate of the same
CA. The producer and the worker (transactions included, scoring through the HTTPS
service) work through it with the rights their ACLs grant and nothing else; wrong
credentials, an unknown CA and a missing ACL each end a process within seconds, in one
line naming the setting or the ACL, with exit code 78 (which `smoke up`'s supervisor
does not restart)."""

import os
import secrets
import subprocess
import sys
import time
import uuid

import pytest
from pydantic import SecretStr

from smoke_platform.core.settings import environment
from smoke_platform.errors import EXIT_CONFIG, ConfigError
from smoke_platform_tests.pki import Authority
from smoke_platform_tests.streaming.conftest import stream_names
from streaming.admin import create_topics, platform_topics, read_topic
from streaming.config import StreamSettings
from streaming.embedded import KafkaCluster, Security
from streaming.producer import produce, scenario_records
from streaming.tables import read_outputs
from streaming.worker import StreamWorker

pytestmark = [pytest.mark.kafka, pytest.mark.bentoml]

USERS = ("admin", "producer", "worker", "spark", "dagster", "stranger")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Authority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory, pki):
    """A secured single-node cluster: (cluster, its `Security`: users and passwords)."""
    root = tmp_path_factory.mktemp("secured-kafka")
    node = pki.issue("smoke-kafka")
    passwords = {u: secrets.token_urlsafe(18) for u in USERS}
    security = Security(node.bundle, pki.ca, passwords, "User:CN=smoke-kafka")
    cluster = KafkaCluster(root / "kafka", 1, security=security).start()
    try:
        yield cluster, security
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def https_service(served_model, tmp_path_factory, pki):
    """`bentoml serve` answering HTTPS only, with a certificate of the test CA."""
    from smoke_platform.serving import bentoml_serve

    cert = pki.issue("smoke-service")
    env = {
        "SMOKE_MODEL_TAG": served_model.version,
        "SMOKE_API_KEY": "",
        "SMOKE_SERVICE_SSL_CERT_FILE": str(cert.cert),
        "SMOKE_SERVICE_SSL_KEY_FILE": str(cert.key),
        "SMOKE_SERVICE_CA_FILE": str(pki.ca),
    }
    log = tmp_path_factory.mktemp("https-service") / "serve.log"
    proc, url = bentoml_serve("bentos.service:SmokeDetector", log, env=env)
    try:
        yield url
    finally:
        proc.stop()


def _settings(secured, user, tmp_path, tag, **over):
    cluster, security = secured
    fields = dict(
        kafka_bootstrap=cluster.bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username=user,
        kafka_sasl_password=SecretStr(security.users[user]),
        kafka_ssl_ca_file=str(security.ca),
        **stream_names("sec-", tag),
        worker_id="w",
        transaction_timeout_ms=10_000,
        stream_dir=str(tmp_path / f"stream-{tag}"),
        session_timeout_ms=6000,
        service_url="http://127.0.0.1:9",  # no service: the local model scores
        api_key="",
        poll_timeout_s=0.3,
    )
    return StreamSettings(**{**fields, **over})


def _grant(secured, settings: StreamSettings, txn: bool = True) -> None:
    """The ACLs of the platform's principals on `settings`' topics: the producer writes the
    readings topic; the worker reads it in its group and writes its outputs under its
    transactional id; Spark reads the readings and writes window alerts; Dagster reads
    alerts, trouble signals and verdicts. Nothing else."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    cluster, security = secured
    admin = AdminClient(security.client(cluster.bootstrap))
    create_topics(
        security.client(cluster.bootstrap),
        {**platform_topics(settings, 1), settings.verdicts_topic: 1},
    )

    def allow(kind, name, user, op, prefix=False):
        pattern = ResourcePatternType.PREFIXED if prefix else ResourcePatternType.LITERAL
        return AclBinding(kind, name, pattern, f"User:{user}", "*", op, AclPermissionType.ALLOW)

    s = settings
    bindings = [
        allow(ResourceType.TOPIC, s.topic, "producer", AclOperation.WRITE),
        # Spark's window job: reads the readings (its source's own consumer groups), writes
        # window alerts. Dagster (operator labels) and the dashboard: read what was raised
        # and what operators said.
        allow(ResourceType.TOPIC, s.topic, "spark", AclOperation.READ),
        allow(ResourceType.TOPIC, s.alerts_topic, "spark", AclOperation.WRITE),
        allow(ResourceType.GROUP, "spark-kafka-source-", "spark", AclOperation.READ, True),
        *(
            allow(ResourceType.TOPIC, t, "dagster", AclOperation.READ)
            for t in (s.alerts_topic, s.trouble_topic, s.verdicts_topic)
        ),
        allow(ResourceType.GROUP, "smoke-reader-", "dagster", AclOperation.READ, True),
        allow(ResourceType.TOPIC, s.topic, "worker", AclOperation.READ),
        allow(ResourceType.GROUP, s.group_id, "worker", AclOperation.READ),
        *(
            allow(ResourceType.TOPIC, t, "worker", AclOperation.WRITE)
            for t in (s.dlq_topic, s.predictions_topic, s.alerts_topic, s.trouble_topic)
        ),
    ]
    if txn:
        txn_id = f"{s.group_id}-{s.worker_id}"
        bindings.append(allow(ResourceType.TRANSACTIONAL_ID, txn_id, "worker", AclOperation.WRITE))
    for future in admin.create_acls(bindings).values():
        future.result(30)
    time.sleep(1.0)  # ACLs reach the authorizer through the metadata log


def test_producer_and_worker_run_end_to_end_over_sasl_ssl_and_https_with_only_their_acls(
    secured, https_service, pki, tmp_path, served_model, monkeypatch
):
    monkeypatch.setenv("SMOKE_MODEL_TAG", served_model.version)
    tag = uuid.uuid4().hex[:6]
    producer_settings = _settings(secured, "producer", tmp_path, tag)
    assert https_service.startswith("https://")
    worker_settings = _settings(
        secured, "worker", tmp_path, tag, service_url=https_service, service_ca_file=str(pki.ca)
    )
    _grant(secured, worker_settings)
    records = scenario_records(["wood_fire", "normal_indoor"], seconds=120, seed=2)
    stats = produce(records, producer_settings, echo=lambda *_: None)
    assert stats.failed == 0 and stats.sent == len(records)
    StreamWorker(worker_settings).run(idle_stop_s=4)
    preds = read_outputs(worker_settings.stream_dir, "predictions")
    assert len(preds) == len(records)
    assert set(preds["scored_by"]) == {"service"}  # over HTTPS, the certificate checked
    cluster, security = secured
    on_topic = read_topic(
        security.client(cluster.bootstrap), worker_settings.predictions_topic, timeout=60
    )
    assert len(on_topic) == len(records)  # committed in the worker's transactions
    # The producer's principal may write readings and nothing more: not read them.
    producer_reads = {**security.client(cluster.bootstrap, "producer")}
    with pytest.raises(RuntimeError, match=r"(?i)authoriz"):
        read_topic(producer_reads, worker_settings.topic, timeout=10)


def test_a_principal_without_the_acls_is_refused_naming_them(secured, tmp_path):
    tag = uuid.uuid4().hex[:6]
    settings = _settings(secured, "stranger", tmp_path, tag)
    _grant(secured, settings)  # granted to worker and producer, not to this principal
    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        StreamWorker(settings).run(idle_stop_s=2)
    assert time.monotonic() - started < 15
    message = str(refused.value)
    assert "User:stranger" in message and f"READ topic {settings.topic}" in message
    assert f"WRITE topic {settings.predictions_topic}" in message
    assert f"READ group {settings.group_id}" in message
    # The worker's own principal without its transactional-id ACL: named too.
    tag = uuid.uuid4().hex[:6]
    no_txn = _settings(secured, "worker", tmp_path, tag)
    _grant(secured, no_txn, txn=False)
    with pytest.raises(ConfigError, match=f"WRITE transactional-id {no_txn.group_id}-w"):
        StreamWorker(no_txn).run(idle_stop_s=2)


@pytest.mark.parametrize("fault", ["password", "ca", "protocol"])
def test_a_wrong_password_an_unknown_ca_or_protocol_ends_the_process_in_one_line(
    secured, tmp_path, fault
):
    """`smoke worker` and `smoke produce`, as `smoke up` runs them: exit code 78 within
    15 s, one error line naming the setting, and the password in no output."""
    tag = uuid.uuid4().hex[:6]
    good = _settings(secured, "worker", tmp_path, tag)
    _grant(secured, good)
    if fault == "password":
        bad = good.model_copy(update={"kafka_sasl_password": SecretStr("not-the-password")})
        named = "SMOKE_KAFKA_SASL_PASSWORD"
    elif fault == "ca":
        other = Authority(tmp_path / "other-ca", "another-ca")
        bad = good.model_copy(update={"kafka_ssl_ca_file": str(other.ca)})
        named = "SMOKE_KAFKA_SSL_CA_FILE"
    else:  # a PLAINTEXT client on the SASL_SSL listener
        bad = good.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
        named = "SMOKE_KAFKA_SECURITY_PROTOCOL"
    env = {**os.environ, **environment(bad)}
    for command in (["worker"], ["produce", "--count", "5"]):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "smoke_platform.cli", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - started
        out = done.stdout + done.stderr
        assert done.returncode == EXIT_CONFIG, out[-3000:]
        assert took < 15, (command, took)
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and named in errors[0], out[-3000:]
        for user, password in secured[1].users.items():
            assert password not in out, user
        assert "not-the-password" not in out


def test_the_service_certificate_is_checked_against_the_configured_ca(https_service, pki):
    """A client that does not trust the test CA is refused the connection (the worker then
    scores locally); one given `SMOKE_SERVICE_CA_FILE` scores through the service."""
    import httpx

    from smoke_platform.reports.performance import service_health
    from streaming.scoring import RemoteScorer

    records = scenario_records(["normal_indoor"], seconds=5, seed=1)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        RemoteScorer(https_service, "", 10.0).score(records)
    scores = RemoteScorer(https_service, "", 10.0, str(pki.ca)).score(records)
    assert len(scores.probability) == len(records) and scores.scored_by == "service"
    assert service_health(https_service, verify=str(pki.ca))["ready"] is True
    assert service_health(https_service)["error"] == "ConnectError"
    # Plain HTTP on the HTTPS port gets nothing.
    plain = https_service.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/readyz", timeout=5)


@pytest.mark.spark
def test_the_spark_window_job_and_dagsters_operator_labels_work_over_sasl_ssl(
    secured, tmp_path, served_model, monkeypatch
):
    """Spark's Kafka source and sink with `spark_kafka_options()` (SCRAM over TLS, the CA as
    a PEM trust store) as the `spark` principal: windows from a burning sensor and its window
    alert on the alerts topic; then Dagster's Kafka resource, with the connection from the
    environment as a deployment sets it, folds that alert as the `dagster` principal, and
    the `operator_labels` asset materialises through it."""
    from smoke_platform.defs.common.resources import KafkaResource
    from streaming.spark_job import spark_session, start_query
    from streaming.verdicts import lifecycles

    tag = uuid.uuid4().hex[:6]
    base = _settings(secured, "producer", tmp_path, tag)
    _grant(secured, base)
    records = scenario_records(["wood_fire"], seconds=900, seed=4)
    assert produce(records, base, echo=lambda *_: None).failed == 0
    spark_settings = _settings(secured, "spark", tmp_path, tag)
    session = spark_session("local[2]", app="smoke-secured")
    try:
        query = start_query(
            session,
            spark_settings.spark_kafka_options(),
            spark_settings.topic,
            str(tmp_path / "win"),
            str(tmp_path / "ckpt"),
            available_now=True,
            model_tag=served_model.version,
            alerts_topic=spark_settings.alerts_topic,
        )
        query.awaitTermination(600)
        assert query.exception() is None
    finally:
        session.stop()
    windows = read_outputs(tmp_path / "win")
    assert len(windows) > 0 and set(windows["sensor_id"]) == {"sensor-000"}
    cluster, security = secured
    alerts = read_topic(security.client(cluster.bootstrap), spark_settings.alerts_topic, 60)
    assert alerts, "the fire's window alert on the alerts topic"
    # Dagster: the resource takes topics from its config and the connection from the
    # environment (SMOKE_KAFKA_*), the password never in the resource's config.
    dagster = _settings(secured, "dagster", tmp_path, tag)
    for key, value in environment(dagster).items():
        if key.startswith("SMOKE_KAFKA_"):
            monkeypatch.setenv(key, value)
    resource = KafkaResource(
        kafka_bootstrap=cluster.bootstrap,
        alerts_topic=dagster.alerts_topic,
        trouble_topic=dagster.trouble_topic,
        verdicts_topic=dagster.verdicts_topic,
    )
    known = lifecycles(resource.stream_settings(), timeout=30)
    assert {r.subject for r in known.values()} == {"sensor-000"}
    # ... and the asset that reads them, materialised with that resource.
    import dagster as dg

    from smoke_platform.defs.common.resources import PlatformSettingsResource
    from smoke_platform.defs.monitoring.outcomes import operator_labels

    day = min(r.raised_at for r in known.values())[:10]
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("stream_dates", [day])
        run = dg.materialize(
            [operator_labels],
            partition_key=day,
            instance=instance,
            resources={
                "settings": PlatformSettingsResource(
                    data_dir=str(tmp_path / "data"), stream_dir=str(tmp_path / "stream")
                ),
                "kafka": resource,
            },
        )
        assert run.success
        meta = run.asset_materializations_for_node("operator_labels")[0].metadata
        assert meta["alerts"].value == len(known)
