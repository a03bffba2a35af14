"""Mozilla 0.9's Sample DataBase (.sdb): its byte layout and Opus samples, training and testing on SDBs,
overlay noise from an SDB, and the data tools (data_set_tool to .sdb/.tar, play, compare_samples)."""
import csv
import io
import json
import re
import struct
import sys
import tarfile
import wave

import numpy as np
import pytest
import soundfile
import tensorflow as tf
from conftest import ROOT, TINY_FLAGS, run_trainer
from deepspeech_training import sdb
from deepspeech_training.augment import Augmenter, parse_augmentations
from deepspeech_training.augment_ops import peak_dbfs
from deepspeech_training.data import DataError, load_samples, make_dataset
from deepspeech_training.features import FeatureCache, FeatureConfig
from deepspeech_training.util import opus
from ds_ctcdecoder.alphabet import Alphabet

sys.path.insert(0, str(ROOT / "bin"))
import compare_samples  # noqa: E402
import data_set_tool  # noqa: E402
import play  # noqa: E402

RATE = 16000
ALPHABET = Alphabet.from_labels(list(" abcdefghijklmnopqrstuvwxyz'"))
TRANSCRIPTS = ["hello world", "one two three", "a bit longer sample here"]
LOOKAHEAD = 104  # libopus's encoder delay at 16 kHz (application "audio"), kept by Mozilla's reader


@pytest.fixture(autouse=True)
def keep_logging(monkeypatch):
    """The tools' setup_logging would stop log records reaching caplog for the rest of the session."""
    monkeypatch.setattr(data_set_tool, "setup_logging", lambda level: None)
    monkeypatch.setattr(play, "setup_logging", lambda level: None)


