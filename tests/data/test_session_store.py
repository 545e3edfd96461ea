"""sst/data/session_store.py: preprocessed sessions read back, their manifests checked."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import copy_of, dataset_ini, run_cli
from sst import config, errors
from sst.config import load_config
from sst.data import session_store
from sst.data.session_store import load_preprocessed
from sst.errors import DataError


def test_load_preprocessed_without_maps_names_the_command(tmp_path):
    ini = dataset_ini(tmp_path, "SEED", tmp_path / "SEED")
    with pytest.raises(DataError, match=r"no preprocessed sessions; run `python Preprocess.py -c "):
        load_preprocessed(load_config(ini))


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


# ----------------------------------------------------------------------------- a received folder (issue 33)


def _moved_away(path: Path, tmp_path: Path) -> Path:
    """Move `path` out of its folder and leave a symbolic link to it in its place."""
    elsewhere = tmp_path / "elsewhere" / path.name
    elsewhere.parent.mkdir(exist_ok=True)
    shutil.move(path, elsewhere)
    path.symlink_to(elsewhere)
    return elsewhere


@pytest.mark.parametrize("linked, expected", [
    ("sub01_ses1/manifest.json", (r"sub01_ses1/manifest.json: unreadable \(a symbolic link, which is never followed "
                                  r"out of its folder\), so sub01_ses1 counts as not preprocessed; run `python Preprocess.py")),
    ("sub01_ses1/de.npy", (r"sub01_ses1/de.npy: unreadable \(a symbolic link, which is never followed out of its "
                           r"folder\); rerun `python Preprocess.py")),
    ("sub01_ses1", r"sub01_ses1 is a symbolic link, not a folder; nothing is read or written through it"),
])
def test_links_in_a_preprocessed_folder_are_not_followed(finished, tmp_path, linked, expected):
    """A preprocessed folder is a received folder: its session folders, manifests and maps must be what they
    claim, in it; a symbolic link (to anything a user can read) is refused in one line naming it."""
    root, ini = copy_of(finished, tmp_path)
    _moved_away(root / "pre" / linked, tmp_path)
    with pytest.raises(errors.UserError, match=expected):
        session_store.load_preprocessed(config.load_config(ini), subjects=[1])


@pytest.mark.parametrize("edit, expected", [
    (lambda m: m["arrays"].update({"../../../elsewhere/x": m["arrays"]["de"]}),
     r"manifest.json: arrays: '../../../elsewhere/x' is not one of a session's arrays"),
    (lambda m: m["arrays"]["de"].update(shape=[m["n_samples"], 62, 7]),
     r"manifest.json: arrays: de of shape \(\d+, 62, 7\) float32, expected \(\d+, 62, 5\) float32"),
    (lambda m: m.update(n_samples=10**9), r"manifest.json: n_samples: 1000000000 windows, more than the 7200"),
])
def test_a_manifest_is_checked_before_its_maps_are_opened(finished, tmp_path, edit, expected):
    """Names from a manifest become file names only if they are a session's arrays; shapes are those cfg's
    [data] makes, for at most MAX_WINDOWS windows, before any .npy file is opened."""
    root, ini = copy_of(finished, tmp_path)
    path = root / "pre" / "sub01_ses1" / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(errors.DataError, match=expected):
        session_store.load_preprocessed(config.load_config(ini), subjects=[1])


def test_maps_are_mapped_as_declared(finished, tmp_path):
    """A map is memory-mapped read-only from the verified file, its header as its manifest says; a file cut
    short is refused in one line."""
    root, ini = copy_of(finished, tmp_path)
    (session,) = session_store.load_preprocessed(config.load_config(ini), subjects=[1])
    de = np.load(root / "pre" / "sub01_ses1" / "de.npy")
    assert isinstance(session.de, np.memmap) and not session.de.flags.writeable and np.array_equal(session.de, de)
    path = root / "pre" / "sub01_ses1" / "de.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(errors.DataError, match=r"de.npy: unreadable \(mmap length is greater than file size\)"):
        session_store.load_preprocessed(config.load_config(ini), subjects=[1])


def test_predict_refuses_a_linked_map_in_one_line(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    path = root / "pre" / "sub01_ses1" / "de.npy"
    _moved_away(path, tmp_path)
    p = run_cli("run.py", "-c", str(ini), "--predict", "sub01_ses1", "--subjects", "1", "--sessions", "1")
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    lines = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: unreadable (a symbolic link"), p.stderr
