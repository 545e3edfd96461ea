"""The benchmark scripts run (smoke tests on tiny sizes: they print figures, no timing is asserted)."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import GLIBC, ROOT, run_cli


@pytest.mark.slow
@pytest.mark.parametrize("allocator", [[], pytest.param(["--keep-freed-memory"], marks=pytest.mark.skipif(
    not GLIBC, reason="mallopt is glibc's"))])
def test_train_bench_runs(allocator):
    proc = run_cli("bench/train.py", "--batch", "2", "--iters", "1", "--warmup", "0", "--latency-runs", "1",
                   "--no-torcheeg", *allocator)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name in ("accelerated (paper)", "accelerated (official)", "definition (paper)"):
        assert re.search(rf"^  {re.escape(name)} +[\d.]+ samples/s", out, re.M), name
    assert re.search(r"ratio accelerated \(paper\) / definition \(paper\): [\d.]+x", out)
    assert ("freed memory kept" in out) == bool(allocator)
    assert "single-sample inference latency" in out
    assert re.search(r"float32 2048x2048 matmul +\d+ GFLOP/s", out)
    flops = re.findall(r"(?:accelerated|definition) \((?:paper|official)\) .* ([\d.]+) GFLOP/sample", out)
    assert len(flops) == 3 and all(float(f) > 0 for f in flops)


@pytest.mark.slow
def test_train_bench_runs_under_cpu_bf16_autocast():
    proc = run_cli("bench/train.py", "--batch", "2", "--iters", "1", "--warmup", "1", "--latency-runs", "1",
                   "--no-torcheeg", "--amp", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "device: cpu, bf16 autocast" in proc.stdout and "accelerated (paper)" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--iters", "0"], "error: --batch, --iters"),
    (["--device", "mps"], "error: --device: expected auto, cpu, cuda or cuda:N, got 'mps'"),
    (["--compile-torcheeg", "--warmup", "0"], "error: --compile-torcheeg needs --warmup >= 1"),
    (["--compile-torcheeg"], "error: --compile-torcheeg and --no-torcheeg exclude each other"),
])
@pytest.mark.slow
def test_train_bench_rejects_bad_arguments(args, message):
    proc = run_cli("bench/train.py", *args, "--no-torcheeg")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(message)


# ----------------------------------------------------------------------------- bench/gpu.sh

ESTIMATE = re.compile(r"^protocol estimate: (\S+ min|n/a) \(one-off (\S+) s \+ 45 x \(fixed (\S+) s \+ 50 x median "
                      r"epoch (\S+) s\)\)(?:, the best of (\d+) measured: (.+))?$")


def test_gpu_sh_caps_add_up_to_less_than_its_deadline():
    text = (ROOT / "bench" / "gpu.sh").read_text()
    caps = dict(re.findall(r"\[(\w+)\]=(\d+)", re.search(r"declare -A CAP=\((.*)\)", text)[1]))
    deadline = int(re.search(r"DEADLINE_S=\$\{DEADLINE_S:-(\d+)\}", text)[1])
    steps = re.search(r'STEPS=\$\{GPU_BENCH_STEPS:-([a-z ]+)\}', text)[1].split()
    assert set(steps) == set(caps) and sum(int(caps[s]) for s in steps) < deadline < 8 * 60
    assert subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu.sh")], timeout=60).returncode == 0


def test_gpu_estimate_is_one_line_of_the_agreed_form(tmp_path):
    proc = run_cli("bench/gpu_steps.py", "estimate", "--dir", str(tmp_path))
    assert proc.returncode == 0 and ESTIMATE.match(proc.stdout.strip())[1] == "n/a"
    (tmp_path / "figures.json").write_text('{"one_off": 20, "fixed": 2, "epoch": 0.5}')
    proc = run_cli("bench/gpu_steps.py", "estimate", "--dir", str(tmp_path))
    lines = proc.stdout.strip().splitlines()
    figures = ESTIMATE.match(lines[-1]).groups()
    assert figures == ("20.6 min", "20.0", "2.00", "0.500", "1", "the defaults, --jobs 1")    # 20 + 45 x 27 = 1235 s


def test_gpu_estimate_names_the_best_combination_measured(tmp_path):
    """Each option pays its first epoch's extra (compiling) once; --jobs J counts a run's epoch among J / J."""
    (tmp_path / "figures.json").write_text(json.dumps({
        "one_off": 20, "fixed": 2, "epoch": 0.5, "default": "eager, bf16, background save", "jobs2_epoch": 0.6,
        "jobs4_epoch": 2.4, "options": {"compiled, bf16, background save": {"epoch": 0.2, "extra": 60},
                                        "eager, bf16, sync save": {"epoch": 0.55, "extra": 0}}}))
    proc = run_cli("bench/gpu_steps.py", "estimate", "--dir", str(tmp_path))
    lines = proc.stdout.strip().splitlines()
    assert lines[:-1] == ["estimate: 10.3 min with compiled, bf16, background save, --jobs 1",     # 80 + 45 x 12
                          "estimate: 13.1 min with eager, bf16, background save, --jobs 2",       # 20 + 45 x 17
                          "estimate: 20.6 min with eager, bf16, background save, --jobs 1",
                          "estimate: 22.5 min with eager, bf16, sync save, --jobs 1",
                          "estimate: 24.3 min with eager, bf16, background save, --jobs 4"]      # 20 + 45 x 32
    assert ESTIMATE.match(lines[-1]).groups() == ("10.3 min", "80.0", "2.00", "0.200", "5",
                                                  "compiled, bf16, background save, --jobs 1")


@pytest.mark.slow
def test_gpu_sh_dry_run_on_the_cpu(tmp_path):
    """GPU_BENCH_DEVICE=cpu: the steps that fit a test (about a minute on 2 cores; jobs, four worker processes,
    and the CUDA tests, skipped here, left out), every line printed, the estimate last; then the throughput
    step alone (no cap: on a busy machine its bf16 steps may need more than gpu.sh gives them)."""
    env = {**os.environ, "GPU_BENCH_DEVICE": "cpu", "GPU_BENCH_DIR": str(tmp_path), "PYTHON": sys.executable,
           "GPU_BENCH_STEPS": "info data check runs options resume estimate"}
    proc = subprocess.run(["bash", "bench/gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for start in ("torch ", "GPU: none: dry run", "data: synthetic SEED", "run 1: ", "run 2: ", "one-off cost: ",
                  "fixed cost per run: ", "median epoch from epoch 2: "):
        assert any(line.startswith(start) for line in lines), start
    assert sum(line.startswith("correctness: ") and line.endswith(": ok") for line in lines) == 3    # bf16, CPU, resume
    options = [line for line in lines if line.startswith("option ")]
    assert [line.split(":")[0] for line in options] == [
        "option eager, float32, background save", "option eager, bf16 (float32 on the CPU), sync save",
        "option compiled, bf16 (float32 on the CPU), background save", "option compiled, float32, background save"]
    assert all(line.endswith("finite: ok") for line in options) and "graphs compiled 1," in options[2]
    assert len([line for line in lines if line.startswith("estimate: ")]) == 5
    assert ESTIMATE.match(lines[-1]) and ESTIMATE.match(lines[-1])[1] != "n/a" and ESTIMATE.match(lines[-1])[5] == "5"
    proc = run_cli("bench/gpu_steps.py", "throughput", "--dir", str(tmp_path), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert len(re.findall(r"^throughput: batch (64|256), (float32|bf16): \d+ samples/s", proc.stdout, re.M)) == 4
