"""The benchmark scripts run (smoke tests on tiny sizes: they print figures, no timing is asserted)."""
import importlib.util
import re

import pytest
import torch

from conftest import GLIBC, ROOT, run_cli


def _bench_module(monkeypatch):
    """bench/train.py as a module (the script finds bench/common.py through its own folder on sys.path)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "bench" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("allocator", [[], pytest.param(["--keep-freed-memory"], marks=pytest.mark.skipif(
    not GLIBC, reason="mallopt is glibc's"))])
def test_train_bench_runs(allocator):
    proc = run_cli("bench/train.py", "--batch", "2", "--iters", "1", "--warmup", "0", "--latency-runs", "1",
                   "--no-torcheeg", *allocator)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "this project (paper)" in out and "this project (official)" in out and "samples/s" in out
    assert ("freed memory kept" in out) == bool(allocator)
    assert "single-sample inference latency" in out
    assert re.search(r"float32 2048x2048 matmul +\d+ GFLOP/s", out)
    flops = re.findall(r"this project \((?:paper|official)\) .* ([\d.]+) GFLOP/sample", out)
    assert len(flops) == 2 and all(float(f) > 0 for f in flops)


def test_counted_flops_of_a_training_step(monkeypatch):
    """FlopCounterMode counts a Linear layer's forward and both backward products: 3 x 2 x N x in x out."""
    counted_flops = _bench_module(monkeypatch).counted_flops
    layer = torch.nn.Linear(7, 5)
    x = torch.randn(3, 7, requires_grad=True)
    assert counted_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 3 * 7 * 5


def test_train_bench_runs_under_cpu_bf16_autocast():
    proc = run_cli("bench/train.py", "--batch", "2", "--iters", "1", "--warmup", "1", "--latency-runs", "1",
                   "--no-torcheeg", "--amp", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "device: cpu, bf16 autocast" in proc.stdout and "this project (paper)" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--iters", "0"], "error: --batch, --iters"),
    (["--device", "mps"], "error: --device: expected auto, cpu, cuda or cuda:N, got 'mps'"),
    (["--compile-torcheeg", "--warmup", "0"], "error: --compile-torcheeg needs --warmup >= 1"),
    (["--compile-torcheeg"], "error: --compile-torcheeg and --no-torcheeg exclude each other"),
])
def test_train_bench_rejects_bad_arguments(args, message):
    proc = run_cli("bench/train.py", *args, "--no-torcheeg")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith(message)
