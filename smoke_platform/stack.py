"""The platform's long-running processes, started the same way by the demo, the
Docker-free stack (`smoke up`) and the tests."""

from __future__ import annotations

import sys
from pathlib import Path

from smoke_platform.procs import ManagedProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


def dagster_dev(
    log_path: Path, port: int | None = None, env: dict[str, str] | None = None
) -> tuple[ManagedProcess, str]:
    """`dagster dev` (webserver + daemon + code server) on 127.0.0.1; waits for the UI."""
    port = port or free_port()
    cmd = [
        sys.executable, "-m", "dagster", "dev",
        "-m", "smoke_platform.definitions",
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    proc = ManagedProcess("dagster dev", cmd, log_path, env=env, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    proc.start().wait_http(f"{url}/server_info", timeout=240)
    return proc, url
