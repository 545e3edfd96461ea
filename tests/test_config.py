"""config.load_config: the INI files parse, and every kind of bad INI fails naming section and key; --set
overrides are checked like the file; the authors' INI; the file's syntax (comments, BOM, unreadable)."""
import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from conftest import AUTHORS_INI, ROOT, write_ini
from sst import config, errors


@pytest.mark.parametrize("name, dataset, classes", [("SEED.ini", "SEED", 3), ("SEED_IV.ini", "SEED-IV", 4)])
def test_shipped_ini_files_parse(name, dataset, classes):
    cfg = config.load_config(ROOT / name)
    assert cfg.data.dataset == dataset and cfg.model.nb_class == classes
    assert (cfg.training.nbEpoch, cfg.training.batch_size, cfg.training.lr) == (50, 64, 1e-4)
    assert cfg.path.result_path.parent.resolve() == (ROOT / "results").resolve()


def test_relative_paths_are_relative_to_the_ini_file(tmp_path):
    cfg = config.load_config(write_ini(tmp_path / "sub" / "a.ini", path={"result_path": "out"}))
    assert cfg.path.result_path == tmp_path / "sub" / "out"


def test_a_tilde_in_a_path_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = config.load_config(write_ini(tmp_path / "a.ini", path={"result_path": "~/results"}))
    assert cfg.path.result_path == tmp_path / "home" / "results"


def test_a_tilde_that_cannot_be_expanded_is_named(tmp_path):
    ini = write_ini(tmp_path / "a.ini", path={"result_path": "~no_such_user_sst/results"})
    with pytest.raises(errors.ConfigError, match=re.escape(f"{ini}: [path] result_path: cannot expand "
                                                          f"'~no_such_user_sst/results' (unknown user")):
        config.load_config(ini)


def load_and_build(ini, overrides=None):
    """load_config, then build the network: the checks of [model] values are the network's own."""
    import model

    cfg = config.load_config(ini, overrides)
    model.build_model(cfg)
    return cfg


def test_round_trip_through_a_dict():
    cfg = config.load_config(ROOT / "SEED.ini")
    assert config.Config.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


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
    """[model] values are checked once, by the network (model.build_model names the key)."""
    with pytest.raises(errors.ConfigError) as e:
        load_and_build(write_ini(tmp_path / "bad.ini", **edit))
    assert expected in str(e.value) and "bad.ini" in str(e.value)


def test_replace_checks_values(tmp_path):
    cfg = config.load_config(ROOT / "SEED.ini")
    assert cfg.replace(training={"nbEpoch": 3}).training.nbEpoch == 3
    with pytest.raises(errors.ConfigError, match="nbEpoch"):
        cfg.replace(training={"nbEpoch": 0})
    with pytest.raises(errors.ConfigError, match="unknown key"):
        cfg.replace(training={"epochs": 3})


# ----------------------------------------------------------------------------- --set overrides

def test_overrides_are_applied_and_remembered():
    cfg = config.load_config(ROOT / "SEED.ini", ["training.nbEpoch=5", " model.block_order = official ", "training.lr=1e-3"])
    assert (cfg.training.nbEpoch, cfg.model.block_order, cfg.training.lr) == (5, "official", 1e-3)
    assert cfg.overrides == ("training.nbEpoch=5", "model.block_order=official", "training.lr=1e-3")
    assert cfg.replace(training={"batch_size": 8}).overrides == cfg.overrides
    assert config.load_config(ROOT / "SEED.ini").overrides == ()


def test_a_later_override_wins_and_an_override_may_supply_a_missing_key(tmp_path):
    ini = write_ini(tmp_path / "a.ini")
    assert config.load_config(ini, ["training.nbEpoch=3", "training.nbEpoch=4"]).training.nbEpoch == 4
    text = ini.read_text().replace("nbEpoch = 50\n", "")
    (tmp_path / "b.ini").write_text(text)
    with pytest.raises(errors.ConfigError, match=re.escape("[training] nbEpoch: missing required key")):
        config.load_config(tmp_path / "b.ini")
    assert config.load_config(tmp_path / "b.ini", ["training.nbEpoch=7"]).training.nbEpoch == 7


