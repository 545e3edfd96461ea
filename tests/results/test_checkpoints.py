"""sst/results/checkpoints.py and sst/models/trained.py: a finished run's checkpoint, read safely (no payload runs), checked, converted, its model rebuilt."""
from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import run
from conftest import (
    ROOT,
    TINY_MODEL,
    Payload,
    copy_of,
    copy_of_results,
    partial_state,
    run_in_process,
    write_ini,
)
from sst import config, errors, fileio
from sst.models import trained
from sst.reporting import figures
from sst.results import checkpoints, store


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
            trained.load_trained(tmp_path / "x.pt")


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
        "results.load_trained": lambda: trained.load_trained(best),
        "checkpoints.py --convert": lambda: checkpoints.main(["--convert", str(best)]),
    }
    for reader in readers.values():
        with pytest.raises(errors.DataError, match=rf"^{best}: holds objects whose loading would run code \(io.open\)"):
            reader()
    assert not marker.exists()


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
        _, _, stats = trained.load_trained(path)
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
    real_open = fileio.open_regular

    def refusing(path, *args, **kwargs):      # what os.open gives for a file we may not read
        if Path(path) in (best, partial):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(fileio, "open_regular", refusing)
    for read, path in ((lambda: checkpoints.load_checkpoint(best), best),
                       (lambda: store.load_partial(partial, trainer, state["config_key"]), partial)):
        with pytest.raises(errors.DataError) as refused:
            read()
        assert str(refused.value) == (f"{path}: cannot read the file (Permission denied); check its permissions (it is "
                                      f"not damaged, nothing was changed)")
        assert "delete" not in str(refused.value) and path.is_file()


# ----------------------------------------------------------------------------- hostile checkpoints (issue 33)

GiB = 2**30


def rezip(path: Path, edit=None, compress: int = zipfile.ZIP_STORED) -> None:
    """Rewrite a torch checkpoint's zip archive in place: its data.pkl passed through `edit` (bytes -> bytes),
    every member compressed with `compress`."""
    with zipfile.ZipFile(path) as z:
        members = [(info.filename, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            z.writestr(name, edit(data) if edit and name.endswith("/data.pkl") else data, compress_type=compress)


class Bytearray:
    """Pickles as builtins.bytearray(n), which torch's safe loader would call: n zero bytes, allocated and
    written before anything could check them."""

    def __init__(self, n: int):
        self.n = n

    def __reduce__(self):
        return bytearray, (self.n,)


class Undeclared:
    """Pickles as NumPy's _reconstruct(ndarray, shape, b"b") with no state after it: NumPy makes an uninitialised
    array of that shape, and never receives any data for it (what an earlier-version checkpoint could hold)."""

    def __init__(self, shape: tuple):
        self.shape = shape

    def __reduce__(self):
        return np.ndarray.__reduce__(np.zeros(0, np.int8))[0], (np.ndarray, self.shape, b"b")


def _with(c: dict, group: str, key: str, value) -> dict:
    return {**c, group: {**c[group], key: value}}


def _nan_weight(c: dict) -> dict:
    name = next(k for k, v in c["model"].items() if v.is_floating_point())
    weight = c["model"][name].clone()
    weight.view(-1)[0] = float("nan")
    return _with(c, "model", name, weight)


# Each makes a best checkpoint --predict refuses with one line naming the file and this text. The first three
# are resource attacks: torch's safe loader alone inflates, allocates or views whatever they ask.
HOSTILE_CHECKPOINTS = {
    "a-deflate-member": (lambda c, path: (torch.save(c, path), rezip(path, compress=zipfile.ZIP_DEFLATED)),
                         "is compressed (method 8); torch.save stores its members as they are"),
    "a-tensor-declaring-16-GiB": (lambda c, path: torch.save(_with(c, "normalization", "de_mean",
                                                                   torch.zeros(1).expand(4 * GiB)), path),
                                  "normalization/de_mean: a tensor of shape (4294967296,) declares 17179869184 bytes"),
    "a-bytearray-of-16-GiB": (lambda c, path: torch.save(_with(c, "normalization", "de_mean", Bytearray(16 * GiB)), path),
                              "builtins.bytearray, which no checkpoint of this project holds"),
    "nan-weights": (lambda c, path: torch.save(_nan_weight(c), path), ": 1 NaN/Inf values (expected finite numbers)"),
    "statistics-of-the-wrong-shape": (lambda c, path: torch.save(_with(c, "normalization", "de_mean", torch.zeros(3)), path),
                                      "normalization: de_mean has shape (3,), expected (1, 62, 5)"),
    "statistics-of-the-wrong-type": (lambda c, path: torch.save(_with(c, "normalization", "de_mean", "abc"), path),
                                     "normalization: expected the input statistics (names to tensors of numbers)"),
    "a-string-pool": (lambda c, path: torch.save({**c, "subject_pool": "12", "config": {
        **c["config"], "training": {**c["config"]["training"], "protocol": "loso"}}}, path),
                      "subject_pool: expected a list of subject numbers, got '12'"),
    "code-named-by-numbers": (lambda c, path: torch.save({**c, "code": {1: "x"}}, path),
                              "code: expected a code identity (names to digests)"),
}


def bounded_cli(*args: str, memory: int = 3 * GiB, file_size: int = 64 * 2**20, timeout: float = 600
                ) -> subprocess.CompletedProcess:
    """run_cli with the process's address space and the size of any file it writes bounded, so that code that
    reads or writes what a hostile file declares fails here instead of taking the machine's memory or disk."""
    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limits)


def assert_one_error_line(p: subprocess.CompletedProcess, path: Path, expected: str) -> None:
    assert p.returncode == 1, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    errors_ = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors_) == 1 and errors_[0].startswith(f"error: {path}: ") and expected in errors_[0], p.stderr


