# One image for every Python service of the stack (code location, webserver, daemon,
# initial training, BentoML service, producer, stream worker, Spark job): the same pinned
# versions as `make setup` (requirements/lock.txt through uv), the same entry points
# (`smoke`, `dagster`, `dagster-webserver`, `dagster-daemon`, `bentoml`), a non-root user.

# Spark's Kafka and Delta Lake connectors for the Spark job: resolved by Maven from Maven
# Central, from the pinned coordinates `make setup` resolves (jvm/*/pom.xml), as it does.
FROM maven:3.9-eclipse-temurin-17 AS jars
COPY jvm /jvm
RUN mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime \
      -f /jvm/spark-kafka/pom.xml -DoutputDirectory=/jars/spark-kafka
RUN mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime \
      -f /jvm/spark-delta/pom.xml -DoutputDirectory=/jars/spark-delta

FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    DAGSTER_HOME=/opt/dagster/home \
    BENTOML_HOME=/var/lib/smoke/bentoml \
    DAGSTER_DISABLE_TELEMETRY=1 \
    BENTOML_DO_NOT_TRACK=true \
    SMOKE_DATA_DIR=/var/lib/smoke/data \
    SMOKE_REPORTS_DIR=/var/lib/smoke/reports \
    SMOKE_STREAM_DIR=/var/lib/smoke/data/processed_stream \
    SMOKE_WINDOWED_DIR=/var/lib/smoke/data/windowed \
    SMOKE_SPARK_CHECKPOINT_DIR=/var/lib/smoke/checkpoints/windows \
    SMOKE_SPARK_KAFKA_JARS_DIR=/opt/smoke/jars/spark-kafka \
    SMOKE_SPARK_DELTA_JARS_DIR=/opt/smoke/jars/spark-delta

# Java 17 for Spark; tini reaps children and forwards SIGTERM (the worker drains on it).
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin smoke

WORKDIR /opt/smoke
COPY --from=jars /jars /opt/smoke/jars
COPY requirements/lock.txt requirements/lock.txt
RUN pip install --no-cache-dir "uv==0.13.8" \
 && uv pip install --system --no-cache -r requirements/lock.txt

COPY pyproject.toml README.md ./
COPY smoke_platform smoke_platform
COPY streaming streaming
COPY bentos bentos
RUN uv pip install --system --no-cache --no-deps . \
 && mkdir -p "$DAGSTER_HOME/storage" /var/lib/smoke/bentoml /var/lib/smoke/data \
      /var/lib/smoke/reports /var/lib/smoke/checkpoints \
 && chown -R smoke:smoke "$DAGSTER_HOME" /var/lib/smoke
# Named volumes start as copies of these folders, so they are the smoke user's too.
COPY dagster.yaml "$DAGSTER_HOME/dagster.yaml"
COPY deploy/dagster/workspace.yaml /opt/dagster/workspace.yaml

USER smoke
EXPOSE 3000 4000 9108
ENTRYPOINT ["tini", "--"]
CMD ["smoke", "--help"]