def test_resolved_values_do_not_depend_on_where_they_came_from(tmp_path):
    """to_dict() (and so run.py's result fingerprint) is the same for a value from the file or from --set."""
    in_file = config.load_config(write_ini(tmp_path / "a.ini", training={"nbEpoch": 5}, model={"dropout": 0.25}))
    from_set = config.load_config(write_ini(tmp_path / "b.ini"), ["training.nbEpoch=5", "model.dropout=0.25"])
    assert in_file.to_dict() == from_set.to_dict() and "overrides" not in from_set.to_dict()
    assert config.Config.from_dict(from_set.to_dict()).to_dict() == from_set.to_dict()


# A bad value fails the same way in the file and after --set; only the start of the message differs.
@pytest.mark.parametrize("section, key, value", [
    ("training", "nbEpoch", "0"), ("training", "batch_size", "sixty-four"), ("training", "lr", "nan"),
    ("training", "protocol", "kfold"), ("training", "amp", "maybe"), ("training", "device", "cuda:abc"),
    ("path", "result_path", ""), ("data", "dataset", "DEAP"), ("model", "nb_class", "4"), ("model", "dropout", "1.5"),
    ("path", "result_path", '"quoted"'),
])
def test_an_override_is_checked_like_the_file(tmp_path, section, key, value):
    ini = write_ini(tmp_path / "a.ini", **{section: {key: value}})
    with pytest.raises(errors.ConfigError) as in_file:
        load_and_build(ini)
    override = f"{section}.{key}={value}"
    with pytest.raises(errors.ConfigError) as from_set:
        load_and_build(write_ini(tmp_path / "b.ini"), [override])
    assert str(in_file.value).startswith(f"{ini}: [{section}] {key}: ")
    assert str(from_set.value) == f"--set {override}: " + str(in_file.value).removeprefix(f"{ini}: ")


def test_the_override_message_of_the_brief():
    with pytest.raises(errors.ConfigError) as e:
        config.load_config(ROOT / "SEED.ini", ["training.nbEpoch=0"])
    assert str(e.value) == "--set training.nbEpoch=0: [training] nbEpoch: expected a positive integer, got 0"


@pytest.mark.parametrize("override, expected", [
    ("training.nbEpoch", "--set training.nbEpoch: expected SECTION.KEY=VALUE, e.g. training.nbEpoch=5"),
    ("nbEpoch=5", "--set nbEpoch=5: expected SECTION.KEY=VALUE, e.g. training.nbEpoch=5; did you mean training.nbEpoch=5?"),
    (".nbEpoch=5", "--set .nbEpoch=5: expected SECTION.KEY=VALUE"),
    ("training.=5", "--set training.=5: expected SECTION.KEY=VALUE"),
    ("optim.lr=1", "--set optim.lr=1: unknown section [optim] (expected [path], [data], [model], [training])"),
    ("Training.lr=1", "--set Training.lr=1: unknown section [Training] (did you mean [training]?)"),
    ("training.epochs=5", "--set training.epochs=5: [training] epochs: unknown key (known keys: nbEpoch, batch_size, lr,"),
    ("training.NBEPOCH=5", "--set training.NBEPOCH=5: [training] NBEPOCH: unknown key (did you mean nbEpoch?)"),
    ("data.depth_spec=16", "--set data.depth_spec=16: [data] depth_spec: unknown key (known keys: input_width,"),
    ("path.result_path=/x/run #2", "--set path.result_path=/x/run #2: [path] result_path: expected no ';' or '#' at the "
                                   "start or after a space (in the INI file that would start a comment), got '/x/run #2'"),
    ("training.device=;cpu", "--set training.device=;cpu: [training] device: expected no ';' or '#'"),
])
def test_a_malformed_override_is_named(override, expected):
    with pytest.raises(errors.ConfigError) as e:
        config.load_config(ROOT / "SEED.ini", [override])
    assert str(e.value).startswith(expected), str(e.value)


