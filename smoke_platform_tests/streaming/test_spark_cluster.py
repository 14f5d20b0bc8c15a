"""The window job on a Spark standalone cluster (a master and a worker started from
pyspark's own launcher) gives the same windows as `local[*]`."""

import json
import urllib.request
from pathlib import Path

import pandas as pd
import pyspark
import pytest

from smoke_platform.procs import ManagedProcess, free_port
from streaming.admin import create_topics
from streaming.config import StreamSettings
from streaming.producer import produce, scenario_records
from streaming.spark_job import spark_session, start_query
from streaming.tables import read_outputs

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.slow]

SPARK_HOME = Path(pyspark.__file__).parent


def _spark_class(name, args, log, env):
    cmd = [str(SPARK_HOME / "bin" / "spark-class"), name, *args]
    return ManagedProcess(name.rsplit(".", 1)[1], cmd, log, env=env).start()


def _alive_workers(ui_port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as resp:
            return json.loads(resp.read()).get("aliveworkers", 0)
    except (OSError, ValueError):  # not up yet, or a page that is not JSON while it starts
        return 0


@pytest.fixture
def standalone(tmp_path):
    env = {"SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
    port, ui = free_port(), free_port()
    master = _spark_class(
        "org.apache.spark.deploy.master.Master",
        ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)],
        tmp_path / "master.log",
        env,
    )
    worker = None
    try:
        master.wait_port(port, 90)
        worker = _spark_class(
            "org.apache.spark.deploy.worker.Worker",
            [
                f"spark://127.0.0.1:{port}",
                "--host",
                "127.0.0.1",
                "--cores",
                "2",
                "--memory",
                "1g",
                "--webui-port",
                str(free_port()),
                "--work-dir",
                str(tmp_path / "work"),
            ],
            tmp_path / "worker.log",
            env,
        )
        worker.wait_until(lambda: _alive_workers(ui) == 1, 90, "registered with the master")
        yield f"spark://127.0.0.1:{port}"
    finally:
        if worker is not None:
            worker.stop()
        master.stop()


def _windows(spark, settings, out, ckpt, model_tag):
    q = start_query(
        spark,
        settings.kafka_bootstrap,
        settings.topic,
        str(out),
        str(ckpt),
        available_now=True,
        model_tag=model_tag,
    )
    q.awaitTermination(600)
    frame = read_outputs(out, "")
    keys = ["sensor_id", "window_start"]
    return frame.drop(columns=["batch_id"]).sort_values(keys).reset_index(drop=True)


def test_standalone_cluster_gives_the_same_windows_as_local(
    standalone, broker, tmp_path, served_model
):
    settings = StreamSettings(kafka_bootstrap=broker, topic="spark-cluster")
    create_topics(broker, {settings.topic: 3})
    produce(
        scenario_records(["wood_fire", "normal_indoor"], seconds=600, seed=3),
        settings,
        echo=lambda *_: None,
    )
    local = spark_session("local[2]", app="smoke-local")
    try:
        expected = _windows(local, settings, tmp_path / "l", tmp_path / "lc", served_model.version)
    finally:
        local.stop()
    cluster = spark_session(standalone, app="smoke-standalone")
    try:
        assert cluster.sparkContext.master == standalone
        got = _windows(cluster, settings, tmp_path / "c", tmp_path / "cc", served_model.version)
        executors = cluster.sparkContext._jsc.sc().getExecutorMemoryStatus().size()
    finally:
        cluster.stop()
    assert executors >= 2  # the driver and the standalone worker's executor
    assert len(got) > 10
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)
