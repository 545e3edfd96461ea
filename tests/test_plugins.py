"""Variants from the INI file: [model] plugins files register an attention block or a stream, and
[model] attention_block / streams select them, from run.py as from Python.

    python -m pytest tests/test_plugins.py -q
"""
import json
import re
import shlex
import textwrap

import pytest

import model
from conftest import ROOT, TINY_MODEL, run_cli, run_in_process, tiny_seed_tree, write_ini
from sst import config, errors

# A plugin as a researcher writes it: an attention variant and a third stream (on the DE maps).
PLUGIN = textwrap.dedent('''
    import torch
    import torch.nn as nn

    import model


    @model.register_attention("{attention}")
    class Gate(nn.Module):
        """One learnt scale per depth position: (N, C, H, W, D) -> the same."""

        def __init__(self, size, attention="both", activation="sigmoid"):
            super().__init__()
            self.gate = nn.Parameter(torch.zeros(size[2]))

        def forward(self, x):
            return x * torch.sigmoid(self.gate)


    class BandMeans(nn.Module):
        """(N, W, W, bands) DE maps -> (N, 8): a linear map of the per-band means."""

        name, feature_size = "{stream}", 8

        def __init__(self, arguments):
            super().__init__()
            self.input_size = (arguments["input_width"], arguments["input_width"], arguments["specInput_length"])
            self.linear = nn.Linear(self.input_size[2], self.feature_size)

        def forward(self, maps):
            return self.linear(maps.mean((1, 2)))


    model.register_stream("{stream}", source="de")(BandMeans)
''')


def plugin(folder, attention="gate", stream="means"):
    path = folder / "plugin.py"
    path.write_text(PLUGIN.format(attention=attention, stream=stream))
    return path


def test_plugin_paths_are_relative_to_the_ini_and_stay_beside_it(tmp_path, monkeypatch):
    plugin(tmp_path)
    ini = write_ini(tmp_path / "a.ini", model={"plugins": "plugin.py"})
    assert config.load_config(ini).model.plugins == ((tmp_path / "plugin.py").resolve(),)
    assert config.Config.from_dict(config.load_config(ini).to_dict()).model.plugins == config.load_config(ini).model.plugins
    outside = write_ini(tmp_path / "sub" / "b.ini", model={"plugins": "../plugin.py"})
    with pytest.raises(errors.ConfigError, match=r"b.ini: \[model\] plugins: ../plugin.py is outside the INI file's folder"):
        config.load_config(outside)
    monkeypatch.chdir(tmp_path)     # with --set, a path typed on the command line: from the current folder
    assert config.load_config(outside, ["model.plugins=plugin.py"]).model.plugins == ((tmp_path / "plugin.py").resolve(),)
    with pytest.raises(errors.ConfigError, match=r"--set model.plugins=notes.txt: \[model\] plugins: expected Python"):
        config.load_config(outside, ["model.plugins=notes.txt"])


def test_a_plugin_registers_variants_that_build_by_name(tmp_path):
    plugin(tmp_path, attention="gate_a", stream="means_a")
    ini = write_ini(tmp_path / "a.ini", model={**TINY_MODEL, "plugins": "plugin.py", "attention_block": "gate_a",
                                               "streams": "spectral, temporal, means_a"}, data={"input_width": 16})
    net = model.build_model(config.load_config(ini))
    assert type(net.spectral.features.attention1).__name__ == "Gate"
    assert net.stream_names == ["spectral", "temporal", "means_a"] and net.sources["means_a"] == "de"
    unknown = write_ini(tmp_path / "b.ini", model={**TINY_MODEL, "attention_block": "nope"})
    with pytest.raises(errors.ConfigError, match=r"b.ini: \[model\] attention_block: expected one of .*got 'nope' "
                                                r"\(registered by a \[model\] plugins file\?\)"):
        model.build_model(config.load_config(unknown))


def test_a_plugin_that_fails_on_import_is_named_with_its_line(tmp_path):
    (tmp_path / "broken.py").write_text("import model\n\nraise RuntimeError('not yet')\n")
    ini = write_ini(tmp_path / "a.ini", model={"plugins": "broken.py"})
    with pytest.raises(errors.ConfigError, match=r"a.ini: \[model\] plugins: .*broken.py, line 3: the plugin failed on "
                                                r"import \(RuntimeError: not yet\)"):
        model.build_model(config.load_config(ini))
    (tmp_path / "syntax.py").write_text("def f(:\n")
    with pytest.raises(errors.ConfigError, match=r"syntax.py, line 1: the plugin failed on import \(SyntaxError"):
        model.build_model(config.load_config(write_ini(tmp_path / "b.ini", model={"plugins": "syntax.py"})))


