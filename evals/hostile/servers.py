"""Real servers on loopback for the hostile-traffic harness and the soak: the echo upstream and
``nescio serve``, each a subprocess that is stopped when its ``with`` block ends.

Every wait is bounded (readiness polls, SIGTERM grace) and every address is 127.0.0.1. Each
process starts in its own session, so a Ctrl-C in the terminal reaches only the harness, which
then stops its servers in order from its ``finally`` blocks; a harness killed with SIGKILL leaves
them running, as any unmanaged child would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

LOOPBACK = "127.0.0.1"
POLL_INTERVAL_S = 0.1


class ServerError(RuntimeError):
    """A server exited before it was ready, or was not ready in time; the message ends with the
    tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Termination:
    """How a stopped process ended: seconds from SIGTERM to exit, and whether SIGKILL was needed
    (then ``seconds`` is the grace it was given plus the time the kill took)."""

    seconds: float
    killed: bool
    returncode: int | None


class ServerProcess:
    """One server command on a fixed loopback port, startable again after a stop.

    ``start`` returns only once every path in ``ready_paths`` answers 200 (in order), and stops the
    process itself when readiness fails or is interrupted, so a caller's ``with`` never leaks it.
    Output (stdout and stderr) is appended to ``log_path`` across restarts; by default a temporary
    file that is kept after exit, for inspection.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        *,
        env: Mapping[str, str],
        ready_paths: Sequence[str],
        startup_timeout: float,
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.port = port
        self.env = dict(env)
        self.ready_paths = list(ready_paths)
        self.startup_timeout = startup_timeout
        if log_path is None:
            fd, raw = tempfile.mkstemp(prefix=f"nescio-{name}-", suffix=".log")
            os.close(fd)
            log_path = Path(raw)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL without ``/v1``; the same across restarts."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ServerError(f"{self.name} is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> float:
        """Start the process and wait until it is ready; returns the seconds that took."""
        if self.running:
            raise ServerError(f"{self.name} is already running (pid {self.pid})")
        began = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(began + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - began

    def _wait_ready(self, deadline: float) -> None:
        process = self._process
        if process is None:
            raise ServerError(f"{self.name} is not running")
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            for path in self.ready_paths:
                while not _answers(client, self.url + path):
                    if process.poll() is not None:
                        raise ServerError(
                            f"{self.name} exited with code {process.returncode} before "
                            f"{path} answered; log {self.log_path}:\n{self.log_tail()}"
                        )
                    if time.monotonic() > deadline:
                        raise ServerError(
                            f"{self.name}: {path} did not answer 200 within "
                            f"{self.startup_timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}"
                        )
                    time.sleep(POLL_INTERVAL_S)

    def terminate(self, timeout: float = 30.0) -> Termination:
        """SIGTERM the process group, SIGKILL it if it outlives ``timeout`` seconds (or if the wait
        is interrupted, e.g. by Ctrl-C). Calling it on a stopped server returns zero seconds.
        """
        process = self._process
        if process is None or process.poll() is not None:
            self._process = None
            code = None if process is None else process.returncode
            return Termination(0.0, killed=False, returncode=code)
        began = time.monotonic()
        killed = False
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            killed = True
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=timeout)
        except BaseException:  # interrupted while waiting: do not leave it running
            _signal_group(process, signal.SIGKILL)
            raise
        self._process = None
        return Termination(time.monotonic() - began, killed, process.returncode)

    def stop(self) -> None:
        """``terminate`` with the default grace, for ``finally`` blocks."""
        self.terminate()

    def log(self) -> str:
        """Everything the process wrote so far (all starts)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:]) or "(empty log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EchoUpstream(ServerProcess):
    """``evals.hostile.echo_upstream`` on a port fixed at construction, so ``restart`` brings it
    back at the same address; ready once ``GET /v1/models`` answers."""

    def __init__(
        self,
        port: int | None = None,
        *,
        startup_timeout: float = 30.0,
        log_path: Path | None = None,
    ) -> None:
        port = free_port() if port is None else port
        command = [sys.executable, "-m", "evals.hostile.echo_upstream", "--port", str(port)]
        super().__init__(
            "echo-upstream",
            command,
            port,
            env=os.environ,
            ready_paths=["/v1/models"],
            startup_timeout=startup_timeout,
            log_path=log_path,
        )

    def stop(self, grace: float = 5.0) -> None:
        self.terminate(grace)

    def restart(self, pause: float = 0.0) -> float:
        """Stop, wait ``pause`` seconds, start again; returns the seconds the new start took."""
        self.stop()
        time.sleep(pause)
        return self.start()


class ProxyServer(ServerProcess):
    """``nescio serve`` for ``concepts`` in front of ``upstream_url`` (without ``/v1``); with
    ``concepts=None`` it is served without a concept list, a pure relay.

    Inherited ``NESCIO_*`` variables are dropped so the shell's keys or settings never leak into a
    run; ``env`` adds the caller's (e.g. ``NESCIO_CACHE_DIR``). The model stays offline
    (``HF_HUB_OFFLINE=1``). Ready once ``/health`` and then ``/ready`` (guard built, upstream
    answering) return 200; loading the encoder takes ~10 s on CPU.
    """

    def __init__(
        self,
        concepts: Path | None,
        upstream_url: str,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 120.0,
        log_path: Path | None = None,
    ) -> None:
        port = free_port() if port is None else port
        command = [sys.executable, "-m", "proxy.cli", "serve"]
        if concepts is not None:
            command += ["--concepts", str(concepts)]
        command += ["--upstream-url", upstream_url, "--port", str(port)]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("NESCIO_")}
        environment.update({"HF_HUB_OFFLINE": "1", **(env or {})})
        super().__init__(
            "nescio-proxy",
            command,
            port,
            env=environment,
            ready_paths=["/health", "/ready"],
            startup_timeout=startup_timeout,
            log_path=log_path,
        )


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited between the poll and the signal
        os.killpg(process.pid, signum)
