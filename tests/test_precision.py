"""Mixed precision (float16, bfloat16), XLA compilation, GPU settings and the recurrent-kernel report."""
import logging
import textwrap

import pytest
from conftest import TINY_FLAGS, run_trainer, tiny_config
from test_distributed import batch, run_script

from deepspeech_training import devices
from deepspeech_training.model import DeepSpeech2
from deepspeech_training.train import TrainConfig
from deepspeech_training.util.log import log

STEPS = textwrap.indent("""
def train(precision, jit_compile=False, steps=5, rnn_type="gru", sgd=False):
    keras.mixed_precision.set_dtype_policy(precision)
    keras.utils.set_random_seed(1)
    strategy = tf.distribute.get_strategy()
    model = DeepSpeech2(tiny_config(rnn_type=rnn_type)).build_for()
    cfg = TrainConfig(precision=precision, learning_rate=0.01, optimizer="sgd" if sgd else "adam",
                      momentum=0.0)
    opt = make_optimizer(cfg)
    opt.build(model.trainable_variables)
    dist = strategy.experimental_distribute_dataset(data)
    spec = tf.nest.map_structure(lambda s: tf.TensorSpec([None] * len(s.shape), s.dtype), dist.element_spec)
    step = make_train_step(model, opt, strategy, 4, spec, jit_compile=jit_compile)
    losses = [float(step(next(iter(dist)))[0]) for _ in range(steps)]
    return model, opt, losses, spec
""", "    ")


FLOAT32_WHERE_IT_MATTERS = """
    logits, _ = model((tf.zeros([1, 20, 33]), tf.constant([20])))
    assert logits.dtype == tf.float32, logits.dtype
    assert all(v.dtype == "float32" for v in model.variables), [v.dtype for v in model.variables]
    bn = model.rnns[0].bn
    assert bn.moving_mean.dtype == "float32" and bn.moving_variance.dtype == "float32"
    assert all(np.isfinite(v.numpy()).all() for v in model.variables)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
"""


def test_bfloat16_step():
    out = run_script(batch() + STEPS + """
    model, opt, losses, _ = train("mixed_bfloat16")
    assert not isinstance(opt, keras.optimizers.LossScaleOptimizer)  # bfloat16 needs no loss scaling
    assert model.rnns[0].compute_dtype == "bfloat16" and model.fc.compute_dtype == "bfloat16"
    assert model.logits.compute_dtype == "float32"
    """ + FLOAT32_WHERE_IT_MATTERS + """
    print("OK", losses)
    """)
    assert "OK" in out


def test_float16_step_with_loss_scaling_under_xla():
    out = run_script(batch() + STEPS + """
    model, opt, losses, _ = train("mixed_float16", jit_compile=True)
    assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
    assert model.rnns[0].compute_dtype == "float16"
    """ + FLOAT32_WHERE_IT_MATTERS + """
    print("OK", losses)
    """)
    assert "OK" in out


def test_xla_steps_match_plain_steps_and_fall_back_under_mirrored_strategy():
    """Train and eval steps compiled with XLA (padded time axis) give the plain steps' losses and
    updates; under MirroredStrategy with 2 devices --xla logs why it does not compile and still trains."""
    out = run_script("""
    import logging
    from deepspeech_training.evaluate import make_eval_step
    from deepspeech_training.util.log import log
    mirrored = make_strategy(cpu_devices=2)
    """ + batch(steps=43) + STEPS + """
    results = []
    for jit in (False, True):
        model, _, losses, spec = train("float32", jit_compile=jit, steps=3, sgd=True)
        logits, out_len, loss, _ = make_eval_step(model, tf.distribute.get_strategy(), spec, jit)(
            next(iter(data)))
        results.append((losses, [v.numpy() for v in model.variables], logits.numpy(), loss.numpy()))
    (l1, w1, g1, e1), (l2, w2, g2, e2) = results
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    np.testing.assert_allclose(e1, e2, rtol=1e-5)
    assert g2.shape[1] == 32 > g1.shape[1] == 22  # 43 frames padded to 64, stride 2
    for i, n in enumerate(out_len.numpy()):
        np.testing.assert_allclose(g1[i, :n], g2[i, :n], atol=1e-4)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, atol=1e-5)

    records = []
    handler = logging.Handler(); handler.emit = records.append; log.addHandler(handler)
    with mirrored.scope():
        model = DeepSpeech2(tiny_config()).build_for()
        opt = make_optimizer(TrainConfig(learning_rate=0.01)); opt.build(model.trainable_variables)
    dist = mirrored.experimental_distribute_dataset(data)
    step = make_train_step(model, opt, mirrored, 4, dist.element_spec, jit_compile=True)
    assert np.isfinite(float(step(next(iter(dist)))[0]))
    assert any("not compiled under MirroredStrategy over 2 devices" in r.getMessage() for r in records)
    print("OK")
    """)
    assert "OK" in out