def speechlike(seconds, seed):
    """int16 audio with a changing pitch and loudness (something Opus codes as it codes speech)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 150 + 60 * np.sin(2 * np.pi * 0.7 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / RATE) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2.3 * t))
    audio = 0.25 * envelope * voice / 2.6 + 0.005 * rng.standard_normal(t.size)
    return np.round(audio * 32767).astype(np.int16)


@pytest.fixture
def source_set(tmp_path):
    """A CSV of three 16-bit WAVs (lengths not whole 60 ms Opus frames) -> (csv path, [int16 audio])."""
    audios = [speechlike(seconds, i) for i, seconds in enumerate((0.9013, 1.3, 1.77))]
    with open(tmp_path / "set.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["wav_filename", "wav_filesize", "transcript"])
        for i, (audio, text) in enumerate(zip(audios, TRANSCRIPTS)):
            soundfile.write(tmp_path / f"s{i}.wav", audio, RATE, subtype="PCM_16")
            writer.writerow([f"s{i}.wav", (tmp_path / f"s{i}.wav").stat().st_size, text])
    return tmp_path / "set.csv", audios


def tool(*args):
    return data_set_tool.main([str(a) for a in args])


def aligned_snr(original, decoded, lag=LOOKAHEAD):
    ref = original[:len(original) - lag].astype(np.float64)
    out = decoded[lag:].astype(np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - out) ** 2))


# --- round trips ---------------------------------------------------------------------------------------

def test_wav_sdb_round_trip_is_bit_exact_and_trains_on_the_same_features(source_set, tmp_path):
    source, audios = source_set
    target = tmp_path / "set.sdb"
    assert tool(source, target, "--audio-type", "wav", "--workers", 2) == 0
    reader = sdb.SDBReader(str(target))
    assert len(reader) == 3 and reader.audio_type == sdb.AUDIO_WAV and reader.labeled
    for i, (audio, text) in enumerate(zip(audios, TRANSCRIPTS)):
        pcm, rate = reader.pcm(i)
        assert rate == RATE and pcm.shape == (len(audio), 1) and np.array_equal(pcm[:, 0], audio)
        assert reader.transcript(i) == text
    features = FeatureConfig()
    from_csv = load_samples([str(source)], ALPHABET, features, time_stride=2, progress=False)
    from_sdb = load_samples([str(target)], ALPHABET, features, time_stride=2, progress=False)
    assert [s.where for s in from_sdb] == ["set.sdb:0", "set.sdb:1", "set.sdb:2"]
    assert [s.record for s in from_sdb] == [0, 1, 2] and from_sdb[1].name == f"{target}:1"
    assert [(s.transcript, s.labels, s.duration) for s in from_csv] == \
        [(s.transcript, s.labels, s.duration) for s in from_sdb]
    order = np.arange(3)
    cache = FeatureCache(str(tmp_path / "cache"), features)
    for a, b in zip(make_dataset(from_csv, order, features, 3),
                    make_dataset(from_sdb, order, features, 3, cache=cache)):
        assert np.array_equal(a[0][0].numpy(), b[0][0].numpy()) and np.array_equal(a[1][0], b[1][0])
    assert len(list((tmp_path / "cache").rglob("*.tensor"))) == 3  # one entry per SDB sample


def test_opus_sdb_round_trip_keeps_duration_transcripts_and_quality(source_set, tmp_path):
    source, audios = source_set
    assert tool(source, tmp_path / "default.sdb") == 0  # --audio-type opus is the default
    assert tool(source, tmp_path / "low.sdb", "--bitrate", 8000) == 0
    reader = sdb.SDBReader(str(tmp_path / "default.sdb"))
    assert reader.audio_type == sdb.AUDIO_OPUS
    for i, (audio, text) in enumerate(zip(audios, TRANSCRIPTS)):
        pcm, rate = reader.pcm(i)
        assert rate == RATE and pcm.shape == (len(audio), 1) and reader.transcript(i) == text
        assert reader.info(i).frames == len(audio)
        snr = aligned_snr(audio, pcm[:, 0])
        assert snr > 9 and snr > aligned_snr(audio, pcm[:, 0], lag=0) + 6, snr  # with Mozilla's delay
    low = sdb.SDBReader(str(tmp_path / "low.sdb"))
    assert (tmp_path / "low.sdb").stat().st_size < (tmp_path / "default.sdb").stat().st_size
    assert all(low.info(i).frames == len(a) for i, a in enumerate(audios))
    assert aligned_snr(audios[2], low.pcm(2)[0][:, 0]) < aligned_snr(audios[2], reader.pcm(2)[0][:, 0]) - 3
    samples = load_samples([str(tmp_path / "default.sdb")], ALPHABET, FeatureConfig(), 2, progress=False)
    assert [round(s.duration * RATE) for s in samples] == [len(a) for a in audios]


# --- the byte layout, read by a reader written here from the documentation ------------------------------

def parse_sdb(data):
    """A minimal independent SDB parser: -> (meta JSON text, [[field bytes...] per sample])."""
    assert data[:8] == b"SAMPLEDB"
    (meta_len,) = struct.unpack_from(">Q", data, 8)
    meta = data[16:16 + meta_len].decode()
    at = 16 + meta_len
    chunk_len, count = struct.unpack_from(">QQ", data, at)
    index_at = at + 8 + chunk_len
    index_len, index_count = struct.unpack_from(">QQ", data, index_at)
    assert index_count == count and index_len == 8 * (count + 1) and index_at + 8 + index_len == len(data)
    offsets = struct.unpack_from(f">{count}Q", data, index_at + 16)
    samples, position = [], at + 16
    for offset in offsets:
        assert offset == position  # entries back to back, in index order
        (entry_len,) = struct.unpack_from(">I", data, offset)
        fields, field_at = [], offset + 4
        while field_at < offset + 4 + entry_len:
            (size,) = struct.unpack_from(">I", data, field_at)
            fields.append(data[field_at + 4:field_at + 4 + size])
            field_at += 4 + size
        assert field_at == offset + 4 + entry_len
        samples.append(fields)
        position = field_at
    assert position == index_at
    return meta, samples


def parse_opus_sample(data):
    pcm_bytes, rate, channels, width = struct.unpack_from(">IIBB", data)
    packets, at = [], 10
    while at < len(data):
        (size,) = struct.unpack_from(">H", data, at)
        packets.append(data[at + 2:at + 2 + size])
        at += 2 + size
    assert at == len(data)
    return pcm_bytes, rate, channels, width, packets


def test_an_independent_reader_parses_what_the_writer_writes(tmp_path):
    audios = [speechlike(s, i) for i, s in enumerate((0.5, 0.12, 1.0))]
    with sdb.SDBWriter(str(tmp_path / "l.sdb"), sdb.AUDIO_OPUS) as writer:
        names = [writer.add(a, RATE, f"text {i} é") for i, a in enumerate(audios)]
    assert names == [f"{tmp_path / 'l.sdb'}:{i}" for i in range(3)]
    meta, samples = parse_sdb((tmp_path / "l.sdb").read_bytes())
    assert meta == ('{"schema": [{"content": "speech", "mime-type": "application/vnd.mozilla.opus"}, '
                    '{"content": "transcript", "mime-type": "text/plain"}]}')
    for i, (audio, (speech, text)) in enumerate(zip(audios, samples)):
        assert text.decode("utf-8") == f"text {i} é"
        pcm_bytes, rate, channels, width, packets = parse_opus_sample(speech)
        assert (pcm_bytes, rate, channels, width) == (2 * len(audio), RATE, 1, 2)
        assert len(packets) == -(-len(audio) // 960)  # one packet per 60 ms frame, the last one padded
        assert all(0 < len(p) <= 1920 for p in packets)
    with sdb.SDBWriter(str(tmp_path / "u.sdb"), sdb.AUDIO_WAV, labeled=False) as writer:
        for audio in audios:
            writer.add(audio, RATE)
    meta, samples = parse_sdb((tmp_path / "u.sdb").read_bytes())
    assert json.loads(meta) == {"schema": [{"content": "speech", "mime-type": "audio/wav"}]}
    for audio, (speech,) in zip(audios, samples):
        with wave.open(io.BytesIO(speech)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
            assert np.array_equal(np.frombuffer(w.readframes(w.getnframes()), "<i2"), audio)
    assert len(speech) == 44 + 2 * len(audios[-1])  # the plain 44-byte header of Python's wave module
    empty = tmp_path / "empty.sdb"
    sdb.SDBWriter(str(empty)).close()
    assert parse_sdb(empty.read_bytes())[1] == [] and len(sdb.SDBReader(str(empty))) == 0


# --- bad files -------------------------------------------------------------------------------------------

def with_meta(meta):
    return b"SAMPLEDB" + struct.pack(">Q", len(meta)) + meta + bytes(32)


def bad_files(tmp_path, good):
    data = good.read_bytes()
    samples_at = 16 + struct.unpack_from(">Q", data, 8)[0]
    index_at = samples_at + 8 + struct.unpack_from(">Q", data, samples_at)[0]
    files = {
        "not an SDB": (b"RIFF, certainly not a sample database" * 3, "not a Sample DataBase"),
        "cut short": (data[:-12], "truncated SDB"),
        "cut in the header": (data[:20], "truncated SDB"),
        "unknown schema": (with_meta(b'{"schema": [{"content": "speech", "mime-type": "audio/mpeg3"}]}'),
                           "unknown SDB schema: no speech column"),
        "no JSON": (with_meta(b"{oops"), "unknown SDB schema"),
        "no schema": (with_meta(b'{"samples": 3}'), "unknown SDB schema"),
        # a writer that died before close(): no lengths, no index
        "unfinished": (data[:samples_at] + bytes(16) + data[samples_at + 16:index_at],
                       "damaged or unfinished SDB"),
    }
    for i, (name, (content, message)) in enumerate(files.items()):
        path = tmp_path / f"bad{i}.sdb"
        path.write_bytes(content)
        yield name, path, message


def test_bad_files_are_one_line_errors_naming_the_file(source_set, tmp_path):
    source, _ = source_set
    assert tool(source, tmp_path / "good.sdb", "--audio-type", "wav") == 0
    for name, path, message in bad_files(tmp_path, tmp_path / "good.sdb"):
        with pytest.raises(sdb.SDBError) as err:
            sdb.SDBReader(str(path))
        text = str(err.value)
        assert text.startswith(f"{path}: ") and message in text and "\n" not in text, (name, text)
    sdb.SDBWriter(str(tmp_path / "noise.sdb"), labeled=False).close()
    with pytest.raises(DataError, match=r"noise.sdb: no transcripts \(an unlabeled SDB"):
        load_samples([str(tmp_path / "noise.sdb")], ALPHABET, FeatureConfig(), 2, progress=False)
    assert tool(tmp_path / "bad0.sdb", tmp_path / "x.csv") == 1
    proc = run_trainer("--train_files", tmp_path / "bad0.sdb", "--epochs", 1, "--checkpoint_dir",
                       tmp_path / "ck", *TINY_FLAGS, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert re.search(rf"^ERROR {tmp_path / 'bad0.sdb'}: not a Sample DataBase .*$", proc.stderr, re.MULTILINE)


# --- training, testing and metrics on SDBs ---------------------------------------------------------------

def losses(stderr):
    train = [float(x) for x in re.findall(r"train loss (\d+\.\d+)", stderr)]
    dev = [float(x) for x in re.findall(r"Epoch \d+: dev \S+ loss (\d+\.\d+)", stderr)]
    metrics = [float(x) for x in re.findall(r"Metrics for epoch \d+ on \S+ - loss: (\d+\.\d+)", stderr)]
    return train, dev, metrics


@pytest.mark.slow  # two trainer runs, about 40 s
def test_training_and_testing_on_a_wav_sdb_matches_the_csv(tiny_corpus, tmp_path):
    sets = {}
    for name in ("train", "dev", "test"):
        assert tool(tiny_corpus / f"{name}.csv", tmp_path / f"{name}.sdb", "--audio-type", "wav") == 0
        sets[name] = (tiny_corpus / f"{name}.csv", tmp_path / f"{name}.sdb")
    runs = {}
    for kind, pick in (("csv", 0), ("sdb", 1)):
        proc = run_trainer("--train_files", sets["train"][pick], "--dev_files", sets["dev"][pick],
                           "--metrics_files", sets["test"][pick], "--test_files", sets["test"][pick],
                           "--train_batch_size", 8, "--epochs", 1, "--checkpoint_dir", tmp_path / f"ck-{kind}",
                           "--test_output_file", tmp_path / f"{kind}.json", *TINY_FLAGS)
        runs[kind] = (losses(proc.stderr), json.loads((tmp_path / f"{kind}.json").read_text()), proc.stderr)
    (csv_losses, csv_rows, _), (sdb_losses, sdb_rows, stderr) = runs["csv"], runs["sdb"]
    assert all(len(x) == 1 for x in sdb_losses), stderr[-3000:]  # the metrics set's loss is logged
    assert re.search(r"Metrics for epoch 1 on \S*test\.sdb - loss: ", stderr)
    assert "Test on test.sdb - WER:" in stderr
    np.testing.assert_allclose(np.concatenate(sdb_losses), np.concatenate(csv_losses), rtol=2e-3)
    assert [r["wav_filename"] for r in sdb_rows] != [r["wav_filename"] for r in csv_rows]
    assert sorted(r["wav_filename"] for r in sdb_rows) == sorted(f"{tmp_path / 'test.sdb'}:{i}" for i in range(8))
    by_text = {r["src"]: r["loss"] for r in csv_rows}
    np.testing.assert_allclose([r["loss"] for r in sdb_rows], [by_text[r["src"]] for r in sdb_rows], rtol=2e-3)


# --- overlay from an SDB -------------------------------------------------------------------------------------

def test_overlay_mixes_noise_from_an_sdb(tmp_path):
    rng = np.random.default_rng(0)
    noise = [np.round(0.3 * rng.standard_normal(int(s * RATE)) * 32767).astype(np.int16) for s in (0.3, 0.5)]
    speech = (0.5 * np.sin(2 * np.pi * 300 * np.arange(2 * RATE) / RATE)).astype(np.float32)
    features = FeatureConfig()
    for audio_type in (sdb.AUDIO_WAV, sdb.AUDIO_OPUS):
        source = tmp_path / f"noise-{audio_type.split('/')[-1]}.sdb"
        with sdb.SDBWriter(str(source), audio_type, labeled=False) as writer:
            for clip in noise:
                writer.add(clip, RATE)
        for snr in (0.0, 10.0):
            augmenter = Augmenter(parse_augmentations([f"overlay[source={source},snr={snr}]"]), features,
                                  time_stride=1, seed=1).with_clock(0.5)
            wave_, _ = augmenter.augment_sample(tf.constant(speech), tf.constant([1]), tf.constant(0, tf.int64),
                                                tf.constant(0, tf.int64))
            wave_ = wave_.numpy()
            level = float(np.dot(wave_, speech) / np.dot(speech, speech))
            rest = wave_ - level * speech
            measured = float(peak_dbfs(level * speech) - peak_dbfs(rest))
            assert abs(measured - snr) < 1.0 and np.all(np.abs(rest[::800]) > 0), (audio_type, snr, measured)


# --- data_set_tool to .tar, play, compare_samples --------------------------------------------------------------

def test_data_set_tool_writes_mozillas_tar_layout_and_reads_it_back(source_set, tmp_path):
    source, audios = source_set
    (tmp_path / "alphabet.txt").write_text("a\n")
    assert tool(source, tmp_path / "opus.sdb") == 0
    assert tool(source, tmp_path / "set.tar.gz", "--include", tmp_path / "alphabet.txt") == 0
    assert tool(tmp_path / "opus.sdb", tmp_path / "from-sdb.tar") == 0  # an SDB source
    with tarfile.open(tmp_path / "set.tar.gz") as tar:
        assert tar.getnames() == ["samples", "alphabet.txt", "samples/sample00000000.wav",
                                  "samples/sample00000001.wav", "samples/sample00000002.wav", "samples.csv"]
        tar.extractall(tmp_path / "back", filter="data")
    with open(tmp_path / "back" / "samples.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["transcript"] for r in rows] == TRANSCRIPTS
    for row, audio in zip(rows, audios):
        wav = tmp_path / "back" / row["wav_filename"]
        assert int(row["wav_filesize"]) == wav.stat().st_size
        assert np.array_equal(soundfile.read(wav, dtype="int16")[0], audio)
    back = load_samples([str(tmp_path / "back" / "samples.csv")], ALPHABET, FeatureConfig(), 2, progress=False)
    assert [s.transcript for s in back] == TRANSCRIPTS
    with tarfile.open(tmp_path / "from-sdb.tar") as tar:
        decoded = soundfile.read(tar.extractfile("samples/sample00000002.wav"), dtype="int16")[0]
    assert np.array_equal(decoded, sdb.SDBReader(str(tmp_path / "opus.sdb")).pcm(2)[0][:, 0])
    assert tool(source, tmp_path / "unlabeled.sdb", "--unlabeled", "--audio-type", "wav") == 0
    assert not sdb.SDBReader(str(tmp_path / "unlabeled.sdb")).labeled


def test_play_pipes_a_wav_and_names_a_missing_player(source_set, tmp_path, capsysbinary, monkeypatch, caplog):
    source, audios = source_set
    assert tool(source, tmp_path / "set.sdb", "--audio-type", "wav") == 0
    assert play.main([str(tmp_path / "set.sdb"), "--start", "-1", "--pipe"]) == 0
    out = capsysbinary.readouterr()
    with wave.open(io.BytesIO(out.out)) as w:
        assert np.array_equal(np.frombuffer(w.readframes(w.getnframes()), "<i2"), audios[2])
    assert f'Sample "{tmp_path / "set.sdb"}:2"'.encode() in out.err and b'"a bit longer sample here"' in out.err
    assert play.main([str(source), "--start", "1", "--pipe", "--quiet", "--augment", "volume[dbfs=-20]"]) == 0
    out = capsysbinary.readouterr()
    quieter, _ = soundfile.read(io.BytesIO(out.out), dtype="float32")
    assert len(quieter) == len(audios[1]) and abs(float(peak_dbfs(quieter)) + 20) < 0.05 and not out.err
    monkeypatch.setattr(play, "setup_logging", lambda level: None)  # keep caplog's handler
    monkeypatch.setattr(play.shutil, "which", lambda tool: None)
    assert play.main([str(source)]) == 1 and "no audio player found" in caplog.text
    assert play.main([str(tmp_path / "set.sdb"), "--start", "3", "--pipe"]) == 1
    assert "no sample with index 3 (the source holds 3)" in caplog.text


def test_compare_samples_checks_files_and_sets(source_set, tmp_path, capsys):
    source, _ = source_set
    assert tool(source, tmp_path / "wav.sdb", "--audio-type", "wav") == 0
    assert tool(source, tmp_path / "opus.sdb") == 0
    s0, s1 = str(tmp_path / "s0.wav"), str(tmp_path / "s1.wav")
    assert compare_samples.main([s0, s0]) == 0
    assert "Samples are considered equal" in capsys.readouterr().err
    assert compare_samples.main([s0, s1]) == 1 and "differ on: duration" in capsys.readouterr().err
    assert compare_samples.main([str(source), str(tmp_path / "wav.sdb"), "--no-success-output"]) == 0
    assert capsys.readouterr().err == ""
    assert compare_samples.main([str(source), str(tmp_path / "opus.sdb")]) == 1
    err = capsys.readouterr().err
    assert "set.csv:2 / opus.sdb:0: Samples differ on: sample data" in err and "3 of 3 pairs failed" in err
    assert compare_samples.main([str(source), str(tmp_path / "opus.sdb"), "--if-differ"]) == 0
    (tmp_path / "junk.sdb").write_bytes(b"junk")
    assert compare_samples.main([str(source), str(tmp_path / "junk.sdb")]) == 1
    assert "junk.sdb: not a Sample DataBase" in capsys.readouterr().err


def test_opus_samples_code_stereo_and_reject_bad_headers():
    left, right = speechlike(0.5, 1), speechlike(0.5, 2)
    data = opus.encode_sample(np.stack([left, right], 1), RATE)
    pcm, rate = opus.decode_sample(data)
    assert rate == 16000 and pcm.shape == (len(left), 2)
    assert aligned_snr(left, pcm[:, 0]) > 10 and aligned_snr(right, pcm[:, 1]) > 10
    with pytest.raises(opus.OpusSampleError, match="cut short"):
        opus.decode_sample(data[:len(data) // 2])
    with pytest.raises(opus.OpusSampleError, match="not 44100"):
        opus.encode_sample(left, 44100)
    with pytest.raises(opus.OpusSampleError, match="16-bit"):
        opus.decode_sample(data[:9] + b"\x03" + data[10:])
