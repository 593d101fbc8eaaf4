"""Start a vLLM OpenAI-compatible server on one checkpoint for the duration of a `with` block."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from evals.baselines.errors import ServerError

CPU_FLAGS = [
    "--enforce-eager",
    "--dtype",
    "float32",
    "--kv-cache-memory-bytes",
    "268435456",
    "--distributed-executor-backend",
    "uni",
    "--max-model-len",
    "2048",
]
GPU_FLAGS = ["--dtype", "bfloat16", "--max-model-len", "2048", "--gpu-memory-utilization", "0.5"]


def server_command(kind: str, cpu_python: Path) -> tuple[list[str], list[str]]:
    """The interpreter command and flags for `kind` (`auto`, `cpu` or `gpu`).

    `auto` uses the official `vllm` package of this interpreter when it is importable and a GPU
    is present, and the separate vLLM CPU environment otherwise.
    """
    if kind == "auto":
        import torch

        has_vllm = importlib.util.find_spec("vllm") is not None
        kind = "gpu" if has_vllm and torch.cuda.is_available() else "cpu"
    if kind == "gpu":
        return [sys.executable], GPU_FLAGS
    if not cpu_python.is_file():
        raise ServerError(f"vLLM CPU interpreter not found at {cpu_python} (NESCIO_VLLM_PYTHON)")
    return [str(cpu_python)], CPU_FLAGS


@contextlib.contextmanager
def serve(
    model_dir: Path,
    name: str,
    port: int,
    log_path: Path,
    *,
    kind: str = "auto",
    cpu_python: Path,
    startup_timeout_s: float = 600.0,
) -> Iterator[str]:
    """Serve `model_dir` as model `name` on 127.0.0.1:`port`; yields the base URL (…/v1).

    Waits until `/v1/models` answers, and always stops the server (SIGTERM, then SIGKILL).
    The server's output goes to `log_path`, named in the error if it does not come up.
    """
    python, flags = server_command(kind, cpu_python)
    command = [
        *python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *flags,
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "VLLM_TARGET_DEVICE": "cpu" if flags is CPU_FLAGS else "cuda",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    }
    base_url = f"http://127.0.0.1:{port}/v1"
    with running(command, env, f"{base_url}/models", log_path, "vLLM", startup_timeout_s):
        yield base_url


@contextlib.contextmanager
def running(
    command: list[str],
    env: dict[str, str],
    ready_url: str,
    log_path: Path,
    what: str,
    startup_timeout_s: float,
) -> Iterator[None]:
    """Run `command` until the `with` block ends, once `ready_url` answers 200.

    Output goes to `log_path`, named in the error if the process exits or never gets ready; the
    process is always stopped on exit (SIGTERM, then SIGKILL after 30 s).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_ready(process, ready_url, startup_timeout_s, log_path, what)
            yield
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(
    process: subprocess.Popen[bytes], url: str, timeout_s: float, log_path: Path, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"{what} exited with code {process.returncode}; see {log_path}")
        if _answers(url):
            return
        time.sleep(1.0)
    raise ServerError(f"{what} did not become ready within {timeout_s:.0f} s; see {log_path}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False
