"""The agent file of the pool test: each call holds its slot until terminated;
a job whose metadata is "crash" kills its process (the parent must restart it)."""

import os

import trio

from voxtrio.worker import JobContext, WorkerOptions

worker_options = WorkerOptions(max_jobs=15, status_interval=0.2, ping_interval=1.0, retry_delays=(0.1,))


async def entrypoint(ctx: JobContext) -> None:
    if ctx.metadata == "crash":
        os._exit(3)
    ctx.listening.set()
    await trio.sleep_forever()
