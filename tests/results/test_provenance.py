"""sst/results/provenance.py: a result's code identity sees every place a run computes, however its code got
there, and not comments or layout; every reader of a result checks it (training refuses, --summarize and
--compare never mix, --predict, --explain and load_trained say what differs in one line)."""
import dataclasses
import hashlib
import importlib.util
import json
import shutil
import sys
import textwrap
import types

import pytest
import torch
import torch.nn as nn

import model
import run
from conftest import ROOT, TINY_MODEL, run_cli, run_in_process, tiny_seed_tree, write_ini
from sst import config, errors, fileio
from sst.data import datasets, inputs
from sst.models import baselines, kinds
from sst.results import provenance
from sst.training import fastcpu, loop, optim, protocols

CPU = torch.device("cpu")

def load_module(path, name: str):
    """A Python file imported as a fresh module `name` (as a user's script or a plugin would be)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


BLOCK = '''
def helper(x):
    return x + 1


class Block:
    """A block."""

    scale = 2

    def forward(self, x):
        return helper(x) * self.scale
'''


def test_comments_docstrings_and_layout_do_not_count():
    source = "def f(x):\n    return x + 1\n"
    worded = 'def f(x):\n    """Add one."""\n    # why: ...\n    return (x +\n            1)\n'
    assert provenance.code_digest(source) == provenance.code_digest(worded)
    assert provenance.code_digest(source) != provenance.code_digest(source.replace("+ 1", "+ 2"))


@pytest.mark.parametrize("edit, seen", [
    (lambda s: s.replace('"""A block."""', '"""A block, explained at length."""  # and a comment'), set()),
    (lambda s: s.replace("return helper(x) * self.scale", "return (helper(x)\n                * self.scale)"), set()),
    (lambda s: s.replace("* self.scale", "- self.scale"), {"Block"}),
    (lambda s: s.replace("scale = 2", "scale = 3"), {"Block"}),
    (lambda s: s.replace("return x + 1", "return x + 2"), {"helper"}),     # reached through Block.forward's code
])
def test_the_identity_follows_the_code_a_class_reads(tmp_path, edit, seen):
    path = tmp_path / "user_blocks.py"
    path.write_text(BLOCK)
    before = provenance.identity([load_module(path, "user_blocks").Block])
    path.write_text(edit(BLOCK))
    after = provenance.identity([load_module(path, "user_blocks").Block])
    assert set(before) == {"user_blocks.Block", "user_blocks.helper"}
    assert {name.rpartition(".")[2] for name in before if before[name] != after[name]} == seen


def test_code_without_source_is_digested_by_its_bytecode(monkeypatch):
    monkeypatch.setitem(sys.modules, "notebook_cell", types.ModuleType("notebook_cell"))   # a module without a file
    made = []
    for factor in (2, 3, 2):
        scope = {"__name__": "notebook_cell"}
        exec(f"class Made:\n    def forward(self, x):\n        return x * {factor}\n", scope)
        made.append(provenance.identity([scope["Made"]]))
    assert made[0].keys() == {"notebook_cell.Made"} and made[0] != made[1] and made[0] == made[2]


# ----------------------------------------------------------------------------- each place a run computes


@pytest.fixture
def cfg():
    return config.load_config(ROOT / "SEED.ini").replace(data={"input_width": 16, "temInput_length": 9},
                                                         model={k: int(v) for k, v in TINY_MODEL.items()})


def edited(function):
    """A copy of a function whose code differs (it does the same and one more harmless step)."""
    def wrapper(*args, **kwargs):
        return function(*args, **kwargs)
    return wrapper


PLACES = {
    # the network's classes, from the project ...
    "a class of model.py": lambda mp: mp.setattr(model.A3DBAttention, "forward", edited(model.A3DBAttention.forward)),
    "a helper of model.py the classes call": lambda mp: mp.setattr(model, "he_normal_", edited(model.he_normal_)),
    # ... the split and the protocol, the dataset facts training reads, the inputs, the loop and the optimizer
    "the protocol's split": lambda mp: mp.setattr(protocols.TrialProtocol, "split", edited(protocols.TrialProtocol.split)),
    "the split helper it calls": lambda mp: mp.setattr(protocols, "trial_split", edited(protocols.trial_split)),
    "the split sizes": lambda mp: mp.setitem(datasets.DATASETS, "SEED", dataclasses.replace(datasets.SEED, n_train_trials=8)),
    "the inputs' normalisation": lambda mp: mp.setattr(inputs, "normalise_run", edited(inputs.normalise_run)),
    "the inputs' maps": lambda mp: mp.setattr(inputs.MapBuilder, "__call__", edited(inputs.MapBuilder.__call__)),
    "the training loop": lambda mp: mp.setattr(loop.Trainer, "train_epoch", edited(loop.Trainer.train_epoch)),
    "the optimizer": lambda mp: mp.setattr(optim, "adam", edited(optim.adam)),
    "the accelerator": lambda mp: mp.setattr(fastcpu, "accelerate", edited(fastcpu.accelerate)),
}


@pytest.mark.parametrize("place", PLACES)
def test_an_edit_of_each_place_a_network_run_computes_changes_its_identity(cfg, monkeypatch, place):
    kind = kinds.of(cfg)
    before = kind.code(cfg)
    PLACES[place](monkeypatch)
    assert kind.code(cfg) != before


def test_a_baselines_identity_is_its_own_code(cfg, monkeypatch):
    svm = cfg.replace(model={"name": "linear_svm"})
    network, baseline = kinds.of(cfg).code(cfg), kinds.of(svm).code(svm)
    monkeypatch.setattr(baselines, "fit", edited(baselines.fit))
    assert kinds.of(svm).code(svm) != baseline and kinds.of(cfg).code(cfg) == network
    monkeypatch.setattr(model.A3DBAttention, "forward", edited(model.A3DBAttention.forward))
    assert kinds.of(cfg).code(cfg) != network and "model.A3DBAttention" not in baseline


def test_a_block_registered_from_python_is_in_the_identity_and_its_change_is_seen(cfg, monkeypatch):
    monkeypatch.setitem(model.ATTENTION_BLOCKS, "test_gate", None)

    @model.register_attention("test_gate")
    class Gate(model.A3DBAttention):
        def forward(self, x):
            return super().forward(x)

    gated = cfg.replace(model={"attention_block": "test_gate"})
    first = kinds.of(gated).code(gated)
    assert any(name.endswith("Gate") for name in first)

    @model.register_attention("test_gate")
    class Gate(model.A3DBAttention):        # noqa: F811  (registered again, changed: what a notebook does)
        def forward(self, x):
            return super().forward(x) * 1.0

    assert kinds.of(gated).code(gated) != first


def test_changes_names_what_differs():
    assert provenance.changes({"a.X": "1", "a.Y": "2"}, {"a.X": "1", "a.Y": "2"}) is None
    assert provenance.changes({"a.X": "1", "a.Y": "2"}, {"a.X": "1", "a.Y": "3"}) == "a.Y changed since"
    assert provenance.changes(None, {"a.X": "1"}) == "an earlier version that did not record its code"
    assert provenance.changes({"model.py": "1"}, {"a.X": "1"}).startswith("an earlier version that recorded its code by file")


# ----------------------------------------------------------------------------- every reader checks it


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two synthetic SEED subjects, the tiny network trained for one epoch on subject 1."""
    root, ini = tiny_seed_tree(tmp_path_factory.mktemp("provenance"))
    p = run_cli("run.py", "-c", str(ini), "--subjects", "1", "--set", "training.nbEpoch=1")
    assert p.returncode == 0, p.stderr
    return root, ini


