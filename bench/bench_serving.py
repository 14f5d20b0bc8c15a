"""The `smoke_detector` service under `bentoml serve` vs the in-process model (ceiling).

Runs in its own BentoML store: trains the default-data model, serves it from the source
folder on a free port, then measures sequential, concurrent and batch traffic. The load
generator is aiohttp (BentoML's own client library) with bodies encoded up front: it shares
the machine's cores with the service, and httpx's async client alone took a whole core at
~200 req/s, which capped the concurrent figure at the client, not the service.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import report, tree_cpu


def _model_and_readings():
    from smoke_platform import modelstore
    from smoke_platform.core.modeling import session_holdout, train_candidate, training_frame
    from smoke_platform.core.scoring import ScoringModel
    from smoke_platform.core.simulate import generate_readings

    frame = training_frame(generate_readings(seed=0))
    result = train_candidate("hist_gradient_boosting", frame, session_holdout(frame), folds=2)
    model = ScoringModel(result.model, result.threshold, result.features)
    model.version = modelstore.save_model(model, name="smoke_detector_bench")
    return model, generate_readings(n_rows=5_000, seed=99)


def _bodies(route: str, records: list[dict], n: int) -> list[bytes]:
    import json

    wrap = (lambda r: {"readings": [r]}) if route == "predict_batch" else (lambda r: {"reading": r})
    return [json.dumps(wrap(rec)).encode() for rec in records[: min(n, len(records))]]


def _session(connections: int):
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=60),
        headers={"content-type": "application/json"},
    )


async def _sequential(url: str, records: list[dict], n: int = 300) -> list[float]:
    """One client, one reading per request to /predict; seconds per request."""
    bodies, times = _bodies("predict", records, n), []
    async with _session(1) as session:
        for i in range(n):
            started = time.perf_counter()
            async with session.post(f"{url}/predict", data=bodies[i % len(bodies)]) as resp:
                resp.raise_for_status()
                await resp.read()
            times.append(time.perf_counter() - started)
    return times


async def _concurrent(
    url: str, route: str, records: list[dict], clients: int, n: int
) -> tuple[float, list[float]]:
    """`clients` concurrent connections, one reading per request: (requests/s, each
    request's seconds, sorted)."""
    bodies, times = _bodies(route, records, n), []

    async def worker(k: int, session) -> None:
        for i in range(k, n, clients):
            sent = time.perf_counter()
            async with session.post(f"{url}/{route}", data=bodies[i % len(bodies)]) as resp:
                resp.raise_for_status()
                await resp.read()
            times.append(time.perf_counter() - sent)

    async with _session(clients) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(k, session) for k in range(clients)))
        return n / (time.perf_counter() - started), sorted(times)


@dataclass
class Round:
    """A route's best round: rows/s, and CPU per request of the service (all its
    processes) and of this client, in ms."""

    rows_per_s: float = 0.0
    service_ms: float = 0.0
    client_ms: float = 0.0


def _batches(
    url: str,
    route: str,
    body: dict | bytes,
    size: int,
    n: int = 40,
    ctype: str = "application/json",
    repeat: int = 5,
    service_pid: int | None = None,
) -> Round:
    """Rows/s of sequential `size`-row requests to `route`, best of `repeat` rounds of `n`
    (as the in-process anchor is: a route's capacity beside the model's, both at their
    best on a shared machine), with that round's CPU per request (the service's when its
    pid is given). The body is encoded once, as load generators send it: the figure is the
    service's, not the client's encoder's (which shares the two cores)."""
    import json

    import httpx

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": ctype}
    best = Round()
    with httpx.Client(timeout=60, headers=headers) as client:
        for _ in range(30):  # warm-up: BentoML's batching optimizer trains on the first calls
            client.post(f"{url}/{route}", content=data).raise_for_status()
        for _ in range(repeat):
            served = tree_cpu(service_pid) if service_pid else 0.0
            started, own = time.perf_counter(), time.process_time()
            for _ in range(n):
                client.post(f"{url}/{route}", content=data).raise_for_status()
            rate = size * n / (time.perf_counter() - started)
            if rate > best.rows_per_s:
                best = Round(
                    rate,
                    ((tree_cpu(service_pid) - served) if service_pid else 0.0) / n * 1000,
                    (time.process_time() - own) / n * 1000,
                )
    return best


