"""``deepspeech-server``: a streaming recognition server (WebSocket, Vosk's protocol, Batch Dispatch).

    deepspeech-server --model output_graph.tflite [--scorer kenlm.scorer] --port 2700

Protocol (Vosk's, so that its clients work), on one WebSocket port:

- optionally first, a text message ``{"config": {"sample_rate": 8000, "words": true,
  "max_alternatives": 0, "hot_words": {"word": boost}}}`` (defaults: the model's rate, words true,
  0, the server's; hot words need ``--scorer``);
- binary messages of 16-bit little-endian mono PCM at that rate, of any length (even byte counts);
  each is answered with ``{"partial": "..."}``, the transcript so far, once its audio is decoded;
- a text message ``{"eof": 1}``; the server answers ``{"text": "...", "result": [{"word", "start",
  "end", "conf"}, ...]}`` (``conf``: the geometric mean of the word's character posteriors;
  ``"alternatives": [{"text", "confidence", "result"}]`` with
  ``max_alternatives`` > 0) and closes the connection (code 1000).

Faults close the connection with a reason: 1007 for malformed input (an odd byte count, bad JSON,
wrong types), 1008 for messages out of place (text that is neither config nor eof, config after
audio), for a client that leaves more than 256 answers unread, and for limits (``--max_stream_seconds``; ``--idle_timeout`` without a message); messages
over ``--max_message_bytes`` get 1009 from the websockets library. Beyond ``--max_streams``
connections, new ones (the page's too) get HTTP 503 with Retry-After, before any handshake. SIGTERM
(or SIGINT) stops accepting, ends every open stream as if its client had sent eof (its final result is
sent), and exits.

Plain HTTP GETs on the same port get the microphone page (``web/index.html``: ``GET /``) and its
AudioWorklet (``GET /worklet.js``); other paths get 404.

The model and the beam searches run on the dispatcher's threads (``dispatch.py``), never on the
event loop's. Only unidirectional ('step') exports are served: a bidirectional model is refused at
start. One log line per stream; ``--stats_file`` gets the batch-size histogram at shutdown (JSON).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass
from http import HTTPStatus

from .dispatch import EOF, Dispatcher, NotStreamable, Recognition, streaming_parts

log = logging.getLogger("deepspeech.server")
MALFORMED, POLICY = 1007, 1008
MAX_QUEUED_ANSWERS = 256  # results waiting for a client that does not read them: the stream ends


@dataclass(frozen=True)
class ServerConfig:
    model: str
    scorer: str = ""
    host: str = "127.0.0.1"
    port: int = 2700
    max_batch: int = 32
    max_streams: int = 100
    retry_after: int = 1
    idle_timeout: float = 30.0
    max_stream_seconds: float = 600.0
    max_message_bytes: int = 1 << 20
    stats_file: str = ""
    beam_width: int = 0
    cutoff_prob: float = 0.999
    cutoff_top_n: int = 40
    beam_threshold: float = 15.0
    settle_after: int = 100


class Fault(Exception):
    """A client's protocol error: the connection closes with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def _check_hot_words(hot_words) -> dict:
    if not isinstance(hot_words, dict) or not all(
            isinstance(w, str) and w.strip() and isinstance(b, (int, float)) and not isinstance(b, bool)
            for w, b in hot_words.items()):
        raise Fault(MALFORMED, "config hot_words must be an object of words and numbers (boosts)")
    return {w: float(b) for w, b in hot_words.items()}


def _check_config(config, model_rate: int) -> tuple[int, bool, int]:
    """Vosk's config object -> (sample_rate, words, max_alternatives); hot_words are checked apart."""
    if not isinstance(config, dict):
        raise Fault(MALFORMED, "config must be an object")
    unknown = set(config) - {"sample_rate", "words", "max_alternatives", "hot_words"}
    if unknown:
        raise Fault(MALFORMED, f"unknown config field(s) {', '.join(sorted(unknown))}")
    rate = config.get("sample_rate", model_rate)
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)
    if isinstance(rate, bool) or not isinstance(rate, int) or not 1000 <= rate <= 384000:
        raise Fault(MALFORMED, "config sample_rate must be an integer from 1000 to 384000")
    words = config.get("words", True)
    if not isinstance(words, bool):
        raise Fault(MALFORMED, "config words must be true or false")
    alternatives = config.get("max_alternatives", 0)
    if isinstance(alternatives, bool) or not isinstance(alternatives, int) or not 0 <= alternatives <= 100:
        raise Fault(MALFORMED, "config max_alternatives must be an integer from 0 to 100")
    return rate, words, alternatives


def _parse_text(text: str) -> dict:
    try:
        message = json.loads(text)
    except ValueError:
        raise Fault(MALFORMED, "a text message that is not JSON") from None
    if not isinstance(message, dict):
        raise Fault(MALFORMED, "a JSON message must be an object")
    return message


