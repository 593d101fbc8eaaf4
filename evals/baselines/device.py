"""Device and precision selection shared by training and the GPU check."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from evals.baselines.errors import BaselineError


def select_device(requested: str = "auto") -> torch.device:
    """Return the device to train on.

    `auto` picks CUDA when a GPU is visible and the CPU otherwise, so the same command runs on a
    laptop and on an H100. An explicit `cuda` on a machine without CUDA is an error rather than a
    silent fallback, because a GPU benchmark that quietly ran on the CPU would report nonsense.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BaselineError("device 'cuda' requested but torch.cuda.is_available() is False")
    return device


@contextlib.contextmanager
def autocast_for(device: torch.device) -> Iterator[None]:
    """bf16 autocast on CUDA (weights stay float32); plain float32 on the CPU."""
    if device.type == "cuda":
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            yield
    else:
        yield
