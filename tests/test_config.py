"""utils.load_config: the INI files parse, and every kind of bad INI fails naming section and key."""
import re

import pytest

import utils
from conftest import ROOT, write_ini


@pytest.mark.parametrize("name, dataset, classes", [("SEED.ini", "SEED", 3), ("SEED_IV.ini", "SEED-IV", 4)])
def test_shipped_ini_files_parse(name, dataset, classes):
    cfg = utils.load_config(ROOT / name)
    assert cfg.data.dataset == dataset and cfg.model.nb_class == classes
    assert (cfg.training.nbEpoch, cfg.training.batch_size, cfg.training.lr) == (50, 64, 1e-4)
    assert cfg.path.result_path.parent.resolve() == (ROOT / "results").resolve()


def test_relative_paths_are_relative_to_the_ini_file(tmp_path):
    cfg = utils.load_config(write_ini(tmp_path / "sub" / "a.ini", path={"result_path": "out"}))
    assert cfg.path.result_path == tmp_path / "sub" / "out"


def test_a_tilde_in_a_path_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = utils.load_config(write_ini(tmp_path / "a.ini", path={"result_path": "~/results"}))
    assert cfg.path.result_path == tmp_path / "home" / "results"


def test_a_tilde_that_cannot_be_expanded_is_named(tmp_path):
    ini = write_ini(tmp_path / "a.ini", path={"result_path": "~no_such_user_sst/results"})
    with pytest.raises(utils.ConfigError, match=re.escape(f"{ini}: [path] result_path: cannot expand "
                                                          f"'~no_such_user_sst/results' (unknown user")):
        utils.load_config(ini)


def test_round_trip_through_a_dict():
    cfg = utils.load_config(ROOT / "SEED.ini")
    assert utils.Config.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


# Bad values that tests/test_bad_inputs.py does not already drive through the command lines
# (missing file, section and key, non-numeric, zero/negative/NaN numbers, unknown protocol,
# device, key and section, nb_class are there).
@pytest.mark.parametrize("edit, expected", [
    ({"training": {"amp": "maybe"}}, "[training] amp: expected true or false"),
    ({"training": {"val_fraction": "1"}}, "[training] val_fraction"),
    ({"model": {"dropout": "1.5"}}, "[model] dropout"),
    ({"model": {"block_order": "keras"}}, "[model] block_order"),
    ({"model": {"bn_momentum": "0"}}, "[model] bn_momentum"),
    ({"data": {"dataset": "DEAP"}}, "[data] dataset: expected one of SEED, SEED-IV"),
    ({"data": {"feature": "psd_LDS"}}, "[data] feature"),
])
def test_bad_values_name_section_and_key(tmp_path, edit, expected):
    with pytest.raises(utils.ConfigError) as e:
        utils.load_config(write_ini(tmp_path / "bad.ini", **edit))
    assert expected in str(e.value) and "bad.ini" in str(e.value)


def test_replace_checks_values(tmp_path):
    cfg = utils.load_config(ROOT / "SEED.ini")
    assert cfg.replace(training={"nbEpoch": 3}).training.nbEpoch == 3
    with pytest.raises(utils.ConfigError, match="nbEpoch"):
        cfg.replace(training={"nbEpoch": 0})
    with pytest.raises(utils.ConfigError, match="unknown key"):
        cfg.replace(training={"epochs": 3})
