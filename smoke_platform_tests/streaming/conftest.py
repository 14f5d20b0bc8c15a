"""A real Apache Kafka broker (KRaft) for the session; fresh topics and groups per test."""

import uuid

import pytest

from streaming.admin import create_topics, platform_topics
from streaming.config import StreamSettings
from streaming.embedded import start_broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    proc, bootstrap = start_broker(tmp_path_factory.mktemp("broker") / "broker.log")
    yield bootstrap
    assert proc.stop() is not None


def stream_names(prefix: str, tag: str) -> dict[str, str]:
    """The topics and consumer group of one test's stream, each named with `tag`."""
    return dict(
        topic=f"{prefix}readings-{tag}",
        dlq_topic=f"{prefix}readings-{tag}.dlq",
        predictions_topic=f"{prefix}predictions-{tag}",
        alerts_topic=f"{prefix}alerts-{tag}",
        trouble_topic=f"{prefix}trouble-{tag}",
        verdicts_topic=f"{prefix}verdicts-{tag}",
        group_id=f"{prefix}workers-{tag}",
    )


@pytest.fixture
def make_settings(broker, tmp_path):
    """Settings on fresh topics (3 partitions unless told), a fresh group, a fresh worker
    instance id (transactional id) and a fresh output folder."""

    def make(service_url: str = "http://127.0.0.1:9", partitions: int = 3, **overrides):
        tag = uuid.uuid4().hex[:8]
        base = dict(
            kafka_bootstrap=broker,
            **stream_names("", tag),
            worker_id=f"w-{tag}",
            transaction_timeout_ms=10_000,
            stream_dir=str(tmp_path / f"stream-{tag}"),
            session_timeout_ms=6000,
            service_url=service_url,
            api_key="",
            poll_timeout_s=0.3,
        )
        settings = StreamSettings(**{**base, **overrides})
        create_topics(broker, platform_topics(settings, partitions))
        return settings

    return make


def worker_process(settings, log_path, idle_stop: float = 6.0):
    """`smoke worker` as its own process on `settings` (SIGKILL it for a crash)."""
    import sys

    from smoke_platform.core.settings import environment
    from smoke_platform.procs import ManagedProcess

    cmd = [sys.executable, "-m", "smoke_platform.cli", "worker", "--idle-stop", str(idle_stop)]
    return ManagedProcess("stream worker", cmd, log_path, env=environment(settings)).start()
