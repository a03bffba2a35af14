#!/usr/bin/env python3
"""Build a Mozilla-format alphabet from the transcripts of CSV files (how a Mandarin alphabet is made).

    bin/build_alphabet.py --csv data/cmn/train.csv,data/cmn/dev.csv --output data/cmn/alphabet.txt
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training"))

from deepspeech_training.data import DataError, read_csv_rows  # noqa: E402
from ds_ctcdecoder.alphabet import Alphabet  # noqa: E402
from deepspeech_training.util.log import log, setup_logging  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True, help="comma-separated CSV files whose transcripts to read")
    parser.add_argument("--output", required=True, help="alphabet file to write")
    args = parser.parse_args(argv)
    setup_logging(1)
    try:
        rows = [row for path in args.csv.split(",") if path for row in read_csv_rows(path)]
    except DataError as err:
        log.error("%s", err)
        return 1
    alphabet = Alphabet.from_transcripts(row.transcript for row in rows)
    alphabet.to_file(args.output, comment=f"Built by bin/build_alphabet.py from {args.csv}\n"
                                          f"{len(alphabet)} labels, most frequent first")
    log.info("Wrote %d labels from %d transcripts to %s", len(alphabet), len(rows), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
