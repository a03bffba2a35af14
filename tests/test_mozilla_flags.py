"""Mozilla DeepSpeech 0.9.3's flags, log lines and top-level scripts (issue 16)."""
import math
import re
import sys

import pytest
from conftest import ROOT, TINY_FLAGS, run_trainer

# every flag of Mozilla 0.9.3's training/deepspeech_training/util/flags.py
MOZILLA_FLAGS = """
train_files dev_files test_files metrics_files read_buffer feature_cache cache_for_epochs feature_win_len
feature_win_step audio_sample_rate limit_train limit_dev limit_test reverse_train reverse_dev reverse_test
augment epochs dropout_rate dropout_rate2 dropout_rate3 dropout_rate4 dropout_rate5 dropout_rate6 relu_clip
beta1 beta2 epsilon learning_rate train_batch_size dev_batch_size test_batch_size n_hidden layer_norm
random_seed early_stop es_epochs es_min_delta reduce_lr_on_plateau plateau_epochs plateau_reduction
force_initialize_learning_rate checkpoint_dir load_checkpoint_dir save_checkpoint_dir checkpoint_secs
max_to_keep load_train load_evaluate drop_source_layers export_dir remove_export export_tflite export_zip
export_file_name export_batch_size n_steps export_beam_width export_author_id export_model_name
export_model_version export_contact_info export_license export_language export_min_ds_version
export_max_ds_version export_description alphabet_config_path bytes_output_mode scorer_path scorer
beam_width lm_alpha lm_beta cutoff_prob cutoff_top_n one_shot_infer lm_alpha_max lm_beta_max n_trials
inter_op_parallelism_threads intra_op_parallelism_threads use_allow_growth train_cudnn load_cudnn
automatic_mixed_precision log_placement log_level show_progressbar report_count summary_dir test_output_file
""".split()


@pytest.fixture
def flag_values():
    from deepspeech_training.flags import FLAGS, define_flags
    if "metrics_files" not in FLAGS:
        define_flags()
    yield FLAGS
    FLAGS.unparse_flags()


def test_every_mozilla_flag_is_defined_with_help(flag_values):
    missing = [name for name in MOZILLA_FLAGS if name not in flag_values]
    assert not missing
    assert all(flag_values[name].help for name in MOZILLA_FLAGS)
    flag_values(["DeepSpeech.py"])
    assert (flag_values.lm_alpha_max, flag_values.lm_beta_max, flag_values.n_trials) == (5.0, 5.0, 2400)


def test_dropout_rates_map_onto_layers(flag_values):
    from deepspeech_training.flags import model_config
    flag_values(["DeepSpeech.py", "--rnn_layers", "4", "--dropout_rate", "0.1", "--dropout_rate3", "0.3",
                 "--dropout_rate6", "0.6"])
    cfg = model_config(33, 29)
    assert cfg.rnn_dropout == (0.1, 0.1, 0.3, 0.3)  # rate2 negative: --dropout_rate
    assert cfg.layer_dropout("fc") == 0.6
    flag_values.unparse_flags()
    flag_values(["DeepSpeech.py", "--dropout_rate2", "1.5"])
    with pytest.raises(ValueError, match=r"dropout rates must be in \[0, 1\)"):
        model_config(33, 29)


def test_read_buffer_sizes():
    from deepspeech_training.flags import parse_size
    assert parse_size("1MB", "--read_buffer") == 1 << 20
    assert parse_size("512k", "--read_buffer") == 512 << 10
    assert parse_size("4096", "--read_buffer") == 4096
    with pytest.raises(ValueError, match="--read_buffer '1XB': expected a size like 1MB"):
        parse_size("1XB", "--read_buffer")


def test_reverse_sorts_longest_first():
    from deepspeech_training.data import Sample, batch_order
    samples = [Sample(f"{i}.wav", "a", (1,), d, True, "x") for i, d in enumerate([3.0, 1.0, 2.0, 4.0])]
    assert list(batch_order(samples, 2, 0, True, 0, False)) == [1, 2, 0, 3]
    assert list(batch_order(samples, 2, 0, True, 0, False, reverse=True)) == [3, 0, 2, 1]


