"""Load generator for ``deepspeech-server`` (issue 17): real-time streams, latency percentiles, capacity.

    python bench/server_load.py --model M.tflite --test_csv data/espeak-en/test.csv \\
        --concurrency 10,20,30 --max_batch 32,1 [--capacity] [--server_core 0 --client_core 1]

Each of C stream slots replays held-out clips one after another, one WebSocket connection per clip
(Vosk's protocol closes after the final). Slot i starts at i x ``stagger``/C s. Within a clip, chunk k
(``chunk_ms`` of audio) is sent at k x chunk_ms after the clip's start (real time: the sender sleeps
to each deadline, it never waits for answers); after the last chunk, ``{"eof": 1}``. Slots start no
new clip after ``seconds``; clips begun then run to their end.

Measures (the server answers every binary message with one partial, in order, so the n-th partial
answers the n-th chunk; chunks whose partial is still owed when eof arrives are answered by the
final alone, so they add no response latency):

- response latency: time the partial of chunk k is received minus time chunk k was sent, every chunk;
- step latency: the same, only for the chunks that complete a model step's window (the server's
  feature framing and the export's ``streaming`` geometry tell which: the chunk whose samples give the
  last feature frame of step j's window; other chunks are answered without a model call). This is the
  figure to compare with Deep Speech 2's Table 7;
- first-partial latency: the same for chunk 0 of each clip;
- final latency: ``{"eof": 1}`` sent -> final result received;
- a stream falls behind when a chunk's partial comes later than ``behind_s`` (default 1 s) after it
  was sent, or the generator sent a chunk more than one chunk duration late (its own overload);
- percentiles p50/p95/p98/p99 (nearest rank) of each, per run;
- the server's batch-size histogram (its ``--stats_file``), its CPU seconds (utime+stime from
  /proc/PID/stat over the run) when this script starts the server;
- every final text against offline ``deepspeech.Model(model).stt()`` of the same clip.

``--capacity``: the most streams with step-latency p98 <= ``--p98_ms`` (100) and none behind, by doubling
then bisection, for each --max_batch. One JSON line per run goes to ``--out`` (and stdout).
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


class LoadError(ValueError):
    """A user error: a bad CSV, WAV or option."""


def read_clips(csv_path: str, limit: int = 0) -> list[tuple[str, np.ndarray, int]]:
    """DeepSpeech CSV -> [(wav path, int16 samples, rate)] (16-bit mono WAVs)."""
    base = Path(csv_path).parent
    clips = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            path = base / row["wav_filename"]
            with wave.open(str(path), "rb") as w:
                if w.getsampwidth() != 2 or w.getnchannels() != 1:
                    raise LoadError(f"{path}: not 16-bit mono")
                rate = w.getframerate()
                clips.append((str(path), np.frombuffer(w.readframes(w.getnframes()), "<i2"), rate))
            if limit and len(clips) >= limit:
                break
    if not clips:
        raise LoadError(f"{csv_path}: no clips")
    return clips


def offline_transcripts(model_path: str, clips, **decoder) -> dict[str, str]:
    """Offline ``stt()`` of each clip with the server's decoder settings (``decoder``: ServerConfig's
    scorer, beam_width and the beam pruning; the server's defaults otherwise)."""
    from deepspeech.server import ServerConfig, configured_model

    model = configured_model(ServerConfig(model=model_path, **decoder))
    return {path: model.stt(audio) for path, audio, _ in clips}


