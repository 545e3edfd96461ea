"""run.py: splits, metrics, normalisation, early stopping (unit) and the command line end to end."""
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import run
from conftest import ROOT, TINY_MODEL, reap, run_cli, run_in_process, start_cli, started, wait_until, write_ini
from sst import config, errors, fileio
from sst.cli import INTERRUPTED
from sst.models.trained import load_trained, predict_probabilities
from sst.results import store
from sst.training import protocols, runspec

# SEED's trial labels, 0-based (negative 0, neutral 1, positive 2), trials 1..15
SEED_LABELS = np.array([1, 0, -1, -1, 0, 1, -1, 0, 1, 1, 0, -1, 0, 1, -1]) + 1


# ----------------------------------------------------------------------------- unit


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_run_trains_writes_results_and_resumes(tiny_seed, capsys):
    root, ini = tiny_seed
    p = run_in_process(capsys, "run.py", "-c", str(ini))
    assert p.returncode == 0, p.stderr
    assert "96.02" in p.stdout  # the paper's number beside ours
    res = root / "res"
    for name in ("sub01_ses1", "sub02_ses1"):
        r = json.loads((res / "runs" / f"{name}.json").read_text())
        assert 0 <= r["accuracy"] <= 1 and len(r["history"]) == 2
        assert np.array(r["confusion_matrix"]).sum() == r["n_test"] > 0
        assert (res / "checkpoints" / f"{name}.pt").is_file()
        assert not (res / "checkpoints" / f"{name}.partial.pt").exists()
    summary = json.loads((res / "summary.json").read_text())
    accs = [json.loads((res / "runs" / f"sub0{s}_ses1.json").read_text())["accuracy"] * 100 for s in (1, 2)]
    assert summary["mean_accuracy"] == pytest.approx(np.mean(accs))
    assert summary["std_accuracy"] == pytest.approx(np.std(accs))
    assert summary["n_runs"] == 2 and summary["protocol"] == "trial" and summary["dataset"] == "SEED"
    assert set(summary["per_subject"]) == {"1", "2"}
    assert summary["config"]["training"]["nbEpoch"] == 2
    assert len((res / "results.csv").read_text().splitlines()) == 3

    again = run_in_process(capsys, "run.py", "-c", str(ini))
    assert again.returncode == 0, again.stderr
    assert "2 already finished" in again.stdout
    assert json.loads((res / "summary.json").read_text())["mean_accuracy"] == summary["mean_accuracy"]

    merged = run_in_process(capsys, "run.py", "-c", str(ini), "--summarize")
    assert merged.returncode == 0 and "SST-EmotionNet, ours" in merged.stdout and "(none of this invocation)" in merged.stdout


@pytest.mark.slow
def test_loso_results_of_another_subject_pool_are_refused(tmp_path, capsys):
    """Adding a subject changes every loso run of its session (more training data, maybe another
    validation subject): the finished runs made without it are not reused or merged."""
    from sst.data import synthetic

    synthetic.write_seed(tmp_path / "SEED", subjects=(1, 2, 3, 4), sessions=(1,), trial_fraction=0.03, seed=0)
    ini = str(write_ini(tmp_path / "loso.ini",
                        path={"dataset_root": tmp_path / "SEED", "preprocessed_root": tmp_path / "pre",
                              "result_path": tmp_path / "res"},
                        data={"input_width": 16}, model=TINY_MODEL,
                        training={"nbEpoch": 1, "batch_size": 32, "num_threads": 1, "protocol": "loso"}))
    assert run_in_process(capsys, "Preprocess.py", "-c", ini, "--subjects", "1,2,3").returncode == 0
    p = run_in_process(capsys, "run.py", "-c", ini, "--subjects", "1")
    assert p.returncode == 0, p.stderr
    assert "not comparable with loso" in p.stdout
    result = json.loads((tmp_path / "res" / "runs" / "sub01_ses1.json").read_text())
    assert result["subject_pool"] == [1, 2, 3]

    assert run_in_process(capsys, "Preprocess.py", "-c", ini, "--subjects", "4").returncode == 0
    again = run_in_process(capsys, "run.py", "-c", ini)
    assert again.returncode == 1
    assert again.stderr.splitlines() == [
        f"error: {tmp_path}/res/runs/sub01_ses1.json: trained with subjects [1, 2, 3] of session 1, but the "
        f"preprocessed subjects are now [1, 2, 3, 4]; choose another [path] result_path or delete "
        f"{tmp_path}/res/runs to start over"]
    runs = tmp_path / "res" / "runs"
    assert sorted(p.name for p in runs.glob("*.json")) == ["sub01_ses1.json"]

    # --summarize does not look at the maps, but loso runs of one session that pooled different subjects are not merged
    (runs / "sub02_ses1.json").write_text(json.dumps(dict(result, run="sub02_ses1", subject=2, subject_pool=[1, 2, 3, 4])))
    merged = run_in_process(capsys, "run.py", "-c", ini, "--summarize")
    assert merged.returncode == 1
    assert merged.stderr.splitlines() == [
        f"error: {runs}/sub01_ses1.json and {runs}/sub02_ses1.json: loso runs of session 1 that pooled different "
        f"subjects ([1, 2, 3] and [1, 2, 3, 4]); choose another [path] result_path or delete the runs made with the "
        f"subjects that are no longer preprocessed"]
    # a loso result without its pool (an older version's) is not guessed at
    (runs / "sub02_ses1.json").unlink()
    (runs / "sub01_ses1.json").write_text(json.dumps({k: v for k, v in result.items() if k != "subject_pool"}))
    merged = run_in_process(capsys, "run.py", "-c", ini, "--summarize")
    assert merged.returncode == 1
    assert merged.stderr.splitlines() == [f"error: {runs}/sub01_ses1.json: a loso result without its subject_pool "
                                          f"(made by an older version); delete it to redo that run"]