def copy_results(trained, tmp_path):
    """A private copy of the trained result folder; the arguments of run.py that reach it."""
    root, ini = trained
    shutil.copytree(root / "res" / "training.nbEpoch=1", tmp_path / "res")
    return ["-c", str(ini), "--result-path", str(tmp_path / "res"), "--set", "training.nbEpoch=1"]


@pytest.mark.slow
def test_changed_split_sizes_are_refused_by_training_and_named_by_predict(trained, tmp_path, monkeypatch, capsys):
    args = copy_results(trained, tmp_path)
    monkeypatch.setitem(datasets.DATASETS, "SEED", dataclasses.replace(datasets.SEED, n_train_trials=8))
    p = run_in_process(capsys, "run.py", *args, "--subjects", "1")
    assert p.returncode == 1 and "made with other code (dataset SEED changed since)" in p.stderr, p.stderr
    p = run_in_process(capsys, "run.py", *args, "--predict", "sub01_ses1", "--subjects", "1", "--sessions", "1")
    assert p.returncode == 0
    lines = [line for line in p.stderr.splitlines() if "trained by other code" in line]
    assert len(lines) == 1 and "(dataset SEED changed since)" in lines[0]
    p = run_in_process(capsys, "run.py", *args, "--summarize")       # readers read it, as it is
    assert p.returncode == 0, p.stderr


