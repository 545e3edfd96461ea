"""sst/data/session_store.py: preprocessed sessions read back, their manifests checked."""
import json

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
