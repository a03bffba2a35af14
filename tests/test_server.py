"""The streaming server (deepspeech-server) on a tiny unidirectional export: Vosk's protocol, finals
equal to offline stt(), Batch Dispatch == unbatched, malformed input, 503, SIGTERM drain."""
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from test_client import scorer_path  # noqa: F401 (the fixture)
from test_client_export import exported, exports, speechlike  # noqa: F401 (the fixture)

import deepspeech

websockets = pytest.importorskip("websockets")
from websockets.sync.client import connect  # noqa: E402

from deepspeech.audio import from_int16  # noqa: E402
from deepspeech.dispatch import NotStreamable  # noqa: E402
from deepspeech.server import Server, ServerConfig, configured_model  # noqa: E402


class Running:
    """A Server on a thread of its own (its event loop), on a free port."""

    def __init__(self, **options):
        self.server = Server(ServerConfig(port=0, **options))
        started = threading.Event()

        def ready(port):
            self.port = port
            started.set()

        import asyncio
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(ready, handle_signals=False)))
        self.thread.start()
        assert started.wait(30)
        self.url = f"ws://127.0.0.1:{self.port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(30)
        assert not self.thread.is_alive()


def transcribe(url, audio, chunk, config=None, sample_rate=None):
    """Send audio in chunks of ``chunk`` samples -> (partials, final, close code/reason)."""
    partials = []
    with connect(url, max_size=None) as ws:
        if config is not None:
            ws.send(json.dumps({"config": config}))
        data = audio.astype("<i2").tobytes()
        for offset in range(0, len(data), 2 * chunk):
            ws.send(data[offset:offset + 2 * chunk])
            partials.append(json.loads(ws.recv())["partial"])  # Vosk's lockstep clients: one answer each
        ws.send('{"eof" : 1}')
        final = json.loads(ws.recv())
        with pytest.raises(websockets.ConnectionClosedOK):
            ws.recv()
        return partials, final, (ws.close_code, ws.close_reason)


@pytest.fixture(scope="module")
def step_model(exports):  # noqa: F811
    path = exported(exports, "step")
    clips = [speechlike(seconds, seed) for seconds, seed in ((1.3, 1), (0.7, 2), (2.1, 3), (1.0, 4))]
    model = configured_model(ServerConfig(model=path))
    return path, clips, [model.stt(clip) for clip in clips]


