"""Full-graph materialisation time at the default data size, in-process executor (target < 60 s)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.common import report


def run() -> None:
    work = Path(tempfile.mkdtemp(prefix="smoke-bench-graph-"))
    os.environ.setdefault("SMOKE_DATA_DIR", str(work / "data"))
    os.environ.setdefault("SMOKE_REPORTS_DIR", str(work / "reports"))
    from smoke_platform.runs import materialize_all

    ok, elapsed, _ = materialize_all("*")
    if not ok:
        raise SystemExit("graph materialisation failed; see the Dagster run log")
    report("graph", "materialize_s", elapsed, "s", "target < 60 s, in-process executor, 60k rows")