def test_mozilla_flags_log_lines_and_evaluate_py(tiny_corpus, tmp_path):
    """A real tiny training, its resume, a transfer run and evaluate.py, grepped as Mozilla's scripts do."""
    ck = tmp_path / "ck"
    base = ["--train_files", tiny_corpus / "train.csv", "--dev_files", tiny_corpus / "dev.csv",
            "--train_batch_size", 8, "--checkpoint_dir", ck, *TINY_FLAGS]
    mozilla = ["--metrics_files", tiny_corpus / "test.csv", "--reverse_train", "--reverse_dev",
               "--dropout_rate2", 0.1, "--dropout_rate6", 0.2, "--layer_norm", "--train_cudnn",
               "--read_buffer", "2MB", "--inter_op_parallelism_threads", 1,
               "--intra_op_parallelism_threads", 2]
    first = run_trainer(*base, *mozilla, "--epochs", 1).stderr
    assert "Could not find best validating checkpoint." in first
    assert "Could not find most recent checkpoint." in first and "Initializing all variables." in first
    assert re.search(rf"Saved new best validating model with loss \d+\.\d{{6}} to: {ck}/best_dev-6", first)
    loss = re.search(r"Metrics for epoch 1 on \S*test\.csv - loss: (\d+\.\d+)", first)
    assert loss and 0 < float(loss.group(1)) < math.inf, first[-3000:]
    for name in ("layer_norm", "train_cudnn", "read_buffer"):
        assert len(re.findall(f"--{name} .* accepted for Mozilla compatibility but ignored", first)) == 1
    resumed = run_trainer(*base, "--epochs", 2).stderr
    assert f"Loading best validating checkpoint from {ck}/best_dev-" in resumed
    assert "Loading variable from checkpoint: rnn_1/" in resumed and "Metrics for epoch" not in resumed
    tuned = run_trainer("--train_files", tiny_corpus / "train.csv", "--train_batch_size", 8, "--epochs", 1,
                        "--load_checkpoint_dir", ck, "--save_checkpoint_dir", tmp_path / "tuned",
                        "--drop_source_layers", 1, *TINY_FLAGS).stderr
    assert "Loading variable from checkpoint: fc/kernel" in tuned
    assert "Initializing variable: logits/kernel" in tuned
    proc = run_trainer("--test_files", tiny_corpus / "test.csv", "--checkpoint_dir", ck, "--reverse_test",
                       "--noshow_progressbar", "--report_count", 1, "--load_evaluate", "last",
                       "--log_placement", script="evaluate.py")
    assert f"Loading most recent checkpoint from {ck}/train-" in proc.stderr
    assert re.search(r"\(\w+\): /job:localhost/replica:0/task:0/device:CPU:0", proc.stdout + proc.stderr)
    assert re.search(r"Test on test\.csv - WER: [\d.]+, CER: [\d.]+, loss: [\d.]+", proc.stderr), proc.stderr


def test_evaluate_py_needs_test_files(tmp_path):
    proc = run_trainer("--checkpoint_dir", tmp_path, script="evaluate.py", check=False)
    assert proc.returncode == 1 and "give the sets to evaluate on with --test_files" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("script, usage, flags", [
    ("transcribe.py", "--helpfull", ["--src", "--checkpoint_dir", "--outlier_batch_size", "--model"]),
    ("evaluate_tflite.py", "--help", ["--model", "--csv", "--proc", "--dump"])])
def test_top_level_scripts_take_mozillas_flags_and_bin_has_aliases(script, usage, flags):
    import subprocess
    helps = [subprocess.run([sys.executable, str(where / script), usage], capture_output=True, text=True,
                            timeout=120) for where in (ROOT, ROOT / "bin")]
    assert helps[0].returncode in (0, 1) and helps[1].returncode == helps[0].returncode  # absl's help: 1
    assert all(flag in helps[0].stdout for flag in flags), helps[0].stdout[-2000:]
    assert helps[1].stdout == helps[0].stdout
    assert len((ROOT / "bin" / script).read_text().splitlines()) < 12  # a thin alias
