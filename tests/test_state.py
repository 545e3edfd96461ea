"""Damaged state and file-system faults: what the tools leave behind, edited, cut short or stranded on
a full or unreadable disk, gets one clear line and never costs finished work.

    python -m pytest tests/test_state.py -q

Per file kind (schemas.py): a damaged run record or partial state is set aside and its run redone; a
damaged manifest marks its session as not preprocessed; a damaged or missing best checkpoint stops
--explain with its name. Writes that fail (disk full, torch.save's RuntimeError) are one OutputError
naming the path; Preprocess.py --force keeps the old session until the new one is complete.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import config
from conftest import TINY_MODEL, run_cli, tiny_seed_tree, write_ini
import fileio
import Preprocess
import preprocessed
import results
import schemas
import training
import utils

DROP_ROOT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Two synthetic SEED subjects preprocessed at 16 x 16 and trained (2 epochs): a result folder to damage."""
    root, ini = tiny_seed_tree(tmp_path_factory.mktemp("state"))
    p = run_cli("run.py", "-c", str(ini))
    assert p.returncode == 0, p.stderr
    return root, ini


def copy_of(finished, tmp_path) -> tuple[Path, Path]:
    """A private copy of the finished tree, with an INI pointing at it."""
    root, _ = finished
    for name in ("SEED", "pre", "res"):
        shutil.copytree(root / name, tmp_path / name)
    return tiny_seed_tree(tmp_path, preprocess=False)


# ----------------------------------------------------------------------------- run records

RECORD_DAMAGE = {
    "not-json": (lambda r: "{not json", "not readable JSON"),
    "cut-short": (lambda r: json.dumps(r)[:200], "not readable JSON"),
    "a-list": (lambda r: "[1, 2]", "expected a record"),
    "no-accuracy": (lambda r: json.dumps({k: v for k, v in r.items() if k != "accuracy"}), "accuracy: missing"),
    "accuracy-a-string": (lambda r: json.dumps({**r, "accuracy": "high"}), "accuracy: expected a number in [0, 1]"),
    "confusion-of-4-classes": (lambda r: json.dumps({**r, "confusion_matrix": [[1] * 4] * 4}),
                               "confusion_matrix: 4 classes, the configuration has 3"),
    "another-run's-name": (lambda r: json.dumps({**r, "run": "sub09_ses3"}), "run: 'sub09_ses3' is not this file's"),
    "history-cut": (lambda r: json.dumps({**r, "history": r["history"][:1]}), "history: 1 epochs, epochs_run says 2"),
}