@pytest.mark.slow
def test_paper_protocol_validates_on_the_test_set_and_says_so(tiny_seed, tmp_path):
    root, _ = tiny_seed
    ini = write_ini(tmp_path / "paper.ini",
                    path={"dataset_root": root / "SEED", "preprocessed_root": root / "pre", "result_path": tmp_path / "res"},
                    data={"input_width": 16}, model=TINY_MODEL,
                    training={"nbEpoch": 1, "protocol": "paper", "num_threads": 1})
    p = run_cli("run.py", "-c", str(ini), "--subjects", "1")
    assert p.returncode == 0, p.stderr
    r = json.loads((tmp_path / "res" / "runs" / "sub01_ses1.json").read_text())
    assert r["n_val"] == r["n_test"]
    assert "OPTIMISTIC" in json.loads((tmp_path / "res" / "summary.json").read_text())["protocol_note"]


@pytest.mark.slow
def test_missing_preprocessed_data_names_the_command(tiny_seed, tmp_path):
    root, _ = tiny_seed
    ini = write_ini(tmp_path / "x.ini",
                    path={"dataset_root": root / "SEED", "preprocessed_root": tmp_path / "nothing", "result_path": tmp_path / "res"},
                    data={"input_width": 16}, model=TINY_MODEL)
    p = run_cli("run.py", "-c", str(ini))
    assert p.returncode == 1
    assert "Preprocess.py" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "res").exists()


@pytest.mark.slow
def test_run_keeps_freed_memory_when_training_on_cpu(tiny_seed, tmp_path):
    """run.py calls utils.keep_freed_memory once before training on the CPU (in a child process:
    run.main sets process-wide state such as the thread count and the seeds)."""
    root, _ = tiny_seed
    ini = write_ini(tmp_path / "x.ini",
                    path={"dataset_root": root / "SEED", "preprocessed_root": root / "pre", "result_path": tmp_path / "res"},
                    data={"input_width": 16}, model=TINY_MODEL,
                    training={"nbEpoch": 1, "num_threads": 1, "device": "cpu"})
    script = ("import run\nfrom sst import runtime\n"
              "calls = []\n"
              "runtime.keep_freed_memory = lambda: calls.append(1) or True\n"
              f"code = run.main(['-c', {str(ini)!r}, '--subjects', '1'])\n"
              "print('calls', len(calls), 'exit', code)\n")
    p = run_cli("-c", script)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "calls 1 exit 0"
    assert (tmp_path / "res" / "runs" / "sub01_ses1.json").is_file()


# ----------------------------------------------------------------------------- living with run.py: progress, overrides, jobs

EPOCH_LINE = re.compile(r"^\[\d+/\d+\] sub\d\d_ses\d ep \d+/\d+ loss [\d.]+/[\d.]+ acc [\d.]+/[\d.]+% \d+s ETA [\dhms]+$")