@pytest.mark.slow
def test_a_block_registered_from_python_then_changed_is_refused_and_named(trained, tmp_path, monkeypatch, capsys):
    """A notebook or script: register a block, run.main, change the block, run.main again in the same process."""
    root, ini = trained
    monkeypatch.setitem(model.ATTENTION_BLOCKS, "test_gate", None)

    @model.register_attention("test_gate")
    class Gate(model.A3DBAttention):
        def forward(self, x):
            return super().forward(x)

    args = ["-c", str(ini), "--result-path", str(tmp_path / "res"), "--set", "training.nbEpoch=1",
            "--set", "model.attention_block=test_gate", "--subjects", "1"]
    assert run_in_process(capsys, "run.py", *args).returncode == 0
    assert run_in_process(capsys, "run.py", *args).stdout.count("1 already finished") == 1

    @model.register_attention("test_gate")
    class Gate(model.A3DBAttention):        # noqa: F811
        def forward(self, x):
            return super().forward(x).flip(-1)

    p = run_in_process(capsys, "run.py", *args)
    assert p.returncode == 1 and "made with other code (" in p.stderr and "Gate" in p.stderr, p.stderr
    p = run_in_process(capsys, "run.py", *args, "--predict", "sub01_ses1", "--sessions", "1")
    assert p.returncode == 0
    assert [line for line in p.stderr.splitlines() if "trained by other code" in line and "Gate" in line]


@pytest.mark.slow
def test_model_py_edited_after_a_checkpoint_is_named_and_explain_writes_beside(trained, tmp_path):
    """In a copy of the repository: train, edit model.py (A3DB attention without its sigmoid), then training
    refuses the folder, --predict says what differs in one line, --explain writes its figures beside the old."""
    root, ini = trained
    tree = tmp_path / "tree"
    tree.mkdir()
    for path in ROOT.glob("*.py"):
        shutil.copy(path, tree / path.name)
    shutil.copytree(ROOT / "sst", tree / "sst", ignore=shutil.ignore_patterns("__pycache__"))
    res = tmp_path / "res"
    args = [str(tree / "run.py"), "-c", str(ini), "--result-path", str(res), "--set", "training.nbEpoch=1"]
    assert run_cli(*args, "--subjects", "1", cwd=tree).returncode == 0
    assert run_cli(*args, "--explain", "sub01_ses1", cwd=tree).returncode == 0
    old = {p: p.read_bytes() for p in (res / "figures" / "sub01_ses1").iterdir()}
    text = (tree / "model.py").read_text()
    assert "torch.sigmoid" in text
    (tree / "model.py").write_text(text.replace("torch.sigmoid", "torch.tanh"))

    p = run_cli(*args, "--subjects", "1", cwd=tree)
    assert p.returncode == 1 and "made with other code (model.A3DBAttention" in p.stderr, p.stderr
    p = run_cli(*args, "--predict", "sub01_ses1", "--subjects", "1", "--sessions", "1", cwd=tree)
    warned = [line for line in p.stderr.splitlines() if "trained by other code" in line]
    assert p.returncode == 0 and len(warned) == 1 and "model.A3DBAttention" in warned[0], p.stderr
    p = run_cli(*args, "--explain", "sub01_ses1", cwd=tree)
    assert p.returncode == 0, p.stderr
    beside = [q for q in (res / "figures").iterdir() if q.name.startswith("sub01_ses1.code-")]
    assert len(beside) == 1 and any(q.suffix == ".png" for q in beside[0].iterdir())
    assert {q: q.read_bytes() for q in (res / "figures" / "sub01_ses1").iterdir()} == old     # never over them


def test_a_folder_of_two_code_identities_is_never_summarized_or_compared_as_one(tmp_path, capsys):
    from conftest import fake_run

    cfg = config.load_config(write_ini(tmp_path / "a.ini", path={"result_path": tmp_path / "res"}))
    out = kinds.result_dir(cfg, precision="float32")
    for subject, code in ((1, out.code), (2, {**out.code, "dataset SEED": "0" * 16})):
        record = {**fake_run(subject, 1), "seconds": 1.0, "config_key": out.config_key, "code": code}
        fileio.write_json(out.run_json(run.RunSpec(subject, 1)), record)
    p = run_in_process(capsys, "run.py", "-c", str(tmp_path / "a.ini"), "--summarize")
    assert p.returncode == 1 and "made by different code (dataset SEED changed since)" in p.stderr, p.stderr
    with pytest.raises(errors.ConfigError, match="runs of 2 configurations"):
        from sst.reporting import experiments

        experiments.read_folder(tmp_path / "res")


