"""An OpenAI-compatible upstream that fails on purpose, the fault chosen by the request's ``model``.

``python -m evals.hostile.faulty_upstream --port 8002`` serves ``/v1/models``,
``/v1/chat/completions`` and ``/v1/completions``. Streamed answers (``"stream": true``):

- ``drop``: a few chunks, then the connection is cut (the chunked body never ends);
- ``malformed``: a few chunks, an event whose data is not JSON, then more chunks and ``[DONE]``;
- ``no-done``: a few chunks and a finish chunk, then a clean end without ``[DONE]``;
- ``stall``: a few chunks, then nothing for an hour (a request in flight for a shutdown test);
- any other model: a few chunks, a finish chunk and ``[DONE]`` (the control).

Without ``stream``, ``drop`` declares a longer body than it sends and cuts the connection; other
models answer a normal completion. The hostile-traffic harness puts a proxy in front of it to
check that a fault mid-stream ends the client's stream with an error event and ``[DONE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from evals.hostile.servers import ServerProcess, free_port

FAULTS = ("drop", "malformed", "no-done", "stall")
STALL_S = 3600.0
CHUNKS = 3


class Cut(Exception):
    """Raised inside a response body: the server closes the connection mid-body."""


def _chunk(chat: bool, text: str, finish: str | None = None) -> bytes:
    choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
    choice.update({"delta": {"content": text}} if chat else {"text": text})
    obj = "chat.completion.chunk" if chat else "text_completion"
    event = {"id": "faulty", "object": obj, "created": int(time.time()), "model": "faulty"}
    return f"data: {json.dumps({**event, 'choices': [choice]})}\n\n".encode()


async def _stream(chat: bool, fault: str) -> AsyncIterator[bytes]:
    for i in range(CHUNKS):
        yield _chunk(chat, f"part{i} ")
    if fault == "drop":
        raise Cut("connection cut mid-stream")
    if fault == "stall":
        await asyncio.sleep(STALL_S)
    if fault == "malformed":
        yield b"data: {this is not json\n\n"
        yield _chunk(chat, "after the malformed event")
    yield _chunk(chat, "", "stop")
    if fault != "no-done":
        yield b"data: [DONE]\n\n"


async def _cut_body() -> AsyncIterator[bytes]:
    yield b'{"id": "faulty", "choices": ['
    raise Cut("connection cut mid-body")


async def _answer(request: Request, chat: bool) -> Response:
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    fault = str(body.get("model", ""))
    if body.get("stream"):
        return StreamingResponse(_stream(chat, fault), media_type="text/event-stream")
    if fault == "drop":
        return StreamingResponse(
            _cut_body(), media_type="application/json", headers={"content-length": "4096"}
        )
    choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": "stop"}
    choice.update({"message": {"role": "assistant", "content": "ok"}} if chat else {"text": "ok"})
    obj = "chat.completion" if chat else "text_completion"
    return JSONResponse(
        {"id": "faulty", "object": obj, "created": 0, "model": fault, "choices": [choice]}
    )


async def chat_completions(request: Request) -> Response:
    return await _answer(request, chat=True)


async def completions(request: Request) -> Response:
    return await _answer(request, chat=False)


async def models(_: Request) -> Response:
    data = [{"id": m, "object": "model"} for m in (*FAULTS, "ok")]
    return JSONResponse({"object": "list", "data": data})


def create_faulty_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    # uvicorn logs each cut as an application error; that is the point, so keep its log quiet.
    # A stalled stream must not hold up this server's own shutdown.
    uvicorn.run(
        create_faulty_app(),
        host=args.host,
        port=args.port,
        log_level="critical",
        timeout_graceful_shutdown=2,
    )


def faulty_server(port: int | None = None) -> ServerProcess:
    """This upstream as a loopback subprocess (a context manager: started on enter, stopped on
    exit); ready once ``GET /v1/models`` answers."""
    port = free_port() if port is None else port
    command = [sys.executable, "-m", "evals.hostile.faulty_upstream", "--port", str(port)]
    return ServerProcess(
        "faulty-upstream",
        command,
        port,
        env=os.environ,
        ready_paths=["/v1/models"],
        startup_timeout=30.0,
    )


if __name__ == "__main__":
    main()