def test_flags_to_config():
    from absl import flags
    from deepspeech_training.flags import FLAGS, define_flags, train_config
    if "xla" not in FLAGS:
        define_flags()
    try:
        FLAGS(["DeepSpeech.py"])
        cfg = train_config()
        assert (cfg.precision, cfg.jit_compile, FLAGS.use_allow_growth) == ("float32", False, True)
        FLAGS.unparse_flags()
        FLAGS(["DeepSpeech.py", "--automatic_mixed_precision", "--xla", "--nouse_allow_growth"])
        cfg = train_config()
        assert (cfg.precision, cfg.jit_compile, FLAGS.use_allow_growth) == ("mixed_float16", True, False)
        FLAGS.unparse_flags()
        FLAGS(["DeepSpeech.py", "--automatic_mixed_precision", "--mixed_precision_dtype", "bfloat16"])
        assert train_config().precision == "mixed_bfloat16"
        FLAGS.unparse_flags()
        with pytest.raises(flags.IllegalFlagValueError):
            FLAGS(["DeepSpeech.py", "--mixed_precision_dtype", "float8"])
    finally:
        FLAGS.unparse_flags()
    with pytest.raises(ValueError, match="unknown precision"):
        TrainConfig(precision="float16")


@pytest.fixture
def records():
    """What the project's logger emits during the test (it does not propagate to the root logger)."""
    caught = []
    handler = logging.Handler()
    handler.emit = caught.append
    log.addHandler(handler)
    old = log.level
    log.setLevel(logging.INFO)
    yield caught
    log.removeHandler(handler)
    log.setLevel(old)


def test_recurrent_kernel_log_lines(records):
    models = {t: DeepSpeech2(tiny_config(rnn_type=t, rnn_layers=2)).build_for() for t in ("gru", "lstm", "rnn")}
    gru = devices.choose_recurrent_kernels(models["gru"], "auto")
    assert len(gru) == 2 and gru[0].startswith(  # rnn_2 reads 32 inputs: a configuration of its own
        "Recurrent layers rnn_1 (bidirectional GRU, 16 units, 8 inputs): generic kernel (BN(W x) in one "
        "product, one TensorFlow while loop per direction): on a CPU the generic loop trained faster")
    assert [r.kernel for r in models["gru"].rnns] == ["generic"] * 2
    fused = devices.choose_recurrent_kernels(models["gru"], "fused")
    assert "fused kernel (BatchNorm folded into W, Keras' GRU loop): forced" in fused[0]
    assert [r.kernel for r in models["gru"].rnns] == ["fused"] * 2
    lstm = devices.choose_recurrent_kernels(models["lstm"], "auto", on_gpu=True, xla=True)[0]
    assert "generic kernel" in lstm and "cannot be compiled with XLA" in lstm
    lstm = devices.choose_recurrent_kernels(models["lstm"], "auto", on_gpu=True)[0]
    assert "fused kernel (BatchNorm folded into W, cuDNN CudnnRNNV3)" in lstm
    assert "generic" in devices.choose_recurrent_kernels(models["lstm"], "generic", on_gpu=True)[0]
    records.clear()
    devices.choose_recurrent_kernels(models["rnn"], "fused", on_gpu=True)
    assert [r.kernel for r in models["rnn"].rnns] == ["generic"] * 2
    record = records[0]
    assert record.levelno == logging.INFO
    assert "(bidirectional clipped-ReLU rnn, 16 units, 8 inputs)" in record.getMessage()
    assert "no fused kernel exists for a clipped-ReLU recurrence" in record.getMessage()
    assert "--rnn_kernel fused ignored" in record.getMessage()


