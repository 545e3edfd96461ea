#!/usr/bin/env bash
# GPU figures in one prepared run: under 8 minutes on one H100/H200, every figure on one line.
#
#     bash bench/gpu.sh                 # on a machine with a CUDA GPU, torch (CUDA build) and requirements.txt
#     OUT=/tmp/gpu bash bench/gpu.sh    # keep the synthetic data and results there (default: a temp folder)
#
# 1. the CUDA tests (tests/test_cuda.py) and the model and accelerator tests on that machine;
# 2. bench/train.py --device cuda in float32 and bf16 autocast, batch 64 and 256: samples/s and peak
#    GPU memory of the definition in both block orders, TorchEEG beside it where it is installed;
# 3. one full-size synthetic SEED subject-session (3394 windows, SEED.ini) trained for 5 epochs by
#    run.py on CUDA, and its wall time extrapolated to the protocol: 45 runs x 50 epochs (an upper
#    bound: early stopping ends runs sooner).
# Nothing is downloaded; each step has its own time limit, so one that hangs cannot eat the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
EPOCHS=5
mkdir -p "$OUT"
start=$(date +%s)

python - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
if not torch.cuda.is_available():
    raise SystemExit("gpu.sh: no CUDA device visible to torch")
p = torch.cuda.get_device_properties(0)
print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} visible")
EOF
[ $? -eq 0 ] || exit 1

echo "== tests on CUDA"
timeout 240 python -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_model.py tests/test_fastcpu.py 2>&1 \
    | tail -n 4 | sed 's/^/tests: /'

echo "== training benchmark (definition on CUDA, channels-last 3D, cudnn.benchmark as run.py)"
for amp in "" "--amp"; do
    for batch in 64 256; do
        label="batch $batch, ${amp:+bf16}${amp:-float32}"
        timeout 100 python bench/train.py --device cuda --batch "$batch" --warmup 3 --iters 20 --latency-runs 20 \
            $amp 2>&1 | grep -E "samples/s|peak GPU|ms$|skipping|error" | sed "s/^ */$label: /"
    done
done

echo "== full-size synthetic SEED subject-session, $EPOCHS epochs, run.py on CUDA"
python - "$OUT" "$EPOCHS" <<'EOF'
import configparser, sys
from pathlib import Path
out, epochs = Path(sys.argv[1]), sys.argv[2]
ini = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
ini.optionxform = str
ini.read("SEED.ini", encoding="utf-8")
ini["path"] = {"dataset_root": str(out / "SEED"), "preprocessed_root": str(out / "pre"), "result_path": str(out / "res")}
ini["training"]["nbEpoch"], ini["training"]["device"] = epochs, "cuda"
with open(out / "gpu.ini", "w") as f:
    ini.write(f)
EOF
t0=$(date +%s)
timeout 120 python synthetic.py --dataset SEED --out "$OUT/SEED" --subjects 1 --sessions 1 > /dev/null \
    && timeout 90 python Preprocess.py -c "$OUT/gpu.ini" > /dev/null || echo "error: synthetic data or Preprocess.py failed"
echo "synthetic data and Preprocess.py (CPU): $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
timeout 150 python run.py -c "$OUT/gpu.ini" > "$OUT/run.log" 2>&1
rc=$?
wall=$(( $(date +%s) - t0 ))
grep -E "^sub01_ses1|^error" "$OUT/run.log" | sed 's/^/run.py: /'
python - "$OUT" "$wall" "$rc" "$EPOCHS" <<'EOF'
import json, sys
from pathlib import Path
out, wall, rc, epochs = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
record = out / "res" / "runs" / "sub01_ses1.json"
if rc != 0 or not record.is_file():
    print(f"run.py: exit {rc}, no result (see {out / 'run.log'})")
    raise SystemExit
r = json.loads(record.read_text())
per_epoch = r["wall_seconds"] / r["epochs_run"]
print(f"run.py: {r['epochs_run']} epochs in {r['wall_seconds']:.1f} s ({per_epoch:.2f} s/epoch), command {wall:.0f} s")
print(f"extrapolated protocol, 45 runs x 50 epochs: {45 * 50 * per_epoch / 3600:.2f} h "
      f"(one run of 50 epochs {50 * per_epoch / 60:.1f} min)")
EOF
echo "gpu.sh: $(( $(date +%s) - start )) s in all"
