"""How much latency the proxy adds per request, in-process, against an upstream that answers at once.

Four configurations, each sending the same chat request sequentially (latency, not throughput):

- ``direct``: an httpx client calling the fake upstream itself (the floor: httpx + JSON);
- ``relay``: the proxy with no concept list, a pure pass-through (ASGI + routing + relay);
- ``guarded allow``: the proxy with the concept list, an out-of-scope prompt (detection + relay);
- ``guarded refuse``: the same proxy, an in-scope prompt (detection + refusal, upstream not called).

The proxy is called through ``httpx.ASGITransport`` and the upstream is an ``httpx.MockTransport``,
so no sockets are involved: the numbers isolate the proxy's own cost. Run::

    .venv/bin/python benchmarks/proxy_overhead.py --requests 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
ALLOWED = "What is the capital of France, and what river runs through it?"
REFUSED = "Which Hogwarts house did the Sorting Hat choose for Hermione Granger?"
ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris, on the Seine."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }
).encode()


@dataclass(frozen=True)
class Result:
    name: str
    latencies_ms: list[float]

    def row(self, baseline_p50: float) -> str:
        ordered = sorted(self.latencies_ms)
        p50 = statistics.median(ordered)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        mean = statistics.fmean(ordered)
        return (
            f"{self.name:<16} {len(ordered):>5} {p50:>9.2f} {p99:>9.2f} {mean:>9.2f} "
            f"{p50 - baseline_p50:>+13.2f}"
        )


async def instant_upstream(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "application/json"}, content=ANSWER)


def chat(prompt: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": 16}


async def measure(
    name: str, client: httpx.AsyncClient, url: str, prompt: str, requests: int, warmup: int
) -> Result:
    body = chat(prompt)
    for _ in range(warmup):
        (await client.post(url, json=body)).raise_for_status()
    latencies: list[float] = []
    for _ in tqdm(range(requests), desc=name, unit="req", leave=False):
        started = time.perf_counter()
        response = await client.post(url, json=body)
        latencies.append((time.perf_counter() - started) * 1000.0)
        response.raise_for_status()
    return Result(name, latencies)


async def run(concepts_path: Path, requests: int, warmup: int) -> list[Result]:
    from guards.concepts import load_concepts
    from guards.encoder import load_encoder
    from guards.guard import Guard
    from proxy.app import create_app
    from proxy.settings import ProxySettings

    upstream = httpx.MockTransport(instant_upstream)
    guard = Guard.build(load_concepts(concepts_path), encoder=load_encoder())
    results: list[Result] = []
    async with httpx.AsyncClient(transport=upstream, base_url="http://upstream") as direct:
        url = "/v1/chat/completions"
        results.append(await measure("direct", direct, url, ALLOWED, requests, warmup))
    for name, app_guard, prompt in (
        ("relay", None, ALLOWED),
        ("guarded allow", guard, ALLOWED),
        ("guarded refuse", guard, REFUSED),
    ):
        app = create_app(ProxySettings(), transport=upstream, guard=app_guard)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://proxy"
            ) as client,
        ):
            response = await client.post("/v1/chat/completions", json=chat(prompt))
            decision = response.headers.get("x-nescio-decision", "-").split(";")[0]
            expected = {"relay": "allow", "guarded allow": "allow", "guarded refuse": "refuse"}
            if decision != expected[name]:
                raise SystemExit(f"{name}: expected decision {expected[name]}, got {decision}")
            results.append(
                await measure(name, client, "/v1/chat/completions", prompt, requests, warmup)
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Per-request latency of the Nescio proxy (in-process, instant fake upstream)."
    )
    parser.add_argument("--requests", type=int, default=300, help="timed requests per setup")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests first")
    parser.add_argument(
        "--concepts",
        type=Path,
        default=REPO / "examples" / "concepts.yaml",
        help="concept list for the guarded setups",
    )
    args = parser.parse_args()
    results = asyncio.run(run(args.concepts, args.requests, args.warmup))
    print(
        f"{'setup':<16} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'p50 vs direct':>13}"
    )
    baseline = statistics.median(results[0].latencies_ms)
    for result in results:
        print(result.row(baseline))


if __name__ == "__main__":
    main()
