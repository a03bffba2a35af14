#!/usr/bin/env python3
"""Build a KenLM language model for the scorer, as Mozilla's data/lm/generate_lm.py.

Counts the words of --input_txt (lower-cased), keeps the --top_k most frequent as the vocabulary
(vocab-<top_k>.txt), builds an ARPA model with lmplz, filters it to the vocabulary and converts it
with build_binary to lm.binary. Then package it:

    generate_scorer_package --alphabet data/alphabet.txt --lm OUT/lm.binary \\
        --vocab OUT/vocab-500000.txt --package kenlm.scorer --default_alpha 0.93 --default_beta 1.18

--character_level (Mandarin) splits every line into characters first: each character is an LM token.
"""
import collections
import gzip
import os
import subprocess
import sys

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "training"))
from deepspeech_training.util.log import log, setup_logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("input_txt", None, "text corpus, one sentence a line (.txt or .txt.gz)")
flags.DEFINE_string("output_dir", None, "folder for vocab-<top_k>.txt, lm.arpa, lm_filtered.arpa, lm.binary")
flags.DEFINE_integer("top_k", None, "vocabulary size: the most frequent words kept")
flags.DEFINE_string("kenlm_bins", os.path.join(ROOT, ".cache", "kenlm", "bin"),
                    "folder with KenLM's lmplz, filter and build_binary (built by make install)")
flags.DEFINE_integer("arpa_order", None, "order of the n-gram model")
flags.DEFINE_string("max_arpa_memory", None, "memory lmplz may use, e.g. 85% or 2G")
flags.DEFINE_string("arpa_prune", None, "lmplz --prune thresholds per order, separated by |, e.g. 0|0|1")
flags.DEFINE_integer("binary_a_bits", None, "build_binary -a: pointer compression bits")
flags.DEFINE_integer("binary_q_bits", None, "build_binary -q: probability quantization bits")
flags.DEFINE_string("binary_type", None, "build_binary data structure: trie or probing")
flags.DEFINE_boolean("discount_fallback", False, "lmplz --discount_fallback (needed for small corpora)")
flags.DEFINE_boolean("character_level", False, "split lines into characters (Mandarin): one token per character")
for _name in ("input_txt", "output_dir", "top_k", "arpa_order", "max_arpa_memory", "arpa_prune",
              "binary_a_bits", "binary_q_bits", "binary_type"):
    flags.mark_flag_as_required(_name)


def tokens_of(line: str, character_level: bool) -> list[str]:
    line = line.lower()
    return [c for c in line if not c.isspace()] if character_level else line.split()


def convert_and_count(input_txt: str, output_dir: str, character_level: bool):
    """Write the lower-cased (or character-split) corpus as lower.txt.gz and count its tokens."""
    counter = collections.Counter()
    opener = gzip.open if input_txt.endswith(".gz") else open
    lower = os.path.join(output_dir, "lower.txt.gz")
    with opener(input_txt, "rt", encoding="utf-8") as src, gzip.open(lower, "wt", encoding="utf-8") as dst:
        for number, line in enumerate(src, 1):
            tokens = tokens_of(line, character_level)
            if tokens:
                counter.update(tokens)
                dst.write(" ".join(tokens) + "\n")
    if not counter:
        raise ValueError(f"{input_txt}: no text")
    return lower, counter


def run(tool: str, args: list[str], stdin=None) -> None:
    path = os.path.join(FLAGS.kenlm_bins, tool)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path}: KenLM's {tool} not found (run make install, or pass --kenlm_bins)")
    proc = subprocess.run([path, *args], stdin=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def main(argv):
    del argv
    setup_logging(1)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    try:
        lower, counter = convert_and_count(FLAGS.input_txt, FLAGS.output_dir, FLAGS.character_level)
        top = [word for word, _ in counter.most_common(FLAGS.top_k)]
        vocab_path = os.path.join(FLAGS.output_dir, f"vocab-{FLAGS.top_k}.txt")
        with open(vocab_path, "w", encoding="utf-8") as f:
            f.write(" ".join(top))
        covered = sum(counter[w] for w in top) / sum(counter.values())
        log.info("Vocabulary: %d of %d distinct tokens, covering %.1f%% of the text", len(top), len(counter),
                 100 * covered)
        arpa = os.path.join(FLAGS.output_dir, "lm.arpa")
        filtered = os.path.join(FLAGS.output_dir, "lm_filtered.arpa")
        binary = os.path.join(FLAGS.output_dir, "lm.binary")
        lmplz = ["--order", str(FLAGS.arpa_order), "--temp_prefix", FLAGS.output_dir, "--memory",
                 FLAGS.max_arpa_memory, "--text", lower, "--arpa", arpa, "--prune", *FLAGS.arpa_prune.split("|")]
        run("lmplz", lmplz + (["--discount_fallback"] if FLAGS.discount_fallback else []))
        with open(vocab_path, "rb") as vocab:
            run("filter", ["single", f"model:{arpa}", filtered], stdin=vocab)
        run("build_binary", ["-a", str(FLAGS.binary_a_bits), "-q", str(FLAGS.binary_q_bits), "-v",
                             FLAGS.binary_type, filtered, binary])
    except (OSError, ValueError, RuntimeError, UnicodeDecodeError) as err:
        log.error("%s", err)
        return 1
    log.info("Wrote %s and %s", binary, vocab_path)
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