@pytest.mark.slow
def test_progress_lines_reach_a_log_file_as_they_happen(tiny_seed, tmp_path):
    """Output redirected to a file (a SLURM job): an epoch line is there while the process still runs;
    one line per epoch, no carriage returns, at most 80 columns; the per-epoch CSV of each run."""
    root, ini = tiny_seed
    log = tmp_path / "log.txt"
    with open(log, "w") as fh, started("run.py", "-c", str(ini), "--result-path", str(tmp_path / "res"), "--set",
                                       "training.nbEpoch=4", stdout=fh, stderr=subprocess.STDOUT) as proc:
        wait_until(lambda: any(EPOCH_LINE.match(line) for line in log.read_text().splitlines()), 600, proc,
                   "an epoch line in the log while run.py runs")
        assert proc.wait(timeout=600) == 0, log.read_text()
    text = log.read_text()
    assert "\r" not in text
    lines = [line for line in text.splitlines() if EPOCH_LINE.match(line)]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "res" / "runs").glob("*.json"))]
    assert len(lines) == sum(r["epochs_run"] for r in records) and all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("[1/2] sub01_ses1 ep 1/4") and lines[-1].startswith("[2/2] sub02_ses1")
    for r in records:
        rows = (tmp_path / "res" / "runs" / f"{r['run']}.epochs.csv").read_text().splitlines()
        assert rows[0] == "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds"
        assert len(rows) == 1 + r["epochs_run"]
        assert float(rows[1].split(",")[1]) == pytest.approx(r["history"][0]["train_loss"])