def test_a_relative_path_given_with_set_starts_at_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ini = write_ini(tmp_path / "sub" / "a.ini")
    cfg = config.load_config(ini, ["path.result_path=out", "path.dataset_root=~/SEED", "path.preprocessed_root=/x/pre#2"])
    assert cfg.path.result_path == Path("out")   # relative to the current folder, as typed
    assert cfg.path.dataset_root == tmp_path / "home" / "SEED"
    assert cfg.path.preprocessed_root == Path("/x/pre#2")


def test_where_names_the_override_that_set_a_value():
    cfg = config.load_config(ROOT / "SEED.ini", ["model.input_width=16", "training.lr=0.01"])
    assert cfg.where("training", "lr") == "--set training.lr=0.01: [training] lr"
    assert cfg.where("data", "input_width") == "--set model.input_width=16: [model] input_width"
    assert cfg.where("model", "depth_spec") == f"{ROOT / 'SEED.ini'}: [model] depth_spec"


def test_add_set_argument():
    parser = argparse.ArgumentParser()
    config.add_set_argument(parser)
    assert parser.parse_args([]).set is None
    assert parser.parse_args(["--set", "a.b=1", "--set", "c.d=2"]).set == ["a.b=1", "c.d=2"]
    assert "SECTION.KEY=VALUE" in parser.format_help()


# ----------------------------------------------------------------------------- the authors' INI, layout problems


def test_the_authors_ini_builds_the_same_network(tmp_path):
    (tmp_path / "authors.ini").write_text(AUTHORS_INI)
    theirs = config.load_config(tmp_path / "authors.ini", sections=("model",))
    ours = config.load_config(ROOT / "SEED.ini")
    assert theirs.model == ours.model
    assert (theirs.data.input_width, theirs.data.specInput_length, theirs.data.temInput_length) == (32, 5, 25)
    assert theirs.path is None and theirs.training is None and type(theirs.data) is config.InputSizes
    assert set(theirs.to_dict()) == {"data", "model"}
    assert theirs.replace(model={"block_order": "official"}).model.block_order == "official"


def test_the_authors_ini_loaded_whole_names_every_problem_at_once(tmp_path):
    ini = tmp_path / "authors.ini"
    ini.write_text(AUTHORS_INI)
    with pytest.raises(errors.ConfigError) as e:
        config.load_config(ini)
    message = str(e.value)
    assert message.startswith(f"{ini}: 4 problems: [path] train_specInput_root_path, train_tempInput_root_path, "
                              "train_label_root_path, test_specInput_root_path, test_tempInput_root_path, "
                              "test_label_root_path: unknown keys (the authors' Keras inputs, split in advance; here "
                              "Preprocess.py writes maps from dataset_root to preprocessed_root")
    assert ("; [path] model_save_path: unknown key (the authors' Keras model folder; here checkpoints go under "
            "result_path)") in message
    assert message.endswith("; [path] dataset_root, preprocessed_root: missing required keys; "
                            "missing section [data] (required keys: dataset)")
    assert "\n" not in message


def test_the_input_sizes_may_stand_in_model(tmp_path):
    """As in the authors' INI; given in both sections they must agree."""
    ini = write_ini(tmp_path / "a.ini", model={"input_width": 32, "temInput_length": 9}, data={"temInput_length": 9})
    assert (config.load_config(ini).data.input_width, config.load_config(ini).data.temInput_length) == (32, 9)
    ini = write_ini(tmp_path / "b.ini", model={"input_width": 16})
    with pytest.raises(errors.ConfigError) as e:
        config.load_config(ini)
    assert str(e.value) == (f"{ini}: [data] input_width = 32 and [model] input_width = 16: "
                            "given in both sections with different values (keep one)")
    assert config.load_config(ini, ["data.input_width=8"]).data.input_width == 8   # an override replaces both
    with pytest.raises(errors.ConfigError, match=re.escape(r"[model] input_width: expected an integer, got 'x'")):
        config.load_config(write_ini(tmp_path / "c.ini", model={"input_width": "x"}))


