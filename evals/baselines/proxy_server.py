"""Start the Nescio proxy (`nescio serve`, a real subprocess) in front of a served model for the
duration of a `with` block, so `compare` grades proxy(model) through the same HTTP path users hit."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from evals.baselines.vllm_server import running


@contextlib.contextmanager
def serve_proxy(
    upstream_url: str,
    concepts: Path,
    port: int,
    log_path: Path,
    *,
    cache_dir: Path,
    startup_timeout_s: float = 300.0,
) -> Iterator[str]:
    """Serve the proxy for `concepts` on 127.0.0.1:`port` in front of `upstream_url` (…/v1).

    Yields the proxy's base URL (…/v1) once `/ready` answers (guard built, upstream reachable).
    Client and admin keys are switched off: it listens on loopback for this run only.
    """
    command = [
        sys.executable,
        "-m",
        "proxy.cli",
        "serve",
        "--concepts",
        str(concepts),
        "--upstream-url",
        upstream_url.removesuffix("/v1"),
        "--port",
        str(port),
        "--cache-dir",
        str(cache_dir),
    ]
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("NESCIO_API_KEYS", "NESCIO_ADMIN_KEY", "NESCIO_UPSTREAM_URL")
    }
    env["HF_HUB_OFFLINE"] = "1"
    root = f"http://127.0.0.1:{port}"
    with running(command, env, f"{root}/ready", log_path, "the proxy", startup_timeout_s):
        yield f"{root}/v1"
