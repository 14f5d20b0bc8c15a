"""Start and stop the platform's long-running processes (service, broker, workers).

Used by the demo, the Docker-free stack and the test fixtures: a process that cannot
start fails loudly with the tail of its log; `stop` sends SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from smoke_platform.errors import EXIT_CONFIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on (or holds) `host:port`."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class StopFlag:
    """A stop request that a signal handler may set.

    `threading.Event.set` takes the event's lock, which the main thread holds for a moment
    on its way into and out of `Event.wait`: a SIGTERM handled there deadlocks the process
    (it never exits). `set` here only stores a bool, and `wait` sleeps in short slices,
    so a stop is seen within `slice_s` of being set, from a handler or another thread."""

    def __init__(self, slice_s: float = 0.05) -> None:
        self._set = False
        self.slice_s = slice_s

    @classmethod
    def on_signals(cls, *signals: int) -> StopFlag:
        """A flag that these signals (default SIGTERM and SIGINT) set: `docker stop`,
        `make down`, Ctrl-C. Installed from the main thread."""
        flag = cls()
        for sig in signals or (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: flag.set())
        return flag

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep until set or `timeout` seconds have passed; True if it was set."""
        deadline = time.monotonic() + timeout
        while not self._set:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, self.slice_s))
        return True


class ProcessFailed(RuntimeError):
    """A managed process exited or never became ready."""


class ManagedProcess:
    """A child process in its own session, logging to a file."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        from smoke_platform.core.settings import home

        self.name, self.cmd, self.log_path = name, list(cmd), log_path
        # A child may run in another folder (the checkout): it gets our data root as an
        # absolute path, so its relative path settings land where ours do.
        self.env = {**os.environ, "SMOKE_HOME": str(home().resolve()), **(env or {})}
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # own process group; SIGINT from a terminal is not ours
            preexec_fn=_default_signals,
        )
        log.close()
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_until(
        self, ready: Callable[[], bool], timeout: float, what: str, stacks: bool = False
    ) -> None:
        """Wait for `ready()`; a process that exits or is not ready in time raises
        ProcessFailed with its log's tail. `stacks`: on time-out, first ask the process for
        every thread's stack (SIGUSR1, registered by `smoke worker` with faulthandler) so
        the tail says where it stalled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessFailed(
                    f"{self.name} exited with {self.proc.returncode if self.proc else '?'} "
                    f"before {what}; log {self.log_path}:\n{self.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.25)
        if stacks and self.alive() and self.proc is not None:
            os.kill(self.proc.pid, signal.SIGUSR1)
            time.sleep(1.0)
        self.stop()
        raise ProcessFailed(
            f"{self.name} not {what} after {timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def wait_http(self, url: str, timeout: float = 120.0, ca: str | None = None) -> None:
        self.wait_until(lambda: http_ok(url, ca), timeout, f"answering {url}")

    def wait_port(self, port: int, timeout: float = 30.0) -> None:
        self.wait_until(lambda: port_open(port), timeout, f"listening on port {port}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop the process and its group (`stop_group`). Returns the exit code."""
        if self.proc is None:
            return None
        stop_group(self.proc.pid, timeout, reap=self.proc.poll)
        return self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL the whole process group at once (crash simulation)."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait(10)

    def freeze(self, frozen: bool = True) -> None:
        """SIGSTOP (or SIGCONT) the process and every descendant, wherever their process
        group: a hung service for fault tests (BentoML's workers may leave the group)."""
        import psutil

        if self.proc is None:
            return
        try:
            leader = psutil.Process(self.proc.pid)
            family = [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for member in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.suspend() if frozen else member.resume()

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def stop_group(pgid: int, timeout: float = 30.0, reap: Callable[[], object] | None = None) -> bool:
    """SIGTERM the group's leader first (`dagster dev` and `bentoml serve` stop their own
    children in order; signalling the whole group at once races them), the whole group
    halfway through `timeout`, SIGKILL at the end. `reap` collects the leader when it is
    our child (a zombie still counts as a member). True when SIGKILL was needed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    grouped = False

    def alive() -> bool:
        if reap is not None:
            reap()
        return group_alive(pgid)

    while alive() and time.monotonic() < deadline:
        if not grouped and time.monotonic() > deadline - timeout / 2:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            grouped = True
        time.sleep(0.1)
    if not alive():
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return True


def _default_signals() -> None:
    """In the child: SIGINT/SIGTERM back to their defaults. A parent started in the
    background (`cmd &`) ignores SIGINT and children inherit that; `dagster dev` then
    ignores the SIGTERM it turns into SIGINT for its own children (ENVIRONMENT.md)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def http_ok(url: str, ca: str | None = None) -> bool:
    """Whether `url` answers 2xx (HTTPS: its certificate checked against `ca`, else the
    system's CAs)."""
    import ssl

    context = ssl.create_default_context(cafile=ca) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return 200 <= resp.status < 300
    except OSError:
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Supervisor:
    """Run a command; restart it when it exits with an error, with exponential back-off
    (`min_backoff_s` doubling to `max_backoff_s`, back to the minimum after a run of
    `stable_s`). SIGTERM/SIGINT stop the child (SIGTERM, then SIGKILL) and the supervisor.
    A clean exit (0) ends supervision, and so does exit code 78 (`EXIT_CONFIG`: a wrong
    setting, which a restart would only repeat). Its state is a JSON file `smoke status`
    reads."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        status_path: Path,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        stable_s: float = 60.0,
    ) -> None:
        self.name, self.cmd, self.status_path = name, list(cmd), status_path
        self.min_backoff_s, self.max_backoff_s, self.stable_s = (
            min_backoff_s,
            max_backoff_s,
            stable_s,
        )
        self.restarts = 0
        self.stopping = False

    def _status(self, state: str, **extra: object) -> None:
        import json
        from datetime import UTC, datetime

        record = {
            "name": self.name,
            "state": state,
            "restarts": self.restarts,
            "supervisor_pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            **extra,
        }
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_path.with_name(f".{self.status_path.name}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.status_path)

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        delay = self.min_backoff_s
        code = 0
        while not self.stopping:
            started = time.monotonic()
            child = subprocess.Popen(self.cmd, preexec_fn=_default_signals)
            self._status("running", pid=child.pid, **({"last_exit": code} if self.restarts else {}))
            while child.poll() is None and not self.stopping:
                time.sleep(0.2)
            if self.stopping and child.poll() is None:
                child.terminate()
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            code = child.returncode
            if self.stopping or code == 0:
                break
            if code == EXIT_CONFIG:  # a wrong setting: a restart would fail the same way
                print(
                    f"supervisor: {self.name} exited with {code}: a setting is wrong (its log "
                    "says which); not restarting",
                    flush=True,
                )
                self._status("failed", last_exit=code, reason="a setting is wrong")
                return code
            if time.monotonic() - started >= self.stable_s:
                delay = self.min_backoff_s
            self.restarts += 1
            print(
                f"supervisor: {self.name} exited with {code}; restart {self.restarts} "
                f"in {delay:g} s",
                flush=True,
            )
            self._status("backoff", last_exit=code, restart_in_s=delay)
            deadline = time.monotonic() + delay
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.1)
            delay = min(delay * 2, self.max_backoff_s)
        self._status("stopped", last_exit=code)
        return 0 if self.stopping else code