@pytest.mark.parametrize("damage", RECORD_DAMAGE)
def test_damaged_run_record_is_set_aside(finished, tmp_path, capsys, damage):
    root, ini = copy_of(finished, tmp_path)
    cfg = config.load_config(ini)
    path = root / "res" / "runs" / "sub01_ses1.json"
    edit, problem = RECORD_DAMAGE[damage]
    path.write_text(edit(json.loads(path.read_text())))
    out = results.ResultDir(cfg)
    done = out.finished()
    assert sorted(done) == ["sub02_ses1"] and path.is_file() and capsys.readouterr().err == ""  # found, not moved
    out.tidy([], done)                                  # once the command's checks have passed
    assert not path.exists() and (root / "res" / "runs" / "sub01_ses1.json.damaged").is_file()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {path}: damaged (") and problem in err[0]


@pytest.mark.slow
def test_damaged_run_record_is_redone_through_the_command_line(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    (root / "res" / "runs" / "sub01_ses1.json").write_text("{not json")
    p = run_cli("run.py", "-c", str(ini))
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.splitlines()[0].startswith("warning: ") and "1 already finished" in p.stdout
    assert json.loads((root / "res" / "runs" / "sub01_ses1.json").read_text())["epochs_run"] == 2
    again = run_cli("run.py", "-c", str(ini))          # nothing trips the next invocation
    assert again.returncode == 0 and again.stderr == "" and "2 already finished" in again.stdout


def test_concurrent_shards_set_a_damaged_record_aside_once(finished, tmp_path, capsys):
    """Two --shard processes both find the same damaged record; the first sets it aside and redoes the
    run; the second neither fails on the vanished file nor sets the redone record aside."""
    root, ini = copy_of(finished, tmp_path)
    cfg = config.load_config(ini)
    path = root / "res" / "runs" / "sub01_ses1.json"
    good = path.read_text()
    path.write_text("{not json")
    first, second = results.ResultDir(cfg), results.ResultDir(cfg)
    done = first.finished()
    second.finished()
    first.tidy([], done)
    assert (path.parent / "sub01_ses1.json.damaged").is_file() and not path.exists()
    path.write_text(good)                                   # the first shard's redo
    second.tidy([], done)
    assert path.read_text() == good and not (path.parent / "sub01_ses1.json.damaged.1").exists()
    assert len(capsys.readouterr().err.splitlines()) == 1  # one warning, from the first


def test_a_refused_command_sets_nothing_aside(finished, tmp_path):
    """A command that fails on a user error after finding a damaged record leaves it where it was."""
    root, ini = copy_of(finished, tmp_path)
    damaged = root / "res" / "runs" / "sub01_ses1.json"
    damaged.write_text("{not json")
    p = run_cli("run.py", "-c", str(ini), "--summarize", "--subjects", "9")          # no such subject
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "warning" not in p.stderr, p.stderr
    ini.write_text(ini.read_text().replace("protocol = trial", "protocol = loso"))   # 2 subjects: loso needs 3
    p = run_cli("run.py", "-c", str(ini))
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "warning" not in p.stderr, p.stderr
    assert damaged.read_text() == "{not json" and not list(damaged.parent.glob("*.damaged*"))


# ----------------------------------------------------------------------------- partial states


def partial_state(cfg) -> dict:
    spec = training.RunSpec(1, 1)
    data = training.build_run_data(cfg, spec, preprocessed.load_preprocessed(cfg, subjects=[1]))
    trainer = training.Trainer(cfg, spec, data, torch.device("cpu"))
    return {"config_key": results.result_key(cfg), **trainer.state()}, trainer


PARTIAL_DAMAGE = {
    "cut-short": lambda path, state: path.write_bytes(path.read_bytes()[:500]),
    "not-a-checkpoint": lambda path, state: path.write_text("hello"),
    "no-early-stopping-fields": lambda path, state: torch.save({**state, "best": {"epoch": 1}}, path),
    "history-of-strings": lambda path, state: torch.save({**state, "history": ["epoch 1"]}, path),
    "tensors-of-another-network": lambda path, state: torch.save(
        {**state, "net": {k: torch.zeros(1) for k in state["net"]}}, path),
}


@pytest.mark.parametrize("damage", PARTIAL_DAMAGE)
def test_damaged_partial_state_is_refused_as_damaged(finished, tmp_path, damage):
    root, ini = copy_of(finished, tmp_path)
    cfg = config.load_config(ini)
    state, trainer = partial_state(cfg)
    path = tmp_path / "x.partial.pt"
    torch.save(state, path)
    results.load_partial(path, trainer, state["config_key"])      # the undamaged one loads
    PARTIAL_DAMAGE[damage](path, state)
    with pytest.raises(results.DamagedFile):
        results.load_partial(path, partial_state(cfg)[1], state["config_key"])


@pytest.mark.slow
def test_damaged_partial_state_is_set_aside_and_the_run_redone(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    (root / "res" / "runs" / "sub01_ses1.json").unlink()
    partial = root / "res" / "checkpoints" / "sub01_ses1.partial.pt"
    partial.write_bytes(b"PK\x03\x04 cut short")
    for attempt in range(2):            # the second invocation finds the finished run, nothing else
        p = run_cli("run.py", "-c", str(ini))
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert (root / "res" / "checkpoints" / "sub01_ses1.partial.pt.damaged").is_file()
    assert (root / "res" / "runs" / "sub01_ses1.json").is_file() and not partial.exists()


# ----------------------------------------------------------------------------- manifests and best checkpoints


@pytest.mark.slow
def test_damaged_manifest_marks_its_session_not_preprocessed(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    manifest = root / "pre" / "sub01_ses1" / "manifest.json"
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "arrays"}))
    with pytest.raises(utils.DataError, match=r"manifest.json: arrays: missing, so sub01_ses1 counts as not "
                                              r"preprocessed; run `python Preprocess.py -c .* --subjects 1 --sessions 1`"):
        preprocessed.load_preprocessed(config.load_config(ini))
    p = run_cli("Preprocess.py", "-c", str(ini))            # rebuilt without --force
    assert p.returncode == 0 and p.stdout.startswith("sub01_ses1:"), p.stderr
    assert len(preprocessed.load_preprocessed(config.load_config(ini))) == 2


@pytest.mark.slow
def test_damaged_or_missing_best_checkpoint_is_named(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    best = root / "res" / "checkpoints" / "sub01_ses1.pt"
    best.write_bytes(best.read_bytes()[:300])
    p = run_cli("run.py", "-c", str(ini), "--explain", "sub01_ses1")
    assert p.returncode == 1 and p.stderr.startswith(f"error: {best}: not a readable checkpoint")
    assert len(p.stderr.splitlines()) == 1
    checkpoint = torch.load(root / "res" / "checkpoints" / "sub02_ses1.pt", weights_only=False)
    torch.save({**checkpoint, "normalization": None}, best)
    p = run_cli("run.py", "-c", str(ini), "--explain", "sub01_ses1")
    assert p.returncode == 1 and "damaged checkpoint (normalization: expected the input statistics" in p.stderr
    best.unlink()
    p = run_cli("run.py", "-c", str(ini), "--explain", "sub01_ses1")
    assert p.returncode == 1 and "checkpoint not found, although the run finished" in p.stderr
    p = run_cli("run.py", "-c", str(ini), "--summarize")         # counted, and said
    assert p.returncode == 0
    assert p.stderr.startswith(f"warning: {root / 'res' / 'checkpoints'}: no checkpoint for finished run(s) sub01_ses1")
    assert json.loads((root / "res" / "summary.json").read_text())["runs_without_checkpoint"] == ["sub01_ses1"]


def test_a_checkpoint_whose_config_or_weights_do_not_make_a_network_is_named(finished, tmp_path):
    root, _ = finished
    checkpoint = torch.load(root / "res" / "checkpoints" / "sub01_ses1.pt", weights_only=False)
    for damaged in ({**checkpoint, "config": {"model": {}}},
                    {**checkpoint, "model": {k: torch.zeros(1) for k in checkpoint["model"]}}):
        torch.save(damaged, tmp_path / "x.pt")
        with pytest.raises(utils.DataError, match=r"x.pt: damaged checkpoint \(its config or weights do not make"):
            results.load_trained(tmp_path / "x.pt")


@pytest.mark.slow
def test_unreadable_run_record_is_named_not_redone(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    record = root / "res" / "runs" / "sub01_ses1.json"
    record.chmod(0o000)
    try:
        p = subprocess.run(dropped_root([sys.executable, "run.py", "-c", str(ini)]), cwd=Path(__file__).parents[1],
                           capture_output=True, text=True, timeout=300)
    finally:
        record.chmod(0o644)
    assert p.returncode == 1 and p.stderr.splitlines() == [
        f"error: {record}: cannot read the result file (Permission denied)"], p.stderr
    assert not (root / "res" / "runs" / "sub01_ses1.json.damaged").exists()


@pytest.mark.slow
def test_set_data_keys_preprocess_beside_the_ini_sessions(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    session = {p.name: p.stat().st_mtime_ns for p in (root / "pre" / "sub01_ses1").iterdir()}
    p = run_cli("Preprocess.py", "-c", str(ini), "--set", "data.input_width=17", "--no-maps")
    assert p.returncode == 0, p.stderr
    assert (root / "pre" / "data.input_width=17" / "sub01_ses1" / "manifest.json").is_file()
    assert {q.name: q.stat().st_mtime_ns for q in (root / "pre" / "sub01_ses1").iterdir()} == session


def test_schemas_accept_what_the_tools_write(finished):
    root, _ = finished
    record = json.loads((root / "res" / "runs" / "sub01_ses1.json").read_text())
    assert schemas.check(record, schemas.RUN_RECORD) is None
    assert schemas.check(torch.load(root / "res" / "checkpoints" / "sub01_ses1.pt", weights_only=False),
                         schemas.CHECKPOINT) is None
    assert schemas.check(json.loads((root / "pre" / "sub01_ses1" / "manifest.json").read_text()),
                         schemas.MANIFEST) is None


# ----------------------------------------------------------------------------- file-system faults


def test_full_disk_during_force_keeps_the_old_session(finished, tmp_path, monkeypatch):
    """In-process: the disk fills while the new session's arrays are written; the old session stays
    complete and loadable, and the error names the file and says why."""
    root, ini = copy_of(finished, tmp_path)
    cfg = config.load_config(ini)
    folder = root / "pre" / "sub01_ses1"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    calls = []

    def full(fh, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return np.lib.format.write_array(fh, np.asanyarray(array))

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(utils.OutputError, match=rf"{folder}/\w+\.npy: cannot write \(no space left on device\)"):
        Preprocess.preprocess(cfg, force=True, subjects=[1])
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before        # nothing added, nothing changed
    assert len(preprocessed.load_preprocessed(cfg, subjects=[1])) == 1


def test_torch_save_failure_is_one_line_naming_the_file(tmp_path, monkeypatch):
    """torch.save reports a failed write as RuntimeError, not OSError: still one OutputError."""
    def failing(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(utils.OutputError, match=rf"{tmp_path}/x.pt: cannot write \(\[enforce fail"):
        with fileio.atomic_path(tmp_path / "x.pt") as tmp:
            torch.save({}, tmp)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="a bug"):        # any other RuntimeError keeps its traceback
        with fileio.atomic_path(tmp_path / "y.pt"):
            raise RuntimeError("a bug")


def dropped_root(command: list[str]) -> list[str]:
    """`command` without root's permission override (skip when running as root without setpriv)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv")
    return [*DROP_ROOT_OVERRIDE, *command]


@pytest.mark.slow
def test_unlistable_runs_folder_is_one_error(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    runs = root / "res" / "runs"
    runs.chmod(0o300)           # enter and write, but not list
    try:
        p = subprocess.run(dropped_root([sys.executable, "run.py", "-c", str(ini)]), cwd=Path(__file__).parents[1],
                           capture_output=True, text=True, timeout=300)
    finally:
        runs.chmod(0o755)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.splitlines() == [f"error: {ini}: [path] result_path: {runs}: cannot list the folder (Permission denied)"]


@pytest.mark.slow
def test_read_only_result_folder_for_explain(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    figures_dir = root / "res" / "figures"
    figures_dir.mkdir(exist_ok=True)
    figures_dir.chmod(0o555)
    try:
        p = subprocess.run(dropped_root([sys.executable, "run.py", "-c", str(ini), "--explain", "sub01_ses1"]),
                           cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=300)
    finally:
        figures_dir.chmod(0o755)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {figures_dir}/sub01_ses1") and "ermission denied" in lines[0]


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs (root only, where mount is allowed); skipped elsewhere."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and permission to mount a tmpfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


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