@pytest.mark.parametrize("hostile", HOSTILE_CHECKPOINTS)
def test_predict_refuses_a_hostile_checkpoint_in_one_line(finished, tmp_path, hostile):
    """run.py --predict of a checkpoint that would inflate, allocate or view gigabytes, or holds NaN weights,
    statistics of the wrong shape or fields of the wrong type: exit 1, one error line naming the file and
    what is wrong, no traceback, no predictions written."""
    args = copy_of_results(finished, tmp_path)
    best = tmp_path / "res" / "checkpoints" / "sub01_ses1.pt"
    make, expected = HOSTILE_CHECKPOINTS[hostile]
    make(torch.load(best, weights_only=True), best)
    p = bounded_cli("run.py", *args, "--predict", "sub01_ses1", "--subjects", "1", "--sessions", "1")
    assert_one_error_line(p, best, expected)
    assert not (tmp_path / "res" / "predictions").exists()


@pytest.mark.parametrize("declared, expected", [
    ((4 * 2**20,), "a NumPy array declared as (4194304,) before its data; NumPy writes (0,)"),
    ((16 * GiB,), "a NumPy array declared as (17179869184,) before its data"),
])
def test_convert_refuses_an_earlier_array_without_its_data(finished, tmp_path, declared, expected):
    """An earlier-version checkpoint (NumPy statistics) whose array is declared but given no data: earlier
    versions of --convert wrote the process's uninitialised memory into the file (4 MiB), or 16 GiB of it.
    Refused in one line; the file is left as it was."""
    root, _ = finished
    c = torch.load(root / "res" / "checkpoints" / "sub01_ses1.pt", weights_only=True)
    path = tmp_path / "sub01_ses1.pt"
    torch.save({**c, "normalization": {**{k: v.numpy() for k, v in c["normalization"].items()},
                                       "de_mean": Undeclared(declared)}}, path)
    before = path.read_bytes()
    assert len(before) < 2**20
    p = bounded_cli("-m", "sst.results.checkpoints", "--convert", str(path))
    assert_one_error_line(p, path, expected)
    assert path.read_bytes() == before and sorted(q.name for q in tmp_path.iterdir()) == ["sub01_ses1.pt"]


def test_convert_refuses_nan_statistics(finished, tmp_path):
    root, _ = finished
    c = torch.load(root / "res" / "checkpoints" / "sub01_ses1.pt", weights_only=True)
    path = tmp_path / "sub01_ses1.pt"
    stats = {k: v.numpy().copy() for k, v in c["normalization"].items()}
    stats["de_std"].flat[3] = np.inf
    torch.save({**c, "normalization": stats}, path)
    with pytest.raises(errors.DataError, match=r"damaged checkpoint \(normalization tensor de_std: 1 NaN/Inf values "
                                               r"\(expected finite numbers\)\); not converted"):
        checkpoints.convert(path)
    torch.save(_nan_weight(c), path)        # loads safely, but is damaged all the same
    with pytest.raises(errors.DataError, match=r"damaged checkpoint \(model tensor .*: 1 NaN/Inf values"):
        checkpoints.convert(path)


def test_load_trained_refuses_nan_weights(finished, tmp_path):
    root, _ = finished
    c = torch.load(root / "res" / "checkpoints" / "sub01_ses1.pt", weights_only=True)
    torch.save(_nan_weight(c), tmp_path / "x.pt")
    with pytest.raises(errors.DataError, match=r"x.pt: damaged checkpoint \(model tensor .*: 1 NaN/Inf values"):
        trained.load_trained(tmp_path / "x.pt")


def test_earlier_arrays_are_read_from_their_bytes(finished, tmp_path):
    """What NumPy pickles, read without NumPy's unpickling: every number type, byte order and memory order."""
    root, _ = finished
    c = torch.load(root / "res" / "checkpoints" / "sub01_ses1.pt", weights_only=True)
    arrays = {"f4": np.arange(6, dtype="<f4").reshape(2, 3), "f8-big-endian": np.arange(4, dtype=">f8"),
              "i8-fortran": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
              "u1": np.arange(3, dtype=np.uint8), "bool": np.array([True, False])}
    path = tmp_path / "x.pt"
    torch.save({**c, "extra": arrays}, path)
    extra = checkpoints.read_earlier(path)["extra"]
    for name, a in arrays.items():
        assert torch.is_tensor(extra[name]) and np.array_equal(extra[name].numpy(), a), name