def _inprocess(
    model, readings, size: int = 1_000, rows: int = 40_000, repeat: int = 5, threads: int | None = 1
) -> float:
    """The model's own rows/s on `size`-row batches in this process: the limit a route
    serving requests of that size could reach (best of `repeat`: a limit, not a typical).

    One OpenMP thread by default, as the service scores a request (`OMP_NUM_THREADS=1`
    and `single_threaded()` in bentos/service.py: one request, one core); `threads=None`
    lets scikit-learn use every core, as a plain script would."""
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    batch = readings.iloc[:size]
    best = 0.0
    with threadpool_limits(limits=threads, user_api="openmp"):
        model.predict_proba(batch)
        for _ in range(repeat):
            started = time.perf_counter()
            for _ in range(max(4, rows // size)):
                model.predict_proba(batch)
            best = max(best, size * max(4, rows // size) / (time.perf_counter() - started))
    return best


# Each bulk route's rows/s as a share of the model's own rate in process, measured in the
# same run (the machine's limit for the service, whatever the machine).
PCT_TARGETS = {"batch1000": 50, "columns1000": 65, "arrow5000": 90}


def _bulk(url: str, model, readings, records: list[dict], pid: int) -> float:
    """Each bulk route's rows/s at 1,000 and 5,000 rows per request beside the model's
    own in process, on a service whose adaptive batcher has seen only these requests
    (its learned wait is the traffic's own). Returns the 1,000-row anchor."""
    from smoke_platform.core.columns import ARROW_MEDIA_TYPE, frame_to_arrow
    from smoke_platform.core.schema import REQUIRED, columns_from_records

    ceilings = {}
    frame = readings[list(REQUIRED)]
    for size in (1_000, 5_000):
        ceiling = ceilings[size] = _inprocess(model, readings, size)
        report(
            "serving",
            f"inprocess{size}_rows_per_s",
            ceiling,
            "rows/s",
            f"ceiling: same model, {size:,}-row batches, no HTTP, one OpenMP thread as "
            "the service scores a request, best of 5",
        )
        report(
            "serving",
            f"inprocess{size}_all_cores_rows_per_s",
            _inprocess(model, readings, size, threads=None),
            "rows/s",
            "the same with scikit-learn's OpenMP threads on every core (not the anchor: "
            "the service gives each request one core and runs a worker per core)",
        )
        rows = records[:size]
        figures: dict[str, tuple[str, dict | bytes, str]] = {
            "batch": ("predict_batch", {"readings": rows}, "application/json"),
            "columns": (
                "predict_columns",
                {"columns": columns_from_records(rows)},
                "application/json",
            ),
            "arrow": ("predict_arrow", frame_to_arrow(frame.iloc[:size]), ARROW_MEDIA_TYPE),
        }
        for name, (route, body, ctype) in figures.items():
            best = _batches(
                url, route, body, size, n=max(8, 40_000 // size), ctype=ctype, service_pid=pid
            )
            report(
                "serving",
                f"{name}{size}_rows_per_s",
                best.rows_per_s,
                "rows/s",
                f"/{route}, {size:,} readings per request, best of 5",
            )
            target = PCT_TARGETS.get(f"{name}{size}")
            report(
                "serving",
                f"{name}{size}_pct_of_inprocess",
                best.rows_per_s / ceiling * 100,
                "%",
                f"/{route} at {size:,} rows against the model in process on batches of "
                "that size, same run" + (f"; target >= {target}" if target else ""),
            )
            # Where a request's time goes: the model's share, measured in process, and the
            # rest of the service's CPU (HTTP, ASGI layers, decoding and checking the body).
            model_ms = size / ceiling * 1000
            report(
                "serving",
                f"{name}{size}_service_cpu_ms_per_request",
                best.service_ms,
                "ms",
                f"every service process, best round; the model alone {model_ms:.2f} ms "
                f"in process; this client {best.client_ms:.2f} ms",
            )
            report(
                "serving",
                f"{name}{size}_beyond_model_ms_per_request",
                best.service_ms - model_ms,
                "ms",
                "the service's CPU per request less the model's own in process: what stops "
                "the share of the anchor",
            )
    return ceilings[1_000]


def run() -> None:
    work = Path(tempfile.mkdtemp(prefix="smoke-bench-serving-"))
    os.environ["BENTOML_HOME"] = str(work / "bentoml")  # before bentoml is imported
    from smoke_platform.core.io import to_records
    from smoke_platform.serving import bentoml_serve

    model, readings = _model_and_readings()
    records = to_records(readings)
    proc, url = bentoml_serve(
        "bentos.service:SmokeDetector",
        work / "serve.log",
        env={
            "SMOKE_MODEL_TAG": model.version,
            "SMOKE_API_KEY": "",
            "SMOKE_SERVICE_WORKERS": "cpu_count",
        },
    )
    report(
        "serving", "workers", os.cpu_count() or 1, "processes", "SMOKE_SERVICE_WORKERS=cpu_count"
    )
    if proc.proc is None:
        raise RuntimeError("bentoml serve did not start")
    try:
        ceiling = _bulk(url, model, readings, records, proc.proc.pid)
        asyncio.run(_sequential(url, records, 30))  # warm-up
        asyncio.run(_concurrent(url, "predict_batch", records, 32, 500))  # trains the batcher
        times = sorted(asyncio.run(_sequential(url, records)))
        report("serving", "single_p50_ms", statistics.median(times) * 1000, "ms", "target <= 10 ms")
        report("serving", "single_p99_ms", times[int(len(times) * 0.99) - 1] * 1000, "ms")
        seq = len(times) / sum(times)
        report("serving", "single_req_per_s", seq, "req/s", "sequential, one client")
        conc, latencies = asyncio.run(_concurrent(url, "predict_batch", records, 32, 3_000))
        report(
            "serving",
            "concurrent32_req_per_s",
            conc,
            "req/s",
            f"32 clients, 1 reading each, adaptive batching; {conc / seq:.1f}x sequential "
            "(target >= 5x)",
        )
        report(
            "serving",
            "concurrent32_p99_ms",
            latencies[int(len(latencies) * 0.99) - 1] * 1000,
            "ms",
            f"target <= 50 ms; 32 clients at {conc:.0f} req/s wait {32 / conc * 1000:.0f} ms "
            "on average (Little's law), so p99 <= 50 ms needs > 640 req/s at no spread",
        )
        plain, plain_latencies = asyncio.run(_concurrent(url, "predict", records, 32, 1_500))
        report(
            "serving", "concurrent32_unbatched_req_per_s", plain, "req/s", "/predict, no batching"
        )
        report(
            "serving",
            "concurrent32_unbatched_p99_ms",
            plain_latencies[int(len(plain_latencies) * 0.99) - 1] * 1000,
            "ms",
            "/predict, no batching",
        )
        # /predict_batch at 1,000 rows again, now that the batcher learned to wait for the
        # 32 clients' readings: that wait outlives the traffic that taught it (BentoML
        # refits it every 5 s from its last 50 batches, each of which waited it).
        again = _batches(
            url,
            "predict_batch",
            {"readings": records[:1_000]},
            1_000,
            ctype="application/json",
        ).rows_per_s
        report(
            "serving",
            "batch1000_after_concurrent_pct_of_inprocess",
            again / ceiling * 100,
            "%",
            "/predict_batch at 1,000 rows right after the 32-client runs (the batcher's "
            "learned wait), against the same anchor",
        )
    finally:
        proc.stop()
