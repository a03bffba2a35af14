"""Recurrent kernels of RecurrentLayer (model.py): the generic loop and the fused kernels.

Both compute the paper's recurrence h_t = cell(BN(W x_t), h_{t-1}) with sequence-wise BatchNorm on the
input projection, from the same variables:

* ``generic``: BN(W x) for all frames in one matrix product, then one ``tf.while_loop`` per direction
  doing only h U per step (two independent loops, which TensorFlow runs side by side). Any cell.
* ``fused``: BatchNorm folded into the input weights, W' = W diag(g / s), b' = beta - mu g / s (mu, s^2:
  the batch moments of W x over valid frames in training, which also update the moving averages as
  BatchNorm does; the moving averages in inference), so that x W' + b' = BN(x W) and the recurrence
  can run in a kernel that takes the raw input and its own input weights: cuDNN
  (``tf.raw_ops.CudnnRNNV3`` with per-sample sequence lengths) on a GPU, Keras' own recurrent loop
  (``keras.src.backend.tensorflow.rnn.rnn``, x_t W' inside the step as Keras' GRU/LSTM do) elsewhere.
  GRU (cuDNN's reset-after form, which ours is) and LSTM only.

The cuDNN helpers (``pack_cudnn``, ``cudnn_sequence``, ``cudnn_equations``) take any canonical weights in
cuDNN's gate order: Mozilla's LSTM (mozilla/model.py, no BatchNorm) packs its own through them.
"""
from __future__ import annotations

import tensorflow as tf

KERNELS = ("auto", "fused", "generic")
FUSED_TYPES = ("gru", "lstm")  # cuDNN has no clipped-ReLU recurrence (its RNN_RELU does not clip)