def step_chunks(geometry, n_samples: int, chunk: int) -> set[int]:
    """Indices of the chunks (of ``chunk`` samples, at the model's rate) that complete at least one
    step window: the server's FrameStream gives 1 + (n - frame_length) // frame_step frames for n
    samples, and step j runs once frames >= j * n_steps * time_stride - window_offset + window_frames."""
    length, hop, n_steps, stride, offset, window = geometry

    def steps_ready(n):
        frames = 0 if n < length else 1 + (n - length) // hop
        return 0 if frames - window + offset < 0 else (frames - window + offset) // (n_steps * stride) + 1

    out, before = set(), 0
    for k in range(-(-n_samples // chunk)):
        now = steps_ready(min((k + 1) * chunk, n_samples))
        if now > before:
            out.add(k)
        before = now
    return out


def model_geometry(model_path: str):
    """(frame_length, frame_step, n_steps, time_stride, window_offset, window_frames, sample_rate)."""
    import deepspeech

    acoustic = deepspeech.Model(model_path)._impl
    streaming = acoustic.metadata["streaming"]
    return (acoustic.framing.frame_length, acoustic.framing.frame_step, int(streaming["n_steps"]),
            int(streaming["time_stride"]), int(streaming["window_offset"]), int(streaming["window_frames"]),
            acoustic.sample_rate)


def percentiles(values) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    out = {"n": len(ordered), "mean": round(1000 * sum(ordered) / len(ordered), 2),
           "max": round(1000 * ordered[-1], 2)}
    for p in (50, 95, 98, 99):
        out[f"p{p}"] = round(1000 * ordered[max(0, -(-p * len(ordered) // 100) - 1)], 2)
    return out


class Stats:
    def __init__(self):
        self.latencies, self.steps, self.first, self.finals = [], [], [], []
        self.clips = self.behind = self.late_sends = self.failed = self.rejected = 0
        self.errors: list[str] = []
        self.texts: list[tuple[str, str]] = []


def retry_delay(response, default: float) -> float:
    """What a polite client waits after a 503: at least the server's Retry-After seconds (RFC 9110),
    up to half as long again at random, so that clients refused together do not all come back on the
    same tick (``default`` without the header)."""
    try:
        return max(default, float(response.headers["Retry-After"]) * random.uniform(1.0, 1.5))
    except (KeyError, ValueError):
        return default


async def stream_clip(url, path, audio, rate, chunk_ms, behind_s, stats: Stats, geometry=None,
                      pace: float = 1.0) -> None:
    """One clip on one connection, in real time (``pace`` 0: as fast as the server answers); a
    connection that breaks counts in ``stats.failed``."""
    from websockets.exceptions import InvalidStatus, WebSocketException

    try:
        await _stream_clip(url, path, audio, rate, chunk_ms, behind_s, stats, geometry, pace)
    except InvalidStatus as err:
        if err.response.status_code != 503:
            raise
        stats.rejected += 1  # beyond the server's --max_streams: refused before the handshake
        await asyncio.sleep(retry_delay(err.response, chunk_ms / 1000))
    except (OSError, WebSocketException, TimeoutError) as err:
        stats.failed += 1
        stats.errors.append(f"{path}: {type(err).__name__}: {err}")


async def _stream_clip(url, path, audio, rate, chunk_ms, behind_s, stats: Stats, geometry, pace) -> None:
    from websockets.asyncio.client import connect

    chunk = max(1, round(rate * chunk_ms / 1000))
    stepping = (step_chunks(geometry[:6], len(audio), chunk)
                if geometry is not None and geometry[6] == rate else set())
    data = audio.astype("<i2").tobytes()
    pieces = [data[o:o + 2 * chunk] for o in range(0, len(data), 2 * chunk)]
    sent: list[float] = []
    async with connect(url, max_size=None, ping_interval=None) as ws:
        await ws.send(json.dumps({"config": {"sample_rate": rate, "words": False}}))

        async def receive():
            replies = 0
            while True:
                message = json.loads(await ws.recv())
                now = time.perf_counter()
                if "partial" in message:
                    latency = now - sent[replies]
                    stats.latencies.append(latency)
                    if replies == 0:
                        stats.first.append(latency)
                    if replies in stepping:
                        stats.steps.append(latency)
                    replies += 1
                    behind[0] |= latency > behind_s
                else:
                    return message, now

        behind = [False]
        receiver = asyncio.create_task(receive())
        start = time.perf_counter()
        for k, piece in enumerate(pieces):
            delay = start + k * pace * chunk_ms / 1000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif pace and -delay > chunk_ms / 1000:
                stats.late_sends += 1
                behind[0] = True
            sent.append(time.perf_counter())
            await ws.send(piece)
        eof = time.perf_counter()
        await ws.send('{"eof": 1}')
        final, received = await receiver
    stats.finals.append(received - eof)
    stats.clips += 1
    stats.behind += behind[0]
    stats.texts.append((path, final["text"]))


async def run_load(url: str, clips, concurrency: int, seconds: float, chunk_ms: float = 160,
                   stagger: float = 1.0, behind_s: float = 1.0, geometry=None,
                   stop_when_behind: bool = False) -> Stats:
    """C slots replaying ``clips`` ([(path, int16, rate)]) in real time for ``seconds`` -> Stats
    (``geometry``: ``model_geometry()``, for the step latencies; ``stop_when_behind``: no new clip
    once a stream fell behind, as the capacity search needs no more of an overloaded run)."""
    stats = Stats()
    began = time.perf_counter()

    async def slot(i):
        await asyncio.sleep(i * stagger / concurrency)
        n = i
        while time.perf_counter() - began < seconds and not (stop_when_behind and (stats.behind or stats.failed)):
            path, audio, rate = clips[n % len(clips)]
            await stream_clip(url, path, audio, rate, chunk_ms, behind_s, stats, geometry)
            n += concurrency

    await asyncio.gather(*(slot(i) for i in range(concurrency)))
    return stats


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def abandon_clip(url, audio) -> None:
    """A client that leaves mid-stream: half the clip, then the connection closes without eof."""
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None, ping_interval=None) as ws:
        for piece in np.array_split(audio[:len(audio) // 2], 4):
            await ws.send(piece.astype("<i2").tobytes())
        await ws.recv()


async def churn(url, clips, connections: int, pid: int, every: int = 100) -> tuple[Stats, list]:
    """``connections`` sequential connections, each a whole clip as fast as the server answers,
    every 4th abandoned mid-stream -> (Stats, [(connections so far, server RSS MiB)])."""
    stats, rss = Stats(), [(0, rss_mib(pid))]
    for i in range(connections):
        path, audio, rate = clips[i % len(clips)]
        if i % 4 == 3:
            await abandon_clip(url, audio)
        else:
            await stream_clip(url, path, audio, rate, 500, 1e9, stats, pace=0.0)
        if (i + 1) % every == 0:
            rss.append((i + 1, rss_mib(pid)))
    return stats, rss


def report(stats: Stats, expected: dict[str, str] | None) -> dict:
    mismatches = [p for p, t in stats.texts if expected is not None and expected[p] != t]
    return {"clips": stats.clips, "behind": stats.behind, "late_sends": stats.late_sends,
            "failed": stats.failed, "rejected": stats.rejected, "errors": stats.errors[:3],
            "mismatches": len(mismatches), "checked": expected is not None,
            "latency_ms": percentiles(stats.latencies), "step_latency_ms": percentiles(stats.steps),
            "first_partial_ms": percentiles(stats.first),
            "final_ms": percentiles(stats.finals)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """``deepspeech.server`` in a child process (optionally ``taskset -c CORE``), with --stats_file."""

    def __init__(self, model, max_batch, core=None, decoder: dict | None = None, max_streams: int = 1000):
        handle, self.stats_file = tempfile.mkstemp(suffix=".json")
        os.close(handle)
        cmd = [sys.executable, "-m", "deepspeech.server", "--model", model, "--port", "0",
               "--max_batch", str(max_batch), "--max_streams", str(max_streams), "--stats_file", self.stats_file]
        for name, value in (decoder or {}).items():
            cmd += [f"--{name}", str(value)]
        if core is not None:
            cmd = ["taskset", "-c", str(core)] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on port"):
            self.proc.kill()
            raise LoadError(f"{model}: the server did not start ({line.strip() or 'no output'})")
        self.url = f"ws://127.0.0.1:{int(line.split()[-1])}"

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        with open(self.stats_file, encoding="utf-8") as f:
            stats = json.load(f)
        os.unlink(self.stats_file)
        return stats


def measure(args, clips, expected, max_batch: int, concurrency: int, searching: bool = False) -> dict:
    server = ServerProcess(args.model, max_batch, args.server_core, decoder_options(args), args.max_streams)
    try:
        cpu0, t0 = cpu_seconds(server.proc.pid), time.perf_counter()
        stats = asyncio.run(run_load(server.url, clips, concurrency, args.seconds, args.chunk_ms,
                                     args.stagger, args.behind_s, args.geometry, searching))
        cpu, wall = cpu_seconds(server.proc.pid) - cpu0, time.perf_counter() - t0
    finally:
        server_stats = server.stop()
    row = {"model": os.path.basename(args.model), "model_path": args.model, "max_batch": max_batch,
           "concurrency": concurrency,
           "chunk_ms": args.chunk_ms,
           "n_steps": args.geometry[2], **decoder_options(args), **report(stats, expected), "batch_sizes": server_stats["batch_sizes"],
           "server_cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "server_cpu_share": round(cpu / wall, 3)}
    row["ok"] = row["behind"] == 0 and row["failed"] == 0 and row["step_latency_ms"].get("p98", 1e9) <= args.p98_ms
    return row


def memory(args, clips, expected, max_batch: int) -> dict:
    """Server RSS over ``--connections`` sequential connections (a quarter of them abandoned)."""
    server = ServerProcess(args.model, max_batch, args.server_core, decoder_options(args))
    try:
        stats, rss = asyncio.run(churn(server.url, clips, args.connections, server.proc.pid,
                                       max(1, args.connections // 20)))
    finally:
        server.stop()
    return {"max_batch": max_batch, "connections": args.connections, "rss_mib": rss,
            "rss_growth_mib": round(rss[-1][1] - rss[1][1], 1) if len(rss) > 2 else None,
            **{k: v for k, v in report(stats, expected).items() if k in ("clips", "failed", "errors", "mismatches")}}


def capacity(args, clips, expected, max_batch: int, emit) -> int:
    """Largest C <= --capacity_max with p98 <= --p98_ms and no stream behind (doubling from
    --capacity_start, then bisection to within --capacity_step)."""
    good, bad, c = 0, None, min(args.capacity_start, args.capacity_max)
    while True:
        row = measure(args, clips, expected, max_batch, c, searching=True)
        emit({**row, "search": "capacity"})
        if row["ok"]:
            good = c
        else:
            bad = c
        if bad is None:
            if c >= args.capacity_max:
                return good
            c = min(2 * c, args.capacity_max)
        else:
            if bad - good <= max(1, args.capacity_step):
                return good
            c = (good + bad) // 2


def decoder_options(args) -> dict:
    """The server's decoder flags (and the offline check's settings) from this script's."""
    options = {"beam_width": args.beam_width, "cutoff_prob": args.cutoff_prob, "cutoff_top_n": args.cutoff_top_n,
               "beam_threshold": args.beam_threshold, "settle_after": args.settle_after}
    return {**options, "scorer": args.scorer} if args.scorer else options


def markdown(rows: list[dict]) -> str:
    """The rows of one bench/server_load.sh run as BENCHMARKS.md tables (latency, capacity, memory)."""
    lines = ["| model | n_steps | server | streams | step p50 / p98 ms | first partial p50 | final p50 / p98 ms "
             "| mean batch | server CPU | finals = stt() |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if "concurrency" in r and "search" not in r):
        sizes = {int(k): v for k, v in r["batch_sizes"].items()}
        mean = sum(k * v for k, v in sizes.items()) / max(1, sum(sizes.values()))
        server = "unbatched" if r["max_batch"] == 1 else f"Batch Dispatch ({r['max_batch']})"
        extra = f", {r['rejected']} refused (503)" if r.get("rejected") else ""
        step, final = r["step_latency_ms"], r["final_ms"]
        model = r.get("model_path", r.get("model", ""))
        lines.append(f"| {model} | {r['n_steps']} | {server} | {r['concurrency']}{extra} | "
                     f"{step.get('p50')} / {step.get('p98')} | {r['first_partial_ms'].get('p50')} | "
                     f"{final.get('p50')} / {final.get('p98')} | {mean:.2f} | {100 * r['server_cpu_share']:.0f}% | "
                     f"{r['clips'] - r['mismatches']}/{r['clips']} |")
    for r in rows:
        if "capacity" in r:
            model = r.get("model_path", r.get("model", ""))
            lines.append(f"\nCapacity ({model}, max_batch {r['max_batch']}): {r['capacity']} streams")
        if "connections" in r:
            lines.append(f"\nRSS over {r['connections']} connections (MiB): " +
                         ", ".join(f"{n}: {m}" for n, m in r["rss_mib"][::4] + r["rss_mib"][-1:]))
    return "\n".join(lines)


def parse_args(argv=None):
    from deepspeech.server import ServerConfig  # the decoder defaults are the server's

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--scorer", default="")
    p.add_argument("--beam_width", type=int, default=0, help="the server's (0: the model's)")
    for name in ("cutoff_prob", "cutoff_top_n", "beam_threshold", "settle_after"):
        default = getattr(ServerConfig, name)
        p.add_argument(f"--{name}", type=type(default), default=default, help="the server's beam pruning")
    p.add_argument("--test_csv", default=str(REPO / "data/espeak-en/test.csv"))
    p.add_argument("--limit", type=int, default=0, help="first N clips only")
    p.add_argument("--concurrency", default="10,20,30")
    p.add_argument("--max_batch", default="32,1", help="server modes: Batch Dispatch sizes, 1 = unbatched")
    p.add_argument("--seconds", type=float, default=60.0, help="slots start clips for this long")
    p.add_argument("--chunk_ms", type=float, default=160.0)
    p.add_argument("--stagger", type=float, default=1.0)
    p.add_argument("--behind_s", type=float, default=1.0)
    p.add_argument("--p98_ms", type=float, default=100.0)
    p.add_argument("--server_core", type=int, default=None)
    p.add_argument("--client_core", type=int, default=None)
    p.add_argument("--max_streams", type=int, default=1000,
                   help="the server's (overload: streams beyond it get HTTP 503, counted as rejected)")
    p.add_argument("--capacity", action="store_true")
    p.add_argument("--connections", type=int, default=0,
                   help="instead: the server's RSS over this many sequential connections")
    p.add_argument("--capacity_start", type=int, default=8)
    p.add_argument("--capacity_step", type=int, default=2)
    p.add_argument("--capacity_max", type=int, default=256)
    p.add_argument("--no_check", action="store_true", help="skip the offline stt() comparison")
    p.add_argument("--out", default="")
    return p.parse_args(argv)


def print_table(argv) -> int:
    """``server_load.py --table ROWS.jsonl``: print the rows as BENCHMARKS.md tables."""
    with open(argv[1], encoding="utf-8") as f:
        print(markdown([json.loads(line) for line in f if line.strip()]))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--table"]:
        return print_table(argv)
    args = parse_args(argv)
    if args.client_core is not None:
        os.sched_setaffinity(0, {args.client_core})
    try:
        clips = read_clips(args.test_csv, args.limit)
    except (OSError, LoadError) as err:
        print(f"server_load: {err}", file=sys.stderr)
        return 1
    expected = None if args.no_check else offline_transcripts(args.model, clips, **decoder_options(args))
    args.geometry = model_geometry(args.model)
    try:
        run_all(args, clips, expected)
    except LoadError as err:
        print(f"server_load: {err}", file=sys.stderr)
        return 1
    return 0


def run_all(args, clips, expected) -> None:
    with open(args.out or os.devnull, "a", encoding="utf-8") as out:
        def emit(row):
            line = json.dumps(row)
            print(line, flush=True)
            out.write(line + "\n")
            out.flush()

        for max_batch in (int(b) for b in args.max_batch.split(",")):
            if args.connections:
                emit(memory(args, clips, expected, max_batch))
            elif args.capacity:
                emit({"model": os.path.basename(args.model), "model_path": args.model, "max_batch": max_batch,
                      "capacity": capacity(args, clips, expected, max_batch, emit)})
            else:
                for c in (int(c) for c in args.concurrency.split(",")):
                    emit(measure(args, clips, expected, max_batch, c))


if __name__ == "__main__":
    sys.exit(main())
