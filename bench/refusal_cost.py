"""Server CPU per refused connection (issue 17: refusals share the event loop with the admitted streams).

    .venv/bin/python bench/refusal_cost.py runs/uni-server/export/output_graph.tflite [CONNECTIONS]

Starts ``deepspeech-server --max_streams 1`` pinned to core 0, holds one WebSocket open (the server is
full), then opens CONNECTIONS (500) more one after another from core 1; each gets HTTP 503. Prints the
server's CPU time (utime + stime from /proc) per refusal and the client's wall time per refusal.
"""
import asyncio
import os
import subprocess
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

PORT = 2799


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def refusals(pid: int, count: int) -> None:
    url = f"ws://127.0.0.1:{PORT}"

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
    server = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "deepspeech.server", "--model", argv[0],
                               "--port", str(PORT), "--max_streams", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        server.stdout.readline()  # "listening on port ..."
        asyncio.run(refusals(server.pid, count))
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
