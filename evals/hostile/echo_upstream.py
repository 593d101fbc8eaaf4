"""A zero-latency OpenAI-compatible upstream that answers with what it received.

``python -m evals.hostile.echo_upstream --port 8001`` serves ``/v1/models``,
``/v1/chat/completions`` and ``/v1/completions`` (streamed or not). Every answer's text is the
request body exactly as the upstream received it (compact JSON), so a probe sent through the proxy
can tell from the answer alone whether its text reached the model. Used by the hostile-traffic
harness and the soak, where the proxy, not the model, is under test.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "echo"


def _received(raw: bytes) -> tuple[dict[str, Any], str]:
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return (body if isinstance(body, dict) else {}), text


def _envelope(kind: str) -> dict[str, Any]:
    return {"id": f"{kind}-echo", "created": int(time.time()), "model": MODEL}


async def _stream(chat: bool, text: str) -> AsyncIterator[bytes]:
    obj = "chat.completion.chunk" if chat else "text_completion"
    base = {**_envelope("chatcmpl" if chat else "cmpl"), "object": obj}
    pieces = [text[i : i + 64] for i in range(0, len(text), 64)] or [""]
    for piece in pieces:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": None}
        if chat:
            choice["delta"] = {"content": piece}
        else:
            choice["text"] = piece
        yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode()
    end: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": "stop"}
    if chat:
        end["delta"] = {}
    else:
        end["text"] = ""
    yield f"data: {json.dumps({**base, 'choices': [end]})}\n\n".encode()
    yield b"data: [DONE]\n\n"


async def _answer(request: Request, chat: bool) -> Response:
    body, text = _received(await request.body())
    if body.get("stream"):
        return StreamingResponse(_stream(chat, text), media_type="text/event-stream")
    if chat:
        choice: dict[str, Any] = {"message": {"role": "assistant", "content": text}}
        obj = "chat.completion"
    else:
        choice, obj = {"text": text}, "text_completion"
    choice.update({"index": 0, "logprobs": None, "finish_reason": "stop"})
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    envelope = _envelope("chatcmpl" if chat else "cmpl")
    return JSONResponse({**envelope, "object": obj, "choices": [choice], "usage": usage})


async def chat_completions(request: Request) -> Response:
    return await _answer(request, chat=True)


async def completions(request: Request) -> Response:
    return await _answer(request, chat=False)


async def models(_: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


def create_echo_app() -> Starlette:
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
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(create_echo_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
