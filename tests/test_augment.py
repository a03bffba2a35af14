"""--augment: Mozilla 0.9's spec syntax, each augmentation's documented effect, seeds and clock, the
feature cache, and a trainer run with augmentations."""
import csv

import numpy as np
import pytest
import soundfile
import tensorflow as tf
from conftest import TINY_FLAGS, run_trainer

from deepspeech_training.augment import AugmentError, Augmenter, ValueRange, parse_augmentations
from deepspeech_training.augment_ops import mix_at_snr, peak_dbfs
from deepspeech_training.data import Sample, make_dataset
from deepspeech_training.features import FeatureCache, FeatureConfig, spectrogram
from deepspeech_training.util import opus

FEATURES = FeatureConfig()
RATE = FEATURES.sample_rate


def parse(spec):
    return parse_augmentations([spec])[0]


def sine(hz=440.0, seconds=1.0, amplitude=0.5):
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def augment_audio(spec, audio, label=(1,), index=0, epoch=0, epochs=1, seed=1, clock=None):
    """(waveform, spectrogram) of one sample through an Augmenter of the single ``spec``."""
    augmenter = Augmenter([parse(spec)], FEATURES, time_stride=1, seed=seed)
    augmenter = augmenter.with_clock(clock) if clock is not None else augmenter.for_epoch(epoch, epochs, 10)
    wave, spec_ = augmenter.augment_sample(tf.constant(audio), tf.constant(label, tf.int32),
                                           tf.constant(index, tf.int64), tf.constant(0, tf.int64))
    return wave.numpy(), spec_.numpy()


def augment_spec(spec, log_spec, label=(1,), seed=1):
    """A spectrogram-domain augmentation applied to ``log_spec`` [T, F] directly."""
    aug = parse(spec)
    augmenter = Augmenter([aug], FEATURES, time_stride=1, seed=seed).with_clock(0.5)
    ctx = augmenter._context(tf.constant(label, tf.int32), tf.constant(0, tf.int64), tf.constant(0, tf.int64))(0)
    return aug.apply(tf.constant(log_spec, tf.float32), ctx).numpy()


def random_spec(frames=100, seed=0):
    return np.random.default_rng(seed).normal(-5, 2, (frames, FEATURES.n_features)).astype(np.float32)


# --- the spec syntax ---------------------------------------------------------------------------------

def test_value_ranges_parse_as_mozilla():
    assert ValueRange.parse("3") == ValueRange(3.0, 3.0, 0.0)
    assert ValueRange.parse("1.5~0.5") == ValueRange(1.5, 1.5, 0.5)
    assert ValueRange.parse("-10:-40") == ValueRange(-10.0, -40.0, 0.0)
    assert ValueRange.parse("2:4~1", integer=True) == ValueRange(2, 4, 1, True)
    assert str(ValueRange.parse("-10:-40~2")) == "-10:-40~2"


def test_values_follow_the_clock_and_radius():
    seed = tf.constant([1, 2], tf.int64)
    moving = ValueRange.parse("-10:-40")
    assert [float(moving.pick(c, seed)) for c in (0.0, 0.5, 1.0)] == [-10.0, -25.0, -40.0]
    radius = ValueRange.parse("0:10~1")
    draws = [float(radius.pick(0.5, tf.constant([i, 0], tf.int64))) for i in range(50)]
    assert 4.0 <= min(draws) < 4.5 and 5.5 < max(draws) <= 6.0
    ints = ValueRange.parse("0:4~1", integer=True).pick(0.5, seed, shape=[200])  # 2 +- 1, rounded
    assert ints.dtype == tf.int32 and set(ints.numpy()) == {1, 2, 3}
    assert int(ValueRange.parse("2:3", integer=True).pick(0.5, seed)) == 2  # half to even, as round()


def test_specs_have_mozillas_defaults_and_parameters():
    assert parse("volume").spec() == "volume[p=1.0,dbfs=3.0103]"
    assert parse("reverb[p=0.1, delay=20~5 ,decay=10:2]").spec() == "reverb[p=0.1,delay=20~5,decay=10:2]"
    assert parse("pitch").pitch == ValueRange(1.075, 1.075, 0.125)
    assert parse("tempo").spec() == "tempo[p=1.0,factor=1.1,max_time=-1.0]"
    assert parse("warp").spec() == "warp[p=1.0,nt=1,nf=1,wt=0.1,wf=0]"
    assert parse("frequency_mask").spec() == "frequency_mask[p=1.0,n=3,size=2]"
    assert parse("time_mask").spec() == "time_mask[p=1.0,domain=spectrogram,n=3,size=10]"
    assert parse("dropout[domain=signal]").spec() == "dropout[p=1.0,domain=signal,rate=0.05]"
    assert parse("add").domain == "features" and parse("multiply").stddev == ValueRange(5.0, 5.0)
    assert parse("resample").rate == ValueRange(8000, 8000, 0, True) and parse("codec").bitrate.start == 3200