def test_all_layout_problems_of_this_projects_ini_at_once(tmp_path):
    text = (ROOT / "SEED.ini").read_text()
    for old, new in [("nbEpoch = 50", "NBEPOCH = 50"), ("input_width = 32", "Input_Width = 32"),
                     ("gr_tem = 24", "gr_temp = 24"), ("[training]", "[optimizer]\nname = adam\n\n[training]")]:
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "a.ini").write_text(text)
    with pytest.raises(errors.ConfigError) as e:
        config.load_config(tmp_path / "a.ini")
    assert str(e.value) == (
        f"{tmp_path / 'a.ini'}: 7 problems: unknown section [optimizer] (expected [path], [data], [model], [training]); "
        "[data] Input_Width: unknown key (did you mean input_width?); "
        "[data] input_width: missing required key (in [data], or in [model] as in the authors' INI); "
        "[model] gr_temp: unknown key (did you mean gr_tem?); [model] gr_tem: missing required key; "
        "[training] NBEPOCH: unknown key (did you mean nbEpoch?); [training] nbEpoch: missing required key")


def test_model_sections_only_reads_model_and_the_input_sizes(tmp_path):
    ini = write_ini(tmp_path / "a.ini", training={"nbEpoch": 0, "epochs": 3}, path={"x": 1}, model={"nb_class": 4})
    cfg = config.load_config(ini, sections=("model",))   # [training] and [path] are not read; no dataset to check nb_class
    assert cfg.model.nb_class == 4 and cfg.data == config.InputSizes(input_width=32, specInput_length=5, temInput_length=25)
    assert config.load_config(ini, ["data.input_width=16"], sections=("model",)).data.input_width == 16
    with pytest.raises(errors.ConfigError, match=re.escape("--set training.nbEpoch=5: not used here: this command reads "
                                                          "only [model] and the input sizes")):
        config.load_config(ini, ["training.nbEpoch=5"], sections=("model",))
    (tmp_path / "b.ini").write_text("[model]\ndepth_spec = 16\n")
    with pytest.raises(errors.ConfigError) as e:
        config.load_config(tmp_path / "b.ini", sections=("model",))
    assert str(e.value) == (f"{tmp_path / 'b.ini'}: 2 problems: [model] depth_tem, nb_dense_block, gr_spec, gr_tem, "
                            "nb_class: missing required keys; [data] input_width, specInput_length, temInput_length: "
                            "missing required keys (in [data], or in [model] as in the authors' INI)")


# ----------------------------------------------------------------------------- reading the file

def test_a_byte_order_mark_is_accepted(tmp_path):
    (tmp_path / "a.ini").write_bytes(b"\xef\xbb\xbf" + (ROOT / "SEED.ini").read_bytes())
    with_bom, without = config.load_config(tmp_path / "a.ini"), config.load_config(ROOT / "SEED.ini")
    assert with_bom.to_dict()["data"] == without.to_dict()["data"] and with_bom.model == without.model


def test_a_folder_given_as_the_ini_file_is_named(tmp_path):
    with pytest.raises(errors.ConfigError) as e:
        config.load_config(tmp_path)
    assert str(e.value) == f"{tmp_path}: cannot read the config file (Is a directory)"


@pytest.mark.parametrize("text, expected", [
    ("nbEpoch = 50\n", "not a readable INI file (File contains no section headers."),
    ("[training]\nnbEpoch 50\n", "not a readable INI file (Source contains parsing errors: "),
    ("[training]\nnbEpoch = 5\nnbEpoch = 6\n", "[line 3]: option 'nbEpoch' in section 'training' already exists)"),
    ("[DEFAULT]\nnbEpoch = 5\n", "unknown section [DEFAULT]"),
])
def test_text_that_is_not_this_ini_syntax(tmp_path, text, expected):
    (tmp_path / "a.ini").write_text(text)
    with pytest.raises(errors.ConfigError) as e:
        config.load_config(tmp_path / "a.ini")
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_text_that_is_not_utf8(tmp_path):
    (tmp_path / "a.ini").write_bytes((ROOT / "SEED.ini").read_text().replace("; SST", "; \u00e9 SST").encode("latin-1"))
    expected = "a.ini: not a readable INI file (not UTF-8 text: byte 0xe9 at offset 2)"
    with pytest.raises(errors.ConfigError, match=re.escape(expected)):
        config.load_config(tmp_path / "a.ini")


