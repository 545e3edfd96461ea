"""sst/results/store.py: the result folder. Damaged records and partial states are set aside and their runs
redone, never mixed in; finished runs and partial states of another configuration, precision or code are
refused, naming the file; failure records outlive the invocation; one configuration writes a folder at a time
(the lock names the holder); a partial state carrying a payload never runs it.

    python -m pytest tests/results/test_store.py -q
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

import run
from conftest import (
    ROOT,
    Payload,
    copy_of,
    copy_of_results,
    dropped_root,
    holder,
    partial_state,
    run_cli,
    tiny_run,
    write_ini,
)
from sst import config, errors, fileio
from sst.models import kinds
from sst.reporting import summaries
from sst.results import provenance, records, store
from sst.training import loop, runspec

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


CPU = torch.device("cpu")

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
def test_unreadable_run_record_is_named_not_redone(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    record = root / "res" / "runs" / "sub01_ses1.json"
    record.chmod(0o000)
    try:
        p = subprocess.run(dropped_root([sys.executable, "run.py", "-c", str(ini)]), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    finally:
        record.chmod(0o644)
    assert p.returncode == 1 and p.stderr.splitlines() == [
        f"error: {record}: cannot read the result file (Permission denied)"], p.stderr
    assert not (root / "res" / "runs" / "sub01_ses1.json.damaged").exists()


# ----------------------------------------------------------------------------- file-system faults


# ----------------------------------------------------------------------------- files from elsewhere run no code


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


# ----------------------------------------------------------------------------- one configuration per result folder


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
        first.wait(timeout=60)     # killed: ends at once; a deadline all the same


# ----------------------------------------------------------------------------- workers die with their parent


def test_failure_records_outlive_the_invocation_until_the_run_finishes(tmp_path):
    cfg = config.load_config(write_ini(tmp_path / "a.ini", path={"result_path": tmp_path / "res"}))
    out = store.ResultDir(cfg)
    out.record_failure(runspec.RunSpec(2, 1), "sub02_ses1 (subject 2, session 1), epoch 3: training loss became nan")
    out.record_failure(runspec.RunSpec(3, 1), "another")
    assert out.failures({}) == {"sub02_ses1": "sub02_ses1 (subject 2, session 1), epoch 3: training loss became nan",
                                "sub03_ses1": "another"}
    assert list(out.failures({"sub03_ses1": {}})) == ["sub02_ses1"]      # finished since: not a failure
    other = store.ResultDir(cfg.replace(training={"lr": 1e-3}))
    assert other.failures({}) == {}                                       # another configuration's record
    (tmp_path / "res" / "failed" / "list.json").write_text("[1, 2]")      # JSON, but not a record: skipped
    (tmp_path / "res" / "failed" / "norun.json").write_text('{"error": "x"}')
    (tmp_path / "res" / "failed" / "damaged.json").write_text('{"run": ')
    assert list(out.failures({})) == ["sub02_ses1", "sub03_ses1"]


def test_runs_of_other_code_or_precision_are_another_configuration(tmp_path):
    """Training (ResultDir with a precision) refuses finished runs made by other code, or by a version that
    did not record its code, naming the files; summarize and predict (no precision) read them; a folder
    never mixes float32 and bf16 runs."""
    from conftest import fake_run

    cfg = config.load_config(write_ini(tmp_path / "a.ini", path={"result_path": tmp_path / "res"}))
    training_dir = kinds.result_dir(cfg, precision="float32")
    record = {**fake_run(1, 1), "seconds": 1.0, "config_key": training_dir.config_key, "code": dict(training_dir.code)}
    fileio.write_json(training_dir.run_json(runspec.RunSpec(1, 1)), record)
    assert list(training_dir.finished()) == ["sub01_ses1"]
    fileio.write_json(training_dir.run_json(runspec.RunSpec(1, 1)), {**record, "code": {**record["code"], "model.A3DBAttention": "0"}})
    with pytest.raises(errors.ConfigError, match=r"sub01_ses1.json: made with other code \(model\.A3DBAttention changed since\): "
                                                r"another configuration; keep both with --result-path"):
        training_dir.finished()
    legacy = {k: v for k, v in record.items() if k != "code"}
    fileio.write_json(training_dir.run_json(runspec.RunSpec(1, 1)), legacy)
    with pytest.raises(errors.ConfigError, match="made by an earlier version that did not record its code"):
        training_dir.finished()
    reading = store.ResultDir(cfg)
    assert list(reading.finished()) == ["sub01_ses1"] and reading.precision_found == "float32"
    assert store.ResultDir(cfg, "bf16").config_key != training_dir.config_key
    fileio.write_json(training_dir.run_json(runspec.RunSpec(2, 1)),
                      {**fake_run(2, 1), "seconds": 1.0, "config_key": provenance.result_key(cfg, "bf16")})
    with pytest.raises(errors.ConfigError, match="sub02_ses1.json: bf16 results beside float32 ones"):
        store.ResultDir(cfg).finished()
    training_dir.run_json(runspec.RunSpec(1, 1)).unlink()
    with pytest.raises(errors.ConfigError, match="sub02_ses1.json: made with a different configuration"):
        training_dir.finished()     # a bf16 run is never reused by float32 training


def test_the_partial_state_is_not_fsynced_the_result_is(tmp_path, monkeypatch):
    """docs/guarantees.md: a process kill loses at most one epoch without fsync; finished work is fsynced."""
    import os

    cfg, spec, data = tiny_run(nbEpoch=1)
    trainer = loop.Trainer(cfg, spec, data, CPU)
    trainer.fit()
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    store.save_partial(tmp_path / "p.pt", trainer, "key")
    store.write_epochs_csv(tmp_path / "p.epochs.csv", trainer.history)
    assert synced == []
    out = store.ResultDir(cfg.replace(path={"result_path": tmp_path}), "float32")
    store.write_result(out, spec, kinds.NETWORK.checkpoint(cfg, trainer, out), {"run": spec.name}, trainer.history)
    assert len(synced) == 3        # the best checkpoint, the epochs CSV and the run record


def saved(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def same_state(a, b) -> bool:
    """Two saved states hold the same values (tensors equal; a state dict's metadata aside)."""
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


def test_a_background_save_writes_the_state_of_its_epoch_while_the_next_trains(tmp_path, monkeypatch):
    """[training] state_save = background: the state copied when `save` returns is the one written, however far
    training has gone on meanwhile (the write is held back here until the next epoch has trained); the same
    file as a synchronous save of that moment; the next save waits for it."""
    import threading

    cfg, spec, data = tiny_run(nbEpoch=1, accelerator="off")
    trainer = loop.Trainer(cfg, spec, data, CPU)
    trainer.fit()
    store.save_partial(tmp_path / "sync.pt", trainer, "key", {"x": "1"})
    release, writing, threads = threading.Event(), threading.Event(), []
    real_write = store._write_partial

    def held(*a):
        threads.append(threading.current_thread())
        writing.set()
        assert release.wait(60)
        real_write(*a)
    monkeypatch.setattr(store, "_write_partial", held)
    with store.StateWriter() as writer:
        writer.save(tmp_path / "background.pt", trainer, "key", {"x": "1"})
        assert writing.wait(60) and not (tmp_path / "background.pt").exists()
        trainer.history.append(trainer.train_epoch(2))      # the live tensors change; the copy does not
        trainer.best["wait"] += 1
        release.set()
    assert threads[0] is not threading.main_thread()
    assert same_state(saved(tmp_path / "background.pt"), saved(tmp_path / "sync.pt"))
    assert not same_state(saved(tmp_path / "background.pt")["net"], trainer.net.state_dict())
    with store.StateWriter(background=False) as writer:   # sync: written by this thread, before save returns
        writer.save(tmp_path / "sync2.pt", trainer, "key")
        assert (tmp_path / "sync2.pt").exists() and threads[-1] is threading.main_thread()


def test_a_failed_background_write_is_raised_by_the_next_save_naming_the_file(tmp_path):
    cfg, spec, data = tiny_run(nbEpoch=1)
    trainer = loop.Trainer(cfg, spec, data, CPU)
    trainer.fit()
    (tmp_path / "file").write_text("not a folder")
    bad = tmp_path / "file" / "sub01_ses1.partial.pt"
    with pytest.raises(errors.OutputError, match="file: cannot create the folder"):
        with store.StateWriter() as writer:
            writer.save(bad, trainer, "key")
            writer.save(tmp_path / "p.pt", trainer, "key")
    with pytest.raises(errors.OutputError, match="file: cannot"):    # or when the block is left
        with store.StateWriter() as writer:
            writer.save(bad, trainer, "key")
    with pytest.raises(KeyError, match="the block's own"):      # which does not hide the block's own error
        with store.StateWriter() as writer:
            writer.save(bad, trainer, "key")
            raise KeyError("the block's own")


def finished_run(out: store.ResultDir, cfg, spec, trainer: loop.Trainer) -> None:
    """The files of a finished run, as the network's model kind writes them (kinds.Network.train_run)."""
    loss, truth, predicted = trainer.evaluate()
    record = records.run_record(cfg, spec, out, truth, predicted, loss, trainer.data.split, trainer.data.pools,
                                steps=100, seconds=1.0, wall_seconds=1.0, device="cpu",
                                best_epoch=trainer.best["epoch"], history=trainer.history)
    store.write_result(out, spec, kinds.NETWORK.checkpoint(cfg, trainer, out), record, trainer.history)


def trained_for_an_epoch(result_path):
    """(cfg, spec, data, trainer) of a tiny run trained for one epoch, its results going to `result_path`."""
    cfg, spec, data = tiny_run(nbEpoch=1)
    cfg = cfg.replace(path={"result_path": result_path})
    trainer = loop.Trainer(cfg, spec, data, CPU)
    trainer.fit()
    return cfg, spec, data, trainer


@pytest.mark.parametrize("saved, resumed", [("bf16", "float32"), ("float32", "bf16")])
def test_a_partial_state_of_one_precision_is_never_resumed_by_the_other(tmp_path, saved, resumed):
    cfg, spec, data, trainer = trained_for_an_epoch(tmp_path)
    mine, theirs = store.ResultDir(cfg, saved), store.ResultDir(cfg, resumed)
    store.save_partial(mine.partial(spec), trainer, mine.config_key, mine.code)
    with pytest.raises(ValueError, match="another configuration"):
        store.load_partial(theirs.partial(spec), loop.Trainer(cfg, spec, data, CPU), theirs.config_key, theirs)
    again = loop.Trainer(cfg, spec, data, CPU)
    store.load_partial(mine.partial(spec), again, mine.config_key, mine)     # its own precision resumes
    assert len(again.history) == 1


def test_a_partial_state_made_with_other_code_is_refused_and_kept(tmp_path, monkeypatch):
    """A partial state whose code identity differs (an edit of the Trainer since) is never resumed and
    never overwritten: OtherCode naming the file, and run.train_run refuses the run in one line."""
    import run
    from sst.errors import ConfigError

    cfg, spec, data, trainer = trained_for_an_epoch(tmp_path)
    out = kinds.result_dir(cfg, precision="float32")
    path = out.partial(spec)
    store.save_partial(path, trainer, out.config_key, {**out.code, "sst.training.loop.Trainer": "0" * 16})
    saved = path.read_bytes()
    with pytest.raises(store.OtherCode, match=r"sst\.training\.loop\.Trainer changed since"):
        store.load_partial(path, loop.Trainer(cfg, spec, data, CPU), out.config_key, out)
    with pytest.raises(ConfigError, match=rf"{spec.name}.partial.pt: made with other code \(sst\.training\.loop\.Trainer "
                                          rf"changed since\).*--result-path"):
        monkeypatch.setattr(loop, "build_run_data", lambda *args: data)
        run.train_run(cfg, spec, [], CPU, out, run.Progress(1))
    assert path.read_bytes() == saved


@pytest.mark.parametrize("saved, other", [("bf16", "float32"), ("float32", "bf16")])
def test_a_finished_run_of_one_precision_is_never_reused_by_the_other(tmp_path, saved, other):
    from sst.errors import ConfigError

    cfg, spec, _, trainer = trained_for_an_epoch(tmp_path)
    finished_run(store.ResultDir(cfg, saved), cfg, spec, trainer)
    assert list(store.ResultDir(cfg, saved).finished()) == [spec.name]
    with pytest.raises(ConfigError, match="made with a different configuration"):
        store.ResultDir(cfg, other).finished()
    summary = store.ResultDir(cfg)            # --summarize, --predict: either precision, never a mix
    assert list(summary.finished()) == [spec.name] and summary.precision_found == saved
