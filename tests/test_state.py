"""Damaged state and file-system faults: what the tools leave behind, edited, cut short or stranded on
a full or unreadable disk, gets one clear line and never costs finished work.

    python -m pytest tests/test_state.py -q

Per file kind (schemas.py): a damaged run record or partial state is set aside and its run redone; a
damaged manifest marks its session as not preprocessed; a damaged or missing best checkpoint stops
--explain with its name. Writes that fail (disk full, torch.save's RuntimeError) are one OutputError
naming the path; Preprocess.py --force keeps the old session until the new one is complete.

Files from elsewhere: a checkpoint or partial state carrying code (a pickle payload) never runs it,
whatever reads it; an earlier version's checkpoint is refused until converted; a permission error is
never called damage. One configuration writes a result folder at a time (ResultDir.lock, tested with
a holder in another process); workers die with their parent.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

import Preprocess
import run
from conftest import ROOT, TINY_MODEL, Payload, run_cli, run_in_process, tiny_seed_tree, write_ini
from sst import config, errors, fileio, schemas
from sst.data import session_store
from sst.models import kinds
from sst.reporting import figures, summaries
from sst.results import checkpoints, provenance, safe_load, store
from sst.training import loop, runspec

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
    out = store.ResultDir(cfg)
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
    first, second = store.ResultDir(cfg), store.ResultDir(cfg)
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
    spec = runspec.RunSpec(1, 1)
    data = loop.build_run_data(cfg, spec, session_store.load_preprocessed(cfg, subjects=[1]))
    trainer = loop.Trainer(cfg, spec, data, torch.device("cpu"))
    return {"config_key": provenance.result_key(cfg), **trainer.state()}, trainer


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
    store.load_partial(path, trainer, state["config_key"])      # the undamaged one loads
    PARTIAL_DAMAGE[damage](path, state)
    with pytest.raises(store.DamagedFile):
        store.load_partial(path, partial_state(cfg)[1], state["config_key"])


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
    with pytest.raises(errors.DataError, match=r"manifest.json: arrays: missing, so sub01_ses1 counts as not "
                                              r"preprocessed; run `python Preprocess.py -c .* --subjects 1 --sessions 1`"):
        session_store.load_preprocessed(config.load_config(ini))
    p = run_cli("Preprocess.py", "-c", str(ini))            # rebuilt without --force
    assert p.returncode == 0 and p.stdout.startswith("sub01_ses1:"), p.stderr
    assert len(session_store.load_preprocessed(config.load_config(ini))) == 2


@pytest.mark.slow
def test_damaged_or_missing_best_checkpoint_is_named(finished, tmp_path, capsys):
    root, ini = copy_of(finished, tmp_path)
    best = root / "res" / "checkpoints" / "sub01_ses1.pt"
    best.write_bytes(best.read_bytes()[:300])
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--explain", "sub01_ses1")
    assert p.returncode == 1 and p.stderr.startswith(f"error: {best}: not a readable checkpoint")
    assert len(p.stderr.splitlines()) == 1
    checkpoint = torch.load(root / "res" / "checkpoints" / "sub02_ses1.pt", weights_only=False)
    torch.save({**checkpoint, "normalization": None}, best)
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--explain", "sub01_ses1")
    assert p.returncode == 1 and "damaged checkpoint (normalization: expected the input statistics" in p.stderr
    best.unlink()
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--explain", "sub01_ses1")
    assert p.returncode == 1 and "checkpoint not found, although the run finished" in p.stderr
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--summarize")         # counted, and said
    assert p.returncode == 0
    assert p.stderr.startswith(f"warning: {root / 'res' / 'checkpoints'}: no checkpoint for finished run(s) sub01_ses1")
    assert json.loads((root / "res" / "summary.json").read_text())["runs_without_checkpoint"] == ["sub01_ses1"]


def test_a_checkpoint_whose_config_or_weights_do_not_make_a_network_is_named(finished, tmp_path):
    root, _ = finished
    checkpoint = torch.load(root / "res" / "checkpoints" / "sub01_ses1.pt", weights_only=False)
    for damaged in ({**checkpoint, "config": {"model": {}}},
                    {**checkpoint, "model": {k: torch.zeros(1) for k in checkpoint["model"]}}):
        torch.save(damaged, tmp_path / "x.pt")
        with pytest.raises(errors.DataError, match=r"x.pt: damaged checkpoint \(its config or weights do not make"):
            checkpoints.load_trained(tmp_path / "x.pt")


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
    with pytest.raises(errors.OutputError, match=rf"{folder}/\w+\.npy: cannot write \(no space left on device\)"):
        Preprocess.preprocess(cfg, force=True, subjects=[1])
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before        # nothing added, nothing changed
    assert len(session_store.load_preprocessed(cfg, subjects=[1])) == 1


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


# ----------------------------------------------------------------------------- files from elsewhere run no code

PAYLOAD_PLACES = {      # where a shared checkpoint could carry code: every place is refused alike
    "in-the-statistics": lambda c, p: {**c, "normalization": {**c["normalization"], "de_mean": p}},
    "in-the-weights": lambda c, p: {**c, "model": {**c["model"], "extra": p}},
    "a-key-of-its-own": lambda c, p: {**c, "note": p},
    "the-whole-file": lambda c, p: p,
}


@pytest.mark.parametrize("place", PAYLOAD_PLACES)
def test_a_checkpoint_payload_never_runs(finished, tmp_path, place):
    """Every reader of a best checkpoint: --predict, --explain, figures.py explain, results.load_trained and
    the converter refuse it with one line; the payload (it would create a file) never runs."""
    args = copy_of_results(finished, tmp_path)
    best, marker = tmp_path / "res" / "checkpoints" / "sub01_ses1.pt", tmp_path / "PWNED"
    torch.save(PAYLOAD_PLACES[place](torch.load(best, weights_only=True), Payload(marker)), best)
    ini = write_ini(tmp_path / "x.ini", path={"dataset_root": tmp_path, "preprocessed_root": tmp_path,
                                             "result_path": tmp_path / "res"}, data={"input_width": 16}, model=TINY_MODEL)
    readers = {
        "--predict": lambda: run.main([*args, "--predict", "sub01_ses1", "--subjects", "1", "--sessions", "1"]),
        "--explain": lambda: run.main([*args, "--explain", "sub01_ses1"]),
        "figures.py explain": lambda: figures.main(["explain", "-c", str(ini), "--run", "sub01_ses1"]),
        "results.load_trained": lambda: checkpoints.load_trained(best),
        "checkpoints.py --convert": lambda: checkpoints.main(["--convert", str(best)]),
    }
    for reader in readers.values():
        with pytest.raises(errors.DataError, match=rf"^{best}: holds objects whose loading would run code \(io.open\)"):
            reader()
    assert not marker.exists()


def test_a_partial_state_payload_never_runs(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    state, trainer = partial_state(config.load_config(ini))
    marker, path = tmp_path / "PWNED", tmp_path / "x.partial.pt"
    for damaged in ({**state, "history": Payload(marker)}, {**state, "best": {**state["best"], "state": Payload(marker)}},
                    Payload(marker)):
        torch.save(damaged, path)
        with pytest.raises(store.DamagedFile, match=r"^holds objects whose loading would run code \(io.open\)"):
            store.load_partial(path, trainer, state["config_key"])
    assert not marker.exists()


@pytest.mark.slow
def test_a_partial_state_payload_is_set_aside_on_resume(finished, tmp_path, capsys):
    """A plain rerun finds the payload where an interrupted run's state would be: set aside, run redone."""
    root, ini = copy_of(finished, tmp_path)
    (root / "res" / "runs" / "sub01_ses1.json").unlink()
    partial, marker = root / "res" / "checkpoints" / "sub01_ses1.partial.pt", tmp_path / "PWNED"
    torch.save({**partial_state(config.load_config(ini))[0], "history": Payload(marker)}, partial)
    assert run.main(["-c", str(ini)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {partial}: damaged (holds objects whose loading would run code (io.open)" in err
    assert not marker.exists() and (root / "res" / "runs" / "sub01_ses1.json").is_file()


def test_what_run_py_writes_loads_with_the_safe_loader(finished, tmp_path):
    """Best checkpoints (normalisation statistics as tensors, the run's pools) and partial states hold only
    tensors, dicts, lists, str, int, float, bool and None."""
    root, ini = finished
    checkpoint = torch.load(root / "res" / "checkpoints" / "sub01_ses1.pt", weights_only=True)
    assert all(torch.is_tensor(v) for v in checkpoint["normalization"].values())
    assert checkpoint["subject_pool"] == [1] and checkpoint["session_pool"] == [1]
    state, trainer = partial_state(config.load_config(ini))
    store.save_partial(tmp_path / "x.partial.pt", trainer, state["config_key"], {"model.py": "0"})
    assert torch.load(tmp_path / "x.partial.pt", weights_only=True)["code"] == {"model.py": "0"}


def test_a_checkpoint_of_an_earlier_version_loads_and_converts(finished, tmp_path, capsys):
    """Earlier versions stored the statistics as NumPy arrays: such a checkpoint is read with the safe loader
    plus NumPy's numeric arrays only (--predict of old results keeps working, running no code of the file),
    and `checkpoints.py --convert` rewrites it as tensors."""
    root, _ = finished
    checkpoint = torch.load(root / "res" / "checkpoints" / "sub01_ses1.pt", weights_only=True)
    path = tmp_path / "sub01_ses1.pt"
    torch.save({**checkpoint, "normalization": {k: v.numpy() for k, v in checkpoint["normalization"].items()}}, path)
    for _ in range(2):      # before and after the conversion
        _, _, stats = checkpoints.load_trained(path)
        for key, value in checkpoint["normalization"].items():
            assert isinstance(stats[key], np.ndarray) and np.array_equal(stats[key], value.numpy())
        assert checkpoints.main(["--convert", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{path}: converted (its NumPy arrays stored as tensors)",
                                                    f"{path}: loads safely already, left as it is"]


def test_a_permission_error_is_not_called_damage(finished, tmp_path, monkeypatch):
    """A checkpoint or partial state the file system will not let us read: one line saying so, no advice
    to delete it, and the file stays where it is (a partial state is not set aside)."""
    root, ini = copy_of(finished, tmp_path)
    best, partial = root / "res" / "checkpoints" / "sub01_ses1.pt", tmp_path / "x.partial.pt"
    state, trainer = partial_state(config.load_config(ini))
    torch.save(state, partial)
    real_open = open

    def refusing(path, *args, **kwargs):
        if Path(path) in (best, partial):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(safe_load, "open", refusing, raising=False)
    for read, path in ((lambda: safe_load.load_checkpoint(best), best),
                       (lambda: store.load_partial(partial, trainer, state["config_key"]), partial)):
        with pytest.raises(errors.DataError) as refused:
            read()
        assert str(refused.value) == (f"{path}: cannot read the file (Permission denied); check its permissions (it is "
                                      f"not damaged, nothing was changed)")
        assert "delete" not in str(refused.value) and path.is_file()


def test_odd_failure_records_are_named_and_skipped(finished, tmp_path, capsys):
    """failed/*.json whose run is no run name (or not the file's): one warning each, escaped; the summary
    goes on (it used to stop with AttributeError)."""
    root, ini = copy_of(finished, tmp_path)
    cfg = config.load_config(ini)
    failed = root / "res" / "failed"
    failed.mkdir()
    odd = {"x.json": "../../x", "other.json": "sub01_ses1", "seven.json": 7, "esc.json": "\x1b[2J", "sub01_ses1.json": None}
    for name, run_name in odd.items():
        (failed / name).write_text(json.dumps({"run": run_name, "error": "?", "config_key": provenance.result_key(cfg)}))
    assert summaries.summarize(cfg, store.ResultDir(cfg), subjects=[1, 2]) is not None
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == len(odd) and all(f"{failed}/" in line and line.endswith("; skipped") for line in warnings)
    assert any("'\\x1b[2J'" in line for line in warnings) and not any("\x1b" in line for line in warnings)


def copy_of_results(finished, tmp_path) -> list[str]:
    """A private copy of the finished result folder only (the preprocessed sessions are only read): the
    run.py arguments that use it."""
    root, ini = finished
    shutil.copytree(root / "res", tmp_path / "res")
    return ["-c", str(ini), "--result-path", str(tmp_path / "res")]


def test_predictions_mark_the_windows_the_run_trained_on(finished, tmp_path, capsys):
    """--predict on the run's own session: a warning with the test-only accuracy, and the CSV's split column
    (the trial protocol: trials 1-9 train or validation, 10-15 test); on another subject's session: unseen."""
    from sst.data import datasets

    args = copy_of_results(finished, tmp_path)
    assert run.main([*args, "--predict", "sub01_ses1", "--subjects", "1", "--sessions", "1"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: sub01_ses1 trained on this session (protocol trial): ") and "test windows only" in err
    rows = [line.split(",") for line in (tmp_path / "res" / "predictions" / "sub01_ses1_on_sub01_ses1.csv").read_text().splitlines()]
    assert rows[0][-1] == "split" and rows[0][:4] == ["trial", "window", "true_label", "predicted_label"]
    trained = {row[-1] for row in rows[1:] if int(row[0]) <= datasets.get("SEED").n_train_trials}
    assert trained == {"train", "validation"} and {row[-1] for row in rows[1:] if int(row[0]) > 9} == {"test"}
    assert run.main([*args, "--predict", "sub01_ses1", "--subjects", "2", "--sessions", "1"]) == 0
    assert capsys.readouterr().err == ""
    rows = (tmp_path / "res" / "predictions" / "sub01_ses1_on_sub02_ses1.csv").read_text().splitlines()
    assert {line.rsplit(",", 1)[1] for line in rows[1:]} == {"unseen"}


# ----------------------------------------------------------------------------- one configuration per result folder

HOLDER = ("import json, sys; from sst import fileio; fileio.FolderLock(sys.argv[1]).acquire(json.loads(sys.argv[2]), lambda h: None); "
          "print('held', flush=True); sys.stdin.read()")


@contextmanager
def holder(root: Path, info: dict):
    """Another process holding `root`'s lock with `info` until the block ends (then killed: SIGKILL)."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), json.dumps(info)], cwd=ROOT, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "held\n"
        yield p
    finally:
        p.kill()
        p.wait()


def test_one_configuration_writes_a_result_folder_at_a_time(finished, tmp_path):
    """The class: other settings, another precision, other code are refused at once, naming the holder's PID
    and command; the same configuration shares the folder (shards, --summarize) unless it would train the
    same run; a killed holder's lock is gone with it."""
    root, ini = copy_of(finished, tmp_path)
    cfg = config.load_config(ini)
    res = root / "res"
    other_code = kinds.result_dir(cfg, precision="float32")
    other_code.code = {**other_code.code, "model.A3DBAttention": "0" * 16}
    with holder(res, kinds.result_dir(cfg, precision="float32").holder_info(["sub01_ses1"])) as other:
        who = rf"PID {other.pid} on .* \(python.* -c .*\), since "
        refused = {
            "other settings": (kinds.result_dir(cfg.replace(training={"nbEpoch": 3}), precision="float32"), []),
            "another precision": (kinds.result_dir(cfg, precision="bf16"), []),
            "other code": (other_code, []),
        }
        for out, runs in refused.values():
            with pytest.raises(errors.OutputError, match=rf"^{res}: in use by another configuration: {who}"):
                out.lock(runs)
        with pytest.raises(errors.OutputError, match=rf"^{res}: sub01_ses1 already being trained by {who}"):
            kinds.result_dir(cfg, precision="float32").lock(["sub01_ses1"])
        for out, runs in ((kinds.result_dir(cfg, precision="float32"), ["sub02_ses1"]), (store.ResultDir(cfg), [])):
            with out.lock(runs):        # a shard of other runs; --summarize
                pass
    with kinds.result_dir(cfg.replace(training={"nbEpoch": 3}), precision="float32").lock([]):   # the killed holder's is gone
        assert len(list((res / ".lock").glob("*.json"))) == 1


def test_run_py_of_another_configuration_is_refused_and_predict_runs_beside(finished, tmp_path, capsys):
    """run.py of another configuration, training or summarizing, on a folder where the holder has finished
    runs and on a fresh one: the holder is named, nothing is written; --predict runs beside it."""
    _, ini = finished
    cfg = config.load_config(ini)
    args = copy_of_results(finished, tmp_path)
    res, fresh = tmp_path / "res", tmp_path / "fresh"
    for folder in (res, fresh):
        with holder(folder, kinds.result_dir(cfg, precision="float32").holder_info(["sub01_ses1"])) as other:
            before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
            for extra in ([], ["--summarize"]):
                with pytest.raises(errors.OutputError, match=rf"^{folder}: in use by another configuration: PID {other.pid} "):
                    run.main(["-c", str(ini), "--result-path", str(folder), "--set", "training.nbEpoch=3", *extra])
            assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before      # nothing written
    with holder(res, kinds.result_dir(cfg, precision="float32").holder_info(["sub01_ses1"])):
        assert run.main([*args, "--predict", "sub02_ses1", "--subjects", "2", "--sessions", "1"]) == 0


@pytest.mark.slow
def test_two_configurations_on_one_result_folder_with_real_processes(finished, tmp_path):
    """The issue's case: run.py of one configuration trains; run.py of another on the same folder
    (--result-path) is refused at once, naming the first; the first's work is untouched."""
    root, ini = finished
    res = tmp_path / "res"
    first = subprocess.Popen([sys.executable, "run.py", "-c", str(ini), "--result-path", str(res), "--set",
                              "training.nbEpoch=200", "--set", "training.patience=200"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not list((res / "checkpoints").glob("*.partial.pt")) and time.time() < deadline and first.poll() is None:
            time.sleep(0.1)
        second = run_cli("run.py", "-c", str(ini), "--result-path", str(res), "--set", "training.lr=0.01")
        assert second.returncode == 1 and len(second.stderr.splitlines()) == 1, second.stderr
        assert second.stderr.startswith(f"error: {res}: in use by another configuration: PID {first.pid} on ")
        assert "run.py -c" in second.stderr and first.poll() is None
    finally:
        first.kill()
        first.wait()


# ----------------------------------------------------------------------------- workers die with their parent

CHAIN = ("import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', sys.argv[1]]); "
         "print(child.pid, flush=True); child.wait()")
WORKER = ("import os, sys, time; sys.path.insert(0, {root!r}); from sst import cli; {disable}"
          "cli.die_with_parent(os.getppid()); print('ready', flush=True); time.sleep(600)")


def gone(pid: int, wait: float = 30.0) -> bool:
    """Whether process `pid` has ended (a zombie counts as ended), waiting up to `wait` seconds."""
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("how", ["prctl", "watchdog"])
def test_a_worker_ends_when_its_parent_is_killed(how):
    """utils.die_with_parent, as each --jobs worker calls it: the parent killed with SIGKILL, the worker
    ends too, by the kernel's signal (Linux) or by its watchdog thread alone (elsewhere)."""
    disable = "cli.ctypes = None; " if how == "watchdog" else ""      # as where there is no prctl
    parent = subprocess.Popen([sys.executable, "-c", CHAIN, WORKER.format(root=str(ROOT), disable=disable)],
                              stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert parent.stdout.readline() == "ready\n"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert gone(worker)
    finally:
        parent.kill()
