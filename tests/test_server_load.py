"""bench/server_load.py against a tiny unidirectional export: real-time streams at concurrency 2, finals
equal to offline stt(), the report's fields and percentiles (no timing thresholds)."""
import asyncio
import json
import sys
import wave
from pathlib import Path

import pytest
from test_client_export import exported, exports, speechlike  # noqa: F401 (the fixture)
from test_server import Running

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import server_load


@pytest.fixture(scope="module")
def clips_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("load")
    rows = ["wav_filename,wav_filesize,transcript"]
    for i, seconds in enumerate((0.9, 1.4, 0.6)):
        audio = speechlike(seconds, 10 + i)
        with wave.open(str(folder / f"c{i}.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(audio.astype("<i2").tobytes())
        rows.append(f"c{i}.wav,{44 + 2 * len(audio)},x")
    (folder / "test.csv").write_text("\n".join(rows) + "\n")
    return str(folder / "test.csv")


def check_percentiles(stats, n_min):
    assert stats["n"] >= n_min
    assert 0 <= stats["p50"] <= stats["p95"] <= stats["p98"] <= stats["p99"] <= stats["max"]


def test_load_generator_finals_match_offline_stt(exports, clips_csv):  # noqa: F811
    path = exported(exports, "step")
    clips = server_load.read_clips(clips_csv)
    expected = server_load.offline_transcripts(path, clips)
    assert any(expected.values())
    geometry = server_load.model_geometry(path)
    with Running(model=path, max_batch=4) as running:
        stats = asyncio.run(server_load.run_load(running.url, clips, 2, 1.5, chunk_ms=100, stagger=0.2,
                                                 geometry=geometry))
        batches = dict(running.server.dispatcher.batch_sizes)
    row = server_load.report(stats, expected)
    assert row["clips"] >= 2 and row["mismatches"] == 0 and row["checked"]
    assert row["failed"] == 0 and row["errors"] == []
    assert all(text == expected[p] for p, text in stats.texts)
    chunks = sum(-(-len(a) // 1600) for p, a, _ in clips for q, _ in stats.texts if q == p)
    check_percentiles(row["latency_ms"], row["clips"])
    assert row["latency_ms"]["n"] <= chunks  # chunks still unanswered at eof are answered by the final
    check_percentiles(row["step_latency_ms"], row["clips"])
    assert row["step_latency_ms"]["n"] < row["latency_ms"]["n"]
    check_percentiles(row["first_partial_ms"], row["clips"])
    check_percentiles(row["final_ms"], row["clips"])
    assert batches and max(batches) <= 4


def test_command_line_starts_the_server_and_writes_rows(exports, clips_csv, tmp_path):  # noqa: F811
    path = exported(exports, "step")
    out = tmp_path / "rows.jsonl"
    assert server_load.main(["--model", path, "--test_csv", clips_csv, "--concurrency", "2", "--max_batch",
                             "4,1", "--seconds", "1", "--chunk_ms", "200", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["max_batch"], r["concurrency"]) for r in rows] == [(4, 2), (1, 2)]
    for row in rows:
        assert row["mismatches"] == 0 and row["clips"] >= 2
        assert row["server_cpu_s"] > 0 and row["wall_s"] > 0
        assert sum(int(n) * c for n, c in row["batch_sizes"].items()) > 0
        check_percentiles(row["latency_ms"], row["clips"])
        check_percentiles(row["step_latency_ms"], row["clips"])
        assert 0 < row["server_cpu_share"]
    assert set(rows[1]["batch_sizes"]) == {"1"}


@pytest.mark.parametrize("chunk", [160, 1000, 1600, 4001])
def test_step_chunks_are_the_chunks_after_which_the_server_runs_a_step(exports, chunk):  # noqa: F811
    import deepspeech
    import numpy as np
    from deepspeech.audio import from_int16
    from deepspeech.streaming import StreamingDriver

    path = exported(exports, "step")
    acoustic = deepspeech.Model(path)._impl
    audio = speechlike(2.3, 7)
    frames = acoustic.frame_stream()
    driver = StreamingDriver(None, acoustic.metadata["streaming"], acoustic.framing.n_features)
    stepped = set()
    for k, offset in enumerate(range(0, len(audio), chunk)):
        driver.append(frames.feed(from_int16(audio[offset:offset + chunk])))
        while driver.pending() is not None:
            stepped.add(k)
            driver.advance(np.zeros([driver.n_steps, driver.num_classes], np.float32),
                           np.zeros([driver.state_size], np.float32))
    assert stepped
    assert server_load.step_chunks(server_load.model_geometry(path)[:6], len(audio), chunk) == stepped


@pytest.mark.parametrize("p98_ms, found", [(1e9, 2), (-1, 0)])
def test_capacity_search(exports, clips_csv, tmp_path, p98_ms, found):  # noqa: F811
    path = exported(exports, "step")
    out = tmp_path / "rows.jsonl"
    assert server_load.main(["--model", path, "--test_csv", clips_csv, "--max_batch", "4", "--seconds", "0.5",
                             "--capacity", "--capacity_start", "1", "--capacity_max", "2", "--p98_ms",
                             str(p98_ms), "--no_check", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[-1] == {"model": "output_graph.tflite", "model_path": path, "max_batch": 4, "capacity": found}
    tried = [r["concurrency"] for r in rows[:-1]]
    assert tried == ([1, 2] if found else [1])
    assert all(r["ok"] == bool(found) and r["mismatches"] == 0 for r in rows[:-1])


def test_a_server_that_is_gone_counts_failed_streams(clips_csv):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clips = server_load.read_clips(clips_csv)
    stats = asyncio.run(server_load.run_load(f"ws://127.0.0.1:{port}", clips, 2, 0.2, stop_when_behind=True))
    row = server_load.report(stats, None)
    assert row["failed"] == 1 and row["clips"] == 0 and "ConnectionRefused" in row["errors"][0]
    assert row["latency_ms"] == {"n": 0}


def test_overload_is_refused_with_503_and_memory_is_sampled(exports, clips_csv, tmp_path):  # noqa: F811
    path = exported(exports, "step")
    out = tmp_path / "rows.jsonl"
    assert server_load.main(["--model", path, "--test_csv", clips_csv, "--max_batch", "4", "--seconds", "1",
                             "--concurrency", "3", "--max_streams", "1", "--chunk_ms", "200",
                             "--out", str(out)]) == 0
    assert server_load.main(["--model", path, "--test_csv", clips_csv, "--max_batch", "4", "--connections",
                             "8", "--out", str(out)]) == 0
    overload, memory = [json.loads(line) for line in out.read_text().splitlines()]
    assert overload["rejected"] > 0 and overload["clips"] >= 1 and overload["failed"] == 0
    assert overload["mismatches"] == 0
    assert memory["connections"] == 8 and memory["clips"] == 6  # every 4th connection leaves mid-stream
    assert memory["failed"] == 0 and memory["mismatches"] == 0
    counts = [n for n, _ in memory["rss_mib"]]
    assert counts == list(range(0, 9)) and all(mib > 10 for _, mib in memory["rss_mib"])
