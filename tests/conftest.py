"""Test setup: the repository's root is importable (the scripts and the package sst/), and this folder too
(its helpers: `from conftest import ...`), plus what the test files share: temp INI files, running the
command lines, tiny synthetic trees and finished runs, fake run records and summaries. tests/README.md says
where a test goes.

No test waits without a deadline: a process a test starts and signals is started by start_cli or started
(Ctrl-C at the disposition the test needs, whatever pytest's is; killed when a failed test leaves it), is
waited for with wait_until (a deadline, and a failure as soon as the process has ended without it),
read with read_line, and every .wait and .communicate has a timeout."""
import configparser
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

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


# ----------------------------------------------------------------------------- processes that never hang a test


@contextmanager
def children_with_ctrl_c(ignored: bool = False) -> Iterator[None]:
    """Processes started inside this block start with Ctrl-C (SIGINT) at its default, or ignored, whatever this
    process's disposition is. pytest started by a script's `cmd &` (`nohup cmd &` too) or by some CI runners
    ignores SIGINT, and what it starts would inherit that. A handler becomes the default across exec, SIG_IGN
    stays ignored: this process holds one or the other meanwhile (main thread only, as every signal.signal)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if ignored else signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def start_cli(*args: str, ctrl_c_ignored: bool = False, **popen) -> subprocess.Popen:
    """Start `python <args>` from the repository root (Popen's keyword arguments as given), with Ctrl-C at its
    default in it, or ignored as a script's `cmd &` starts it, whatever this process's is (children_with_ctrl_c)."""
    with children_with_ctrl_c(ctrl_c_ignored):
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, **popen)


@contextmanager
def started(*args: str, ctrl_c_ignored: bool = False, **popen) -> Iterator[subprocess.Popen]:
    """start_cli as a block; whatever of it still runs when the block ends, a failed test's included, is killed."""
    proc = start_cli(*args, ctrl_c_ignored=ctrl_c_ignored, **popen)
    try:
        yield proc
    finally:
        reap(proc)


def reap(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGKILL `proc` (its whole process group if it leads one: start_new_session) unless the test has reaped it
    already, close its pipes, and wait for its end, at most `timeout` seconds."""
    if proc.returncode is None:         # not reaped: its id is still its own, if only as a zombie
        try:
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except ProcessLookupError:
            pass
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    proc.wait(timeout=timeout)


def wait_until(condition: Callable[[], object], timeout: float, proc: subprocess.Popen | None = None,
               what: str = "the condition", every: float = 0.02) -> None:
    """Poll `condition()` every `every` seconds until it holds. Fails the test, naming `what`, once `timeout`
    seconds have passed, or as soon as `proc` has ended without it (with the end of its stderr, if piped)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: not reached before the process ended, exit code {proc.returncode}{stderr_end(proc)}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached within {timeout:g} s")
        time.sleep(every)


def stderr_end(proc: subprocess.Popen, chars: int = 2000) -> str:
    """The last `chars` of an ended process's piped stderr, for a failure message ('' if not piped or held open)."""
    if proc.stderr is None or proc.stderr.closed:
        return ""
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:       # what it started still holds the pipe
        return ""
    return f"; stderr ends:\n{err[-chars:]}" if err else ""


def read_line(stream, timeout: float = 60) -> str:
    """The next line of a child's output pipe `stream` ('' once the child has closed it, by ending), failing the
    test if none comes within `timeout` seconds. Read from its file descriptor a byte at a time: no thread left
    blocked in a read, and nothing past the line taken from whoever reads the pipe next."""
    fd, line, deadline = stream.fileno(), b"", time.monotonic() + timeout
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            pytest.fail(f"no line of output within {timeout:g} s (so far: {line!r})")
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line.decode()


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


def fake_run(subject: int, session: int, *, epochs: int = 6, val: bool = True, protocol: str = "trial",
             n_class: int = 3, seed: int = 0) -> dict:
    """A runs/<run>.json dict as run.py writes it (the keys figures.py reads, and a few more)."""
    rng = np.random.default_rng(seed + 100 * subject + session)
    history = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "train_loss": float(np.exp(-e / 4) + 0.05 * rng.random()),
               "train_accuracy": float(min(1.0, 0.3 + 0.1 * e))}
        if val:
            row.update(val_loss=float(np.exp(-e / 6) + 0.1 * rng.random()), val_accuracy=float(0.3 + 0.05 * e))
        row["seconds"] = 0.5
        history.append(row)
    cm = rng.integers(0, 20, size=(n_class, n_class)) + 40 * np.eye(n_class, dtype=int)
    return {"run": f"sub{subject:02d}_ses{session}", "subject": subject, "session": session, "protocol": protocol,
            "dataset": "SEED" if n_class == 3 else "SEED-IV", "accuracy": float(np.trace(cm) / cm.sum()),
            "macro_f1": 0.6, "kappa": 0.4, "test_loss": 0.9, "confusion_matrix": cm.tolist(),
            "n_train": 90, "n_val": 10 if val else 0, "n_test": int(cm.sum()),
            "best_epoch": int(rng.integers(1, epochs + 1)), "epochs_run": epochs, "history": history}


def fake_summary(results: list[dict]) -> dict:
    """summary.json's keys that the figures read, computed from the runs as run.summarize does."""
    acc = np.array([r["accuracy"] for r in results]) * 100
    per_subject: dict[str, list[float]] = {}
    for r in results:
        per_subject.setdefault(str(r["subject"]), []).append(100 * r["accuracy"])
    dataset = results[0]["dataset"]
    return {"dataset": dataset, "protocol": results[0]["protocol"], "protocol_note": "a note on the protocol",
            "n_runs": len(results), "mean_accuracy": float(acc.mean()), "std_accuracy": float(acc.std()),
            "per_subject": {k: float(np.mean(v)) for k, v in per_subject.items()},
            "confusion_matrix": np.sum([r["confusion_matrix"] for r in results], axis=0).tolist(),
            "paper_accuracy": {"mean": 96.02, "std": 2.17} if dataset == "SEED" else {"mean": 84.92, "std": 6.66}}


def record(run_name: str, correct: int, *, n_test: int = 100, dataset: str = "SEED", protocol: str = "trial",
           key: str = "k" * 16, model: str | None = None) -> dict:
    """A runs/<run>.json record that passes schemas.RUN_RECORD, `correct` of `n_test` test windows right."""
    from sst.training import metrics, runspec

    spec = runspec.RunSpec.parse(run_name)
    n_class = 3 if dataset == "SEED" else 4
    cm = np.zeros((n_class, n_class), dtype=int)
    cm[0, 0], cm[0, 1] = correct, n_test - correct
    r = {"run": run_name, "subject": spec.subject, "session": spec.session, "protocol": protocol, "dataset": dataset,
         **metrics.scores(cm), "test_loss": 1.0, "confusion_matrix": cm.tolist(), "n_train": 200, "n_val": 20,
         "n_test": n_test, "best_epoch": 1, "epochs_run": 1, "seconds": 1.0, "config_key": key,
         "history": [{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "seconds": 1.0}]}
    if model:
        r["model"] = model
    return r


def write_folder(folder, records: list[dict]) -> None:
    """runs/<run>.json of each record under a result folder."""
    from sst import fileio

    for r in records:
        fileio.write_json(folder / "runs" / f"{r['run']}.json", r)


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """Two synthetic SEED subjects preprocessed at 16 x 16 and trained (2 epochs), once per test session: tests
    read it, and damage only their copy of it (copy_of, copy_of_results)."""
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


def partial_state(cfg) -> tuple[dict, object]:
    """(the resumable state of a fresh run sub01_ses1 of cfg, as saved after an epoch; its Trainer)."""
    import torch

    from sst.data import session_store
    from sst.results import provenance
    from sst.training import loop, runspec

    spec = runspec.RunSpec(1, 1)
    data = loop.build_run_data(cfg, spec, session_store.load_preprocessed(cfg, subjects=[1]))
    trainer = loop.Trainer(cfg, spec, data, torch.device("cpu"))
    return {"config_key": provenance.result_key(cfg), **trainer.state()}, trainer


def copy_of_results(finished, tmp_path) -> list[str]:
    """A private copy of the finished result folder only (the preprocessed sessions are only read): the
    run.py arguments that use it."""
    root, ini = finished
    shutil.copytree(root / "res", tmp_path / "res")
    return ["-c", str(ini), "--result-path", str(tmp_path / "res")]


HOLDER = ("import json, sys; from sst import fileio; fileio.FolderLock(sys.argv[1]).acquire(json.loads(sys.argv[2]), lambda h: None); "
          "print('held', flush=True); sys.stdin.read()")


@contextmanager
def holder(root: Path, info: dict):
    """Another process holding `root`'s lock with `info` until the block ends (then killed: SIGKILL)."""
    with started("-c", HOLDER, str(root), json.dumps(info), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 text=True) as p:
        assert read_line(p.stdout) == "held\n"
        yield p


# config/SEED.ini of the authors' Keras release (github.com/ziyujia/SST-EmotionNet), verbatim.
AUTHORS_INI = """\
[path]

train_specInput_root_path = ../SEED_input_data/train/feature
train_tempInput_root_path = ../SEED_input_data/train/temporal
train_label_root_path = ../SEED_input_data/train/label

test_specInput_root_path = ../SEED_input_data/test/feature
test_tempInput_root_path = ../SEED_input_data/test/temporal
test_label_root_path = ../SEED_input_data/test/label

result_path = ./result
model_save_path = ./output_model

[model]

input_width = 32
specInput_length = 5
temInput_length = 25

depth_spec = 16
depth_tem = 22
nb_dense_block = 3
gr_spec = 12
gr_tem = 24
nb_class = 3

[training]

nbEpoch = 50
batch_size = 64
lr = 0.0001
"""


TREE_FRACTION = 0.02     # seed_tree and seed_iv_tree: trial lengths of the real ones times this


@pytest.fixture(scope="session")
def seed_tree(tmp_path_factory):
    """SEED, subjects 2 and 10 (10 sorts first as text), sessions 1 and 2, with strays."""
    from sst.data import synthetic

    root = synthetic.write_seed(tmp_path_factory.mktemp("seed") / "SEED", subjects=(2, 10), sessions=(1, 2),
                                trial_fraction=TREE_FRACTION)
    for folder in ("ExtractedFeatures", "Preprocessed_EEG"):
        for stray in (".DS_Store", "notes.mat", "3_2013.mat", "10_20131130.mat.bak"):
            (root / folder / stray).write_bytes(b"not a recording")
        (root / folder / "4_20140621.mat").mkdir()  # a folder named like a recording
    return root


@pytest.fixture(scope="session")
def seed_iv_tree(tmp_path_factory):
    """SEED-IV, subjects 1 and 10, sessions 1 and 2, with strays (SEED-IV's files are numbered: a
    lettered name is a stray there, while in SEED it would be a subject's name)."""
    from sst.data import synthetic

    root = synthetic.write_seed_iv(tmp_path_factory.mktemp("seed_iv") / "SEED_IV", subjects=(1, 10), sessions=(1, 2),
                                   trial_fraction=TREE_FRACTION)
    for folder in ("eeg_feature_smooth/1", "eeg_raw_data/2"):
        for stray in (".DS_Store", "notes_20160518.mat", "label.mat"):
            (root / folder / stray).write_bytes(b"not a recording")
    return root


def write_v73(path: Path, arrays: dict) -> None:
    """A .mat file the way MATLAB's -v7.3 writes it: HDF5 after a 512-byte header, arrays column-major."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        for name, a in arrays.items():
            f.create_dataset(name, data=np.asarray(a).T).attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")


@pytest.fixture(scope="module")
def cfg():
    """SEED.ini, as shipped."""
    from sst import config

    return config.load_config(ROOT / "SEED.ini")


def small(cfg, **model_keys):
    """A fast variant of SEED.ini: 16x16 maps, 5 bands, 9 time points, small depths and growth rates."""
    keys = dict(depth_spec=10, depth_tem=10, gr_spec=4, gr_tem=6)
    keys.update(model_keys)
    return cfg.replace(data={"input_width": 16, "temInput_length": 9}, model=keys)


DROP_ROOT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def dropped_root(command: list[str]) -> list[str]:
    """`command` without root's permission override (skip when running as root without setpriv)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv")
    return [*DROP_ROOT_OVERRIDE, *command]


TRAINING = {"nbEpoch": 3, "batch_size": 32, "num_threads": 1, "seed": 42}


def make_ini(path: Path, data_root: Path, pre: Path, res: Path, **training) -> Path:
    return write_ini(path, path={"dataset_root": data_root, "preprocessed_root": pre, "result_path": res},
                     data={"input_width": 16}, model=TINY_MODEL, training=TRAINING | training)


def model_inputs(cfg, n: int, seed: int = 0, dtype=None):
    """(spectral, temporal) random input maps of n samples for cfg's network (float32 unless `dtype`)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    w = cfg.data.input_width
    return (torch.randn(n, w, w, cfg.data.specInput_length, generator=g, dtype=dtype or torch.float32),
            torch.randn(n, w, w, cfg.data.temInput_length, generator=g, dtype=dtype or torch.float32))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """base/SEED (synthetic) and base/pre (its maps, preprocessed once)."""
    from sst.data import synthetic

    base = tmp_path_factory.mktemp("tiny")
    synthetic.write_seed(base / "SEED", subjects=(1, 2), sessions=(1,), trial_fraction=0.05, seed=0)
    p = run_cli("Preprocess.py", "-c", str(make_ini(base / "pre.ini", base / "SEED", base / "pre", base / "res")))
    assert p.returncode == 0, p.stderr
    return base


def dataset_ini(tmp_path: Path, dataset: str, dataset_root: Path, **data) -> Path:
    """A copy of SEED.ini / SEED_IV.ini with the paths under tmp_path and some [data] keys replaced."""
    import re

    text = (ROOT / ("SEED.ini" if dataset == "SEED" else "SEED_IV.ini")).read_text()
    paths = {"dataset_root": dataset_root, "preprocessed_root": tmp_path / "pre", "result_path": tmp_path / "results"}
    for key, value in {**paths, **data}.items():
        text, n = re.subn(rf"(?m)^{key}\s*=.*$", f"{key} = {value}", text)
        assert n == 1, key
    ini = tmp_path / f"{dataset}_{len(list(tmp_path.glob('*.ini')))}.ini"
    ini.write_text(text)
    return ini


@pytest.fixture(scope="session")
def tiny_seed(tmp_path_factory):
    """Two synthetic SEED subjects (one session, short trials), preprocessed at 16x16."""
    return tiny_seed_tree(tmp_path_factory.mktemp("seed"))


# ----------------------------------------------------------------------------- the authors' Keras files


def keras_layers(net, first_counter: int = 1) -> list[tuple[str, list[tuple[str, "np.ndarray"]]]]:
    """net's Conv3d, BatchNorm3d and Linear modules as the authors' Keras code names and lays them out:
    per-type counters in creation order (Keras 2.3 starts at _1, tf.keras at no suffix), the stem
    convolution of each stream built twice (the first one never reaches the file), Keras axis orders."""
    import torch.nn as nn

    counters = {"conv3d": first_counter, "batch_normalization": first_counter, "dense": first_counter}
    layers = []
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv3d):
            kind, weights = "conv3d", [("kernel", m.weight.detach().permute(2, 3, 4, 1, 0))]
            if name.endswith("features.stem"):
                counters[kind] += 1     # the stem built twice: the first one is not in the model
        elif isinstance(m, nn.BatchNorm3d):
            kind = "batch_normalization"
            weights = [("gamma", m.weight), ("beta", m.bias), ("moving_mean", m.running_mean),
                       ("moving_variance", m.running_var)]
        elif isinstance(m, nn.Linear):
            kind, weights = "dense", [("kernel", m.weight.detach().t()), ("bias", m.bias)]
        else:
            continue
        counter = counters[kind]
        counters[kind] += 1
        layer = kind if counter == 0 else f"{kind}_{counter}"
        layers.append((layer, [(w, t.detach().numpy().copy()) for w, t in weights]))
    return layers


def write_keras_h5(path, layers, full_model: bool, shuffle_seed: int = 0):
    """An .h5 in Keras's layout: layer_names, one group per layer with weight_names, datasets at
    <layer>/<layer>/<weight>:0, also layers without weights; a full model nests it in /model_weights."""
    import random

    import h5py

    names = [name for name, _ in layers] + ["input_1", "activation_1", "concatenate_1"]
    random.Random(shuffle_seed).shuffle(names)      # Keras lists layers topologically, not by counter
    weights = dict(layers)
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        if full_model:
            f.attrs["model_config"] = b"{}"
            f.create_group("optimizer_weights").create_dataset("Adam/iterations:0", data=7)
        root.attrs["layer_names"] = [n.encode() for n in names]
        root.attrs["backend"], root.attrs["keras_version"] = b"tensorflow", b"2.3.1"
        for name in names:
            group = root.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{w}:0".encode() for w, _ in weights.get(name, [])]
            for w, value in weights.get(name, []):
                group.create_dataset(f"{name}/{w}:0", data=value)


def randomised(net):
    """net with every parameter and BN statistic drawn at random (so a wrong mapping shows)."""
    import torch

    with torch.no_grad():
        for t in (*net.parameters(), *net.buffers()):
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5)
    return net