@pytest.mark.slow
def test_set_overrides_get_their_own_result_folder_and_are_recorded(tiny_seed, capsys):
    root, ini = tiny_seed
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--subjects", "1", "--set", "training.nbEpoch=1",
                "--set", "model.attention=spatial")
    assert p.returncode == 0, p.stderr
    folder = root / "res" / "model.attention=spatial,training.nbEpoch=1"     # sorted: the order given does not matter
    record = json.loads((folder / "runs" / "sub01_ses1.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    assert record["epochs_run"] == 1 and summary["config"]["model"]["attention"] == "spatial"
    assert summary["overrides"] == ["training.nbEpoch=1", "model.attention=spatial"]
    assert "overrides: training.nbEpoch=1 model.attention=spatial" in p.stdout
    bad = run_in_process(capsys, "run.py", "-c", str(ini), "--set", "training.nbEpoch=0")
    assert bad.returncode == 1 and "nbEpoch" in bad.stderr and len(bad.stderr.splitlines()) == 1


@pytest.mark.slow
def test_jobs_give_the_serial_results_bit_for_bit(tiny_seed, tmp_path):
    """--jobs 2 (one thread each) equals the serial runs with one thread: result files and checkpoints."""
    import torch

    root, ini = tiny_seed
    for name, extra in (("serial", []), ("jobs", ["--jobs", "2"])):
        p = run_cli("run.py", "-c", str(ini), "--result-path", str(tmp_path / name), "--set", "training.nbEpoch=2",
                    "--set", "training.num_threads=1", *extra)
        assert p.returncode == 0, p.stderr
    assert "2 worker processes of 1 threads" in p.stdout
    for run_name in ("sub01_ses1", "sub02_ses1"):
        a, b = (json.loads((tmp_path / n / "runs" / f"{run_name}.json").read_text()) for n in ("serial", "jobs"))
        assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
        assert (a["accuracy"], a["confusion_matrix"]) == (b["accuracy"], b["confusion_matrix"])
        ca, cb = (torch.load(tmp_path / n / "checkpoints" / f"{run_name}.pt", weights_only=False)["model"]
                  for n in ("serial", "jobs"))
        assert all(torch.equal(ca[k], cb[k]) for k in ca)


def live_processes_of_group(pgid: int, wait: float = 10.0) -> list[str]:
    """The processes of a process group that are not zombies, after waiting up to `wait` seconds for them to go."""
    deadline = time.time() + wait
    while True:
        ps = subprocess.run(["ps", "-o", "stat=,cmd=", "-g", str(pgid)], capture_output=True, text=True,
                            timeout=60).stdout
        live = [line for line in ps.splitlines() if line.strip() and not line.strip().startswith("Z")]
        if not live or time.time() > deadline:
            return live
        time.sleep(0.2)


def ignores_ctrl_c(pid: int) -> bool:
    """Whether process `pid` ignores SIGINT (SIG_IGN; a handler is not ignoring)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return bool(int(status.split("SigIgn:")[1].split()[0], 16) & 1 << (signal.SIGINT - 1))


def workers_of(pid: int) -> list[int]:
    """The ids of process `pid`'s spawned worker processes (once they run Python: multiprocessing's spawn_main)."""
    ps = subprocess.run(["ps", "-ww", "-o", "pid=,cmd=", "--ppid", str(pid)], capture_output=True, text=True,
                        timeout=60).stdout
    return [int(line.split()[0]) for line in ps.splitlines() if "spawn_main" in line]


def start_training(tmp_path: Path, ini: Path, *args: str, ctrl_c_ignored: bool = False):
    """run.py --jobs 2 on the tiny data in its own process group, as a terminal starts a command (Ctrl-C reaches
    the whole group); stdout and stderr piped; Ctrl-C at its default in it, or ignored (a script's `cmd &`)."""
    return started("run.py", "-c", str(ini), "--result-path", str(tmp_path / "res"), "--jobs", "2", *args,
                   ctrl_c_ignored=ctrl_c_ignored, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                   start_new_session=True)


LONG = ("--set", "training.nbEpoch=200", "--set", "training.patience=200")     # runs that outlast the test


def both_partial_states(partials: Path):
    return lambda: len(list(partials.glob("*.partial.pt"))) == 2


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_and_keeps_finished_work(tiny_seed, tmp_path):
    root, ini = tiny_seed
    partials = tmp_path / "res" / "checkpoints"
    with start_training(tmp_path, ini, *LONG) as proc:
        wait_until(both_partial_states(partials), 300, proc, "an epoch of both runs")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == INTERRUPTED
    assert live_processes_of_group(proc.pid) == []      # no worker left behind (zombies awaiting init count as gone)
    assert len(list(partials.glob("*.partial.pt"))) == 2      # each run resumes from its last epoch


@pytest.mark.slow
def test_workers_end_when_the_parent_is_killed(tiny_seed, tmp_path):
    """run.py --jobs 2 killed with SIGKILL while its workers train: the workers end too (cli.die_with_parent),
    so that no rerun trains the same runs twice beside them."""
    root, ini = tiny_seed
    with start_training(tmp_path, ini, *LONG) as proc:
        wait_until(both_partial_states(tmp_path / "res" / "checkpoints"), 300, proc, "an epoch of both runs")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert [line for line in live_processes_of_group(proc.pid, wait=60) if "resource_tracker" not in line] == []


@pytest.mark.slow
def test_ctrl_c_while_the_workers_start_prints_one_line(tiny_seed, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the --jobs workers are still
    importing: one line, no worker's traceback, nothing left running."""
    root, ini = tiny_seed
    with start_training(tmp_path, ini) as proc:
        wait_until(lambda: len(workers_of(proc.pid)) == 2, 300, proc, "both workers started", every=0.005)
        assert all(map(ignores_ctrl_c, workers_of(proc.pid)))     # from their first instruction: they import torch
        # the parent ignores Ctrl-C only while it starts a worker (a few ms)
        wait_until(lambda: not ignores_ctrl_c(proc.pid), 60, proc, "run.py takes Ctrl-C again", every=0.005)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.splitlines() == [INTERRUPTED], err
    assert live_processes_of_group(proc.pid) == []


@pytest.mark.slow
def test_started_ignoring_ctrl_c_it_trains_on_and_sigterm_stops_it(tiny_seed, tmp_path):
    """Started with SIGINT ignored (a script's `cmd &` or `nohup cmd &`, some CI runners), run.py --jobs 2 keeps
    ignoring it, and so do its workers: a Ctrl-C to the whole group changes nothing, every run trains on. SIGTERM
    (`kill`, a scheduler) still stops it and its workers: one line, exit 143, each run's partial state kept."""
    _, ini = tiny_seed
    partials = tmp_path / "res" / "checkpoints"
    with start_training(tmp_path, ini, *LONG, ctrl_c_ignored=True) as proc:
        wait_until(both_partial_states(partials), 300, proc, "an epoch of both runs")
        workers = workers_of(proc.pid)
        assert len(workers) == 2 and all(map(ignores_ctrl_c, [proc.pid, *workers]))
        before = {path: path.stat().st_mtime_ns for path in partials.glob("*.partial.pt")}
        os.killpg(proc.pid, signal.SIGINT)

        def trained_on() -> bool:       # a later epoch of each run (its partial state is rewritten after each)
            return all(path.exists() and path.stat().st_mtime_ns > mtime for path, mtime in before.items())

        wait_until(trained_on, 300, proc, "an epoch of both runs after the Ctrl-C")
        assert sorted(workers_of(proc.pid)) == sorted(workers)
        proc.send_signal(signal.SIGTERM)        # the parent alone, as `kill PID`
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and err.strip().splitlines()[-1] == INTERRUPTED, err
    assert live_processes_of_group(proc.pid) == []
    assert len(list(partials.glob("*.partial.pt"))) == 2      # each run resumes from its last epoch


def test_tasks_of_an_array_of_listed_ids_share_the_runs(tiny_seed, tmp_path, monkeypatch, capsys):
    """--shard auto in --array=1,5,7: a task skips the run another process holds and trains the others; a
    later task finds nothing left; --jobs is refused (one run at a time)."""
    root, _ = tiny_seed
    ini = write_ini(tmp_path / "claim.ini", path={"dataset_root": root / "SEED", "preprocessed_root": root / "pre",
                                                  "result_path": tmp_path / "res"},
                    data={"input_width": 16}, model=TINY_MODEL, training={"nbEpoch": 1, "batch_size": 32,
                                                                           "num_threads": 1})
    for k, v in {"ID": 5, "MIN": 1, "MAX": 7, "COUNT": 3}.items():
        monkeypatch.setenv(f"SLURM_ARRAY_TASK_{k}", str(v))
    with pytest.raises(errors.UserError, match="not evenly spaced, so each task takes one run at a time .* leave out "
                                              "--jobs"):
        run.main(["-c", str(ini), "--shard", "auto", "--jobs", "2"])
    other = store.ResultDir(config.load_config(ini)).lock(["sub01_ses1"])    # another task is training sub01
    with other:
        assert run.main(["-c", str(ini), "--shard", "auto"]) == 0
    out = capsys.readouterr().out
    assert "this task takes the runs no other has taken" in out and "shard auto done (1 trained by this task)" in out
    assert "left to the tasks training them: sub01_ses1" in out
    assert sorted(q.name for q in (tmp_path / "res" / "runs").glob("*.json")) == ["sub02_ses1.json"]
    assert run.main(["-c", str(ini), "--shard", "auto"]) == 0          # a later task: sub01 is free now
    assert "shard auto done (1 trained by this task)" in capsys.readouterr().out
    assert run.main(["-c", str(ini), "--shard", "auto"]) == 0          # and then nothing is left
    assert "2 runs, 2 already finished" in capsys.readouterr().out


def test_tasks_of_an_array_of_listed_ids_need_the_lock(tmp_path, monkeypatch):
    """Without a lock nothing keeps two tasks off one run: refused in one line, not a warning."""
    cfg = config.load_config(write_ini(tmp_path / "a.ini", path={"result_path": tmp_path / "res"}))
    monkeypatch.setattr(fileio, "fcntl", None)
    with pytest.raises(errors.OutputError, match=r"res: cannot lock the folder \(this system has no fcntl\), which "
                                                r"--shard auto in an array of listed task ids needs.*--shard I/N"):
        store.ResultDir(cfg).claim("sub01_ses1")


@pytest.mark.slow
def test_two_tasks_of_an_array_of_listed_ids_train_every_run_once(tiny_seed, tmp_path):
    """Two run.py --shard auto processes of --array=1,5 started together: between them every run is trained
    exactly once, and a --summarize afterwards sees them all."""
    root, _ = tiny_seed
    ini = write_ini(tmp_path / "claim.ini", path={"dataset_root": root / "SEED", "preprocessed_root": root / "pre",
                                                  "result_path": tmp_path / "res"},
                    data={"input_width": 16}, model=TINY_MODEL, training={"nbEpoch": 1, "batch_size": 32,
                                                                           "num_threads": 1, "repeats": 2})
    tasks = []
    for task in (1, 5):
        env = {**os.environ, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": "1",
               "SLURM_ARRAY_TASK_MAX": "5", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_STEP": "1"}
        tasks.append(start_cli("run.py", "-c", str(ini), "--shard", "auto", env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True))
    trained = []
    try:
        for proc in tasks:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0 and "Traceback" not in err, err
            trained += re.findall(r"^(sub\d+_ses\d+(?:_rep\d+)?): accuracy", out, re.M)
    finally:
        for proc in tasks:
            reap(proc)
    assert sorted(trained) == ["sub01_ses1", "sub01_ses1_rep1", "sub02_ses1", "sub02_ses1_rep1"]
    p = run_cli("run.py", "-c", str(ini), "--summarize")
    assert p.returncode == 0 and "4 trainings" in p.stdout, p.stderr


@pytest.mark.slow
def test_tensorboard_without_the_package_is_one_clear_error(tiny_seed, monkeypatch):
    root, ini = tiny_seed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)      # as if not installed
    with pytest.raises(errors.UserError, match="--tensorboard needs the tensorboard package: pip install tensorboard"):
        run.main(["-c", str(ini), "--tensorboard"])


@pytest.mark.slow
def test_tensorboard_logs_every_epoch(tiny_seed, tmp_path):
    """--tensorboard (optional dependency: skipped where tensorboard is not installed)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, ini = tiny_seed
    p = run_cli("run.py", "-c", str(ini), "--subjects", "1", "--result-path", str(tmp_path / "res"), "--tensorboard")
    assert p.returncode == 0, p.stderr
    events = EventAccumulator(str(tmp_path / "res" / "tensorboard" / "sub01_ses1"))
    events.Reload()
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2]


# ----------------------------------------------------------------------------- results that cannot mislead


@pytest.mark.slow
def test_results_carry_per_class_metrics_warnings_and_who_trained_them(tiny_seed, tmp_path, capsys):
    root, ini = tiny_seed
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--result-path", str(tmp_path / "res"), "--subjects", "1")
    assert p.returncode == 0, p.stderr
    record = json.loads((tmp_path / "res" / "runs" / "sub01_ses1.json").read_text())
    cm = np.array(record["confusion_matrix"])
    assert record["per_class"]["recall"] == pytest.approx((np.diag(cm) / cm.sum(1)).tolist())
    assert record["per_class"]["support"] == cm.sum(1).tolist()
    steps = 2 * math.ceil(record["n_train"] / 32)          # tiny: 2 epochs of batch 32
    assert f"trained for only {steps} optimizer steps (fewer than 100)" in record["warnings"]
    assert f"warning: sub01_ses1: trained for only {steps} optimizer steps" in p.stdout
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert summary["warnings"] == {"sub01_ses1": record["warnings"]} and summary["chance_accuracy"] == pytest.approx(100 / 3)
    assert summary["per_class"]["f1"] == pytest.approx(record["per_class"]["f1"])
    table = p.stdout[p.stdout.index("protocol trial"):]
    assert re.search(r"^chance level +33\.33", table, re.M)
    major = max(cm.sum(1)) / cm.sum()                    # always the most frequent test class: F1 2p/(1+p) on it
    assert summary["majority_accuracy"] == pytest.approx(100 * major)
    assert summary["majority_macro_f1"] == pytest.approx(2 * major / (1 + major) / np.count_nonzero(cm.sum(1)))
    assert summary["majority_kappa"] == 0.0
    assert re.search(rf"^majority class +{100 * major:.2f} +{summary['majority_macro_f1']:.3f} +0\.000$", table, re.M)
    assert re.search(r"^SST-EmotionNet, ours +[\d.]+ \+- [\d.]+ +[\d.]+ +-?[\d.]+  1 \(all of this invocation\)$", table, re.M)

    p = run_in_process(capsys, "run.py", "-c", str(ini), "--result-path", str(tmp_path / "res"))    # sub02 now, sub01 earlier
    assert "  2 (1 of this invocation)" in p.stdout
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--result-path", str(tmp_path / "res"), "--summarize", "--subjects", "2")
    assert p.returncode == 0 and "  1 (none of this invocation)" in p.stdout
    assert "results.csv and summary.json not written" in p.stdout          # a part does not replace the whole
    assert json.loads((tmp_path / "res" / "summary.json").read_text())["n_runs"] == 2
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--result-path", str(tmp_path / "res"), "--summarize", "--shard", "0/2")
    assert p.returncode == 1 and p.stderr.startswith("error: --summarize merges finished runs; --shard selects work")


def test_demo_takes_no_overrides_and_actions_one_at_a_time():
    with pytest.raises(errors.UserError, match="--demo fixes its own keys"):
        run.main(["--demo", "--set", "training.nbEpoch=3"])
    with pytest.raises(errors.UserError, match="^--summarize and --predict: one at a time$"):
        run.main(["--summarize", "--predict", "sub01_ses1"])


def test_settings_that_change_no_result_get_no_folder_but_compile_does():
    """compile changes the precision under bf16 autocast (bf16-compiled): never the eager runs' folder."""
    folder = lambda *sets: run.override_folder(config.load_config(ROOT / "SEED.ini", overrides=sets))  # noqa: E731
    assert folder("training.state_save=sync", "training.num_threads=2", "training.accelerator=off") is None
    assert folder("training.compile=on", "training.state_save=sync") == "training.compile=on"


def test_override_folders_are_order_free_and_short():
    assert config.folder_name(["training.lr=0.01", "model.attention=none"]) == "model.attention=none,training.lr=0.01"
    long = config.folder_name([f"model.key{i}=value{i}" for i in range(30)])
    assert len(long) <= 100 and long == config.folder_name([f"model.key{i}=value{i}" for i in reversed(range(30))])


@pytest.mark.slow
@pytest.mark.parametrize("dataset, base", [("SEED", "SEED.ini"), ("SEED-IV", "SEED_IV.ini")])
def test_cross_session_and_predict_end_to_end(tmp_path, dataset, base, capsys):
    """Both datasets: cross_session trains 3 runs per subject, each tested on a held-out session;
    --predict applies one to another session and writes its CSV; the three Python lines give the same."""
    from sst.data import session_store, synthetic

    write = synthetic.write_seed if dataset == "SEED" else synthetic.write_seed_iv
    write(tmp_path / "data", subjects=(1,), sessions=(1, 2, 3), trial_fraction=0.05 if dataset == "SEED" else 0.1,
          seed=0)
    ini = write_ini(tmp_path / "x.ini", base,
                    path={"dataset_root": tmp_path / "data", "preprocessed_root": tmp_path / "pre",
                          "result_path": tmp_path / "res"},
                    data={"input_width": 16}, model=TINY_MODEL,
                    training={"nbEpoch": 1, "batch_size": 32, "num_threads": 1, "protocol": "cross_session"})
    assert run_in_process(capsys, "Preprocess.py", "-c", str(ini), "--no-maps").returncode == 0
    p = run_in_process(capsys, "run.py", "-c", str(ini))
    assert p.returncode == 0, p.stderr
    assert "honest: per subject, one session held out" in p.stdout
    cfg = config.load_config(ini)
    sessions = {s.session: s for s in session_store.load_preprocessed(cfg)}
    for k in (1, 2, 3):
        record = json.loads((tmp_path / "res" / "runs" / f"sub01_ses{k}.json").read_text())
        assert record["n_test"] == len(sessions[k].label)
        assert record["n_train"] + record["n_val"] == sum(len(sessions[j].label) for j in (1, 2, 3) if j != k)
    stats = torch.load(tmp_path / "res" / "checkpoints" / "sub01_ses1.pt", weights_only=False)["normalization"]
    parts, _, split = protocols.run_split(cfg, runspec.RunSpec(1, 1), list(sessions.values()))
    de = np.concatenate([np.asarray(s.de) for s in parts])
    assert {s.session for s in parts} == {1, 2, 3} and set(split.train) <= set(range(len(sessions[1].label), len(de)))
    np.testing.assert_allclose(stats["de_mean"][0], de[split.train].mean(0), rtol=1e-5)   # training windows only

    p = run_in_process(capsys, "run.py", "-c", str(ini), "--predict", "sub01_ses1", "--subjects", "1", "--sessions", "2")
    assert p.returncode == 0, p.stderr
    path = tmp_path / "res" / "predictions" / "sub01_ses1_on_sub01_ses2.csv"
    rows = [line.split(",") for line in path.read_text().splitlines()]
    names = {"SEED": ["negative", "neutral", "positive"], "SEED-IV": ["neutral", "sad", "fear", "happy"]}[dataset]
    assert rows[0] == ["trial", "window", "true_label", "predicted_label", *(f"p_{n}" for n in names), "split"]
    # session 2 trained sub01_ses1 (cross_session): its last trial of each class validated, the others trained
    split = np.array([row[-1] for row in rows[1:]])
    assert set(split) == {"train", "validation"} and "warning: sub01_ses1 trained on this session" in p.stderr
    body = np.array([row[:-1] for row in rows[1:]], dtype=float)
    assert len(body) == len(sessions[2].label) and np.allclose(body[:, 4:].sum(1), 1, atol=1e-5)
    assert (body[:, 2] == sessions[2].label).all() and (body[:, 3] == body[:, 4:].argmax(1)).all()
    assert body[0, 1] == 0 and (body[:, 1][body[:, 0] == 1] == np.arange((body[:, 0] == 1).sum())).all()
    accuracy = 100 * (body[:, 2] == body[:, 3]).mean()
    assert f"accuracy {accuracy:.2f}%" in p.stdout
    net, trained, stats = load_trained(tmp_path / "res" / "checkpoints" / "sub01_ses1.pt")
    probabilities = predict_probabilities(net, trained, stats, sessions[2])
    assert np.allclose(probabilities, body[:, 4:], atol=1e-5)

    bad = run_in_process(capsys, "run.py", "-c", str(ini), "--predict", "sub01_ses1")
    assert bad.returncode == 1 and bad.stderr.startswith("error: --predict sub01_ses1: give one subject and one session")
    gone = run_in_process(capsys, "run.py", "-c", str(ini), "--predict", "sub09_ses1", "--subjects", "1", "--sessions", "2")
    assert gone.returncode == 1 and "sub09_ses1.pt: checkpoint not found" in gone.stderr


@pytest.mark.slow
def test_shard_auto_in_a_slurm_array_job(tiny_seed, tmp_path):
    """The README's SLURM example: --shard auto takes this task's share of the runs, writes no summary."""
    root, ini = tiny_seed
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "2"}
    p = subprocess.run([sys.executable, "run.py", "-c", str(ini), "--result-path", str(tmp_path / "res"),
                        "--set", "training.nbEpoch=1", "--shard", "auto"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert sorted(q.name for q in (tmp_path / "res" / "runs").glob("*.json")) == ["sub02_ses1.json"]
    assert not (tmp_path / "res" / "summary.json").exists() and "shard auto done" in p.stdout


@pytest.mark.slow
def test_readme_try_it_commands_run_as_written(tmp_path):
    """README "Try it on data shaped like yours": its three commands, exactly as written, in a copy of the
    repository's scripts and package (the INI's relative paths then land in the temporary folder)."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Try it on data shaped like yours"):]
    block = block[block.index("```bash\n") + 8:]
    commands = [line.split("  #")[0].strip() for line in block[:block.index("```")].splitlines() if line.strip()]
    assert len(commands) == 3
    for path in [*ROOT.glob("*.py"), *ROOT.glob("*.ini")]:
        shutil.copy(path, tmp_path / path.name)
    shutil.copytree(ROOT / "sst", tmp_path / "sst", ignore=shutil.ignore_patterns("__pycache__"))
    for command in commands:
        p = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, f"{command}\n{p.stderr}"
    summary = json.loads((tmp_path / "results" / "SEED_IV" / "training.nbEpoch=3" / "summary.json").read_text())
    assert summary["dataset"] == "SEED-IV" and summary["n_runs"] == 6 and summary["overrides"] == ["training.nbEpoch=3"]

    # "Use a trained model": its command line and its Python lines work as written after these
    block = text[text.index("## Use a trained model"):]
    command = block[block.index("```bash\n") + 8:].split("```")[0].split("  #")[0].strip()
    p = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{command}\n{p.stderr}"
    assert (tmp_path / "results" / "SEED_IV" / "training.nbEpoch=3" / "predictions" / "sub01_ses1_on_sub01_ses2.csv").is_file()
    snippet = block[block.index("```python\n") + 10:].split("```")[0]
    # as written, then from another folder (a notebook's), in one interpreter: the checkpoint's paths still lead
    # to its data (the checkpoint path itself is the one thing to adapt)
    notebook = tmp_path / "notebooks"
    notebook.mkdir()
    moved = snippet.replace('"results/', f'"{tmp_path}/results/')
    script = f"{snippet}\nprint(probabilities.shape)\nimport os\nos.chdir({str(notebook)!r})\n{moved}\nprint(probabilities.shape)"
    p = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert re.fullmatch(r"(\(\d+, 4\)\n){2}", p.stdout), p.stdout


@pytest.mark.slow
def test_cross_session_results_of_another_session_pool_are_refused(tmp_path, capsys):
    """A session preprocessed later changes every cross_session run of its subject: the finished ones are
    not reused or merged (as loso's subject pool)."""
    from sst.data import synthetic

    synthetic.write_seed(tmp_path / "SEED", subjects=(1,), sessions=(1, 2, 3), trial_fraction=0.03, seed=0)
    ini = str(write_ini(tmp_path / "x.ini",
                        path={"dataset_root": tmp_path / "SEED", "preprocessed_root": tmp_path / "pre",
                              "result_path": tmp_path / "res"},
                        data={"input_width": 16}, model=TINY_MODEL,
                        training={"nbEpoch": 1, "batch_size": 32, "num_threads": 1, "protocol": "cross_session"}))
    assert run_in_process(capsys, "Preprocess.py", "-c", ini, "--sessions", "1,2", "--no-maps").returncode == 0
    p = run_in_process(capsys, "run.py", "-c", ini)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "res" / "runs" / "sub01_ses1.json").read_text())["session_pool"] == [1, 2]
    assert run_in_process(capsys, "Preprocess.py", "-c", ini, "--sessions", "3", "--no-maps").returncode == 0
    again = run_in_process(capsys, "run.py", "-c", ini)
    assert again.returncode == 1 and again.stderr.splitlines() == [
        f"error: {tmp_path}/res/runs/sub01_ses1.json: trained with sessions [1, 2] of subject 1, but the preprocessed "
        f"sessions are now [1, 2, 3]; choose another [path] result_path or delete {tmp_path}/res/runs to start over"]


