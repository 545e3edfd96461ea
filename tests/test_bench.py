"""The benchmark scripts run (smoke tests on tiny sizes: they print figures, no timing is asserted)."""
import re

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
