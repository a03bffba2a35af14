"""The server's page end to end in headless Chromium, a WAV as the fake microphone: the final on the page
equals the offline transcript of exactly the audio the page sent (driven over the DevTools protocol)."""
import json
import re
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest
import soundfile
from test_client_export import exported, exports, speechlike  # noqa: F401 (the fixture)
from test_server import Running

import deepspeech
from deepspeech.audio import from_int16, resample
from deepspeech.server import ServerConfig, configured_model

websockets = pytest.importorskip("websockets")
from websockets.sync.client import connect  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make browser-test installs it)")


class Chromium:
    """Headless Chromium with a WAV file as its microphone, one page driven over the DevTools protocol."""

    def __init__(self, wav, profile):
        self.log = open(profile.parent / "chromium.log", "w")
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=self.log)
        port = self._devtools_port(profile.parent / "chromium.log")
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(p for p in pages if p["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None)
        self.ids = iter(range(1, 1 << 30))

    def _devtools_port(self, log, timeout=60):
        """From its log (a file, not a pipe that could fill): "DevTools listening on ws://127.0.0.1:PORT/..."."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", log.read_text())
            if found:
                return int(found.group(1))
            time.sleep(0.1)
        self.process.kill()
        self.log.close()
        raise RuntimeError(f"chromium did not listen: {log.read_text()[-2000:]}")

    def call(self, method, **params):
        ident = next(self.ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(30))
            if message.get("id") == ident:
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, expression, timeout):
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.1)

    def close(self):
        self.socket.close()
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def offline_text(model, chunks, rate):
    """The offline transcript of the audio as the server receives it: each chunk resampled as the server
    resamples it (counts kept over the stream), then the whole float signal through features, the
    acoustic model and the beam search at once."""
    if rate == model.sampleRate():
        return model.stt(np.concatenate(chunks).astype(np.int16))
    pieces, received, produced = [], 0, 0
    for chunk in chunks:
        received += len(chunk)
        target = round(received * model.sampleRate() / rate)
        if target > produced:
            pieces.append(resample(from_int16(chunk), len(chunk), target - produced))
        produced = max(produced, target)
    audio = np.concatenate(pieces)
    return str(model._decoding().decode(model._impl.probs(model._impl.features(audio)), 1).transcripts[0])


@pytest.mark.parametrize("query", ["", "&rate=16000"])
def test_the_page_transcribes_the_microphone(exports, tmp_path, query):  # noqa: F811
    path = exported(exports, "step")
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, np.concatenate([speechlike(1.6, 5), speechlike(0.9, 6)]), 16000, subtype="PCM_16")
    with Running(model=path) as running:
        with urllib.request.urlopen(f"http://127.0.0.1:{running.port}/") as answer:
            assert answer.headers["Content-Type"].startswith("text/html") and b"AudioWorkletNode" in answer.read()
        browser = Chromium(wav, tmp_path / "profile")
        try:
            browser.call("Page.navigate", url=f"http://127.0.0.1:{running.port}/?seconds=2&record=1{query}")
            browser.wait_for("window.finished === true", 60)
            status = browser.evaluate("document.getElementById('status').textContent")
            shown = browser.evaluate("document.getElementById('final').textContent")
            words = browser.evaluate("Array.from(document.querySelectorAll('#words tbody tr'),"
                                     " r => r.cells[0].textContent)")
            sent = browser.evaluate("window.sent")
            partials = browser.evaluate("window.partials")
        finally:
            browser.close()
    assert status == "done"
    rate, chunks = sent["sampleRate"], [np.array(c, np.int16) for c in sent["chunks"]]
    audio = np.concatenate(chunks)
    assert len(audio) == round(2 * rate) and np.abs(audio).max() > 1000  # 2 s of the (looping) WAV, not silence
    if query:
        assert rate == 16000
    expected = offline_text(configured_model(ServerConfig(model=path)), chunks, rate)
    assert expected and shown == expected
    assert words == expected.split()
    # one live partial per chunk sent, but for the chunks still owed at eof (the final answers them)
    assert len(chunks) // 2 <= len(partials) <= len(chunks) and partials[-1]
