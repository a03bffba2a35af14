#!/usr/bin/env bash
# Train on several hosts at once: synchronous SGD with tf.distribute's MultiWorkerMirroredStrategy.
#
# On each of N hosts (the same command, its own --index; host 0 is the chief, which writes checkpoints,
# summaries and exports and runs --test_files):
#   bin/run-multiworker.sh --hosts gpu1:2222,gpu2:2222 --index 0 -- --train_files ... --checkpoint_dir ...
#   bin/run-multiworker.sh --hosts gpu1:2222,gpu2:2222 --index 1 -- --train_files ... --checkpoint_dir ...
# N workers on this machine (to try it out; what the tests do):
#   bin/run-multiworker.sh --local 2 -- --train_files ... --checkpoint_dir ...
#
# The script only sets TF_CONFIG, the standard way to describe a TensorFlow cluster, and runs
# DeepSpeech.py; any other launcher (Slurm, Kubernetes' TFJob) can set TF_CONFIG itself instead.
# Every host needs the same code, flags, CSVs and audio paths, and --checkpoint_dir on storage all
# hosts can read (resuming and --reduce_lr_on_plateau read the chief's checkpoints). Batch sizes are
# per device: the global batch is --train_batch_size x devices on all hosts (logged at the start).
# SIGINT/SIGTERM to any worker stops all of them at the next step, after the chief saved a checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
hosts="" index="" local_workers=0
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while (( $# )); do
  case "$1" in
    --hosts) hosts=$2; shift 2 ;;
    --index) index=$2; shift 2 ;;
    --local) local_workers=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "run-multiworker.sh: unknown option $1 (DeepSpeech.py flags go after --)" >&2; usage ;;
  esac
done

tf_config() {  # tf_config HOSTS INDEX -> the TF_CONFIG JSON of worker INDEX
  "$PY" -c 'import json, sys; print(json.dumps({"cluster": {"worker": sys.argv[1].split(",")},
            "task": {"type": "worker", "index": int(sys.argv[2])}}))' "$1" "$2"
}

if (( local_workers > 0 )); then
  ports=$("$PY" -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(",".join(f"127.0.0.1:{s.getsockname()[1]}" for s in socks))' "$local_workers")
  pids=()
  stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; }
  trap stop INT TERM
  for (( i = 0; i < local_workers; i++ )); do
    TF_CONFIG=$(tf_config "$ports" "$i") "$PY" DeepSpeech.py "$@" > >(sed "s/^/[worker $i] /") \
      2> >(sed "s/^/[worker $i] /" >&2) &
    pids+=($!)
  done
  status=0 running=("${pids[@]}")
  while (( ${#running[@]} )); do
    # a worker that fails leaves the others waiting in an all-reduce: end them too
    ended=""; wait -n -p ended "${running[@]}" || { rc=$?; status=$(( status ? status : rc )); stop; }
    left=(); for pid in "${running[@]}"; do [[ $pid == "$ended" ]] || left+=("$pid"); done
    running=("${left[@]}")
  done
  exit "$status"
fi

[[ -n $hosts && -n $index ]] || { echo "run-multiworker.sh: give --hosts and --index, or --local N" >&2; usage; }
export TF_CONFIG
TF_CONFIG=$(tf_config "$hosts" "$index")
exec "$PY" DeepSpeech.py "$@"
