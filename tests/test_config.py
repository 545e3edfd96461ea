"""utils.load_config: the INI files parse, and every kind of bad INI fails naming section and key."""
import configparser

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


def test_round_trip_through_a_dict():
    cfg = utils.load_config(ROOT / "SEED.ini")
    assert utils.Config.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def _without(tmp_path, section, key=None):
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "SEED.ini")
    if key is None:
        parser.remove_section(section)
    else:
        parser.remove_option(section, key)
    path = tmp_path / "bad.ini"
    with open(path, "w") as fh:
        parser.write(fh)
    return path


@pytest.mark.parametrize("edit, expected", [
    ({"training": {"nbEpoch": "ten"}}, "[training] nbEpoch: expected an integer"),
    ({"training": {"nbEpoch": "0"}}, "[training] nbEpoch: expected a positive integer"),
    ({"training": {"batch_size": "-64"}}, "[training] batch_size"),
    ({"training": {"lr": "0"}}, "[training] lr: expected a positive number"),
    ({"training": {"lr": "nan"}}, "[training] lr: expected a finite number"),
    ({"training": {"protocol": "kfold"}}, "[training] protocol: expected one of trial, paper, random, loso"),
    ({"training": {"device": "tpu"}}, "[training] device"),
    ({"training": {"amp": "maybe"}}, "[training] amp: expected true or false"),
    ({"model": {"nb_class": "4"}}, "[model] nb_class: SEED has 3 classes, got 4"),
    ({"model": {"dropout": "1.5"}}, "[model] dropout"),
    ({"model": {"block_order": "keras"}}, "[model] block_order"),
    ({"data": {"dataset": "DEAP"}}, "[data] dataset: expected one of SEED, SEED-IV"),
    ({"data": {"feature": "psd_LDS"}}, "[data] feature"),
    ({"model": {"growth": "12"}}, "[model] growth: unknown key"),
    ({"extra": {"a": "1"}}, "unknown section [extra]"),
])
def test_bad_values_name_section_and_key(tmp_path, edit, expected):
    with pytest.raises(utils.ConfigError) as e:
        utils.load_config(write_ini(tmp_path / "bad.ini", **edit))
    assert expected in str(e.value) and "bad.ini" in str(e.value)


def test_missing_key_section_and_file(tmp_path):
    with pytest.raises(utils.ConfigError, match=r"\[model\] depth_spec: missing required key"):
        utils.load_config(_without(tmp_path, "model", "depth_spec"))
    with pytest.raises(utils.ConfigError, match=r"missing section \[training\]"):
        utils.load_config(_without(tmp_path, "training"))
    with pytest.raises(utils.ConfigError, match="config file not found"):
        utils.load_config(tmp_path / "nope.ini")


def test_replace_checks_values(tmp_path):
    cfg = utils.load_config(ROOT / "SEED.ini")
    assert cfg.replace(training={"nbEpoch": 3}).training.nbEpoch == 3
    with pytest.raises(utils.ConfigError, match="nbEpoch"):
        cfg.replace(training={"nbEpoch": 0})
    with pytest.raises(utils.ConfigError, match="unknown key"):
        cfg.replace(training={"epochs": 3})
