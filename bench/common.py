"""What the benchmark scripts share: the machine description printed in their headers."""
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
