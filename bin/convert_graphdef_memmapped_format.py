#!/usr/bin/env python3
"""Convert a frozen graph (output_graph.pb) to a memory-mapped model (output_graph.pbmm).

    bin/convert_graphdef_memmapped_format.py --in_graph output_graph.pb --out_graph output_graph.pbmm

The flags are those of TensorFlow 1.15's convert_graphdef_memmapped_format, which Mozilla DeepSpeech
used; the output format is this project's (native_client/python/deepspeech/pbmm.py documents it).
Constants of at least --min_bytes become weights mapped from the file; the outputs default to the
export's `probs` and `new_state` nodes. The same conversion runs with DeepSpeech.py --export_pbmm.
"""
import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "native_client", "python"))

from deepspeech.pbmm import ModelFileError, convert  # noqa: E402

log = logging.getLogger("convert_graphdef_memmapped_format")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in_graph", required=True, help="frozen GraphDef (.pb) to convert")
    parser.add_argument("--out_graph", required=True, help="memory-mapped model (.pbmm) to write")
    parser.add_argument("--min_bytes", type=int, default=1024,
                        help="constants of at least this many bytes are mapped (default %(default)s)")
    parser.add_argument("--outputs", default="",
                        help="comma-separated output node names (default: probs and new_state, if present)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        stats = convert(args.in_graph, args.out_graph, args.min_bytes,
                        outputs=[n for n in args.outputs.split(",") if n] or None)
    except (ModelFileError, OSError) as err:
        log.error("%s", err)
        return 1
    log.info("Wrote %s: %.1f MB, %.1f MB of it mapped weights (%s was %.1f MB)", args.out_graph,
             stats["pbmm_bytes"] / 1e6, stats["mapped_bytes"] / 1e6, args.in_graph, stats["pb_bytes"] / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
