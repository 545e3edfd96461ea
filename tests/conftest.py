"""Test setup: the repository's top level is importable (the project is a flat set of scripts),
plus helpers shared by the test files: temp INI files and running the command lines."""
import configparser
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

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


def run_in_process(capsys, script: str, *args: str) -> subprocess.CompletedProcess:
    """`python <script> <args>` as utils.cli_main runs it, but in this process, reported as run_cli reports
    it: (exit code, stdout, stderr). Saves a command line's start-up (importing torch: 1-2 s); the tests
    that check the process itself (signals, kills, workers, exit codes of the interpreter) use run_cli."""
    import torch

    import Preprocess
    import run
    from sst import errors

    main = {"run.py": run.main, "Preprocess.py": Preprocess.main}[script]
    threads = torch.get_num_threads()
    capsys.readouterr()         # what the test printed before is not the command's
    try:
        code, error = int(main(list(args)) or 0), ""
    except errors.UserError as e:
        code, error = 1, "error: " + errors.printable(str(e).replace("\n", " "), limit=None) + "\n"
    except SystemExit as e:      # argparse
        code, error = e.code, ""
    finally:
        torch.set_num_threads(threads)      # run.main may set it
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([script, *args], code, out, err + error)


def tiny_seed_tree(root: Path, preprocess: bool = True) -> tuple[Path, Path]:
    """Two synthetic SEED subjects (one session, short trials) under `root` and an INI for them at 16 x 16,
    2 epochs of the tiny model, one thread; preprocessed unless asked not to. Returns (root, ini)."""
    from sst.data import synthetic

    if not (root / "SEED").exists():
        synthetic.write_seed(root / "SEED", subjects=(1, 2), sessions=(1,), trial_fraction=0.05, seed=0)
    ini = write_ini(root / "tiny.ini",
                    path={"dataset_root": root / "SEED", "preprocessed_root": root / "pre", "result_path": root / "res"},
                    data={"input_width": 16}, model=TINY_MODEL,
                    training={"nbEpoch": 2, "batch_size": 32, "num_threads": 1})
    if preprocess:
        p = run_cli("Preprocess.py", "-c", str(ini))
        assert p.returncode == 0, p.stderr
    return root, ini


class Payload:
    """An object whose unpickling creates `marker`: what a shared checkpoint could carry instead of tensors.
    Loading a file that holds one must never create the marker."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def tiny_run(n: int = 96, **training):
    """(cfg, spec, data): a run held in memory for Trainer tests, no files: TINY_MODEL on 16 x 16 maps,
    n windows of random electrode values (9 raw time points) with a class offset, split 60/20/20 in order;
    batch 16, 3 epochs unless `training` says otherwise."""
    import torch

    from sst import config
    from sst.training import loop, protocols, runspec

    cfg = config.load_config(ROOT / "SEED.ini").replace(
        data={"input_width": 16, "temInput_length": 9}, model={k: int(v) for k, v in TINY_MODEL.items()},
        training={"nbEpoch": 3, "batch_size": 16, "patience": 20} | training)
    g = torch.Generator().manual_seed(0)
    label = torch.arange(n) % cfg.model.nb_class
    de = torch.randn(n, 62, cfg.data.specInput_length, generator=g) + 0.5 * label[:, None, None]
    eeg = torch.randn(n, 62, cfg.data.temInput_length, generator=g)
    rows = np.arange(n)
    split = protocols.Split(rows[:int(0.6 * n)], rows[int(0.6 * n):int(0.8 * n)], rows[int(0.8 * n):])
    data = loop.RunData({"spectral": de, "temporal": eeg}, label, split, {}, [1])
    return cfg, runspec.RunSpec(1, 1), data
