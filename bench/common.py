"""What the benchmark scripts share: the machine description printed in their headers."""
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def matrix_product(device: torch.device, size: int = 2048):
    """A float32 size x size matrix product on `device` as a closure, and its floating-point operations.

    A reference for what the machine's arithmetic can do at best: narrow convolutions and
    element-wise passes run well below it. Time it in the same rounds as the models (the rate of a
    shared machine drifts).
    """
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return (lambda: a @ b), 2 * size ** 3