def test_a_stream_whose_source_does_not_fit_its_maps_is_named(tmp_path):
    (tmp_path / "p.py").write_text(PLUGIN.format(attention="gate_b", stream="means_b").replace(
        'source="de"', 'source="eeg"'))     # (W, W, bands) maps declared as raw-EEG maps
    ini = write_ini(tmp_path / "a.ini", model={**TINY_MODEL, "plugins": "p.py", "streams": "spectral, means_b"})
    with pytest.raises(errors.ConfigError, match=r"\[model\] streams: stream means_b takes \(32, 32, 5\) maps, but its "
                                                r"source 'eeg'"):
        model.build_model(config.load_config(ini))


@pytest.mark.slow
def test_run_trains_a_plugins_attention_and_third_stream(tmp_path):
    """The README's way: a plugin file beside the INI, then run.py with --set; each trains one epoch, the
    third stream's run predicts, and an edit of the plugin makes its results another configuration."""
    root, ini = tiny_seed_tree(tmp_path)
    plugin(root)
    sets = ["--set", "model.plugins=" + str(root / "plugin.py"), "--set", "training.nbEpoch=1", "--subjects", "1"]
    runs = {}
    for name, choice in (("attention", "model.attention_block=gate"), ("stream", "model.streams=spectral,temporal,means")):
        out = tmp_path / f"res-{name}"
        p = run_cli("run.py", "-c", str(ini), *sets, "--set", choice, "--result-path", str(out))
        assert p.returncode == 0, p.stderr
        runs[name] = json.loads((out / "runs" / "sub01_ses1.json").read_text())
        assert runs[name]["epochs_run"] == 1
        assert {"attention": "plugin plugin.py.Gate", "stream": "plugin plugin.py.BandMeans"}[name] in runs[name]["code"]
    checkpoint = tmp_path / "res-attention" / "checkpoints" / "sub01_ses1.pt"     # in Python, the plugin not imported:
    p = run_cli("-c", "import utils, sst.errors\n"                   # the message names the function to call
                f"try: utils.load_trained({str(checkpoint)!r})\nexcept sst.errors.UserError as e: print(e)\n"
                f"utils.import_plugins([{str(root / 'plugin.py')!r}])\n"
                f"print(type(utils.load_trained({str(checkpoint)!r})[0]).__name__)")
    assert p.returncode == 0 and "call utils.import_plugins first" in p.stdout.splitlines()[0], p.stdout + p.stderr
    assert p.stdout.splitlines()[1] == "SSTEmotionNet", p.stdout
    p = run_cli("run.py", "-c", str(ini), *sets, "--set", "model.attention_block=gate", "--result-path",
                str(tmp_path / "res-attention"), "--explain", "sub01_ses1")     # a block without weights(): said
    assert p.returncode == 0 and "sub01_ses1: no attention figure of the Gate blocks: its class has no weights(x) " \
        "method" in p.stdout, p.stdout + p.stderr
    p = run_cli("run.py", "-c", str(ini), *sets, "--set", "model.streams=spectral,temporal,means",
                "--result-path", str(tmp_path / "res-stream"), "--predict", "sub01_ses1", "--sessions", "1")
    assert p.returncode == 0, p.stderr
    assert "sub01_ses1 on sub01_ses1:" in p.stdout
    (root / "plugin.py").write_text((root / "plugin.py").read_text().replace("maps.mean((1, 2))", "maps.amax((1, 2))"))
    p = run_cli("run.py", "-c", str(ini), *sets, "--set", "model.streams=spectral,temporal,means",
                "--result-path", str(tmp_path / "res-stream"))
    assert p.returncode == 1 and "made with other code (plugin plugin.py.BandMeans changed since)" in p.stderr
    assert "--result-path" in p.stderr and len(p.stderr.strip().splitlines()) == 1