def test_folders_of_earlier_versions_stay_readable(tmp_path, capsys):
    """Records whose code was recorded by file (before this identity): --summarize and --compare read them."""
    from conftest import fake_run

    cfg = config.load_config(write_ini(tmp_path / "a.ini", path={"result_path": tmp_path / "res"}))
    key = provenance.result_key(cfg)
    earlier = {"model.py": "1" * 16, "training.py": "2" * 16}
    for folder in ("res", "other"):
        for subject in (1, 2):
            record = {**fake_run(subject, 1), "seconds": 1.0, "config_key": key, "code": earlier}
            fileio.write_json(tmp_path / folder / "runs" / f"sub0{subject}_ses1.json", record)
    assert run_in_process(capsys, "run.py", "-c", str(tmp_path / "a.ini"), "--summarize").returncode == 0
    p = run_in_process(capsys, "run.py", "--compare", str(tmp_path / "res"), str(tmp_path / "other"),
                       "--out", str(tmp_path / "cmp"))
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "res" / "summary.json").read_text())["n_runs"] == 2


def test_load_trained_says_what_differs_once(trained, monkeypatch, capsys):
    import utils

    root, _ = trained
    path = root / "res" / "training.nbEpoch=1" / "checkpoints" / "sub01_ses1.pt"
    capsys.readouterr()
    utils.load_trained(path)
    assert "trained by other code" not in capsys.readouterr().err
    monkeypatch.setattr(model.Transition3D, "forward", edited(model.Transition3D.forward))
    net, _, _ = utils.load_trained(path)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "trained by other code than today's (model.Transition3D changed since)" in err[0]
    assert isinstance(net, nn.Module)


def test_a_plugins_classes_are_named_by_their_file(tmp_path, cfg):
    plugin = tmp_path / "my_blocks.py"
    plugin.write_text(textwrap.dedent('''
        import model


        @model.register_attention("file_gate")
        class FileGate(model.A3DBAttention):
            pass
    '''))
    gated = cfg.replace(model={"plugins": (plugin,), "attention_block": "file_gate"})
    try:
        assert "plugin my_blocks.py.FileGate" in kinds.of(gated).code(gated)
    finally:
        model.ATTENTION_BLOCKS.pop("file_gate", None)


# ----------------------------------------------------------------------------- the result key


@pytest.mark.parametrize("ini, key", [("SEED.ini", "becab179af3e2815"), ("SEED_IV.ini", "9a7ce34d65242a9a")])
def test_the_result_key_holds_what_changes_results_and_keeps_earlier_keys(ini, key, tmp_path):
    """The key of the shipped INI files is frozen (what commit 27dd1a6 gave them: float32 results made before
    keys were added since keep it); it is the digest of the settings that change what a run computes, and of
    a precision other than float32."""
    cfg = config.load_config(ROOT / ini)
    assert provenance.result_key(cfg) == provenance.result_key(cfg, "float32") == key
    d = cfg.to_dict()
    del d["path"], d["model"]["plugins"], d["model"]["name"], d["model"]["attention_block"]
    for k in ("dgcnn_form", "dgcnn_order", "dgcnn_filters", "dgcnn_hidden"):     # keys added since, at their default
        del d["model"][k]
    for k in ("device", "num_threads", "accelerator", "repeats", "compile", "state_save",     # what changes no result
              "train_trials", "optimizer", "momentum", "lr_schedule", "lr_step_epochs", "lr_gamma"):    # added since
        del d["training"][k]
    assert key == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    same = [{"training": {"device": "cpu"}}, {"training": {"accelerator": "off", "num_threads": 1}},
            {"training": {"repeats": 5}}, {"path": {"result_path": tmp_path}},
            {"training": {"compile": "on", "state_save": "sync"}}]
    other = [{"training": {"lr": 1e-3}}, {"model": {"attention": "none"}}, {"model": {"name": "linear_svm"}},
             {"model": {"attention_block": "mine"}}, {"training": {"train_trials": 6}},
             {"training": {"optimizer": "sgd"}}, {"training": {"lr_schedule": "cosine"}}]
    assert all(provenance.result_key(cfg.replace(**change)) == key for change in same)
    assert all(provenance.result_key(cfg.replace(**change)) != key for change in other)
    assert provenance.result_key(cfg, "bf16") != key
    assert run.override_folder(config.load_config(ROOT / ini, ["training.repeats=3"])) is None