def cell_update(rnn_type: str, x_t, h, c, hh, relu_clip: float):
    """One step of the cell from the projected input x_t and hh = h U + recurrent bias -> (h, c)."""
    if rnn_type == "gru":  # reset gate after the product (cuDNN's formulation)
        xz, xr, xn = tf.split(x_t, 3, axis=-1)
        hz, hr, hn = tf.split(hh, 3, axis=-1)
        z = tf.sigmoid(xz + hz)
        r = tf.sigmoid(xr + hr)
        return z * h + (1.0 - z) * tf.tanh(xn + r * hn), c
    if rnn_type == "lstm":  # gate order i, f, g, o (cuDNN's)
        i, f, g, o = tf.split(x_t + hh, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c
    return tf.minimum(tf.maximum(x_t + hh, 0.0), relu_clip), c


def split_directions(seq, lengths, bidirectional: bool):
    """[B, T, n, F] -> n tensors [B, T, F]; the backward one reversed within each sequence's length."""
    parts = tf.unstack(seq, axis=2)  # unstack (not slicing): its gradient is one stack, no zeros + scatter
    if bidirectional:
        parts[1] = tf.reverse_sequence(parts[1], lengths, seq_axis=1, batch_axis=0)
    return parts


def merge_directions(outputs, lengths, mask):
    """Per-direction outputs [B, T, u] (backward one reversed) -> [B, T, n * u], zero on padding."""
    if len(outputs) == 2:
        outputs = [outputs[0], tf.reverse_sequence(outputs[1], lengths, seq_axis=1, batch_axis=0)]
    hs = tf.concat(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
    return hs * tf.cast(mask[:, :, None], hs.dtype)


def generic_loop(layer, xp, d: int):
    """The recurrence over a projected direction xp [B, T, g*u] with U_d, b_d -> outputs [B, T, u]."""
    dtype = xp.dtype
    kernel = tf.cast(layer.recurrent_kernel[d], dtype)
    bias = tf.cast(layer.recurrent_bias[d], dtype)
    xs = tf.transpose(xp, [1, 0, 2])
    steps, batch = tf.shape(xs)[0], tf.shape(xs)[1]
    inputs = tf.TensorArray(dtype, size=steps).unstack(xs)
    zeros = tf.zeros([batch, layer.units], dtype)

    def body(t, h, c, out):
        h, c = cell_update(layer.rnn_type, inputs.read(t), h, c, tf.matmul(h, kernel) + bias, layer.relu_clip)
        return t + 1, h, c, out.write(t, h)

    _, _, _, out = tf.while_loop(lambda t, *_: t < steps, body,  # a bound: XLA needs one
                                 (0, zeros, zeros, tf.TensorArray(dtype, size=steps)), maximum_iterations=steps)
    return tf.transpose(out.stack(), [1, 0, 2])


def run_generic(layer, x, lengths, mask, training):
    xp = layer.project(x, mask, training)  # [B, T, n, g*u]
    outputs = [generic_loop(layer, part, d)
               for d, part in enumerate(split_directions(xp, lengths, layer.bidirectional))]
    return merge_directions(outputs, lengths, mask)


# ----------------------------------------------------------------------------------- the fused kernel


def masked_mean_covariance(x32, mask):
    """Mean [D] and covariance [D, D] of x [B, T, D] over valid frames, summed across replicas."""
    m = tf.cast(mask, tf.float32)[:, :, None]
    replica = tf.distribute.get_replica_context()
    synced = replica is not None and replica.num_replicas_in_sync > 1

    def total(values):
        return replica.all_reduce(tf.distribute.ReduceOp.SUM, values) if synced else values

    sum_x, count = total([tf.reduce_sum(x32 * m, axis=[0, 1]), tf.reduce_sum(m)])
    count = tf.maximum(count, 1.0)
    mean = sum_x / count
    centered = tf.reshape((x32 - mean) * m, [-1, x32.shape[-1]])  # centered: no cancellation
    cov = total(tf.matmul(centered, centered, transpose_a=True)) / count
    return mean, cov


def folded_input(layer, x, mask, training):
    """(W' [D, n*g*u], b' [n*g*u]) in float32 with x W' + b' = BN(x W) over the valid frames of x.

    In training (unless the layer is frozen) the statistics are the batch's: mean(x W) = mean(x) W and
    var(x W)_j = w_j' Cov(x) w_j, exact and differentiable like BatchNorm's own; they update the moving
    averages exactly as MaskedBatchNorm does.
    """
    bn = layer.bn
    kernel = tf.cast(layer.input_kernel, tf.float32)
    if training and bn.trainable:
        mean_x, cov_x = masked_mean_covariance(tf.cast(x, tf.float32), mask)
        mean = tf.linalg.matvec(kernel, mean_x, transpose_a=True)
        var = tf.maximum(tf.reduce_sum(tf.matmul(cov_x, kernel) * kernel, axis=0), 0.0)
        bn.update_moving_statistics(mean, var)
    else:
        mean, var = bn.moving_mean, bn.moving_variance
    scale = tf.cast(bn.gamma, tf.float32) * tf.math.rsqrt(var + bn.epsilon)
    return kernel * scale, tf.cast(bn.beta, tf.float32) - mean * scale


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU (where the fused kernels run cuDNN)."""
    return bool(tf.config.list_logical_devices("GPU"))


def run_fused(layer, x, lengths, mask, training):
    kernel, bias = folded_input(layer, x, mask, training)
    n = layer.directions
    kernels, biases = tf.split(kernel, n, axis=1), tf.split(bias, n)
    inputs = [x, tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)][:n]
    run = cudnn_direction if gpu_visible() else keras_direction
    outputs = [run(layer, inputs[d], lengths, kernels[d], biases[d], d) for d in range(n)]
    return merge_directions(outputs, lengths, mask)


def keras_direction(layer, x, lengths, kernel, bias, d: int):
    """One direction through Keras' recurrent loop (its TensorFlow backend's ``rnn``, what
    keras.layers.GRU/LSTM run without cuDNN): x_t W' + b' and h U inside each step."""
    from keras.src.backend.tensorflow.rnn import rnn

    dtype = x.dtype
    w, b = tf.cast(kernel, dtype), tf.cast(bias, dtype)
    u_d = tf.cast(layer.recurrent_kernel[d], dtype)
    b_d = tf.cast(layer.recurrent_bias[d], dtype)

    def step(x_t, states):
        h, c = cell_update(layer.rnn_type, tf.matmul(x_t, w) + b, states[0], states[1],
                           tf.matmul(states[0], u_d) + b_d, layer.relu_clip)
        return h, [h, c]

    zeros = tf.zeros([tf.shape(x)[0], layer.units], dtype)
    return rnn(step, x, [zeros, zeros])[1]


# ------------------------------------------------------------------ cuDNN: packing, the op, its equations


def pack_cudnn(weights, recurrent_weights, input_biases, recurrent_biases, dtype):
    """cuDNN's opaque parameter vector from per-gate lists in cuDNN's gate order (GRU r, z, n; LSTM
    i, f, g, o): input matrices W_k [inputs, units], recurrent matrices R_k [units, units] (each stored
    transposed, [units, inputs], flattened), then input biases b_Wk, then recurrent biases b_Rk."""
    flat = [tf.reshape(tf.transpose(w), [-1]) for w in list(weights) + list(recurrent_weights)]
    flat += [tf.reshape(b, [-1]) for b in list(input_biases) + list(recurrent_biases)]
    return tf.cast(tf.concat(flat, axis=0), dtype)


def cudnn_params(layer, kernel, bias, d: int, dtype):
    """The parameter vector of a RecurrentLayer's direction d (folded input weights W', b'; U_d and its
    bias as the recurrent part). Our gate orders: GRU z, r, n (cuDNN r, z, n), LSTM i, f, g, o (cuDNN's)."""
    g = layer.gates
    order = [1, 0, 2] if layer.rnn_type == "gru" else list(range(g))
    w, b = tf.split(kernel, g, axis=1), tf.split(bias, g)
    r = tf.split(tf.cast(layer.recurrent_kernel[d], tf.float32), g, axis=1)
    br = tf.split(tf.cast(layer.recurrent_bias[d], tf.float32), g)
    return pack_cudnn([w[k] for k in order], [r[k] for k in order], [b[k] for k in order],
                      [br[k] for k in order], dtype)


def cudnn_sequence(rnn_type: str, x, lengths, params, units: int):
    """One unidirectional recurrence through cuDNN: x [B, T, D] batch-major, transposed to time-major for
    CudnnRNNV3 (linear input, per-sample lengths of at least 1: no step past a sequence's end, zeros
    there), zero initial state -> outputs [B, T, units]."""
    zeros = tf.zeros([1, tf.shape(x)[0], units], x.dtype)
    outputs, _, _, _, _ = tf.raw_ops.CudnnRNNV3(
        input=tf.transpose(x, [1, 0, 2]), input_h=zeros, input_c=zeros, params=params,
        sequence_lengths=tf.maximum(tf.cast(lengths, tf.int32), 1), rnn_mode=rnn_type,
        input_mode="linear_input", direction="unidirectional", is_training=True, time_major=True)
    return tf.transpose(outputs, [1, 0, 2])


def cudnn_direction(layer, x, lengths, kernel, bias, d: int):
    """One direction of a RecurrentLayer through cuDNN."""
    return cudnn_sequence(layer.rnn_type, x, lengths, cudnn_params(layer, kernel, bias, d, x.dtype), layer.units)


def cudnn_equations(rnn_type: str, x, lengths, params, units: int):
    """What ``cudnn_sequence`` computes (cuDNN's documented equations, the weights unpacked from the
    opaque vector ``params``), on any device, in float32: checks a packing where no GPU is at hand."""
    g, inputs = {"gru": 3, "lstm": 4}[rnn_type], x.shape[-1]
    sizes = [units * inputs] * g + [units * units] * g + [units] * (2 * g)
    parts = tf.split(tf.cast(params, tf.float32), sizes)
    w = [tf.transpose(tf.reshape(p, [units, inputs])) for p in parts[:g]]
    r = [tf.transpose(tf.reshape(p, [units, units])) for p in parts[g:2 * g]]
    bw, br = parts[2 * g:3 * g], parts[3 * g:]
    m = tf.cast(tf.sequence_mask(lengths, tf.shape(x)[1]), tf.float32)[:, :, None]
    xs, ms = tf.unstack(tf.cast(x, tf.float32), axis=1), tf.unstack(m, axis=1)
    h = c = tf.zeros([tf.shape(x)[0], units])
    out = []
    for x_t, m_t in zip(xs, ms):
        pre = [x_t @ w[k] + bw[k] for k in range(g)]
        rec = [h @ r[k] + br[k] for k in range(g)]
        if rnn_type == "gru":  # cuDNN: r, z, n; n = tanh(W_n x + b_Wn + r * (R_n h + b_Rn))
            rg, zg = tf.sigmoid(pre[0] + rec[0]), tf.sigmoid(pre[1] + rec[1])
            new_h, new_c = (1 - zg) * tf.tanh(pre[2] + rg * rec[2]) + zg * h, c
        else:  # i, f, g, o
            ig, fg, og = tf.sigmoid(pre[0] + rec[0]), tf.sigmoid(pre[1] + rec[1]), tf.sigmoid(pre[3] + rec[3])
            new_c = fg * c + ig * tf.tanh(pre[2] + rec[2])
            new_h = og * tf.tanh(new_c)
        h, c = m_t * new_h + (1 - m_t) * h, m_t * new_c + (1 - m_t) * c
        out.append(m_t * new_h)
    return tf.stack(out, axis=1)


def cudnn_reference(layer, x, lengths, kernel, bias, d: int):
    """``cudnn_equations`` for a RecurrentLayer's direction d, from the vector ``cudnn_params`` packs."""
    return cudnn_equations(layer.rnn_type, x, lengths, cudnn_params(layer, kernel, bias, d, tf.float32),
                           layer.units)


def fused_available(rnn_type: str) -> bool:
    return rnn_type in FUSED_TYPES


def fused_reason_missing(rnn_type: str) -> str:
    return ("no fused kernel exists for a clipped-ReLU recurrence (cuDNN's RNN_RELU mode does not clip; "
            "Keras has no such layer)") if rnn_type not in FUSED_TYPES else ""
