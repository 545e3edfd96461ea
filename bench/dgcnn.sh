#!/usr/bin/env bash
# One whole SEED protocol of DGCNN on the CPU, on synthetic SEED of the real size (15 subjects x 3 sessions,
# the real trial lengths; DE features only, which is all DGCNN reads): the time to write the data, to
# preprocess it (--no-maps) and to train the 45 runs (SEED.ini's 50 epochs, early stopping, batch 64).
#
#     bash bench/dgcnn.sh [DIR]        # DIR: where the data and results go (default /tmp/sst-dgcnn-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-/tmp/sst-dgcnn-bench}"
PY="${PYTHON:-python}"
mkdir -p "$DIR"
SETS=(--set "path.dataset_root=$DIR/SEED" --set "path.preprocessed_root=$DIR/pre" --set "path.result_path=$DIR/res")
t0=$(date +%s)
[ -d "$DIR/SEED" ] || "$PY" -m sst.data.synthetic --dataset SEED --out "$DIR/SEED" --no-raw > /dev/null
t1=$(date +%s)
"$PY" Preprocess.py -c SEED.ini "${SETS[@]}" --no-maps > /dev/null
t2=$(date +%s)
"$PY" run.py -c SEED.ini "${SETS[@]}" --set model.name=dgcnn > "$DIR/run.log"
t3=$(date +%s)
tail -n 9 "$DIR/run.log"
echo "synthetic data $((t1 - t0)) s, preprocessing $((t2 - t1)) s, training the 45 runs $((t3 - t2)) s ($(nproc) CPU cores)"
