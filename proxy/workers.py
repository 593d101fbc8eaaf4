"""Several worker processes on one port: ``nescio serve --workers N`` (``NESCIO_WORKERS``).

uvicorn's multiprocess supervisor runs the workers: it binds the port once and spawns N processes
that accept on it, restarts one that dies, and on SIGTERM passes the signal to each, which
finishes its in-flight requests within ``NESCIO_SHUTDOWN_GRACE`` as a single process does.
Spawned workers start from nothing: each rebuilds :class:`ProxySettings` from the environment
(:func:`worker_environment` puts the command line's flags there) and builds its own app and
guard (:func:`worker_app`).

What the workers share, through folders made here for one run and removed after it:

- the concept list in force (``NESCIO_STATE_DIR``, :mod:`proxy.shared`), so an admin API change
  made on one worker reaches all of them; an operator-given ``NESCIO_STATE_DIR`` is used as it
  is, and kept;
- the metrics (``PROMETHEUS_MULTIPROC_DIR``, prometheus_client's multiprocess mode, see
  :mod:`proxy.observe`), so a scrape counts every worker's requests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from proxy.app import ProxyApp, create_app
from proxy.settings import ProxySettings

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def worker_app() -> ProxyApp:
    """The app of one worker process (uvicorn's factory), configured from the environment."""
    return create_app(ProxySettings())


def worker_environment(flags: Mapping[str, object]) -> dict[str, str]:
    """``NESCIO_*`` variables carrying the command line's settings (which rank above the
    environment and the YAML file; as variables they still rank above the YAML file)."""
    return {f"NESCIO_{name.upper()}": _text(value) for name, value in flags.items()}


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@contextmanager
def shared_folders(settings: ProxySettings) -> Iterator[dict[str, str]]:
    """The environment that points the workers at their shared folders; temporary ones (mode
    0700: the concept list holds forget passages) are removed when the block ends."""
    made: list[Path] = []

    def private(prefix: str) -> str:
        made.append(Path(tempfile.mkdtemp(prefix=prefix)))
        return str(made[-1])

    try:
        state = str(settings.state_dir) if settings.state_dir else private("nescio-state-")
        metrics = os.environ.get(METRICS_ENV) or private("nescio-metrics-")
        yield {"NESCIO_STATE_DIR": state, METRICS_ENV: metrics}
    finally:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
