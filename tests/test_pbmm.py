"""The memory-mapped model format (native_client/python/deepspeech/pbmm.py) and its converter tool."""
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT

sys.path.insert(0, str(ROOT / "native_client" / "python"))

from deepspeech import pbmm  # noqa: E402

METADATA = json.dumps({"format": "deepspeech2-export", "format_version": 1, "alphabet": list("ab ")})
INPUTS, OUTPUTS = ["features", "lengths"], ["probs", "new_state"]


def make_weights(seed=0, n_features=32, hidden=512, classes=29):
    rng = np.random.default_rng(seed)
    return {"w1": (rng.standard_normal((n_features, hidden)) / 8).astype(np.float32),  # 64 KiB
            "b1": rng.standard_normal(hidden).astype(np.float32),  # 2 KiB
            "perm": rng.permutation(hidden).astype(np.int32),  # 2 KiB of int32
            "w2": (rng.standard_normal((hidden, classes)) / 16).astype(np.float32),
            "b2": rng.standard_normal(classes).astype(np.float32)}  # 116 bytes: stays in the graph


def build_graph_def(w, unused_input=False):
    """A frozen two-layer net with the export's input, output and metadata node names."""
    graph = tf.Graph()
    with graph.as_default():
        if unused_input:
            tf.compat.v1.placeholder(tf.int32, [1], name="position")
        const = {name: tf.constant(value, name=name) for name, value in w.items()}
        features = tf.compat.v1.placeholder(tf.float32, [1, None, w["w1"].shape[0]], name="features")
        lengths = tf.compat.v1.placeholder(tf.int32, [1], name="lengths")
        mask = tf.sequence_mask(lengths, tf.shape(features)[1], dtype=tf.float32)[..., None]
        hidden = tf.gather(tf.nn.relu(tf.tensordot(features, const["w1"], 1) + const["b1"]), const["perm"], axis=-1)
        hidden *= mask
        tf.identity(tf.nn.softmax(tf.tensordot(hidden, const["w2"], 1) + const["b2"]), name="probs")
        tf.identity(tf.reduce_sum(hidden, axis=1), name="new_state")
        tf.constant(METADATA, name="metadata")
        tf.constant(16000, name="metadata_sample_rate")
    return graph.as_graph_def()


def reference(w, features, lengths):
    """The net in numpy."""
    hidden = np.maximum(features @ w["w1"] + w["b1"], 0)[..., w["perm"]]
    hidden = hidden * (np.arange(features.shape[1]) < lengths[0])[None, :, None]
    logits = hidden @ w["w2"] + w["b2"]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return {"probs": e / e.sum(-1, keepdims=True), "new_state": hidden.sum(1)}


def write_pb(path, graph_def):
    path.write_bytes(graph_def.SerializeToString())
    return str(path)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("pbmm")
    w = make_weights()
    pb = write_pb(out / "output_graph.pb", build_graph_def(w))
    pbmm_path = str(out / "output_graph.pbmm")
    stats = pbmm.convert(pb, pbmm_path)
    return w, pb, pbmm_path, stats


def inputs(seed=1, frames=20, n_features=32, length=15):
    x = np.random.default_rng(seed).standard_normal((1, frames, n_features)).astype(np.float32)
    return {"features": x, "lengths": np.array([length], np.int32)}


def test_pbmm_and_pb_give_the_reference_outputs(model):
    w, pb, pbmm_path, _ = model
    feed = inputs()
    expected = reference(w, **feed)
    from_pbmm = pbmm.load_function(pbmm_path, INPUTS, OUTPUTS)(**feed)
    from_pb = pbmm.load_graph_function(pb, INPUTS, OUTPUTS)(**feed)
    for name in OUTPUTS:
        np.testing.assert_allclose(from_pbmm[name], expected[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(from_pbmm[name], from_pb[name], rtol=1e-6, atol=1e-7)
    assert from_pbmm["probs"].shape == (1, 20, 29)


def test_converter_maps_large_numeric_consts_only(model):
    w, _, pbmm_path, stats = model
    header, library = pbmm.read_pbmm(pbmm_path)
    assert [t.name for t in header.tensors] == ["w1", "b1", "perm", "w2"]  # b2 < 1024 bytes
    assert [t.dtype for t in header.tensors] == ["float32", "float32", "int32", "float32"]
    assert stats["mapped_bytes"] == sum(w[n].nbytes for n in ("w1", "b1", "perm", "w2"))
    assert header.inputs == ("features", "lengths") and header.outputs == ("probs", "new_state")
    assert all((header.data_offset + t.offset) % 64 == 0 for t in header.tensors)
    nodes = {node.name: node for node in library.function[0].node_def}
    assert nodes["b2"].op == "Const" and nodes["w1"].op == "Placeholder"  # fed by a function argument
    with open(pbmm_path, "rb") as f:  # the bytes in the file are the weights themselves
        f.seek(header.data_offset + header.tensors[0].offset)
        np.testing.assert_array_equal(np.frombuffer(f.read(w["w1"].nbytes), "<f4").reshape(32, 512), w["w1"])


def test_metadata_round_trips(model):
    _, pb, pbmm_path, _ = model
    assert pbmm.read_metadata(pbmm_path) == METADATA
    assert pbmm.read_metadata(pb) == METADATA


def _mapped_ranges(path):
    """[(start, end, file offset)] of this process's mappings of path, from /proc/self/maps."""
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == path:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end, int(fields[2], 16)))
    return ranges


