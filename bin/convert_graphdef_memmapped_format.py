#!/usr/bin/env python3
"""Convert a frozen graph (output_graph.pb) to a memory-mapped model (output_graph.pbmm).

    bin/convert_graphdef_memmapped_format.py --in_graph output_graph.pb --out_graph output_graph.pbmm

The flags are those of TensorFlow 1.15's convert_graphdef_memmapped_format, which Mozilla DeepSpeech
used. The output format depends on the graph:
- a Mozilla-interface graph (it has `metadata_version` and `input_node` nodes, and not this trainer's
  JSON `metadata` node: Mozilla's, Coqui's, or this project's export of Mozilla's model) is written in
  TensorFlow's MemmappedFileSystem format, as TensorFlow's tool writes it, which Mozilla's
  libdeepspeech and this client load (deepspeech/memmapped.py); constants of at least --min_bytes
  (default 10000) become ImmutableConst nodes;
- any other graph (this trainer's export) in this project's format (deepspeech/pbmm.py documents
  it): constants of at least --min_bytes (default 1024) become weights mapped from the file; the
  outputs default to the export's `probs` and `new_state` nodes. The same conversion runs with
  DeepSpeech.py --export_pbmm.
"""
import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "native_client", "python"))

from deepspeech.memmapped import DEFAULT_MIN_BYTES, write_memmapped  # noqa: E402
from deepspeech.mozilla_model import is_mozilla_graph  # noqa: E402
from deepspeech.pbmm import ModelFileError, convert, read_graph_def  # noqa: E402

log = logging.getLogger("convert_graphdef_memmapped_format")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in_graph", required=True, help="frozen GraphDef (.pb) to convert")
    parser.add_argument("--out_graph", required=True, help="memory-mapped model (.pbmm) to write")
    parser.add_argument("--min_bytes", "--min_conversion_tensor_size", dest="min_bytes", type=int,
                        help="constants of at least this many bytes are mapped (default: 10000 for a "
                             "Mozilla-interface graph, 1024 otherwise)")
    parser.add_argument("--outputs", default="",
                        help="comma-separated output node names (default: probs and new_state, if present)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        graph_def = read_graph_def(args.in_graph)
        if is_mozilla_graph({node.name for node in graph_def.node}):
            return write_tensorflow_format(graph_def, args)
        stats = convert(args.in_graph, args.out_graph, 1024 if args.min_bytes is None else args.min_bytes,
                        outputs=[n for n in args.outputs.split(",") if n] or None)
    except (ModelFileError, OSError) as err:
        log.error("%s", err)
        return 1
    log.info("Wrote %s: %.1f MB, %.1f MB of it mapped weights (%s was %.1f MB)", args.out_graph,
             stats["pbmm_bytes"] / 1e6, stats["mapped_bytes"] / 1e6, args.in_graph, stats["pb_bytes"] / 1e6)
    return 0


def write_tensorflow_format(graph_def, args) -> int:
    """A Mozilla-interface graph -> TensorFlow's memmapped package (as TensorFlow 1.15's tool)."""
    converted = write_memmapped(graph_def, args.out_graph,
                                DEFAULT_MIN_BYTES if args.min_bytes is None else args.min_bytes)
    log.info("Converted %d nodes", converted)
    log.info("Wrote %s (TensorFlow memmapped package, Mozilla's .pbmm): %.1f MB (%s was %.1f MB)", args.out_graph,
             os.path.getsize(args.out_graph) / 1e6, args.in_graph, os.path.getsize(args.in_graph) / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
