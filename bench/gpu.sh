#!/usr/bin/env bash
# GPU figures in one prepared run: under 8 minutes on one H100/H200, every figure on one line.
#
#     bash bench/gpu.sh                          # on a machine with a CUDA GPU, torch (CUDA build) and requirements.txt
#     GPU_BENCH_DIR=/tmp/gpu bash bench/gpu.sh   # keep the synthetic data and results there (default: a temp folder)
#     GPU_BENCH_DEVICE=cpu bash bench/gpu.sh     # step 3 on the CPU (how the README's CPU epoch time was taken)
#
# 1. the CUDA tests (tests/test_cuda.py: training step against the CPU, bf16 autocast, run.py end to end);
# 2. bench/train.py --device cuda in float32 and bf16 autocast, batch 64 and 256: samples/s and peak GPU
#    memory of the definition in both block orders, TorchEEG beside it where it is installed;
# 3. one full-size synthetic SEED subject-session (3394 windows, SEED.ini) trained for 5 epochs by
#    run.py, and its time extrapolated to the protocol: 45 runs x 50 epochs (an upper bound: early
#    stopping ends runs sooner).
# Nothing is downloaded. The steps share one deadline (DEADLINE_S after the start), so a step that
# hangs cannot take the others' time; a step that fails prints its exit code.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${GPU_BENCH_DIR:-$(mktemp -d)}
DEVICE=${GPU_BENCH_DEVICE:-cuda}
EPOCHS=5
DEADLINE_S=${DEADLINE_S:-470}
mkdir -p "$DIR"
start=$(date +%s)

left() {  # seconds a step may take: its own cap, or what is left before the deadline
    local rest=$(( start + DEADLINE_S - $(date +%s) ))
    (( rest < $1 )) && echo $(( rest > 1 ? rest : 1 )) || echo "$1"
}

report() {  # report LABEL RC: one line when a step failed or ran out of time
    [ "$2" -eq 0 ] || echo "$1: exit $2$( [ "$2" -eq 124 ] && echo ' (time limit)')"
}

python - "$DEVICE" <<'EOF'
import sys, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
if sys.argv[1] == "cuda":
    if not torch.cuda.is_available():
        raise SystemExit("gpu.sh: no CUDA device visible to torch")
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} visible")
EOF
[ $? -eq 0 ] || exit 1

if [ "$DEVICE" = cuda ]; then
echo "== tests on CUDA"
timeout "$(left 150)" python -m pytest -q -p no:cacheprovider tests/test_cuda.py > "$DIR/tests.log" 2>&1
rc=$?
tail -n 3 "$DIR/tests.log" | sed 's/^/tests: /'
report tests $rc

echo "== training benchmark (the definition on CUDA, channels-last 3D, cudnn.benchmark, as run.py)"
for amp in "" "--amp"; do
    for batch in 64 256; do
        if [ -n "$amp" ]; then label="batch $batch, bf16"; else label="batch $batch, float32"; fi
        timeout "$(left 90)" python bench/train.py --device cuda --batch "$batch" --warmup 3 --iters 20 \
            --latency-runs 20 $amp > "$DIR/train.log" 2>&1
        rc=$?
        grep -E "samples/s|peak GPU|ms$|skipping" "$DIR/train.log" | sed "s/^ */$label: /"
        report "$label" $rc
        [ $rc -eq 0 ] || tail -n 2 "$DIR/train.log" | sed "s/^/$label: /"
    done
done
fi

echo "== full-size synthetic SEED subject-session, $EPOCHS epochs, run.py on $DEVICE"
SET=(--set "path.dataset_root=$DIR/SEED" --set "path.preprocessed_root=$DIR/pre" --set "path.result_path=$DIR/res")
t0=$(date +%s)
timeout "$(left 60)" python synthetic.py --dataset SEED --out "$DIR/SEED" --subjects 1 --sessions 1 > /dev/null \
    && timeout "$(left 60)" python Preprocess.py -c SEED.ini "${SET[@]}" --no-maps > /dev/null
report "synthetic data and Preprocess.py" $?
echo "synthetic data and Preprocess.py --no-maps (CPU): $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
timeout "$(left 400)" python run.py -c SEED.ini "${SET[@]}" --set "training.nbEpoch=$EPOCHS" \
    --set "training.device=$DEVICE" > "$DIR/run.log" 2>&1
rc=$?
wall=$(( $(date +%s) - t0 ))
grep -E "^sub01_ses1|^error" "$DIR/run.log" | sed 's/^/run.py: /'
report run.py $rc
python - "$DIR" "$wall" "$rc" <<'EOF'
import json, sys
from pathlib import Path
out, wall, rc = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
record = out / "res" / "runs" / "sub01_ses1.json"
if rc != 0 or not record.is_file():
    print(f"run.py: no result (see {out / 'run.log'})")
    raise SystemExit
r = json.loads(record.read_text())
per_epoch = r["wall_seconds"] / r["epochs_run"]
print(f"run.py: {r['epochs_run']} epochs in {r['wall_seconds']:.1f} s ({per_epoch:.2f} s/epoch), command {wall:.0f} s")
print(f"extrapolated protocol, 45 runs x 50 epochs: {45 * 50 * per_epoch / 3600:.2f} h "
      f"(one run of 50 epochs {50 * per_epoch / 60:.1f} min)")
EOF
echo "gpu.sh: $(( $(date +%s) - start )) s in all"
