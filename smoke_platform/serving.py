"""Run the BentoML service as a process (`bentoml serve`), for the demo, the stack and tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from smoke_platform.procs import ManagedProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


def auth_headers(api_key: Any) -> dict[str, str]:
    """Headers for a client of the service: `SMOKE_API_KEY` (text or a `SecretStr`) may list
    several keys (comma-separated, for rotation); a client sends the first."""
    text = api_key.get_secret_value() if hasattr(api_key, "get_secret_value") else api_key
    first = str(text or "").split(",")[0].strip()
    return {"x-api-key": first} if first else {}


def bentoml_serve(
    target: str, log_path: Path, port: int | None = None, env: dict[str, str] | None = None
) -> tuple[ManagedProcess, str]:
    """Start `bentoml serve <target>` on 127.0.0.1 and wait until /readyz answers.

    `target` is `bentos.service:SmokeDetector` (source folder) or a bento tag.
    Returns the process and its base URL (https when `env` gives the service a
    certificate: `SMOKE_SERVICE_SSL_CERT_FILE`, checked against `SMOKE_SERVICE_CA_FILE`).
    """
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = ManagedProcess(f"bentoml serve {target}", cmd, log_path, env=env, cwd=REPO_ROOT)
    seen = {**os.environ, **(env or {})}  # what the service process gets
    tls = seen.get("SMOKE_SERVICE_SSL_CERT_FILE")  # HTTPS (`ServiceSettings.ssl`)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    ca = seen.get("SMOKE_SERVICE_CA_FILE") or None
    proc.start().wait_http(f"{url}/readyz", timeout=180, ca=ca)
    return proc, url
