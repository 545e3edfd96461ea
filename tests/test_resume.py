"""Crash safety, resume, determinism, the NaN guard and sharding, through the real command lines.

    python -m pytest tests/test_resume.py -q

All on tiny synthetic SEED (2 subjects, 1 session, trial_fraction 0.05, 16 x 16 maps, TINY_MODEL,
3 epochs, one thread) on the CPU:
  * run.py killed (SIGKILL) right after the first run's result lands and again in the middle of
    the second run finishes on rerun with results equal to an uninterrupted run's: every field
    of summary.json and of the per-run files except timings and paths, and the checkpoints
    tensor for tensor;
  * Preprocess.py killed while it writes the second session: the rerun skips the first, redoes
    the second, every .npy is byte-identical to an uninterrupted run's and no temporary is left;
  * the same seed gives identical runs, another seed another model;
  * a run whose loss becomes NaN (finite but enormous inputs, normalization = none) is reported,
    not marked finished, retried on the next invocation, and the other run still finishes; so is
    a run that trains finitely but whose test loss is NaN (enormous test trials only);
  * two --shard processes on one result folder at the same time write disjoint files, no summary,
    and --summarize afterwards sees every run.
"""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest
import scipy.io
import torch

from conftest import make_ini, reap, run_cli, start_cli, wait_until

RUNS = ("sub01_ses1", "sub02_ses1")


@pytest.fixture(scope="module")
def reference(tiny) -> Path:
    """An uninterrupted run.py, into a result_path that does not exist yet (it is created)."""
    res = tiny / "reference" / "not" / "yet"
    p = run_cli("run.py", "-c", str(make_ini(tiny / "reference.ini", tiny / "SEED", tiny / "pre", res)))
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert sorted(path.name for path in (res / "runs").glob("*.json")) == [f"{r}.json" for r in RUNS]
    return res


# ----------------------------------------------------------------------------- helpers


