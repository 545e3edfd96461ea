"""Test setup: the repository's top level is importable (the project is a flat set of scripts),
plus helpers shared by the test files: temp INI files and running the command lines."""
import configparser
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GLIBC = platform.libc_ver()[0] == "glibc"   # mallopt (utils.keep_freed_memory) is glibc's

# A network small enough for CPU tests: 16x16 maps, 2 dense blocks of one layer each.
TINY_MODEL = {"depth_spec": "10", "depth_tem": "10", "nb_dense_block": "2", "gr_spec": "4", "gr_tem": "4"}


def write_ini(ini: Path, base: str = "SEED.ini", /, **sections: dict) -> Path:
    """Copy a top-level INI file to `path` with some keys changed: write_ini(p, data={"input_width": 16})."""
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / base, encoding="utf-8")
    for section, values in sections.items():
        if not parser.has_section(section):
            parser.add_section(section)
        for key, value in values.items():
            parser[section][key] = str(value)
    ini.parent.mkdir(parents=True, exist_ok=True)
    with open(ini, "w", encoding="utf-8") as fh:
        parser.write(fh)
    return ini


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python <args>` from the repository root; returns the completed process (text output)."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