@pytest.mark.parametrize("spec, message", [
    ("volum", "unknown augmentation 'volum'"),
    ("volume[dbfs=-10", "expected NAME[KEY=VALUE,...]"),
    ("volume[level=3]", "unknown parameter 'level'"),
    ("volume[dbfs=loud]", "'loud' is not a number range"),
    ("frequency_mask[n=2.5]", "'2.5' is not an integer range"),
    ("volume[p=1.5]", "p=1.5 is not a probability"),
    ("volume[dbfs]", "'dbfs' is not KEY=VALUE"),
    ("volume[dbfs=1,dbfs=2]", "dbfs is given twice"),
    ("time_mask[domain=sample]", "domain=sample is not one of"),
    ("overlay[snr=3]", "source=CSV (the audio to overlay) is required"),
    ("overlay[source=/nonexistent.csv]", "file not found"),
    ("tempo[factor=1:2:3]", "at most one ':'"),
])
def test_bad_specs_are_named_in_one_line(spec, message):
    with pytest.raises(AugmentError) as err:
        parse(spec)
    assert str(err.value).startswith(f"--augment {spec!r}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


# --- waveform augmentations ------------------------------------------------------------------------

def test_an_unusable_overlay_source_is_named(tmp_path):
    (tmp_path / "empty.csv").write_text("wav_filename\nmissing.wav\n")
    with pytest.raises(AugmentError, match=r"^--augment overlay\[.*empty.csv.*\]: source=.* holds no usable audio"):
        Augmenter(parse_augmentations([f"overlay[source={tmp_path / 'empty.csv'}]"]), FEATURES)


def test_volume_reaches_the_target_dbfs():
    for target in (-30.0, -6.0, 3.0103):
        wave, _ = augment_audio(f"volume[dbfs={target}]", sine(amplitude=0.1))
        assert abs(float(peak_dbfs(wave)) - target) < 0.01


def write_noise_csv(tmp_path, seconds=(0.3, 0.5)):
    rng = np.random.default_rng(0)
    with open(tmp_path / "noise.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["wav_filename", "wav_filesize"])  # unlabeled, as Mozilla's noise sets
        for i, s in enumerate(seconds):
            soundfile.write(tmp_path / f"noise{i}.wav", 0.3 * rng.standard_normal(int(s * RATE)), RATE,
                            subtype="PCM_16")
            writer.writerow([f"noise{i}.wav", 0])
    return tmp_path / "noise.csv"


def test_overlay_mixes_at_the_requested_peak_snr(tmp_path):
    source = write_noise_csv(tmp_path)
    speech = sine(300, seconds=2.0)
    for snr in (0.0, 10.0, 20.0):
        wave, _ = augment_audio(f"overlay[source={source},snr={snr}]", speech)
        level = float(np.dot(wave, speech) / np.dot(speech, speech))  # the speech's share of the mix
        noise = wave - level * speech  # stitched from several clips to the sample's whole length
        assert np.all(np.abs(noise[::800]) > 0) or snr > 0
        measured = float(peak_dbfs(level * speech) - peak_dbfs(noise))
        assert abs(measured - snr) < 0.7, (snr, measured)
        assert abs(float(peak_dbfs(wave) - peak_dbfs(speech))) < 0.01  # back at the sample's peak
    mixed = mix_at_snr(tf.constant(speech), tf.constant(np.roll(speech, 37) * 0.01), 6.0)
    assert abs(float(peak_dbfs(mixed)) - float(peak_dbfs(speech))) < 1e-3


def test_reverb_echoes_an_impulse_every_delay_decay_db_quieter():
    click = np.zeros(RATE // 2, np.float32)
    click[0] = 0.5
    wave, _ = augment_audio("reverb[delay=20,decay=10]", click)
    assert abs(wave[0] - 0.5) < 1e-4  # dry peak kept
    first = 0.5 / 6 * 10 ** (-10 / 20)  # one of 5 comb lines over dry + 5 lines, 10 dB down
    assert abs(wave[320] - first) < 1e-4 and abs(wave[640] - first * 10 ** (-10 / 20)) < 1e-4
    assert abs(wave[357] - first) < 1e-4  # the 19/17 line: floor(20 ms x 19/17 x 16 kHz)
    assert abs(wave[100]) < 1e-4


def test_resample_keeps_what_the_lower_rate_can_carry():
    low, high = sine(1000), sine(6000)
    assert np.allclose(augment_audio("resample[rate=8000]", low)[0][200:-200], low[200:-200], atol=1e-3)
    assert np.abs(augment_audio("resample[rate=8000]", high)[0][200:-200]).max() < 0.01


def test_codec_is_a_lossy_opus_round_trip():
    audio = sine(440) + sine(1300, amplitude=0.2)
    wave, _ = augment_audio("codec[bitrate=16000]", audio)
    assert wave.shape == audio.shape and not np.allclose(wave, audio, atol=1e-3)
    assert np.corrcoef(wave[1000:], audio[1000:])[0, 1] > 0.9  # aligned: the look-ahead is undone
    fallback = opus._sndfile_round_trip(audio, 16000, RATE)  # without libopus: libsndfile's Ogg/Opus
    assert fallback.shape == audio.shape and np.corrcoef(fallback[1000:], audio[1000:])[0, 1] > 0.9


def test_speed_changes_the_length_but_not_below_the_transcript():
    audio = sine(seconds=1.0)
    faster, _ = augment_audio("speed[factor=1.25]", audio)
    assert len(faster) == round(RATE / 1.25)
    slower, _ = augment_audio("speed[factor=0.8]", audio)
    assert len(slower) == round(RATE / 0.8)
    long_label = list(range(1, 30)) * 3  # 87 labels: 87 frames = 0.88 s at 10 ms
    _, spec = augment_audio("speed[factor=4]", audio, label=long_label)
    assert spec.shape[0] >= 87


# --- spectrogram augmentations ---------------------------------------------------------------------

def test_tempo_scales_frames_by_the_factor_but_never_below_ctc():
    log_spec = random_spec(100)
    assert augment_spec("tempo[factor=2]", log_spec).shape == (50, FEATURES.n_features)
    assert augment_spec("tempo[factor=0.5]", log_spec).shape[0] == 200
    assert augment_spec("tempo[factor=0.5,max_time=1500]", log_spec).shape[0] == 150
    assert augment_spec("tempo[factor=4]", log_spec, label=list(range(1, 61))).shape[0] == 60


def test_pitch_moves_energy_up_the_frequency_axis():
    log_spec = np.full((20, FEATURES.n_features), -10.0, np.float32)
    log_spec[:, 20] = 5.0
    raised = augment_spec("pitch[pitch=2]", log_spec)
    assert raised.shape == log_spec.shape and abs(int(np.argmax(raised[5])) - 40) <= 1
    lowered = augment_spec("pitch[pitch=0.5]", log_spec)
    assert abs(int(np.argmax(lowered[5])) - 10) <= 1 and np.all(lowered[:, -70:] == -10.0)


def test_warp_bends_the_spectrogram_and_zero_warp_is_identity():
    log_spec = random_spec(80)
    warped = augment_spec("warp[wt=0.3,wf=0.3]", log_spec)
    assert warped.shape == log_spec.shape and not np.allclose(warped, log_spec)
    assert np.allclose(augment_spec("warp[wt=0,wf=0]", log_spec), log_spec, atol=1e-5)


def test_frequency_mask_gives_size_bins_their_mean():
    log_spec = random_spec(50)
    masked = augment_spec("frequency_mask[n=1,size=7]", log_spec)
    changed = np.where(np.any(masked != log_spec, axis=0))[0]
    assert len(changed) == 7 and np.all(np.diff(changed) == 1)
    assert np.allclose(masked[:, changed], log_spec[:, changed].mean(0), atol=1e-5)
    several = augment_spec("frequency_mask[n=3,size=5]", log_spec)
    assert 5 <= np.any(several != log_spec, axis=0).sum() <= 15


def test_time_mask_covers_size_ms_of_frames_or_samples():
    log_spec = random_spec(100)
    masked = augment_spec("time_mask[n=1,size=50]", log_spec)  # 50 ms = 5 frames of 10 ms
    rows = np.where(np.any(masked != log_spec, axis=1))[0]
    assert len(rows) == 5 and np.allclose(masked[rows], log_spec.mean(0), atol=1e-5)
    audio = sine()
    wave, _ = augment_audio("time_mask[domain=signal,n=2,size=10]", audio)
    silenced = (wave == 0) & (audio != 0)
    assert 300 <= silenced.sum() <= 320  # 2 x 160 samples (fewer if they overlap)


def test_dropout_add_and_multiply_statistics():
    log_spec = random_spec(200)
    dropped = augment_spec("dropout[rate=0.3]", log_spec)
    assert abs(np.mean(dropped != log_spec) - 0.3) < 0.02
    wave, _ = augment_audio("dropout[domain=signal,rate=0.1]", sine())
    assert abs(np.mean((wave == 0) & (sine() != 0)) - 0.1) < 0.02
    added = augment_spec("add[stddev=0.5]", log_spec)
    assert abs(np.std(added - log_spec) - 0.5) < 0.02 and abs(np.mean(added - log_spec)) < 0.02
    multiplied = augment_spec("multiply[stddev=0.2]", log_spec)
    assert abs(np.std(multiplied / log_spec) - 0.2) < 0.01


# --- probability, seeds, clock -------------------------------------------------------------------

def test_p_zero_is_identity_and_p_is_a_per_sample_draw():
    audio = sine(amplitude=0.1)
    wave, spec = augment_audio("volume[p=0,dbfs=-30]", audio)
    assert np.array_equal(wave, audio)
    assert np.allclose(spec, spectrogram(tf.constant(audio), FEATURES).numpy())
    hit = [abs(float(peak_dbfs(augment_audio("volume[p=0.3,dbfs=-30]", audio, index=i)[0])) + 30) < 0.01
           for i in range(60)]
    assert 10 <= sum(hit) <= 28


def test_same_seed_same_result_other_epoch_index_or_seed_differ():
    audio, spec = sine(), "time_mask[domain=signal,n=3,size=20]"
    base = augment_audio(spec, audio, epoch=1, epochs=3)[0]
    assert np.array_equal(base, augment_audio(spec, audio, epoch=1, epochs=3)[0])
    for other in (dict(epoch=2), dict(index=1), dict(seed=2)):
        kwargs = {"epoch": 1, "epochs": 3, "index": 0, "seed": 1, **other}
        assert not np.array_equal(base, augment_audio(spec, audio, **kwargs)[0]), other


def test_the_clock_moves_values_from_start_to_end_of_training():
    audio = sine(amplitude=0.1)
    augmenter = Augmenter([parse("volume[dbfs=-40:-10]")], FEATURES, seed=1)

    def level(epoch, position):
        wave, _ = augmenter.for_epoch(epoch, 2, 100).augment_sample(
            tf.constant(audio), tf.constant([1]), tf.constant(0, tf.int64), tf.constant(position, tf.int64))
        return float(peak_dbfs(wave))

    assert abs(level(0, 0) + 40) < 0.01 and abs(level(0, 50) + 32.5) < 0.01
    assert abs(level(1, 0) + 25) < 0.01 and abs(level(1, 99) + 10.15) < 0.01


# --- the pipeline: training batches, the feature cache ---------------------------------------------

@pytest.fixture
def two_clips(tmp_path):
    samples = []
    for i, seconds in enumerate((1.0, 0.6)):
        path = tmp_path / f"clip{i}.wav"
        soundfile.write(path, sine(300 + 200 * i, seconds), RATE, subtype="PCM_16")
        samples.append(Sample(str(path), "ab", (1, 2), seconds, True, f"x.csv:{i + 2}"))
    return samples


def first_batch(dataset):
    (x, lengths), _, _ = next(iter(dataset))
    return x.numpy(), lengths.numpy()


def test_make_dataset_augments_only_when_asked(two_clips):
    plain = first_batch(make_dataset(two_clips, np.arange(2), FEATURES, 2))
    augmenter = Augmenter(parse_augmentations(["volume[dbfs=-20]", "frequency_mask"]), FEATURES, 1, 7)
    epoch0 = first_batch(make_dataset(two_clips, np.arange(2), FEATURES, 2, augment=augmenter.for_epoch(0, 2, 2)))
    epoch1 = first_batch(make_dataset(two_clips, np.arange(2), FEATURES, 2, augment=augmenter.for_epoch(1, 2, 2)))
    again = first_batch(make_dataset(two_clips, np.arange(2), FEATURES, 2, augment=augmenter.for_epoch(0, 2, 2)))
    assert np.array_equal(plain[1], epoch0[1]) and not np.allclose(plain[0], epoch0[0])
    assert np.array_equal(epoch0[0], again[0]) and not np.array_equal(epoch0[0], epoch1[0])


def test_feature_cache_serves_unaugmented_features(two_clips, tmp_path):
    cache = FeatureCache(str(tmp_path / "cache"), FEATURES)
    plain = first_batch(make_dataset(two_clips, np.arange(2), FEATURES, 2))
    cached = first_batch(make_dataset(two_clips, np.arange(2), FEATURES, 2, cache=cache))
    assert np.array_equal(plain[0], cached[0]) and len(list((tmp_path / "cache").rglob("*.tensor"))) == 2
    # a planted entry is what comes back: the second epoch reads the cache, not the audio
    entry = cache.file_for(two_clips[1].path)
    fake = np.ones((7, FEATURES.n_features), np.float32)
    with open(entry, "wb") as f:
        f.write(tf.io.serialize_tensor(fake).numpy())
    x, lengths = first_batch(make_dataset(two_clips, np.arange(2), FEATURES, 2, cache=cache))
    assert lengths[1] == 7 and np.all(x[1, :7] == 1)
    # spectrogram-domain augmentations run after the cache; waveform ones that fire bypass it
    augmenter = Augmenter(parse_augmentations(["volume[dbfs=-20]"]), FEATURES, 1, 7).for_epoch(0, 1, 2)
    x, lengths = first_batch(make_dataset(two_clips, np.arange(2), FEATURES, 2, augment=augmenter, cache=cache))
    assert lengths[1] == 59  # 0.6 s: computed from the audio, not the planted entry
    FeatureCache(str(tmp_path / "cache"), FEATURES, generation=1)  # --cache_for_epochs: a fresh one
    assert not (tmp_path / "cache" / "generation-0").exists()


# --- the trainer --------------------------------------------------------------------------------------

def test_trainer_rejects_a_bad_augment_in_one_line(tmp_path):
    proc = run_trainer("--train_files", tmp_path / "x.csv", "--augment", "volume[dbfs=loud]",
                       "--checkpoint_dir", tmp_path, check=False)
    assert proc.returncode == 1 and "--augment 'volume[dbfs=loud]': 'loud' is not a number range" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_trainer_trains_with_augmentations(tiny_corpus, tmp_path):
    ck = tmp_path / "ck"
    proc = run_trainer("--train_files", tiny_corpus / "train.csv", "--dev_files", tiny_corpus / "dev.csv",
                       "--train_batch_size", 8, "--epochs", 2, "--checkpoint_dir", ck, *TINY_FLAGS,
                       "--feature_cache", tmp_path / "cache",
                       "--augment", f"overlay[p=0.5,source={tiny_corpus / 'train.csv'},snr=15~15]",
                       "--augment", "reverb[p=0.2]", "--augment", "volume[p=0.5,dbfs=-20~10]",
                       "--augment", "speed[p=0.3]", "--augment", "tempo[p=0.3,factor=1~0.1]",
                       "--augment", "frequency_mask[size=10]", "--augment", "time_mask",
                       "--augment", "warp[p=0.3]")
    assert "Augmenting training samples: overlay[p=0.5," in proc.stderr
    assert "Epoch 2: train loss" in proc.stderr and "dev.csv loss" in proc.stderr.split("Epoch 2: dev")[1]
    assert (ck / "train-12.index").exists() and list((tmp_path / "cache").rglob("*.tensor"))
    losses = [float(line.split("train loss ")[1].split(",")[0]) for line in proc.stderr.splitlines()
              if "train loss" in line]
    assert all(np.isfinite(losses))


# --- bin/data_set_tool.py ------------------------------------------------------------------------------

def test_data_set_tool_writes_augmented_wavs_and_spectrogram_pngs(two_clips, tmp_path, caplog, monkeypatch):
    import sys
    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "bin"))
    import data_set_tool
    monkeypatch.setattr(data_set_tool, "setup_logging", lambda level: None)  # keep caplog's handler

    source = tmp_path / "source.csv"
    with open(source, "w", newline="") as f:
        csv.writer(f).writerows([["wav_filename", "wav_filesize", "transcript"],
                                 *[[s.path, 0, s.transcript] for s in two_clips]])
    target = tmp_path / "out" / "aug.csv"
    assert data_set_tool.main([str(source), str(target), "--plots", "--augment", "volume[dbfs=-12]",
                               "--augment", "frequency_mask[n=2,size=20]"]) == 0
    rows = list(csv.DictReader(open(target)))
    assert [r["wav_filename"] for r in rows] == ["aug/000000.wav", "aug/000001.wav"]
    for row, clip in zip(rows, two_clips):
        audio, rate = soundfile.read(target.parent / row["wav_filename"], dtype="float32")
        assert rate == RATE and len(audio) == round(clip.duration * RATE)
        assert abs(float(peak_dbfs(audio)) + 12) < 0.01 and row["transcript"] == "ab"
        assert (target.parent / row["wav_filename"].replace(".wav", ".png")).stat().st_size > 10000
    assert data_set_tool.main([str(source), str(tmp_path / "x.csv"), "--augment", "volume[dbfs=x]"]) == 1
    assert "--augment 'volume[dbfs=x]': 'x' is not a number range" in caplog.text