def start(*args: str) -> subprocess.Popen:
    return start_cli(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(process: subprocess.Popen, condition: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL `process` as soon as `condition()` holds (polled every millisecond or so); fail if it ends first
    or `timeout` seconds pass, and kill it then too."""
    try:
        wait_until(condition, timeout, process, "the moment to kill it", every=0.001)
    finally:
        reap(process)       # SIGKILL
    assert process.returncode == -signal.SIGKILL


def run_result(path: Path) -> dict:
    """A per-run JSON without its timings."""
    result = json.loads(path.read_text())
    for key in ("seconds", "wall_seconds"):
        del result[key]
    for row in result["history"]:
        del row["seconds"]
    return result


def summary(res: Path) -> dict:
    """summary.json without what differs between folders, commits and invocations: paths, git_commit,
    how many runs the last invocation trained."""
    s = json.loads((res / "summary.json").read_text())
    del s["config"]["path"], s["git_commit"], s["runs_of_this_invocation"]
    return s


def model_state(res: Path, run: str) -> dict:
    return torch.load(res / "checkpoints" / f"{run}.pt", map_location="cpu", weights_only=False)["model"]


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_same_results(res: Path, reference: Path, runs=RUNS) -> None:
    for run in runs:
        assert run_result(res / "runs" / f"{run}.json") == run_result(reference / "runs" / f"{run}.json"), run
        assert same_tensors(model_state(res, run), model_state(reference, run)), run


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".tmp", ".partial.pt"))]


# ----------------------------------------------------------------------------- kill and resume


@pytest.mark.slow
def test_run_killed_twice_resumes_to_the_uninterrupted_result(tiny, reference, tmp_path):
    res = tmp_path / "res"
    ini = str(make_ini(tmp_path / "kill.ini", tiny / "SEED", tiny / "pre", res))

    first = start("run.py", "-c", ini)  # killed as soon as the first run is finished
    kill_when(first, lambda: (res / "runs" / "sub01_ses1.json").exists())
    assert not (res / "runs" / "sub02_ses1.json").exists()
    stale = res / "checkpoints" / "sub01_ses1.partial.pt"
    if not stale.exists():  # as if killed between writing the result and deleting the partial state
        stale.write_bytes(b"the partial state of a finished run")

    partial = res / "checkpoints" / "sub02_ses1.partial.pt"
    started = time.time()
    second = start("run.py", "-c", ini)  # killed in the middle of the second run, after an epoch of it
    kill_when(second, lambda: partial.exists() and partial.stat().st_mtime > started)
    assert not (res / "runs" / "sub02_ses1.json").exists()

    p = run_cli("run.py", "-c", ini)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "2 runs, 1 already finished" in p.stdout
    assert "sub02_ses1: resuming after epoch" in p.stdout and "sub01_ses1: accuracy" not in p.stdout
    assert summary(res) == summary(reference)
    assert_same_results(res, reference)
    assert leftovers(res) == []


# run.py with every background write of a partial state held for 2 s once the file is written, before it is
# renamed into place: the moment a kill finds a write in flight
SLOW_WRITES = """
import runpy, sys, threading, time, torch
save = torch.save
def held(obj, f, *a, **k):
    save(obj, f, *a, **k)
    if threading.current_thread() is not threading.main_thread():
        time.sleep(2)
torch.save = held
sys.argv = sys.argv[1:]
runpy.run_path("run.py", run_name="__main__")
"""


@pytest.mark.slow
def test_run_killed_during_a_background_state_write_resumes_to_the_uninterrupted_result(tiny, reference, tmp_path):
    """[training] state_save = background: SIGKILL while an epoch's state is being written (the one before it
    is in place, the next epoch trains): the rerun resumes from the state in place, to the same result."""
    res = tmp_path / "res"
    ini = str(make_ini(tmp_path / "kill.ini", tiny / "SEED", tiny / "pre", res))
    partial = res / "checkpoints" / "sub01_ses1.partial.pt"
    first = start("-c", SLOW_WRITES, "run.py", "-c", ini, "--subjects", "1")
    kill_when(first, lambda: partial.exists() and any((res / "checkpoints").glob(".sub01_ses1.partial.pt~*.tmp")))
    assert not (res / "runs" / "sub01_ses1.json").exists()
    kept = torch.load(partial, map_location="cpu", weights_only=True)
    assert len(kept["history"]) == 1        # epoch 1's state; epoch 2's was in flight, epoch 3 training

    p = run_cli("run.py", "-c", ini, "--subjects", "1")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "sub01_ses1: resuming after epoch 1 of 3" in p.stdout
    assert_same_results(res, reference, runs=RUNS[:1])
    assert leftovers(res) == []


@pytest.mark.slow
def test_preprocess_killed_mid_session_redoes_that_session_only(tiny, tmp_path):
    pre = tmp_path / "pre"
    ini = str(make_ini(tmp_path / "pre.ini", tiny / "SEED", pre, tmp_path / "res"))
    second = pre / "sub02_ses1"

    killed = start("Preprocess.py", "-c", ini)  # killed while it writes the second session
    kill_when(killed, second.exists)
    assert (pre / "sub01_ses1" / "manifest.json").is_file() and not (second / "manifest.json").exists()

    p = run_cli("Preprocess.py", "-c", ini)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.startswith("sub02_ses1: ") and "1 session(s) already preprocessed" in p.stdout
    reference = tiny / "pre"
    files = sorted(path.relative_to(pre) for path in pre.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(reference) for path in reference.rglob("*") if path.is_file())
    for name in files:
        if name.suffix == ".npy":
            assert (pre / name).read_bytes() == (reference / name).read_bytes(), name
        else:  # manifests: the same but for the code version (the reference was made the same way)
            assert json.loads((pre / name).read_text()) == json.loads((reference / name).read_text()), name
    assert leftovers(pre) == []


# ----------------------------------------------------------------------------- determinism


@pytest.mark.slow
def test_same_seed_same_run_other_seed_other_run(tiny, reference, tmp_path):
    for seed in (42, 7):
        res = tmp_path / f"seed{seed}"
        p = run_cli("run.py", "-c", str(make_ini(tmp_path / f"{seed}.ini", tiny / "SEED", tiny / "pre", res, seed=seed)),
                    "--subjects", "1")
        assert p.returncode == 0, p.stderr
    assert_same_results(tmp_path / "seed42", reference, runs=("sub01_ses1",))
    assert not same_tensors(model_state(tmp_path / "seed7", "sub01_ses1"), model_state(reference, "sub01_ses1"))


# ----------------------------------------------------------------------------- NaN guard


def copy_with_subject2_enlarged(tiny: Path, tmp_path: Path, enlarged: Callable[[int], bool]) -> Path:
    """A copy of the tiny SEED tree whose subject-2 trials picked by `enlarged(trial)` are 1e36 times
    larger: finite and within float32, so every reader check passes."""
    data = shutil.copytree(tiny / "SEED", tmp_path / "SEED")
    for path in (data / "ExtractedFeatures" / "2_20140404.mat", data / "Preprocessed_EEG" / "2_20140404.mat"):
        arrays = {k: v * 1e36 if enlarged(int(re.search(r"\d+$", k).group())) else v
                  for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
        scipy.io.savemat(path, arrays)
    return data


@pytest.mark.slow
def test_diverging_run_is_reported_retried_and_does_not_stop_the_others(tiny, tmp_path):
    # Honest trigger: subject 2's values are finite and within float32 (they pass every check of the
    # readers) but 1e36 times too large; with normalization = none the first training loss is NaN.
    data = copy_with_subject2_enlarged(tiny, tmp_path, lambda trial: True)
    res = tmp_path / "res"
    ini = str(make_ini(tmp_path / "nan.ini", data, tmp_path / "pre", res, normalization="none"))
    assert run_cli("Preprocess.py", "-c", ini).returncode == 0

    message = ("error: sub02_ses1 (subject 2, session 1), epoch 1: training loss became nan; "
               "skipping this run (it is retried on the next invocation)")
    p = run_cli("run.py", "-c", ini)
    assert p.returncode == 1 and p.stderr.splitlines() == [message], p.stderr
    assert "sub01_ses1: accuracy" in p.stdout and "failed runs (not counted): sub02_ses1" in p.stdout
    assert sorted(path.name for path in (res / "runs").glob("*.json")) == ["sub01_ses1.json"]
    s = json.loads((res / "summary.json").read_text())
    assert s["n_runs"] == 1 and list(s["failed_runs"]) == ["sub02_ses1"] and "epoch 1" in s["failed_runs"]["sub02_ses1"]
    assert json.loads((res / "failed" / "sub02_ses1.json").read_text())["run"] == "sub02_ses1"

    again = run_cli("run.py", "-c", ini)  # the failed run is retried, the finished one is not
    assert again.returncode == 1 and again.stderr.splitlines() == [message]
    assert "2 runs, 1 already finished" in again.stdout

    merged = run_cli("run.py", "-c", ini, "--summarize")    # as after --shard jobs: the failure is still listed
    assert merged.returncode == 0 and "failed runs (not counted): sub02_ses1" in merged.stdout
    assert json.loads((res / "summary.json").read_text())["failed_runs"] == s["failed_runs"]


@pytest.mark.slow
def test_run_with_a_nan_test_loss_is_reported_not_written(tiny, tmp_path):
    # Training and validation trials are left as they are; subject 2's test trials (10-15) are scaled
    # to finite but enormous values: the trained model's test logits are NaN.
    data = copy_with_subject2_enlarged(tiny, tmp_path, lambda trial: trial >= 10)
    res = tmp_path / "res"
    ini = str(make_ini(tmp_path / "nan.ini", data, tmp_path / "pre", res, normalization="none", nbEpoch=1))
    assert run_cli("Preprocess.py", "-c", ini).returncode == 0

    message = ("error: sub02_ses1 (subject 2, session 1), epoch 1: test loss of the selected checkpoint became "
               "nan; skipping this run (it is retried on the next invocation)")
    p = run_cli("run.py", "-c", ini)
    assert p.returncode == 1 and p.stderr.splitlines() == [message], p.stderr
    assert sorted(path.name for path in (res / "runs").glob("*.json")) == ["sub01_ses1.json"]
    assert not (res / "checkpoints" / "sub02_ses1.pt").exists()
    assert (res / "checkpoints" / "sub02_ses1.partial.pt").exists()    # the retry starts from its last epoch

    again = run_cli("run.py", "-c", ini)    # deterministic on the CPU: the same checkpoint, the same NaN
    assert again.returncode == 1 and again.stderr.splitlines() == [message]
    assert "sub02_ses1: resuming after epoch 1 of 1" in again.stdout


# ----------------------------------------------------------------------------- shards


@pytest.mark.slow
def test_concurrent_shards_write_disjoint_files_and_summarize_sees_all(tiny, reference, tmp_path):
    res = tmp_path / "res"
    ini = str(make_ini(tmp_path / "shard.ini", tiny / "SEED", tiny / "pre", res))
    shards = [start("run.py", "-c", ini, "--shard", f"{i}/2") for i in range(2)]  # at the same time
    try:
        outputs = [shard.communicate(timeout=300) for shard in shards]
    finally:
        for shard in shards:
            reap(shard)
    for shard, (out, err) in zip(shards, outputs):
        assert shard.returncode == 0 and err == "", err
    # each shard trained its own run, and wrote its files only: run JSON, epoch log, checkpoint; no summary
    for (out, _), mine, other in zip(outputs, RUNS, RUNS[::-1]):
        assert f"{mine}: accuracy" in out and other not in out
    files = sorted(str(p.relative_to(res)) for p in res.rglob("*") if p.is_file() and p.parent.name != ".lock")
    assert files == sorted(f"{folder}/{run}.{ext}" for run in RUNS
                           for folder, ext in (("runs", "json"), ("runs", "epochs.csv"), ("checkpoints", "pt")))
    assert [p.name for p in (res / ".lock").iterdir()] == ["guard"]     # both shared the folder, and let it go

    p = run_cli("run.py", "-c", ini, "--summarize")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert summary(res) == summary(reference) and summary(res)["n_runs"] == 2
    assert_same_results(res, reference)