WEB_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
             "/index.html": ("index.html", "text/html; charset=utf-8"),
             "/worklet.js": ("worklet.js", "text/javascript; charset=utf-8")}


def _static(connection, path: str):
    """GET / (the microphone page) and its worklet from the package's web/ folder; 404 for the rest."""
    from importlib.resources import files

    entry = WEB_FILES.get(path.split("?", 1)[0])
    if entry is None:
        return connection.respond(HTTPStatus.NOT_FOUND, "not found (the WebSocket endpoint is ws://host:port/)\n")
    name, content_type = entry
    response = connection.respond(HTTPStatus.OK, (files(__package__) / "web" / name).read_text("utf-8"))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-cache"
    return response


def configured_model(config: ServerConfig):
    """The ``deepspeech.Model`` with the server's decoder settings (scorer, beam width, pruning):
    its offline ``stt()`` gives the server's final results."""
    from . import Model

    model = Model(config.model)
    if config.scorer:
        model.enableExternalScorer(config.scorer)
    if config.beam_width:
        model.setBeamWidth(config.beam_width)
    model.setBeamPruning(config.cutoff_prob, config.cutoff_top_n, config.beam_threshold, config.settle_after)
    return model


def refusal_response(retry_after: int) -> bytes:
    """The 503 a refused connection gets (RFC 9110's Retry-After: seconds)."""
    body = b"too many streams, try later\n"
    return (f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


class Refusal(asyncio.Protocol):
    """A connection beyond --max_streams: reads the request's head (so that closing after the answer
    does not reset the connection before the client reads it), answers the prepared 503 and closes;
    no handshake, no websockets objects. A client that sends no head within 10 s is dropped."""

    def __init__(self, response: bytes):
        self._response, self._head, self._transport, self._timer = response, b"", None, None

    def connection_made(self, transport) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(10.0, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self._head is None:  # answered already
            return
        self._head += data
        if b"\r\n\r\n" in self._head or len(self._head) > 16384:
            self._head = None
            self._transport.write(self._response)
            self._transport.close()

    def connection_lost(self, exc) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _discard(message) -> None:
    """What a finished stream's late results go to."""


def _deliver(answers) -> None:
    for recognition, message in answers:
        recognition.deliver(message)


class Server:
    """The model, its dispatcher and the WebSocket server. ``run()`` serves until SIGTERM/SIGINT."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.model = configured_model(config)
        self.acoustic, runtime = streaming_parts(self.model, config.model)
        self.dispatcher = Dispatcher(runtime, config.max_batch, self._post, on_error=self._failed)
        self._ids = itertools.count(1)
        self._admitted = 0  # connections accepted and not closed yet
        self._refusal = refusal_response(config.retry_after)
        self._websocket_connection = None  # websockets' ServerConnection class, imported by serve()
        self._sessions: dict[int, tuple[Recognition, asyncio.Task]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future | None = None

    # --- connection admission: beyond --max_streams a bare HTTP 503, before websockets parses anything
    def _process_request(self, connection, request):
        if request.headers.get("Upgrade", "").lower() != "websocket":  # a browser: the page (web/)
            return _static(connection, request.path)
        return None

    def _connection(self, protocol, server, **options):
        """websockets' ``create_connection``, called for each accepted TCP connection on the loop: a
        ServerConnection within --max_streams, a ``Refusal`` beyond: refusals must stay cheap on the loop
        that sends the admitted streams' partials (0.16-0.25 ms of CPU a refusal, 0.33 through websockets'
        handshake and process_request: bench/refusal_cost.py)."""
        if self._admitted >= self.config.max_streams:
            return Refusal(self._refusal)
        self._admitted += 1
        connection = self._websocket_connection(protocol, server, **options)
        asyncio.get_running_loop().create_task(self._release(connection))
        return connection

    async def _release(self, connection) -> None:
        try:
            await connection.wait_closed()
        finally:
            self._admitted -= 1

    # --- one stream
    async def _handle(self, websocket) -> None:
        outbox: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def deliver(message):  # on the loop
            if outbox.qsize() < MAX_QUEUED_ANSWERS:
                outbox.put_nowait(message)
            elif not recognition.dropped:  # the client does not read: stop this stream
                self.dispatcher.drop(recognition)
                loop.create_task(websocket.close(POLICY, "the client does not read its results"))

        stream_id, started = next(self._ids), time.monotonic()
        recognition = Recognition(stream_id, self.acoustic, self.model._decoding(), self.acoustic.sample_rate,
                                  True, 0, deliver)
        receiver = asyncio.current_task()
        self._sessions[stream_id] = (recognition, receiver)
        sender = loop.create_task(self._send(websocket, outbox))
        status = "done"
        try:
            await self._receive(websocket, recognition)
            status = await sender
        except Fault as fault:
            status = f"closed {fault.code}: {fault.reason}"
            self.dispatcher.drop(recognition)
            sender.cancel()
            await websocket.close(fault.code, fault.reason)
        except asyncio.CancelledError:  # SIGTERM: finish the stream with its final
            self.dispatcher.submit(recognition, EOF)
            status = await sender
        except Exception as err:  # noqa: BLE001 (the client went away: websockets' ConnectionClosed)
            status = f"disconnected ({type(err).__name__})"
            self.dispatcher.drop(recognition)
            sender.cancel()
        finally:
            self._sessions.pop(stream_id, None)
            self._log(recognition, websocket, started, status)
            # the stream's deliver -> recognition cycle would keep its native beam search
            # alive until a full garbage collection (RSS grew ~6 kB a stream): cut it
            recognition.deliver = _discard

    async def _receive(self, websocket, recognition: Recognition) -> None:
        """Until eof; raises Fault for a broken protocol."""
        config, audio_seen, samples = self.config, False, 0
        while True:
            try:
                async with asyncio.timeout(config.idle_timeout):  # no task a message, as wait_for makes
                    message = await websocket.recv()
            except TimeoutError:
                raise Fault(POLICY, f"idle for {config.idle_timeout:g} s") from None
            if isinstance(message, bytes):
                if len(message) % 2:
                    raise Fault(MALFORMED, f"audio of {len(message)} bytes: 16-bit samples need an even count")
                samples += len(message) // 2
                if samples > config.max_stream_seconds * recognition.sample_rate:
                    raise Fault(POLICY, f"stream longer than {config.max_stream_seconds:g} s")
                audio_seen = True
                self.dispatcher.submit(recognition, message)
                continue
            data = _parse_text(message)
            if "config" in data and len(data) == 1:
                if audio_seen:
                    raise Fault(POLICY, "config after audio")
                rate, words, alternatives = _check_config(data["config"], self.acoustic.sample_rate)
                recognition.sample_rate, recognition.words = rate, words
                recognition.max_alternatives = alternatives
                if "hot_words" in data["config"]:
                    self._set_hot_words(recognition, _check_hot_words(data["config"]["hot_words"]))
            elif "eof" in data and len(data) == 1:
                self.dispatcher.submit(recognition, EOF)
                return
            else:
                raise Fault(POLICY, "text where audio was expected (only config and eof are text)")

    def _set_hot_words(self, recognition: Recognition, hot_words: dict) -> None:
        """Before any audio (the decoder thread has not touched the stream's search yet)."""
        if self.model._scorer is None:
            raise Fault(POLICY, "hot_words need a scorer (start the server with --scorer)")
        decoding = self.model._decoding()
        decoding.hot_words = {**decoding.hot_words, **hot_words}
        recognition.set_decoding(decoding)

    async def _send(self, websocket, outbox: asyncio.Queue) -> str:
        """Partials and the final, in order; closes after the final -> a status for the log."""
        while True:
            message = await outbox.get()
            if message is EOF:
                await websocket.close(1000, "done")
                return "done"
            if isinstance(message, Fault):
                await websocket.close(message.code, message.reason)
                return f"closed {message.code}: {message.reason}"
            await websocket.send(json.dumps(message))

    def _post(self, answers) -> None:
        """From the dispatcher's threads: [(recognition, message), ...] delivered on the loop, in order."""
        self._loop.call_soon_threadsafe(_deliver, answers)

    def _failed(self, recognition: Recognition) -> None:
        """From the dispatcher's threads: the stream's model step or beam search failed."""
        self._post([(recognition, Fault(1011, "recognition failed on this stream (the server logs why)"))])

    def _log(self, recognition: Recognition, websocket, started: float, status: str) -> None:
        peer = websocket.remote_address[0] if websocket.remote_address else "?"
        audio = recognition.driver._received * self.acoustic.framing.win_step_ms / 1000.0
        final = "" if recognition.final_latency is None else f", final {1000 * recognition.final_latency:.0f} ms after eof"
        error = f", error {recognition.error}" if recognition.error else ""
        log.info("stream %d from %s: %.2f s audio in %.2f s, %d steps%s: %s%s", recognition.id, peer, audio,
                 time.monotonic() - started, recognition.steps, final, status, error)

    # --- serving
    async def serve(self, ready=None, handle_signals: bool = True) -> None:
        """Serve until SIGTERM/SIGINT (``handle_signals``, main thread only) or ``shutdown()``;
        ``ready(port)`` is called once listening."""
        from websockets.asyncio.server import ServerConnection, serve

        self._websocket_connection = ServerConnection

        loop = self._loop = asyncio.get_running_loop()
        stop = self._stop = loop.create_future()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._request_stop)
        await loop.run_in_executor(None, self.dispatcher.warm_up, self.acoustic.metadata["streaming"],
                                   self.acoustic.framing.n_features)
        self.dispatcher.start()
        try:
            async with serve(self._handle, self.config.host, self.config.port,
                             process_request=self._process_request, create_connection=self._connection,
                             max_size=self.config.max_message_bytes,
                             ping_interval=None, compression=None) as server:  # PCM does not deflate
                port = next(iter(server.sockets)).getsockname()[1]
                log.info("listening on ws://%s:%d (the page: http://%s:%d/; model %s, max batch %d)",
                         self.config.host, port, self.config.host, port, self.config.model, self.config.max_batch)
                if ready is not None:
                    ready(port)
                await stop
                log.info("stopping: finishing %d open stream(s)", len(self._sessions))
                server.close(close_connections=False)  # no new connections
                for recognition, task in list(self._sessions.values()):
                    if recognition.eof_time is None:  # still receiving: end it as if eof came
                        task.cancel()
                await server.wait_closed()
        finally:
            self.dispatcher.stop()
        log.info("stopped; batch sizes %s", dict(sorted(self.dispatcher.batch_sizes.items())))
        if self.config.stats_file:
            self._write_stats(self.config.stats_file)

    def _write_stats(self, path: str) -> None:
        """``--stats_file``: {"batch_sizes": {"n": model calls of n streams}, "streams": connections served}."""
        stats = {"batch_sizes": {str(n): c for n, c in sorted(self.dispatcher.batch_sizes.items())},
                 "streams": next(self._ids) - 1}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(stats, f)

    def _request_stop(self) -> None:
        if not self._stop.done():
            self._stop.set_result(None)

    def shutdown(self) -> None:
        """From any thread: what SIGTERM does."""
        self._loop.call_soon_threadsafe(self._request_stop)


def parse_args(argv=None) -> ServerConfig:
    parser = argparse.ArgumentParser(prog="deepspeech-server", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a unidirectional export (.pb, .pbmm, .tflite, SavedModel)")
    parser.add_argument("--scorer", default="", help="an external scorer (language model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2700, help="0: any free port")
    parser.add_argument("--max_batch", type=int, default=32, help="most streams in one model call")
    parser.add_argument("--max_streams", type=int, default=100, help="more connections get HTTP 503")
    parser.add_argument("--retry_after", type=int, default=1,
                        help="seconds a refused client is asked to wait (the 503's Retry-After header)")
    parser.add_argument("--idle_timeout", type=float, default=30.0, help="seconds without a message")
    parser.add_argument("--max_stream_seconds", type=float, default=600.0, help="of audio a stream")
    parser.add_argument("--max_message_bytes", type=int, default=1 << 20)
    parser.add_argument("--stats_file", default="", help="write the batch-size histogram (JSON) here at shutdown")
    parser.add_argument("--beam_width", type=int, default=0, help="of the beam search (0: the model's, 500 by "
                        "default)")
    parser.add_argument("--cutoff_prob", type=float, default=0.999,
                        help="beam pruning: at each frame try only the most likely labels whose probabilities "
                        "add up to this (1.0: all, as the client; Deep Speech 2's deployment used 0.99, which "
                        "cost the demo model 2.5 points of WER with a scorer, 0.999 cost 0.1: BENCHMARKS.md)")
    parser.add_argument("--cutoff_top_n", type=int, default=40, help="beam pruning: at most this many labels a frame")
    parser.add_argument("--beam_threshold", type=float, default=15.0,
                        help="beam pruning: after each frame drop prefixes more than this many nats below the "
                        "best (flashlight's beam threshold; 0: none; 15 kept the demo's WER with a 2.8x cheaper "
                        "search: BENCHMARKS.md)")
    parser.add_argument("--settle_after", type=int, default=100,
                        help="beam pruning: text more than this many characters before the end of the best "
                        "transcript becomes final, which keeps long streams' search cost flat (0: never)")
    args = parser.parse_args(argv)
    for name in ("max_batch", "max_streams", "max_message_bytes", "cutoff_top_n"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.retry_after < 0:
        parser.error("--retry_after must not be negative")
    if not 0.0 < args.cutoff_prob <= 1.0:
        parser.error("--cutoff_prob must be in (0, 1]")
    if args.beam_threshold < 0 or args.settle_after < 0:
        parser.error("--beam_threshold and --settle_after must not be negative (0: none)")
    return ServerConfig(**vars(args))


def main(argv=None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("websockets").setLevel(logging.WARNING)  # our own line per stream is enough
    from .errors import DeepSpeechError

    try:
        server = Server(config)
    except (NotStreamable, DeepSpeechError, ValueError) as err:
        print(f"deepspeech-server: {err}", file=sys.stderr)
        return 1

    def ready(port: int) -> None:
        print(f"listening on port {port}", flush=True)

    asyncio.run(server.serve(ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
