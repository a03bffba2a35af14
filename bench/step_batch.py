"""The cost of one streaming ``step`` call against its batch size (issue 17: what Batch Dispatch can save).

    .venv/bin/python bench/step_batch.py runs/uni-server/export/output_graph.tflite [MORE_EXPORTS ...]

For each unidirectional export: a call of B streams' windows (B = 1, 2, 4, 8, 16, 32; random features,
zero state) timed after 3 warm-up calls, as the server's model worker makes it (``Runtime.step``, TFLite
with one thread); prints ms a call and ms a stream. Pin it to one core (``taskset -c 0``) as the server.
"""
import sys
import time

import numpy as np

from deepspeech.runtime import ModelLoadError, load_runtime


def main(paths) -> int:
    if not paths:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    rng = np.random.default_rng(0)
    for path in paths:
        try:
            runtime = load_runtime(path)
        except ModelLoadError as err:
            print(f"step_batch.py: {err}", file=sys.stderr)
            return 1
        streaming = runtime.metadata.get("streaming")
        if streaming is None:
            print(f"step_batch.py: {path}: not a streaming ('step') export", file=sys.stderr)
            return 1
        for batch in (1, 2, 4, 8, 16, 32):
            features = rng.standard_normal((batch, streaming["window_frames"], streaming["n_features"]), np.float32)
            state = np.zeros([batch, streaming["state_size"]], np.float32)
            position, valid = np.zeros(batch, np.int32), np.full(batch, streaming["window_frames"], np.int32)
            for _ in range(3):
                runtime.step(features, position, valid, state)
            calls = max(5, 200 // batch)
            began = time.perf_counter()
            for _ in range(calls):
                runtime.step(features, position, valid, state)
            seconds = (time.perf_counter() - began) / calls
            print(f"{path}  batch {batch:2d}: {1000 * seconds:7.2f} ms a call, {1000 * seconds / batch:5.2f} ms a stream",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
