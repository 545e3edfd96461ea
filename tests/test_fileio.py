"""sst/fileio.py: atomic and direct writes, a full disk or an unwritable folder as one line, temporaries of dead processes."""
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_MODEL, copy_of, dropped_root, run_cli, write_ini
from sst import errors, fileio


def test_pwrite_all_raises_instead_of_looping(tmp_path, monkeypatch):
    """A write that makes no progress, or an EINVAL under an O_DIRECT flag that will not clear, is an
    error rather than an endless retry."""
    from sst import fileio

    with open(tmp_path / "f", "wb") as fh:
        monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: 0)
        with pytest.raises(OSError, match="wrote nothing"):
            fileio.pwrite_all(fh.fileno(), memoryview(b"abc"), 0)
        if fileio.direct_writes(fh.fileno(), True):
            def refuse(fd, data, offset):
                raise OSError(errno.EINVAL, "Invalid argument")

            monkeypatch.setattr(os, "pwrite", refuse)
            monkeypatch.setattr(fileio, "direct_writes", lambda fd, on: on)     # clearing the flag fails silently
            with pytest.raises(OSError, match="Invalid argument"):
                fileio.pwrite_all(fh.fileno(), memoryview(bytes(4096)), 0)


def test_torch_save_failure_is_one_line_naming_the_file(tmp_path, monkeypatch):
    """torch.save reports a failed write as RuntimeError, not OSError: still one OutputError."""
    def failing(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(errors.OutputError, match=rf"{tmp_path}/x.pt: cannot write \(\[enforce fail"):
        with fileio.atomic_path(tmp_path / "x.pt") as tmp:
            torch.save({}, tmp)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="a bug"):        # any other RuntimeError keeps its traceback
        with fileio.atomic_path(tmp_path / "y.pt"):
            raise RuntimeError("a bug")


@pytest.mark.slow
def test_unlistable_runs_folder_is_one_error(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    runs = root / "res" / "runs"
    runs.chmod(0o300)           # enter and write, but not list
    try:
        p = subprocess.run(dropped_root([sys.executable, "run.py", "-c", str(ini)]), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    finally:
        runs.chmod(0o755)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.splitlines() == [f"error: {ini}: [path] result_path: {runs}: cannot list the folder (Permission denied)"]


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs (root only, where mount is allowed); skipped elsewhere."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                                           capture_output=True, timeout=60).returncode != 0:
        pytest.skip("needs root and permission to mount a tmpfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=60)


def fill(disk: Path, leave: int) -> None:
    """Fill `disk` up to `leave` free bytes."""
    free = shutil.disk_usage(disk).free - leave
    with open(disk / "filler", "wb") as fh:
        while free > 0:
            chunk = min(free, 1 << 20)
            fh.write(b"\0" * chunk)
            free -= chunk


@pytest.mark.slow
def test_a_full_disk_costs_no_finished_work(finished, small_disk):
    """A real full disk: Preprocess.py --force and run.py each stop with one line saying so; the finished
    session and the finished runs survive."""
    root, _ = finished
    shutil.copytree(root / "SEED", small_disk.parent / "SEED")
    shutil.copytree(root / "pre" / "sub01_ses1", small_disk / "pre" / "sub01_ses1")
    shutil.copytree(root / "res", small_disk / "res", ignore=shutil.ignore_patterns("*sub02*", "figures"))
    ini = write_ini(small_disk.parent / "disk.ini",
                    path={"dataset_root": small_disk.parent / "SEED", "preprocessed_root": small_disk / "pre",
                          "result_path": small_disk / "res"},
                    data={"input_width": 16}, model=TINY_MODEL,
                    training={"nbEpoch": 2, "batch_size": 32, "num_threads": 1})
    assert run_cli("Preprocess.py", "-c", str(ini), "--subjects", "2").returncode == 0
    session = {p.name: p.read_bytes() for p in (small_disk / "pre" / "sub01_ses1").iterdir()}
    record = (small_disk / "res" / "runs" / "sub01_ses1.json").read_bytes()
    (small_disk / "res" / "checkpoints" / "sub01_ses1.partial.pt").unlink(missing_ok=True)
    fill(small_disk, 64 << 10)

    p = run_cli("Preprocess.py", "-c", str(ini), "--force", "--subjects", "1")
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.splitlines()) == 1 and "no space left on device" in p.stderr
    assert {q.name: q.read_bytes() for q in (small_disk / "pre" / "sub01_ses1").iterdir()} == session

    p = run_cli("run.py", "-c", str(ini))
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith(f"error: {small_disk}/res/") and "no space left on device" in p.stderr.splitlines()[-1]
    assert (small_disk / "res" / "runs" / "sub01_ses1.json").read_bytes() == record


@pytest.mark.slow
def test_only_temporaries_of_dead_processes_are_removed(tmp_path):
    from sst import fileio

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)  # reaped: its pid no longer exists
    with fileio.atomic_path(tmp_path / "result.json") as tmp:
        name = tmp.name  # .result.json~<our pid>-<host>~<random>.tmp
    for pid in (dead.pid, os.getpid(), os.getppid()):  # as if `pid` had been killed while writing
        (tmp_path / name.replace(f"~{os.getpid()}-", f"~{pid}-")).write_text("half a file")
    (tmp_path / ".notes.tmp").write_text("not ours")
    assert fileio.remove_stale_temporaries(tmp_path) == 1
    left = sorted(p.name.split("~")[1].split("-")[0] for p in tmp_path.glob(".*~*.tmp"))
    assert left == sorted([str(os.getpid()), str(os.getppid())]) and (tmp_path / ".notes.tmp").exists()
