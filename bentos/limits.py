"""The guard's limits that need no ASGI: a per-client token bucket, and the nesting depth
of a JSON text measured without parsing it."""

import re

import numpy as np

MAX_JSON_DEPTH = 32  # a reading is 3 levels deep; deeper nesting is an attack, not data
_JSON_STRUCTURE = re.compile(rb'[\\"\[\]{}]')


_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')


def json_depth(body: bytes) -> int:
    """The deepest nesting of `[`/`{` in a JSON text, outside strings (no parsing, so a
    hostile body cannot exhaust the parser's recursion).

    Without backslashes (every reading), in C-speed bytes operations: keep only quotes and
    brackets, drop adjacent quote pairs (that never moves a bracket in or out of a string),
    keep what lies outside the remaining strings, and sum the brackets (1,000 readings:
    ~0.3 ms instead of 12 ms). With escapes, the exact scan below."""
    if b"\\" in body:
        return _json_depth_scan(body)
    marks = body.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    outside = b"".join(marks.split(b'"')[::2])
    if not outside:
        return 0
    codes = np.frombuffer(outside, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return max(int(np.cumsum(steps).max()), 0)


def _json_depth_scan(body: bytes) -> int:
    """`json_depth` character by character (escapes inside strings understood)."""
    depth = deepest = 0
    in_string, escaped_at = False, -1
    for match in _JSON_STRUCTURE.finditer(body):
        char, at = match.group(), match.start()
        if at == escaped_at:
            continue  # the character after a backslash inside a string
        if in_string:
            if char == b"\\":
                escaped_at = at + 1
            elif char == b'"':
                in_string = False
        elif char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


class TokenBucket:
    """`rate` requests per second with bursts up to `burst`, per client."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.state: dict[str, tuple[float, float]] = {}

    def take(self, client: str, now: float) -> float:
        """0 if allowed, else seconds until a token is available."""
        tokens, last = self.state.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self.state[client] = (tokens - 1, now)
            return 0.0
        self.state[client] = (tokens, now)
        return (1 - tokens) / self.rate
