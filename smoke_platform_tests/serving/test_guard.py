"""The guard's settings, in process (the middleware's behaviour is tested against a real
`bentoml serve` in test_service.py)."""

import pytest

from bentos.guard import GuardMiddleware, service_workers


@pytest.mark.parametrize(("raw", "expected"), [("", 1), ("1", 1), ("3", 3)])
def test_service_workers_accepts_whole_numbers(monkeypatch, raw, expected):
    monkeypatch.setenv("SMOKE_SERVICE_WORKERS", raw)
    assert service_workers() == expected


def test_service_workers_cpu_count(monkeypatch):
    import os

    monkeypatch.setenv("SMOKE_SERVICE_WORKERS", "cpu_count")
    assert service_workers() == (os.cpu_count() or 1)


@pytest.mark.parametrize("raw", ["0", "-2", "two", "1.5"])
def test_bad_service_workers_names_the_variable_value_and_what_is_allowed(monkeypatch, raw):
    monkeypatch.setenv("SMOKE_SERVICE_WORKERS", raw)
    with pytest.raises(ValueError, match=f"SMOKE_SERVICE_WORKERS='{raw}'.*whole number >= 1"):
        service_workers()


def test_each_worker_enforces_its_share_of_the_per_client_limit(monkeypatch):
    monkeypatch.setenv("SMOKE_RATE_LIMIT_PER_S", "10")
    monkeypatch.setenv("SMOKE_RATE_LIMIT_BURST", "20")
    monkeypatch.setenv("SMOKE_SERVICE_WORKERS", "4")
    guard = GuardMiddleware(app=None)
    assert (guard.bucket.rate, guard.bucket.burst) == (2.5, 5.0)
    allowed = sum(guard.bucket.take("c", now=100.0) == 0 for _ in range(20))
    assert allowed == 5  # the burst this worker may grant; the 4 workers together grant 20


def _scan_depth(text: bytes) -> int:
    from bentos.limits import _json_depth_scan

    return _json_depth_scan(text)


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"", 0),
        (b'{"readings": [{"a": 1}, {"b": "x"}]}', 3),
        (b'{"s": "[[[[{{{{"}', 1),  # brackets inside strings do not count
        (b'{"s": "a\\"[[["}', 1),  # nor after an escaped quote
        (b'[[["unterminated [[[[', 3),
        (b"]]]][[", 0),
        (b"[" * 40 + b"]" * 40, 40),
    ],
)
def test_json_depth(body, depth):
    from bentos.limits import json_depth

    assert json_depth(body) == depth == _scan_depth(body)


def test_json_depth_fast_path_agrees_with_the_exact_scan_on_any_bytes():
    """The bytes-operation path (bodies without backslashes) against the character scan."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from bentos.limits import json_depth

    pieces = st.sampled_from([b"[", b"]", b"{", b"}", b'"', b'""', b"a", b":", b",", b" "])

    @settings(max_examples=500, deadline=None)
    @given(st.lists(pieces, max_size=60).map(b"".join))
    def agree(body):
        assert json_depth(body) == _scan_depth(body)

    agree()
