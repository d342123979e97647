#!/usr/bin/env bash
# KDAS on a Cloud TPU VM: create it, run the search on it, follow it, copy the results, delete it.
# Usage: tpu/launch.sh create|run|logs|copy|delete      (settings below, each overridable from the environment)
# Not tested on a TPU: see tpu/README.md, "What was not tested".
set -euo pipefail

PROJECT="${PROJECT:?set PROJECT to your Google Cloud project id}"
ZONE="${ZONE:-us-central2-b}"                      # a zone that has ACCELERATOR_TYPE
TPU_NAME="${TPU_NAME:-kdas-tpu}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-8}"        # 4 chips; TensorFlow sees 4 TPU devices
RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
TF_TPU_VERSION="${TF_TPU_VERSION:-2.20.0}"          # newest tensorflow-tpu wheel when this was written
DATA_DIR="${DATA_DIR:-}"                           # gs://BUCKET/tensorflow_datasets holding the prepared cifar100
RESULTS="${RESULTS:-}"                             # gs://BUCKET/kdas_runs: where `copy` puts the work directory
FLAGFILE="${FLAGFILE:-tpu/cifar100_tpu.cfg}"
WORKDIR="${WORKDIR:-runs/cifar100_tpu}"            # on the VM's disk, relative to ~/kdas_tf (as in FLAGFILE)
EXTRA_FLAGS="${EXTRA_FLAGS:-}"                     # more --flags for kdas_tf.search

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GCLOUD_TPU=(gcloud compute tpus tpu-vm)
WHERE=(--project="$PROJECT" --zone="$ZONE")

on_vm() {  # run a shell command on the TPU VM
  "${GCLOUD_TPU[@]}" ssh "$TPU_NAME" "${WHERE[@]}" --command="$1"
}

create() {
  "${GCLOUD_TPU[@]}" create "$TPU_NAME" "${WHERE[@]}" \
    --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION"
  # The code as committed here (not the working tree), without needing a public repository.
  local archive
  archive="$(mktemp --suffix=.tar.gz)"
  git -C "$ROOT" archive --format=tar.gz --prefix=kdas_tf/ -o "$archive" HEAD
  "${GCLOUD_TPU[@]}" scp "$archive" "$TPU_NAME":kdas_tf.tar.gz "${WHERE[@]}"
  rm -f "$archive"
  # tensorflow-tpu provides the `tensorflow` module (with libtpu), so the package is installed
  # --no-deps and its other dependencies (pyproject.toml's, minus tensorflow) by name.
  on_vm "set -euo pipefail
    rm -rf kdas_tf && tar xzf kdas_tf.tar.gz
    python3 -m venv ~/venv && ~/venv/bin/pip install -q --upgrade pip
    ~/venv/bin/pip install -q 'tensorflow-tpu==$TF_TPU_VERSION' \
      -f https://storage.googleapis.com/libtpu-tf-releases/index.html
    ~/venv/bin/pip install -q --no-deps -e ~/kdas_tf
    ~/venv/bin/pip install -q 'keras>=3.10,<4' 'keras-tuner>=1.4.7' 'tensorflow-datasets>=4.9.8' \
      'tensorboard>=2.20' 'numpy>=1.26' 'absl-py>=2.1' 'scikit-learn>=1.4' 'matplotlib>=3.8'
    ~/venv/bin/python -c 'import tensorflow as tf; print(tf.__version__)'"
}

run() {
  [[ -n "$DATA_DIR" ]] || { echo "error: set DATA_DIR=gs://BUCKET/tensorflow_datasets (tpu/README.md, step 1)" >&2; exit 2; }
  # Detached, so the search survives the SSH session; the same command resumes an interrupted run.
  on_vm "cd ~/kdas_tf && nohup ~/venv/bin/python -m kdas_tf.search --flagfile='$FLAGFILE' \
    --data_dir='$DATA_DIR' --workdir='$WORKDIR' $EXTRA_FLAGS >> search.log 2>&1 < /dev/null &
    echo started: tpu/launch.sh logs follows search.log"
}

logs() {
  on_vm "tail -n 50 -f ~/kdas_tf/search.log"
}

copy() {
  [[ -n "$RESULTS" ]] || { echo "error: set RESULTS=gs://BUCKET/kdas_runs" >&2; exit 2; }
  on_vm "cd ~/kdas_tf && ~/venv/bin/python -m kdas_tf.report --workdir='$WORKDIR' || true
    gcloud storage rsync --recursive '$WORKDIR' '$RESULTS/$(basename "$WORKDIR")'"
}

delete() {
  "${GCLOUD_TPU[@]}" delete "$TPU_NAME" "${WHERE[@]}" --quiet
}

case "${1:-}" in
  create | run | logs | copy | delete) "$1" ;;
  *) echo "usage: $0 create|run|logs|copy|delete   (PROJECT, ZONE, TPU_NAME, ... from the environment)" >&2; exit 2 ;;
esac
