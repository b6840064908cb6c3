#!/usr/bin/env python3
"""The HTTP providers on loopback, in real time: first token / first audio,
and how fast a cancelled stream closes its connection (barge-in).

    .venv/bin/python bench/providers_http.py            # a table of medians
    .venv/bin/python bench/providers_http.py --json     # one JSON line

Each provider talks to the test suite's loopback server for its vendor
(tests/loopback_http.py, in the same process and trio run, on the real clock),
which answers at once: the figures are the client's own cost plus loopback,
the floor under a real service's latency. For every provider and run:

* ``first``: from calling the provider to its first output (a text delta, an
  audio chunk, the transcript), on a kept-alive connection;
* ``cancel->returned``: from cancelling the scope around a request that is
  streaming (the server sends a chunk every 20 ms) to the provider call
  having returned, its connection closed;
* ``cancel->server saw close``: to the server reading the end of the
  connection (what stops a real service generating).

Numbers, not assertions. The machine is shared: compare runs of the same day.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import sys
import time
from typing import Any, Awaitable, Callable

import numpy as np
import trio

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

import fake_anthropic  # noqa: E402
import fake_openai  # noqa: E402
from loopback_http import Stream  # noqa: E402

import voxtrio  # noqa: E402
from voxtrio.chat import ChatContext  # noqa: E402
from voxtrio.providers import anthropic, openai  # noqa: E402

OPTIONS = voxtrio.APIConnectOptions(timeout=10.0)


def context() -> ChatContext:
    ctx = ChatContext()
    ctx.add_message(role="user", content="Tell me a story.")
    return ctx


def llm_call(llm: Any) -> Callable[[trio.MemorySendChannel[Any]], Awaitable[None]]:
    return lambda send: llm.chat(chat_ctx=context(), tools=[], tool_choice=None, output=send, conn_options=OPTIONS)


async def first_output(produce: Callable[[trio.MemorySendChannel[Any]], Awaitable[None]]) -> float:
    """Seconds from the call to its first output; the rest is read to the end."""
    send, receive = trio.open_memory_channel[Any](math.inf)
    started = time.perf_counter()
    first = math.nan
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            async with send:
                await produce(send)

        nursery.start_soon(run)
        async for _ in receive:
            if math.isnan(first):
                first = time.perf_counter() - started
    return first


async def cancel_latency(
    server: Any, produce: Callable[[trio.MemorySendChannel[Any]], Awaitable[None]]
) -> tuple[float, float]:
    """Cancel a streaming request once output flows: (to returned, to the server seeing the close)."""
    send, receive = trio.open_memory_channel[Any](math.inf)
    before = len(server.disconnects)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce, send)
            await receive.receive()
            await trio.sleep(0.05)
            cancelled = time.perf_counter()
            scope.cancel()
    returned = time.perf_counter() - cancelled
    while len(server.disconnects) == before:
        await trio.sleep(0)
    seen = time.perf_counter() - cancelled
    return returned, seen


async def measure(runs: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    long_text = [f"word{i} " for i in range(500)]
    async with fake_openai.server() as oa, fake_anthropic.server() as an:
        cases = {
            "openai.LLM": (
                oa, "/chat/completions", llm_call(openai.LLM(api_key=fake_openai.KEY, base_url=oa.url)),
                Stream(fake_openai.completion(["Once ", "upon ", "a time."])),
                Stream(fake_openai.completion(long_text), interval=0.02),
            ),
            "anthropic.LLM": (
                an, "/v1/messages", llm_call(anthropic.LLM(api_key=fake_anthropic.KEY, base_url=an.url)),
                Stream(fake_anthropic.message(["Once ", "upon ", "a time."])),
                Stream(fake_anthropic.message(long_text), interval=0.02),
            ),
            "openai.TTS": (
                oa, "/audio/speech",
                lambda send, tts=openai.TTS(api_key=fake_openai.KEY, base_url=oa.url): tts.synthesize(
                    "Once upon a time.", send, conn_options=OPTIONS
                ),
                fake_openai.speech(1.0),
                fake_openai.speech(10.0, pieces=500, interval=0.02),
            ),
        }
        for name, (server, path, produce, quick, long) in cases.items():
            server._scripts[path].clear()
            server.script(path, quick)
            await first_output(produce)  # warm-up: the connection is kept from here on
            firsts = [await first_output(produce) for _ in range(runs)]
            server._scripts[path].clear()
            server.script(path, long)
            cancels = [await cancel_latency(server, produce) for _ in range(runs)]
            results[name] = {
                "first_ms": 1000 * statistics.median(firsts),
                "cancel_to_returned_ms": 1000 * statistics.median(c[0] for c in cancels),
                "cancel_to_server_close_ms": 1000 * statistics.median(c[1] for c in cancels),
            }
        stt = openai.STT(api_key=fake_openai.KEY, base_url=oa.url)
        audio = voxtrio.AudioFrame(np.zeros(16_000 * 2, np.int16), 16_000)
        oa.script("/audio/transcriptions", fake_openai.transcription("Once upon a time."))

        async def recognize(send: trio.MemorySendChannel[Any]) -> None:
            await send.send(await stt.recognize(audio, conn_options=OPTIONS))

        await first_output(recognize)
        results["openai.STT (2 s WAV upload)"] = {
            "first_ms": 1000 * statistics.median([await first_output(recognize) for _ in range(runs)])
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = trio.run(measure, args.runs)
    if args.json:
        print(json.dumps({"runs": args.runs, "results": results}))
        return
    print(f"medians of {args.runs} runs, loopback, real clock")
    print(f"{'provider':30} {'first output':>13} {'cancel->returned':>17} {'cancel->server close':>21}")
    for name, figures in results.items():
        cells = [figures.get(k) for k in ("first_ms", "cancel_to_returned_ms", "cancel_to_server_close_ms")]
        print(f"{name:30} " + " ".join(f"{c:>{w}.2f} ms" if c is not None else f"{'-':>{w + 3}}" for c, w in zip(cells, (10, 14, 18))))


if __name__ == "__main__":
    main()