class _Capsule:
    """Lets numpy read a TensorFlow DLPack capsule (to see the tensor's data pointer)."""

    def __init__(self, tensor):
        self.capsule = tf.experimental.dlpack.to_dlpack(tensor)

    def __dlpack__(self, **_):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)  # CPU


def test_weights_point_into_the_file_mapping(model):
    w, _, pbmm_path, _ = model
    fn = pbmm.load_function(pbmm_path, INPUTS, ["probs"])
    header, _ = pbmm.read_pbmm(pbmm_path)
    ranges = _mapped_ranges(pbmm_path)
    for t, tensor in zip(header.tensors, fn.weights):
        address = np.from_dlpack(_Capsule(tensor)).__array_interface__["data"][0]
        in_file = [address - start + offset for start, end, offset in ranges if start <= address < end]
        assert in_file == [header.data_offset + t.offset], t.name  # the file's bytes, not a copy
    fn(**inputs())  # the weights are read through the mapping, never written: outputs stay right
    np.testing.assert_allclose(fn(**inputs(seed=2))["probs"], reference(w, **inputs(seed=2))["probs"],
                               rtol=1e-5, atol=1e-6)


def _rss_mib():
    """(RssAnon, RssFile) of this process in MiB."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return tuple(int(fields[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile"))


def test_weights_stay_out_of_the_heap(tmp_path):
    """64 MiB of weights: a call pages them in as file-backed memory, not as heap (RssAnon)."""
    w = make_weights(seed=3, n_features=4096, hidden=4096)
    pbmm.convert(write_pb(tmp_path / "big.pb", build_graph_def(w)), str(tmp_path / "big.pbmm"))
    del w
    anon, file_backed = _rss_mib()
    fn = pbmm.load_function(str(tmp_path / "big.pbmm"), INPUTS, ["probs"])
    fn(**inputs(frames=4, n_features=4096, length=4))
    anon_now, file_now = _rss_mib()
    anon_growth, file_growth = anon_now - anon, file_now - file_backed
    assert file_growth > 60, (anon_growth, file_growth)
    assert anon_growth < 24, (anon_growth, file_growth)


def test_two_models_in_one_process(tmp_path, model):
    w0, _, first, _ = model
    w1 = make_weights(seed=5)
    second = str(tmp_path / "other.pbmm")
    pbmm.convert(write_pb(tmp_path / "other.pb", build_graph_def(w1)), second)
    feed = inputs()
    a, b, a_again = (pbmm.load_function(p, INPUTS, ["probs"])(**feed)["probs"] for p in (first, second, first))
    np.testing.assert_allclose(a, reference(w0, **feed)["probs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, reference(w1, **feed)["probs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a, a_again)


def test_a_dropped_function_releases_its_mapping(model):
    from tensorflow.python.eager import context

    pbmm_path = model[2]
    fn = pbmm.load_function(pbmm_path, INPUTS, ["probs"])
    fn(**inputs())
    names = set(context.context().list_function_names())
    assert _mapped_ranges(pbmm_path)
    del fn
    assert not _mapped_ranges(pbmm_path)
    assert len(names - set(context.context().list_function_names())) == 1


@pytest.mark.parametrize("lower_control_flow", [False, True])
def test_weights_used_inside_a_while_loop(tmp_path, lower_control_flow):
    """A recurrence frozen as in the export: a While op with library functions, or lowered."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    kernel = tf.Variable(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32) / 8)

    @tf.function(input_signature=[tf.TensorSpec([None, 1, 64], tf.float32, name="features")])
    def recurrence(features):
        states = tf.scan(lambda h, x: tf.tanh(tf.matmul(h, kernel) + x), features, initializer=tf.zeros([1, 64]))
        return tf.identity(states, name="probs")

    frozen = convert_variables_to_constants_v2(recurrence.get_concrete_function(),
                                               lower_control_flow=lower_control_flow)
    pb = write_pb(tmp_path / "loop.pb", frozen.graph.as_graph_def())
    stats = pbmm.convert(pb, str(tmp_path / "loop.pbmm"))
    assert stats["mapped_tensors"] == 1 and stats["inputs"] == ["features"]
    x = np.random.default_rng(1).standard_normal((5, 1, 64)).astype(np.float32)
    out = pbmm.load_function(str(tmp_path / "loop.pbmm"), ["features"], ["probs"])(features=x)["probs"]
    np.testing.assert_allclose(out, recurrence(tf.constant(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_an_input_the_outputs_do_not_use_is_accepted(tmp_path):
    w = make_weights()
    stats = pbmm.convert(write_pb(tmp_path / "m.pb", build_graph_def(w, unused_input=True)), str(tmp_path / "m.pbmm"))
    assert stats["inputs"] == ["features", "lengths"]
    fn = pbmm.load_function(str(tmp_path / "m.pbmm"), INPUTS + ["position"], ["probs"])
    out = fn(**inputs(), position=np.array([3], np.int32))["probs"]
    np.testing.assert_allclose(out, reference(w, **inputs())["probs"], rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="missing \\['position'\\]"):
        fn(**inputs())
    with pytest.raises(pbmm.ModelFileError, match="asked for"):
        pbmm.load_function(str(tmp_path / "m.pbmm"), INPUTS + ["w1"], ["probs"])  # a weight, not an input


def _damaged(tmp_path, model, name, edit):
    data = bytearray(open(model[2], "rb").read())
    path = tmp_path / name
    path.write_bytes(bytes(edit(data)))
    return str(path)


@pytest.mark.parametrize("name, edit, message", [
    ("garbage.pbmm", lambda d: np.random.default_rng(0).bytes(4096), "not a .pbmm file"),
    ("empty.pbmm", lambda d: b"", "not a .pbmm file"),
    ("truncated.pbmm", lambda d: d[:len(d) // 2], "truncated"),
    ("preamble.pbmm", lambda d: d[:20], "truncated"),
    ("newer.pbmm", lambda d: d[:8] + (2).to_bytes(4, "little") + d[12:], "version 2 is newer"),
    ("header.pbmm", lambda d: d[:48] + b"#" + d[49:], "corrupt .pbmm header"),
])
def test_bad_pbmm_files_raise_pbmm_error_naming_the_file(tmp_path, model, name, edit, message):
    path = _damaged(tmp_path, model, name, edit)
    for read in (lambda: pbmm.load_function(path, INPUTS, OUTPUTS), lambda: pbmm.read_metadata(path)):
        with pytest.raises(pbmm.PbmmError, match=message) as err:
            read()
        assert str(err.value).startswith(path)


def test_a_pb_is_not_a_pbmm_and_garbage_is_not_a_pb(tmp_path, model):
    _, pb, pbmm_path, _ = model
    with pytest.raises(pbmm.PbmmError, match="not a .pbmm file"):
        pbmm.load_function(pb, INPUTS, OUTPUTS)
    with pytest.raises(pbmm.ModelFileError, match="a .pbmm file, not a frozen GraphDef"):
        pbmm.load_graph_function(pbmm_path, INPUTS, OUTPUTS)
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff" * 100)
    with pytest.raises(pbmm.ModelFileError, match=f"{garbage}: not a frozen GraphDef"):
        pbmm.convert(str(garbage), str(tmp_path / "out.pbmm"))


def test_wrong_names_are_reported(model):
    _, pb, pbmm_path, _ = model
    with pytest.raises(pbmm.ModelFileError, match="asked for"):
        pbmm.load_function(pbmm_path, ["features"], ["probs"])
    with pytest.raises(pbmm.ModelFileError, match="asked for"):
        pbmm.load_function(pbmm_path, INPUTS, ["logits"])
    with pytest.raises(pbmm.ModelFileError, match="no node"):
        pbmm.load_graph_function(pb, INPUTS, ["logits"])
    fn = pbmm.load_function(pbmm_path, INPUTS, ["probs"])
    with pytest.raises(TypeError, match="missing \\['lengths'\\]"):
        fn(features=inputs()["features"])


def test_converter_tool(tmp_path, model):
    _, pb, _, _ = model
    out = tmp_path / "tool.pbmm"
    tool = str(ROOT / "bin" / "convert_graphdef_memmapped_format.py")
    done = subprocess.run([sys.executable, tool, "--in_graph", pb, "--out_graph", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "4 weights (129024 bytes) mapped" in done.stderr and f"Wrote {out}" in done.stderr
    assert pbmm.read_metadata(str(out)) == METADATA


def test_converter_tool_reports_a_bad_input(tmp_path, model, caplog):
    spec = importlib.util.spec_from_file_location("convert_tool", ROOT / "bin" / "convert_graphdef_memmapped_format.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    pbmm_path = model[2]
    assert tool.main(["--in_graph", pbmm_path, "--out_graph", str(tmp_path / "x.pbmm")]) == 1
    assert f"{pbmm_path}: a .pbmm file, not a frozen GraphDef" in caplog.text
    assert not (tmp_path / "x.pbmm").exists()
