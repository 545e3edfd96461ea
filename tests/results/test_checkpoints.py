"""sst/results/checkpoints.py and sst/models/trained.py: a finished run's checkpoint, read safely (no payload runs), checked, converted, its model rebuilt."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import run
from conftest import (
    TINY_MODEL,
    Payload,
    copy_of,
    copy_of_results,
    partial_state,
    run_in_process,
    write_ini,
)
from sst import config, errors
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
    real_open = open

    def refusing(path, *args, **kwargs):
        if Path(path) in (best, partial):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "open", refusing, raising=False)
    for read, path in ((lambda: checkpoints.load_checkpoint(best), best),
                       (lambda: store.load_partial(partial, trainer, state["config_key"]), partial)):
        with pytest.raises(errors.DataError) as refused:
            read()
        assert str(refused.value) == (f"{path}: cannot read the file (Permission denied); check its permissions (it is "
                                      f"not damaged, nothing was changed)")
        assert "delete" not in str(refused.value) and path.is_file()
