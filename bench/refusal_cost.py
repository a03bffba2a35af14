"""Server CPU per refused connection (issue 17: refusals share the event loop with the admitted streams).

    .venv/bin/python bench/refusal_cost.py runs/uni-server/export/output_graph.tflite [CONNECTIONS]

Starts ``deepspeech-server --max_streams 1`` pinned to core 0, holds one WebSocket open (the server is
full), then opens CONNECTIONS (500) more one after another from core 1; each gets HTTP 503. Prints the
server's CPU time (utime + stime from /proc) per refusal and the client's wall time per refusal.
"""
import asyncio
import os
import sys
import time

from server_load import LoadError, ServerProcess, cpu_seconds
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


async def refusals(url: str, pid: int, count: int) -> None:
    async def hold():
        async with connect(url):
            await asyncio.sleep(3600)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(1.0)
    cpu, began, refused = cpu_seconds(pid), time.perf_counter(), 0
    for _ in range(count):
        try:
            async with connect(url):
                pass
        except InvalidStatus as err:
            refused += err.response.status_code == 503
    print(f"{refused} of {count} refused with 503: server CPU {1000 * (cpu_seconds(pid) - cpu) / count:.3f} ms "
          f"a refusal, client wall {1000 * (time.perf_counter() - began) / count:.3f} ms")
    holder.cancel()


def main(argv) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    count = int(argv[1]) if len(argv) > 1 else 500
    os.sched_setaffinity(0, {1})
    try:
        server = ServerProcess(argv[0], 32, core=0, max_streams=1)
    except LoadError as err:
        print(f"refusal_cost.py: {err}", file=sys.stderr)
        return 1
    try:
        asyncio.run(refusals(server.url, server.proc.pid, count))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