# The comment rule (utils.py's docstring): `;` or `#` at the start of a line or after whitespace.
@pytest.mark.parametrize("line, value", [
    ("result_path = /x/results#2", "/x/results#2"),
    ("result_path = /x/a;b", "/x/a;b"),
    ("result_path = /x/results#2 ; note # more", "/x/results#2"),
    ("result_path = /x/a;b ; note # more", "/x/a;b"),       # configparser's own rule would keep ' ; note'
    ("result_path = /x/a;b # note ; more", "/x/a;b"),
    ("result_path = /x/results\t# tab", "/x/results"),
    ("result_path = /x/results #2", "/x/results"),           # after a space: a comment, as documented
])
def test_comments(tmp_path, line, value):
    text = (ROOT / "SEED.ini").read_text().replace("result_path = results/SEED", line + "\n  ; an indented comment line")
    (tmp_path / "a.ini").write_text(text)
    assert config.load_config(tmp_path / "a.ini").path.result_path == Path(value)


@pytest.mark.parametrize("line, expected", [
    ('result_path = "/x/run #2"', "[path] result_path: expected a value without quotes, got '\"/x/run'"),
    ("result_path = '/x/run'", "[path] result_path: expected a value without quotes, got \"'/x/run'\""),
    ("result_path = /x/a\n    /b", r"[path] result_path: expected one line, got '/x/a\n/b' (an indented line continues"),
    ("result_path = ; forgot it", "[path] result_path: expected a path, got ''"),
])
def test_no_value_loses_text_silently(tmp_path, line, expected):
    (tmp_path / "a.ini").write_text((ROOT / "SEED.ini").read_text().replace("result_path = results/SEED", line))
    with pytest.raises(errors.ConfigError) as e:
        config.load_config(tmp_path / "a.ini")
    assert str(e.value).startswith(f"{tmp_path / 'a.ini'}: {expected}"), str(e.value)


def test_the_ini_defaults_of_model_keys_are_the_networks():
    """[model] keys are the network's keyword arguments: an INI file that leaves one out gets the network's
    own default (config.ModelConfig repeats them for the result key; they must agree)."""
    import inspect

    import model

    signature = inspect.signature(model.SSTEmotionNet)
    for f in dataclasses.fields(config.ModelConfig):
        if f.name not in ("plugins", "name") and not f.name.startswith("dgcnn_") and f.default is not dataclasses.MISSING:
            assert f.default == signature.parameters[f.name].default, f.name



@pytest.mark.parametrize("section, key, value, bound", [
    ("training", "repeats", "100000000000000000000", "1000"), ("training", "batch_size", "100000000000000000000", "1048576"),
    ("training", "num_threads", "99999999999", "1024"), ("training", "nbEpoch", "1000001", "100000"),
    ("training", "patience", "100001", "100000"), ("training", "seed", "4294967296", None),
    ("model", "depth_spec", str(10**30), "1000"), ("data", "input_width", "100000", "4096"),
])
def test_every_integer_key_has_an_upper_bound(tmp_path, section, key, value, bound):
    """`repeats = 100000000000000000000` passed the "positive" check, then every run was planned in memory;
    batch_size and num_threads beyond what torch takes were tracebacks inside it."""
    ini = write_ini(tmp_path / "a.ini", **{section: {key: value}})
    with pytest.raises(errors.ConfigError) as e:
        config.load_config(ini)
    assert f"[{section}] {key}: expected " in str(e.value) and (bound is None or f"at most {bound}, got" in str(e.value))
    for sec in config.SECTIONS.values():     # no integer key without one
        assert all(f.metadata.get("at_most") for f in dataclasses.fields(sec) if f.type in ("int", int))