SE_PLUGIN = '''
import torch
import torch.nn as nn

import model


@model.register_attention("se")
class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) over the channels of (N, C, H, W, D) maps."""

    def __init__(self, size, channels, attention="both", activation="sigmoid", reduction=2):
        super().__init__()
        self.squeeze = nn.Linear(channels, max(1, channels // reduction))
        self.excite = nn.Linear(max(1, channels // reduction), channels)

    def forward(self, x):
        weights = torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean((2, 3, 4))))))
        return x * weights[:, :, None, None, None]
'''


def test_an_attention_block_is_given_the_channel_count_so_a_squeeze_and_excitation_block_trains(tmp_path, capsys):
    """A block whose class takes `channels` gets the channel count of its stage's maps (A3DB, which does not
    take it, is built as before); a squeeze-and-excitation plugin then builds, and trains through run.py."""
    (tmp_path / "se.py").write_text(SE_PLUGIN)
    root, ini = tiny_seed_tree(tmp_path / "data")
    cfg = config.load_config(ini, [f"model.plugins={tmp_path / 'se.py'}", "model.attention_block=se"])
    net = model.build_model(cfg)
    for stream in (net.spectral, net.temporal):
        for name, block in stream.features.named_children():
            if name.startswith("attention"):
                stage = list(stream.features.named_children())
                before = stage[[n for n, _ in stage].index(name) - 1][0]
                assert block.excite.out_features == stream.stages[before]["shape"][3]      # C of the maps it sees
    try:
        p = run_in_process(capsys, "run.py", "-c", str(ini), "--set", f"model.plugins={tmp_path / 'se.py'}",
                           "--set", "model.attention_block=se", "--set", "training.nbEpoch=1", "--subjects", "1",
                           "--result-path", str(tmp_path / "res"))
        assert p.returncode == 0, p.stderr
        assert (tmp_path / "res" / "runs" / "sub01_ses1.json").is_file()
    finally:
        model.ATTENTION_BLOCKS.pop("se", None)


@pytest.mark.parametrize("body", ["import sys\nsys.exit(0)\n", "raise SystemExit('bye')\n", "raise KeyboardInterrupt\n"])
def test_a_plugin_that_exits_on_import_is_reported_as_the_plugins(tmp_path, capsys, body):
    """sys.exit(0) in a plugin ended run.py with exit 0 and nothing done; now one line names the plugin. (In this
    process but for KeyboardInterrupt, which, escaping, would stop pytest itself.)"""
    (tmp_path / "leaves.py").write_text(body)
    ini = write_ini(tmp_path / "a.ini", model={**TINY_MODEL, "plugins": "leaves.py"},
                    path={"result_path": str(tmp_path / "res")})
    args = ("run.py", "-c", str(ini), "--summarize")
    p = run_cli(*args) if "KeyboardInterrupt" in body else run_in_process(capsys, *args)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ") and "leaves.py: the plugin " in p.stderr
    assert not (tmp_path / "res").exists()


def test_the_docs_plugin_example_works_under_model_py_and_run_py(tmp_path):
    """docs/model.md's my_variants.py, copied verbatim, and its commands: under `python model.py` the plugin's
    `import model` loaded a second copy of model.py and registered the block there (issue 34)."""
    text = (ROOT / "docs" / "model.md").read_text()
    example = re.search(r"```python\n(# my_variants\.py.*?)```", text, re.S)[1]
    commands = re.search(r"```bash\n(python run\.py -c SEED\.ini --set model\.plugins=my_variants\.py.*?)```", text,
                         re.S)[1].splitlines()
    root, ini = tiny_seed_tree(tmp_path)
    (tmp_path / "my_variants.py").write_text(example)
    for command in commands:
        args = shlex.split(command.partition("#")[0])
        assert args[0] == "python" and args[2:4] == ["-c", "SEED.ini"]
        extra = ["--set", "training.nbEpoch=1", "--subjects", "2"] if args[1] == "run.py" else []
        p = run_cli(str(ROOT / args[1]), "-c", str(ini), *args[4:], *extra, cwd=tmp_path)
        assert p.returncode == 0 and "Traceback" not in p.stderr, (command, p.stderr)
        if args[1] == "model.py":       # the Gate's network, not the default's
            default = sum(t.numel() for t in model.build_model(config.load_config(ini)).parameters())
            assert int(re.search(r"trainable parameters: (\d+)", p.stdout)[1]) != default, p.stdout
        else:
            assert "sub02_ses1: accuracy" in p.stdout, p.stdout
