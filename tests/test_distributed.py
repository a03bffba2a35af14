"""MirroredStrategy on 2 logical CPUs, mixed precision, and the non-finite loss guard."""
import subprocess
import sys
import textwrap

from conftest import ROOT

SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, "{root}/training"); sys.path.insert(0, "{root}/tests")
    import numpy as np, tensorflow as tf, keras
    from conftest import tiny_config
    from deepspeech_training.distribute import make_strategy
    from deepspeech_training.model import DeepSpeech2
    from deepspeech_training.train import TrainConfig, make_optimizer, make_train_step
    {body}
""")


def run_script(body):
    code = SCRIPT.format(root=ROOT, body=textwrap.dedent(body))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def batch(n=4, steps=40, features=33, seed=0):
    return f"""
    rng = np.random.default_rng({seed})
    x = tf.constant(rng.normal(size=({n}, {steps}, {features})), tf.float32)
    xl = tf.constant([{steps}, {steps} - 5, {steps} - 9, {steps} - 2][:{n}], tf.int32)
    y = tf.constant(rng.integers(0, 28, size=({n}, 6)), tf.int32)
    yl = tf.constant([6, 5, 4, 6][:{n}], tf.int32)
    idx = tf.range({n}, dtype=tf.int64)
    data = tf.data.Dataset.from_tensors(((x, xl), (y, yl), idx))
    """


def test_mirrored_strategy_matches_one_device():
    out = run_script("""
    mirrored = make_strategy(cpu_devices=2)""" + batch() + """
    assert mirrored.num_replicas_in_sync == 2
    results = []
    for strategy in (tf.distribute.get_strategy(), mirrored):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            model = DeepSpeech2(tiny_config()).build_for()
            # plain SGD: the update is the gradient itself (Adam's first step is ~lr * sign(g))
            opt = make_optimizer(TrainConfig(optimizer="sgd", momentum=0.0, learning_rate=0.01))
            opt.build(model.trainable_variables)
        dist = strategy.experimental_distribute_dataset(data)
        step = make_train_step(model, opt, strategy, 4, dist.element_spec)
        loss = float(step(next(iter(dist)))[0])
        results.append((loss, [v.numpy() for v in model.trainable_variables]))
    (l1, w1), (l2, w2) = results
    print("losses", l1, l2)
    assert abs(l1 - l2) < 1e-4 * abs(l1), (l1, l2)
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, atol=1e-5)
    print("OK")
    """)
    assert "OK" in out


def test_mixed_precision_step():
    out = run_script(batch() + """
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    strategy = tf.distribute.get_strategy()
    model = DeepSpeech2(tiny_config()).build_for()
    opt = make_optimizer(TrainConfig(learning_rate=0.01, precision="mixed_float16"))
    opt.build(model.trainable_variables)
    assert isinstance(opt, keras.optimizers.LossScaleOptimizer)
    dist = strategy.experimental_distribute_dataset(data)
    step = make_train_step(model, opt, strategy, 4, dist.element_spec)
    losses = [float(step(next(iter(dist)))[0]) for _ in range(5)]
    logits, _ = model((tf.zeros([1, 20, 33]), tf.constant([20])))
    assert logits.dtype == tf.float32 and all(v.dtype == "float32" for v in model.trainable_variables)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    print("OK")
    """)
    assert "OK" in out


def test_non_finite_loss_is_left_out_of_the_update():
    out = run_script(batch() + """
    strategy = tf.distribute.get_strategy()
    model = DeepSpeech2(tiny_config()).build_for()
    opt = make_optimizer(TrainConfig(learning_rate=0.01)); opt.build(model.trainable_variables)
    # sample 2 is corrupt audio: its features hold NaN and inf
    x_bad = tf.tensor_scatter_nd_update(x, [[2, 3, 4], [2, 7, 1]], [float("nan"), float("inf")])
    bad = tf.data.Dataset.from_tensors(((x_bad, xl), (y, yl), idx))
    dist = strategy.experimental_distribute_dataset(bad)
    step = make_train_step(model, opt, strategy, 4, dist.element_spec)
    before = [v.numpy().copy() for v in model.trainable_variables]
    loss, per_sample, ids = step(next(iter(dist)))
    assert np.isfinite(float(loss)) and not np.isfinite(per_sample.numpy()[2])
    after = [v.numpy() for v in model.trainable_variables]
    assert all(np.isfinite(v.numpy()).all() for v in model.variables)  # BN statistics too
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    print("OK")
    """)
    assert "OK" in out


def test_replica_order_gives_each_replica_its_slice_of_every_global_batch():
    import numpy as np
    from deepspeech_training.distribute import replica_order
    order = np.random.default_rng(0).permutation(50)
    per_replica, replicas, workers = 3, 4, 2  # global batch 12; 2 replicas per worker
    seen = []
    for worker in range(workers):
        mine, positions = replica_order(order, per_replica, replicas, workers, worker)
        np.testing.assert_array_equal(order[positions], mine)
        # consecutive runs of 3 are this worker's replicas' batches, in turn
        for k, start in enumerate(range(0, len(mine), per_replica)):
            g, local = divmod(k, replicas // workers)
            replica = worker * (replicas // workers) + local
            expected = order[g * 12 + replica * 3:g * 12 + replica * 3 + 3]
            np.testing.assert_array_equal(mine[start:start + per_replica], expected)
        seen.extend(mine)
    assert sorted(seen) == sorted(order)  # every sample once, the last partial batch included
