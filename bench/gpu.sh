#!/usr/bin/env bash
# GPU figures in one prepared run: under 8 minutes on one H100/H200; the last line is the protocol estimate for the
# best combination measured (compiled or eager, float32 or bf16, the state saved in the background or not, --jobs).
#
#     bash bench/gpu.sh                          # a machine with a CUDA GPU, torch (CUDA build) and requirements.txt
#     GPU_BENCH_DEVICE=cpu bash bench/gpu.sh     # the dry run: the same lines on the CPU, reduced sizes, 2-4 min
#     GPU_BENCH_STEPS="runs jobs" bash bench/gpu.sh   # some steps again (data is written when missing)
#     GPU_BENCH_DIR=/tmp/gpu PYTHON=python3.11 DEADLINE_S=420 bash bench/gpu.sh
#
# Steps (bench/gpu_steps.py, one process each, each with its own cap inside one deadline; the caps add up
# to less than the deadline, checked below; a step out of time is killed with the run.py processes it
# started, timeout signalling its whole process group, SIGKILL 5 s after SIGTERM):
#   info        torch, CUDA, cuDNN, the GPU
#   data        synthetic SEED, 4 full-size subject-sessions (3394 windows each), Preprocess.py --no-maps
#   check       correctness: bf16 autocast against float32 on the device, training mode, dropout off
#   runs        two runs of sub01_ses1 (3 epochs each) in one process, as run.py trains them by default (eager,
#               bf16, the state saved in the background): losses and gradients finite; one-off cost; fixed cost
#               per run; the median epoch from epoch 2 split into training, evaluation and state save; the
#               first run's checkpoint predicted on the CPU
#   options     one such run under each other combination: eager float32, the state saved synchronously,
#               compiled bf16, compiled float32 ([training] amp, state_save, compile): median epoch, its parts,
#               the first epoch's extra (compiling), graphs made and CUDA graphs skipped
#   tests       tests/training/test_loop_cuda.py (training step against the CPU, waits per epoch, bf16, run.py on CUDA)
#   resume      run.py killed after its first epoch, then run again: it resumes
#   jobs        run.py --jobs 1, 2, 4 on the one GPU (1, 2, 4 runs): epochs/min; --jobs 2 finishes both
#   throughput  training steps at batch 64 and 256, float32 and bf16: samples/s and peak memory
#   estimate    a line per combination measured (the options, --jobs 2 and 4), then the protocol estimate:
#               T (one-off A s + 45 x (fixed B s + 50 x median epoch C s)), the best of N measured: its name
# Nothing is downloaded. Logs go to $OUT/gpu-bench when OUT is set (the device tool brings $OUT back), else
# to the bench folder; the data (1.6 GB) stays in the bench folder (default: a temporary one, removed).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEVICE=${GPU_BENCH_DEVICE:-cuda}
DEADLINE_S=${DEADLINE_S:-470}
STEPS=${GPU_BENCH_STEPS:-info data check runs options tests resume jobs throughput estimate}
if [ -n "${GPU_BENCH_DIR:-}" ]; then DIR=$GPU_BENCH_DIR; else DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT; fi
LOGS=${OUT:+$OUT/gpu-bench}
LOGS=${LOGS:-$DIR/logs}
mkdir -p "$DIR" "$LOGS"
start=$(date +%s)

case " $STEPS " in    # every step but info and estimate needs the data: written first (after info) when missing
    *" data "*) ;;
    " info "*) [ -d "$DIR/pre" ] || STEPS="info data ${STEPS#info }" ;;
    *) [ -d "$DIR/pre" ] || STEPS="data $STEPS" ;;
esac
declare -A CAP=([info]=10 [data]=35 [check]=20 [runs]=65 [options]=130 [tests]=55 [resume]=35 [jobs]=85 [throughput]=25 [estimate]=5)
total=0
for step in $STEPS; do total=$(( total + ${CAP[$step]:?unknown step $step} )); done
if (( total >= DEADLINE_S )); then
    echo "gpu.sh: the caps of the steps add up to $total s, not under the deadline of $DEADLINE_S s"; exit 2
fi
echo "gpu.sh: device $DEVICE, steps: $STEPS; caps $total s within a deadline of $DEADLINE_S s; logs in $LOGS"

left() {  # seconds step $1 may take: its cap, or what is left before the deadline
    local rest=$(( start + DEADLINE_S - $(date +%s) ))
    (( rest < ${CAP[$1]} )) && echo $(( rest > 1 ? rest : 1 )) || echo "${CAP[$1]}"
}

step() {  # step NAME: run bench/gpu_steps.py NAME within its cap; its output on the screen and in its log
    local name=$1 t0 rc
    t0=$(date +%s.%N)
    timeout -k 5 "$(left "$name")" "$PY" bench/gpu_steps.py "$name" --dir "$DIR" --logs "$LOGS" --device "$DEVICE" \
        --t0 "$t0" > "$LOGS/$name.log" 2>&1
    rc=$?
    grep -v -E "^(Traceback|  |warning: .*UserWarning)" "$LOGS/$name.log" | grep -E "^[a-zA-Z-]" | head -n 20
    if [ "$rc" -ne 0 ]; then
        echo "$name: exit $rc$( [ "$rc" -eq 124 ] && echo " (its cap of ${CAP[$name]} s or the deadline)") after" \
             "$(( $(date +%s) - ${t0%.*} )) s; see $LOGS/$name.log"
        [ "$rc" -eq 124 ] || tail -n 2 "$LOGS/$name.log" | sed "s/^/$name: /"
    fi
    return "$rc"
}

for name in $STEPS; do
    case $name in
    estimate) ;;     # last, after the total
    tests)
        t0=$(date +%s)
        timeout -k 5 "$(left tests)" "$PY" -m pytest -q -p no:cacheprovider tests/training/test_loop_cuda.py > "$LOGS/tests.log" 2>&1
        rc=$?
        echo "tests/training/test_loop_cuda.py: $(tail -n 1 "$LOGS/tests.log") ($(( $(date +%s) - t0 )) s)"
        [ "$rc" -eq 0 ] || grep -E "^(FAILED|ERROR)" "$LOGS/tests.log" | head -n 5
        ;;
    data)
        if [ -d "$DIR/pre" ]; then echo "data: already in $DIR"; else step data; fi
        ;;
    info)
        step info || { [ "$DEVICE" = cpu ] || exit 1; }
        ;;
    *)
        step "$name"
        ;;
    esac
done
echo "gpu.sh: $(( $(date +%s) - start )) s in all"
case " $STEPS " in *" estimate "*) step estimate ;; esac