def test_configure_gpus_without_gpu(records, monkeypatch):
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    assert devices.configure_gpus(True) == []
    assert devices.configure_gpus(False, "mixed_float16") == []
    messages = [r.getMessage() for r in records]
    assert messages.count("No GPU found: running on the CPU") == 2
    assert any(r.levelno == logging.WARNING and "mixed_float16 on a CPU" in r.getMessage() for r in records)


def test_configure_gpus_with_fake_gpus(records, monkeypatch):
    """The GPU path without a GPU: TensorFlow's device queries replaced by a V100 and a P100."""
    import tensorflow as tf
    gpus = [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU"),
            tf.config.PhysicalDevice("/physical_device:GPU:1", "GPU")]
    details = {gpus[0]: {"device_name": "Tesla V100-SXM2-16GB", "compute_capability": (7, 0)},
               gpus[1]: {"device_name": "Tesla P100-PCIE-16GB", "compute_capability": (6, 0)}}
    growth = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", details.__getitem__)
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda gpu, on: growth.append((gpu, on)))
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH", raising=False)
    found = devices.configure_gpus(True, "mixed_float16")
    assert found == ["GPU:0 Tesla V100-SXM2-16GB (compute capability 7.0)",
                     "GPU:1 Tesla P100-PCIE-16GB (compute capability 6.0)"]
    assert growth == [(gpus[0], True), (gpus[1], True)]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("GPU:1 Tesla P100")
    assert "float16 Tensor Cores (Volta and newer)" in warnings[0]
    records.clear()
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "false")  # TensorFlow's own switch wins
    devices.configure_gpus(True, "mixed_bfloat16")
    assert len(growth) == 2
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("bfloat16 Tensor Cores (Ampere and newer)" in w for w in warnings)
    assert any("memory growth TF_FORCE_GPU_ALLOW_GROWTH=false" in r.getMessage() for r in records)


def test_trainer_with_bfloat16_and_xla(tiny_corpus, tmp_path):
    # one training and one dev batch per epoch: two XLA compilations, about 25 s of CPU
    proc = run_trainer("--train_files", tiny_corpus / "train.csv", "--dev_files", tiny_corpus / "dev.csv",
                       "--limit_train", 16, "--train_batch_size", 16, "--dev_batch_size", 8, "--epochs", 2,
                       "--checkpoint_dir", tmp_path / "ck",
                       "--automatic_mixed_precision", "--mixed_precision_dtype", "bfloat16", "--xla",
                       *TINY_FLAGS)
    err = proc.stderr
    assert "Training finished: done" in err
    assert "Recurrent layers rnn_1 (bidirectional GRU, 64 units, 64 inputs): generic kernel" in err
    assert "--xla: the loop is compiled with the step" in err
    assert "--xla: the training step (forward, CTC loss, backward and update) is compiled" in err
    assert "--xla: the evaluation step (forward and CTC loss) is compiled" in err
    assert "No GPU found" in err
    losses = [float(line.split("train loss ")[1].split(",")[0]) for line in err.splitlines()
              if "train loss" in line]
    assert len(losses) == 2 and all(0 < v < 1000 for v in losses) and losses[1] < losses[0], losses
    assert "Epoch 2: dev " in err and "dev.csv loss" in err