@pytest.mark.parametrize("hostile", ["a-symbolic-link", "over-the-limit"])
def test_a_checkpoint_that_is_not_a_bounded_regular_file_is_damaged(finished, tmp_path, monkeypatch, hostile):
    """Every reader opens a checkpoint without following a link and refuses files over CHECKPOINT_LIMIT: a
    best checkpoint stops the command in one line, a partial state is damaged (so set aside and its run redone)."""
    root, ini = finished
    best, partial = tmp_path / "sub01_ses1.pt", tmp_path / "sub01_ses1.partial.pt"
    state, trainer = partial_state(config.load_config(ini))
    if hostile == "a-symbolic-link":
        best.symlink_to(root / "res" / "checkpoints" / "sub01_ses1.pt")
        torch.save(state, tmp_path / "elsewhere.pt")
        partial.symlink_to(tmp_path / "elsewhere.pt")
        expected = "a symbolic link, which is never followed out of its folder"
    else:
        shutil.copy(root / "res" / "checkpoints" / "sub01_ses1.pt", best)
        torch.save(state, partial)
        monkeypatch.setattr(checkpoints, "CHECKPOINT_LIMIT", 1000)
        expected = "more than the 1000 this kind of file can need"
    with pytest.raises(errors.DataError, match=rf"^{best}: not a readable checkpoint \(.*{re.escape(expected)}"):
        checkpoints.load_checkpoint(best)
    with pytest.raises(store.DamagedFile, match=re.escape(expected)):
        store.load_partial(partial, trainer, state["config_key"])


def test_a_fifo_checkpoint_is_refused_at_once(tmp_path):
    """A FIFO in a checkpoint's place would block a reader until someone writes to it: refused by its type, in
    a separate process (a reader that blocks fails the test by its timeout, not by hanging it)."""
    fifo = tmp_path / "sub01_ses1.pt"
    os.mkfifo(fifo)
    p = bounded_cli("-m", "sst.results.checkpoints", "--convert", str(fifo), timeout=60)
    assert_one_error_line(p, fifo, "not a readable checkpoint (a FIFO, not a regular file)")


PARTIAL_STATES = {      # the resource attacks of HOSTILE_CHECKPOINTS, in a partial state
    "a-deflate-member": (lambda state, path: (torch.save(state, path), rezip(path, compress=zipfile.ZIP_DEFLATED)),
                         "is compressed (method 8)"),
    "a-tensor-declaring-16-GiB": (lambda state, path: torch.save({**state, "shuffle": torch.zeros(1).expand(16 * GiB)}, path),
                                  "shuffle: a tensor of shape (17179869184,) declares 68719476736 bytes"),
    "a-bytearray-of-16-GiB": (lambda state, path: torch.save({**state, "history": Bytearray(16 * GiB)}, path),
                              "builtins.bytearray, which no checkpoint of this project holds"),
}


@pytest.mark.parametrize("hostile", PARTIAL_STATES)
def test_a_hostile_partial_state_is_damaged(finished, tmp_path, hostile):
    """Partial states are read by read_safely too: the same bounds, and a refused one is damaged (set aside)."""
    _, ini = finished
    state, trainer = partial_state(config.load_config(ini))
    path = tmp_path / "sub01_ses1.partial.pt"
    make, expected = PARTIAL_STATES[hostile]
    make(state, path)
    with pytest.raises(store.DamagedFile, match=re.escape(expected)):
        store.load_partial(path, trainer, state["config_key"])


def test_a_zip_member_declaring_more_than_the_file_holds_is_damaged(finished, tmp_path):
    """The sizes of the zip's central directory are checked before torch reads a member: here data.pkl's
    declares 2 GiB (stored), in a file of a few MB."""
    root, _ = finished
    data = bytearray((root / "res" / "checkpoints" / "sub01_ses1.pt").read_bytes())
    end = data.rindex(b"PK\x05\x06")       # the end of the central directory, which says where it starts
    entry = int.from_bytes(data[end + 16:end + 20], "little")   # its first entry: data.pkl, as torch writes it
    assert data[entry:entry + 4] == b"PK\x01\x02"
    assert data[entry + 46:entry + 46 + int.from_bytes(data[entry + 28:entry + 30], "little")].endswith(b"/data.pkl")
    data[entry + 20:entry + 28] = (2 * GiB).to_bytes(4, "little") * 2      # its compressed and uncompressed sizes
    (tmp_path / "x.pt").write_bytes(data)
    with pytest.raises(errors.DataError, match=r"x.pt: not a readable checkpoint \(its members unpack to \d+ bytes, "
                                               r"more than the 536870912 a checkpoint can need\)"):
        checkpoints.load_checkpoint(tmp_path / "x.pt")