@pytest.mark.parametrize("max_batch", [1, 8])
def test_concurrent_streams_get_the_offline_transcript(step_model, max_batch):
    path, clips, expected = step_model
    assert all(expected)  # the random model says something
    chunks = [160, 1000, 333, 4800]
    with Running(model=path, max_batch=max_batch) as running:
        with ThreadPoolExecutor(len(clips)) as pool:
            results = list(pool.map(lambda i: transcribe(running.url, clips[i], chunks[i]), range(len(clips))))
        batches = dict(running.server.dispatcher.batch_sizes)
    for (partials, final, close), text, clip, chunk in zip(results, expected, clips, chunks):
        assert final["text"] == text
        assert close == (1000, "done")
        assert len(partials) == -(-len(clip) // chunk)
        assert "".join(w["word"] + " " for w in final["result"]).strip() == " ".join(text.split())
        starts = [w["start"] for w in final["result"]]
        assert starts == sorted(starts) and all(w["end"] > w["start"] for w in final["result"])
    assert max(batches) <= max_batch
    if max_batch == 1:
        assert set(batches) == {1}
    check_word_confidences(path, clips[2], results[2][1]["result"])


def check_word_confidences(path, clip, words):
    """conf: the geometric mean of each word's character posteriors at their frames, offline."""
    model = configured_model(ServerConfig(model=path))
    acoustic = model._impl
    probs = acoustic.probs(acoustic.features(from_int16(clip)))
    tokens = [t for t in model.sttWithMetadata(clip, 1).transcripts[0].tokens]
    spans, current = [], []
    for token in tokens + [None]:
        if token is None or token.text == " ":
            spans, current = spans + [current] * bool(current), []
        else:
            current.append(token)
    expected = [float(np.exp(np.mean([np.log(probs[t.timestep][acoustic.alphabet.encode(t.text)[0]])
                                      for t in span]))) for span in spans]
    assert [w["conf"] for w in words] == pytest.approx(expected, abs=2e-4)
    assert all(0 < c <= 1 for c in expected) and min(expected) < 0.99


def test_batched_and_unbatched_finals_are_identical(step_model):
    path, clips, _ = step_model
    finals = {}
    for max_batch in (1, 4):
        with Running(model=path, max_batch=max_batch) as running:
            with ThreadPoolExecutor(len(clips)) as pool:
                finals[max_batch] = list(pool.map(
                    lambda clip: transcribe(running.url, clip, 800, config={"max_alternatives": 2})[1], clips))
            if max_batch == 4:
                assert max(running.server.dispatcher.batch_sizes) > 1  # streams did share calls
    assert finals[1] == finals[4]
    assert all(len(f["alternatives"]) >= 1 and "confidence" in f["alternatives"][0] for f in finals[1])


def test_scorer_and_hot_words_as_offline(step_model, scorer_path):  # noqa: F811
    path, clips, _ = step_model
    model = configured_model(ServerConfig(model=path, scorer=scorer_path))
    expected = model.stt(clips[0])
    model.addHotWord("cat", 8.0)
    boosted = model.stt(clips[0])
    with Running(model=path, scorer=scorer_path) as running:
        assert transcribe(running.url, clips[0], 700)[1]["text"] == expected
        final = transcribe(running.url, clips[0], 700, config={"hot_words": {"cat": 8}})[1]
    assert final["text"] == boosted


def test_beam_pruning_is_the_servers_and_offline(step_model):
    """--cutoff_prob/--cutoff_top_n reach the server's beam search: with a pruning that keeps one
    label a frame the final is the greedy transcript; with none (1.0) it is Mozilla's default stt()."""
    path, clips, _ = step_model
    model = deepspeech.Model(path)
    probs = model._impl.probs(model._impl.features(from_int16(clips[2])))
    best = probs.argmax(-1)
    labels = [int(k) for i, k in enumerate(best) if k != probs.shape[-1] - 1 and (i == 0 or k != best[i - 1])]
    greedy = model._impl.alphabet.Decode(labels)
    with Running(model=path, cutoff_prob=0.01, cutoff_top_n=1) as running:
        pruned = transcribe(running.url, clips[2], 1000)[1]["text"]
    with Running(model=path, cutoff_prob=1.0) as running:
        unpruned = transcribe(running.url, clips[2], 1000)[1]["text"]
    assert pruned == configured_model(ServerConfig(model=path, cutoff_prob=0.01, cutoff_top_n=1)).stt(clips[2])
    assert pruned == greedy and pruned != unpruned  # the random model's beam search is not greedy
    assert unpruned == model.stt(clips[2])
    with pytest.raises(ValueError, match="cutoff_prob"):
        model.setBeamPruning(0.0, 40)


def test_other_sample_rates_are_resampled(step_model):
    from deepspeech.audio import from_int16, resample, to_int16

    path, clips, _ = step_model
    audio8k = to_int16(resample(from_int16(clips[2]), 16000, 8000))
    with Running(model=path) as running:
        _, final, _ = transcribe(running.url, audio8k, len(audio8k), config={"sample_rate": 8000, "words": False})
        _, chunked, _ = transcribe(running.url, audio8k, 1000, config={"sample_rate": 8000})
    assert "result" not in final
    model = configured_model(ServerConfig(model=path))  # offline on the same resampled audio (not requantized)
    audio = resample(from_int16(audio8k), 8000, 16000)
    back = str(model._decoding().decode(model._impl.probs(model._impl.features(audio)), 1).transcripts[0])
    assert final["text"] == back  # one chunk: the same resampling as the whole clip
    assert chunked["text"] and chunked["result"]  # chunk by chunk: close to it, not bit-exact


@pytest.mark.parametrize("messages, code, reason", [
    ([b"\x00\x01\x02"], 1007, "even count"),
    ([b"\x00\x00" * 100, "hello"], 1007, "not JSON"),
    (["[1, 2]"], 1007, "object"),
    (['{"partial": 1}'], 1008, "text where audio"),
    (['{"config": {"sample_rate": "fast"}}'], 1007, "sample_rate"),
    (['{"config": {"words": 1}}'], 1007, "words"),
    (['{"config": {"max_alternatives": -1}}'], 1007, "max_alternatives"),
    (['{"config": 5}'], 1007, "object"),
    (['{"config": {"hot_words": ["a"]}}'], 1007, "hot_words"),
    (['{"config": {"hot_words": {"a": 2.0}}}'], 1008, "need a scorer"),
    (['{"config": {"grammar": []}}'], 1007, "unknown config field"),
    ([b"\x00\x00" * 100, '{"config": {}}'], 1008, "after audio"),
    ([b"\x00\x00" * 40000], 1008, "longer than"),
    ([b"\x00" * 100_002], 1009, ""),
])
def test_malformed_input_closes_with_a_reason(step_model, messages, code, reason):
    path = step_model[0]
    with Running(model=path, max_stream_seconds=2.0, max_message_bytes=100_000) as running:
        with connect(running.url) as ws:
            for message in messages:
                ws.send(message)
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    assert "partial" in json.loads(ws.recv())
            assert ws.close_code == code and reason in ws.close_reason
        # its state is freed and the server goes on serving
        _, final, _ = transcribe(running.url, step_model[1][1], 4000)
        assert final["text"] == step_model[2][1]
        for _ in range(200):  # the handler ends just after the client sees the close
            if not running.server._sessions:
                break
            time.sleep(0.01)
        assert running.server._sessions == {}


def test_idle_streams_are_closed(step_model):
    with Running(model=step_model[0], idle_timeout=0.3) as running, connect(running.url) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1008 and "idle" in ws.close_reason


def test_503_beyond_max_streams(step_model):
    with Running(model=step_model[0], max_streams=2) as running:
        first, second = connect(running.url), connect(running.url)
        with pytest.raises(websockets.InvalidStatus) as refused:
            connect(running.url)
        assert refused.value.response.status_code == 503
        assert refused.value.response.headers["Retry-After"] == "1"  # seconds (--retry_after)
        import socket
        with socket.create_connection(("127.0.0.1", running.port)) as raw:  # the head in two pieces
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.1)
            raw.sendall(b"Upgrade: websocket\r\n\r\n")
            answer = b""
            while chunk := raw.recv(4096):  # until the server closes
                answer += chunk
        head, body = answer.split(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in head.split(b"\r\n")
        assert body == b"too many streams, try later\n"
        first.close()
        second.send(step_model[1][1].astype("<i2").tobytes())
        assert "partial" in json.loads(second.recv())
        for _ in range(100):  # the slot of the closed connection comes back
            try:
                third = connect(running.url)
                break
            except websockets.InvalidStatus:
                time.sleep(0.05)
        third.close()
        second.close()


def test_bidirectional_models_are_refused(exports):  # noqa: F811
    with pytest.raises(NotStreamable, match="not streamable"):
        Server(ServerConfig(model=exported(exports, "forward")))
    proc = subprocess.run([sys.executable, "-m", "deepspeech.server", "--model", exported(exports, "forward")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and "not streamable" in proc.stderr


def test_sigterm_finishes_open_streams_with_their_finals(step_model):
    path, clips, _ = step_model
    proc = subprocess.Popen([sys.executable, "-m", "deepspeech.server", "--model", path, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on port"), proc.stderr.read()
        url = f"ws://127.0.0.1:{int(line.split()[-1])}"
        sent = clips[2][:16000]
        with connect(url) as ws:
            ws.send(sent.astype("<i2").tobytes())
            assert "partial" in json.loads(ws.recv())
            proc.terminate()  # SIGTERM while the stream is open: no eof from the client
            final = json.loads(ws.recv(timeout=30))
            with pytest.raises(websockets.ConnectionClosedOK):
                ws.recv(timeout=30)
        assert proc.wait(30) == 0
        assert final["text"] == configured_model(ServerConfig(model=path)).stt(sent)
        log = proc.stderr.read()
        assert log.count("stream 1 from") == 1 and "stopped" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_until(condition, seconds=10.0):
    for _ in range(int(seconds / 0.01)):
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_disconnects_mid_stream_free_the_stream(step_model):
    path, clips, expected = step_model
    with Running(model=path) as running:
        for abrupt in (False, True):
            ws = connect(running.url)
            ws.send(clips[2].astype("<i2").tobytes())  # many windows still to run
            if abrupt:
                ws.socket.close()  # no closing handshake
            else:
                ws.close()
        assert _wait_until(lambda: not running.server._sessions)
        dispatcher = running.server.dispatcher
        assert _wait_until(lambda: not dispatcher._ready and not dispatcher._dirty)
        assert transcribe(running.url, clips[0], 1000)[1]["text"] == expected[0]


def test_exports_with_a_fixed_batch_of_one_are_served(step_model):
    """Older exports (no streaming.batch): one step call per stream, the same finals."""
    path, clips, expected = step_model
    with Running(model=path, max_batch=4) as running:
        running.server.dispatcher._batched = False
        calls = []
        step = running.server.dispatcher.runtime.step

        def counting_step(features, *rest):
            calls.append(len(features))
            return step(features, *rest)

        running.server.dispatcher.runtime.step = counting_step
        with ThreadPoolExecutor(len(clips)) as pool:
            finals = list(pool.map(lambda clip: transcribe(running.url, clip, 900)[1]["text"], clips))
    assert finals == expected and set(calls) == {1}


def test_plain_http_gets_the_page_and_the_websocket_endpoint_still_works(step_model):
    import urllib.error
    import urllib.request

    path, clips, expected = step_model
    with Running(model=path) as running:
        base = f"http://127.0.0.1:{running.port}"
        with urllib.request.urlopen(base + "/") as page:
            assert page.headers["Content-Type"] == "text/html; charset=utf-8"
            assert b"getUserMedia" in page.read()
        with urllib.request.urlopen(base + "/worklet.js") as worklet:
            assert worklet.headers["Content-Type"] == "text/javascript; charset=utf-8"
            assert b"registerProcessor('pcm-capture'" in worklet.read()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/secrets.txt")
        assert missing.value.code == 404
        _, final, close = transcribe(running.url, clips[0], 800)
    assert final["text"] == expected[0] and close == (1000, "done")


def test_a_finished_stream_is_freed_without_the_cycle_collector(step_model):
    """Its beam search (native memory) goes when the stream ends, not at the next full collection."""
    import gc

    from deepspeech.dispatch import Recognition

    path, clips, expected = step_model
    with Running(model=path) as running:
        gc.collect()
        gc.disable()
        try:
            for clip in clips[:2]:
                transcribe(running.url, clip, 1000)
            time.sleep(0.2)  # the server's handler finishes after the close
            alive = [o for o in gc.get_objects() if type(o) is Recognition]
        finally:
            gc.enable()
    assert alive == []


def test_a_failing_search_ends_only_its_stream(step_model, monkeypatch):
    """A stream whose beam search raises is closed with 1011 and the reason; the others go on."""
    from deepspeech.dispatch import Recognition

    path, clips, expected = step_model
    decode = Recognition.decode_frames

    def failing(self, probs):
        if self.sample_rate == 8000:
            raise RuntimeError("injected")
        return decode(self, probs)

    monkeypatch.setattr(Recognition, "decode_frames", failing)
    with Running(model=path) as running:
        with connect(running.url) as ws:
            ws.send(json.dumps({"config": {"sample_rate": 8000}}))
            ws.send(clips[2][::2].astype("<i2").tobytes())
            with pytest.raises(websockets.ConnectionClosedError):
                while True:
                    ws.recv()
            assert (ws.close_code, ws.close_reason) == (1011, "recognition failed on this stream (the server "
                                                             "logs why)")
        assert transcribe(running.url, clips[0], 1000)[1]["text"] == expected[0]
