"""The embedded Apache Kafka starter."""

import pytest

pytestmark = pytest.mark.kafka


def test_kafka_cluster_ids_never_look_like_an_option(tmp_path):
    """An id starting with '-' made Kafka's storage tool fail (one in 64 ids); a node
    formatted with such an id, given explicitly, still starts."""
    from streaming.admin import answers_metadata
    from streaming.embedded import KafkaCluster, new_cluster_id

    assert not any(new_cluster_id().startswith("-") for _ in range(5_000))
    cluster = KafkaCluster(tmp_path / "k", cluster_id="-" + new_cluster_id()[1:])
    try:
        cluster.start()
        assert answers_metadata(cluster.bootstrap)
    finally:
        cluster.stop()
