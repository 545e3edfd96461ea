"""Tests for model.py, the definition: the authors' Keras model's reference figures (parameters,
BN statistics, multiply-adds, stage shapes; docs/reference.md), Keras conventions, construction
from keyword arguments and from the INI file, extension, importing Keras weights, and behaviour
(gradients, determinism, learning, errors). The CPU accelerator is held to this in training/test_fastcpu.py.

    python -m pytest tests/test_model.py -q
"""
import hashlib
import math
import re
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import model
from conftest import ROOT, model_inputs, run_cli, small
from sst import config, errors
from sst.training import optim

SEED_INI = ROOT / "SEED.ini"
SEED_IV_INI = ROOT / "SEED_IV.ini"


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- parity with the Keras model


@pytest.mark.parametrize("order, nb_class, expected", [
    ("official", 3, 519_213), ("paper", 3, 1_573_185), ("official", 4, 519_264), ("paper", 4, 1_573_236)])
def test_trainable_parameters(cfg, order, nb_class, expected):
    net = model.build_model(cfg.replace(model={"block_order": order, "nb_class": nb_class}))
    assert n_params(net) == expected


def test_official_parameters_per_part(cfg):
    net = model.build_model(cfg.replace(model={"block_order": "official"}))
    assert (n_params(net.spectral), n_params(net.temporal), n_params(net.head)) == (116_040, 387_370, 15_803)


@pytest.mark.parametrize("order", ["official", "paper"])
def test_bn_running_statistics(cfg, order):
    net = model.build_model(cfg.replace(model={"block_order": order}))
    values = sum(m.running_mean.numel() + m.running_var.numel() for m in net.modules()
                 if isinstance(m, nn.BatchNorm3d))
    assert values == 6_792


def test_multiply_adds(cfg):
    assert model.build_model(cfg.replace(model={"block_order": "official"})).count_macs() == 211_950_024
    # paper order adds the first attention block of each stream: Dense(HW -> HW) and Dense(D -> D)
    assert model.build_model(cfg).count_macs() == 211_950_024 + 1024 ** 2 + 5 ** 2 + 64 ** 2 + 13 ** 2


@pytest.mark.parametrize("order", ["official", "paper"])
def test_stage_shapes_match_spec(cfg, order):
    net = model.build_model(cfg.replace(model={"block_order": order}))
    spectral = {k: v["shape"] for k, v in net.spectral.stages.items()}
    temporal = {k: v["shape"] for k, v in net.temporal.stages.items()}
    assert [spectral[k] for k in ("stem", "denseblock1", "transition1", "denseblock2", "transition2", "denseblock3")] \
        == [(32, 32, 5, 24), (32, 32, 5, 48), (16, 16, 2, 24), (16, 16, 2, 48), (8, 8, 1, 24), (8, 8, 1, 48)]
    assert [temporal[k] for k in ("stem", "pool", "denseblock1", "transition1", "denseblock2", "transition2",
                                  "denseblock3")] \
        == [(16, 16, 25, 48), (8, 8, 13, 48), (8, 8, 13, 120), (4, 4, 6, 120), (4, 4, 6, 192), (2, 2, 3, 192),
            (2, 2, 3, 264)]
    assert (net.spectral.feature_size, net.temporal.feature_size) == (48, 264)


# ----------------------------------------------------------------------------- ablations change counts as predicted


def attention_params(h: int, w: int, d: int, attention: str = "both") -> int:
    spatial = (h * w) ** 2 + h * w if attention in ("both", "spatial") else 0
    depth = d * d + d if attention in ("both", "spectral_temporal") else 0
    return spatial + depth


# (H, W, D) seen by each attention block, SEED.ini, official order (after transitions) and paper order
OFFICIAL_SIZES = {"spectral": [(16, 16, 2), (8, 8, 1)], "temporal": [(4, 4, 6), (2, 2, 3)]}
PAPER_SIZES = {"spectral": [(32, 32, 5)] + OFFICIAL_SIZES["spectral"],
               "temporal": [(8, 8, 13)] + OFFICIAL_SIZES["temporal"]}


@pytest.mark.parametrize("attention", ["spatial", "spectral_temporal", "none"])
@pytest.mark.parametrize("order", ["official", "paper"])
def test_attention_switch_changes_count(cfg, order, attention):
    sizes = PAPER_SIZES if order == "paper" else OFFICIAL_SIZES
    full = model.build_model(cfg.replace(model={"block_order": order}))
    part = model.build_model(cfg.replace(model={"block_order": order, "attention": attention}))
    removed = sum(attention_params(*s) - attention_params(*s, attention) for v in sizes.values() for s in v)
    assert n_params(full) - n_params(part) == removed


def test_block_order_delta(cfg):
    paper = n_params(model.build_model(cfg))
    official = n_params(model.build_model(cfg.replace(model={"block_order": "official"})))
    assert paper - official == attention_params(32, 32, 5) + attention_params(8, 8, 13) == 1_049_630 + 4_342


def stream_params(size, depth, k, blocks, compression, temporal, order, attention="both"):
    """Trainable parameters of one stream by arithmetic (docs/reference.md, "Network"), and its feature size."""
    h, w, d = size
    c = 2 * k
    total = (5 * 5 * 3 if temporal else 3 * 3) * c + (2 * c if temporal else 0)    # stem conv [+ its BN]
    if temporal:
        h, w, d = -(-h // 2), -(-w // 2), d                                        # stride (2, 2, 1)
        h, w, d = -(-h // 2), -(-w // 2), -(-d // 2)                               # max pool, 'same'
    layers = (depth - 4) // 3 // 2
    for b in range(1, blocks + 1):
        if order == "paper" and attention != "none":
            total += attention_params(h, w, d, attention)
        for _ in range(layers):     # BN(c), 1x1x1 (c -> 4k), BN(4k), 3x3x1 (4k -> k), 1x1x3 (k -> k)
            total += 2 * c + c * 4 * k + 2 * 4 * k + 9 * 4 * k * k + 3 * k * k
            c += k
        if b == blocks:
            break
        total += 2 * c + c * int(c * compression)                                 # transition BN, 1x1x1
        c, h, w, d = int(c * compression), h // 2, w // 2, d // 2
        if order == "official" and attention != "none":
            total += attention_params(h, w, d, attention)
    return total + 2 * c, c                                                        # final BN


@pytest.mark.parametrize("order", ["official", "paper"])
@pytest.mark.parametrize("streams", ["spectral", "temporal"])
def test_streams_switch_changes_count(cfg, streams, order):
    net = model.build_model(cfg.replace(model={"block_order": order}))
    single = model.build_model(cfg.replace(model={"streams": streams, "block_order": order}))
    spectral = stream_params((32, 32, 5), 16, 12, 3, 0.5, False, order)
    temporal = stream_params((32, 32, 25), 22, 24, 3, 1.0, True, order)
    assert (n_params(net.spectral), net.spectral.feature_size) == spectral
    assert (n_params(net.temporal), net.temporal.feature_size) == temporal
    dropped_params, dropped_features = temporal if streams == "spectral" else spectral
    # the head's Dense(50) also loses one weight row per dropped feature
    assert n_params(net) - n_params(single) == dropped_params + 50 * dropped_features


def test_single_stream_forward_takes_none(cfg):
    c = small(cfg)
    spectral, temporal = model_inputs(c, 2)
    assert model.build_model(c.replace(model={"streams": "spectral"}))(spectral, None).shape == (2, 3)
    assert model.build_model(c.replace(model={"streams": "temporal"}))(None, temporal).shape == (2, 3)
    with pytest.raises(ValueError, match="temporal"):
        model.build_model(c)(spectral, None)


# ----------------------------------------------------------------------------- Keras conventions


def test_same_padding_is_keras():
    assert model.same_padding(32, 5, 2) == (16, 1, 2)      # extra padding at the end
    assert model.same_padding(25, 3, 1) == (25, 1, 1)
    assert model.same_padding(31, 5, 2) == (16, 2, 2)


def pad_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    """Keras 'same' padding of (N, C, H, W, D) for a kernel/stride in (H, W, D) order, written out
    from TF's rule: ceil(size / stride) outputs, the odd padding position at the end."""
    pads = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


@pytest.mark.parametrize("kernel, stride", [((5, 5, 3), (2, 2, 1)), ((3, 3, 1), (1, 1, 1)), ((1, 1, 3), (1, 1, 1)),
                                            ((1, 1, 1), (1, 1, 1)), ((2, 3, 2), (1, 2, 2))])
def test_conv_same_is_keras_same(kernel, stride):
    """Conv3DSame equals conv3d on Keras-padded (N, C, H, W, D) maps, output size ceil(size / stride)."""
    torch.manual_seed(0)
    conv = model.Conv3DSame(3, 4, kernel, stride).double()
    x = torch.randn(2, 3, 9, 8, 5, dtype=torch.float64)
    y = conv(x)
    assert y.shape[2:] == tuple(math.ceil(n / s) for n, s in zip((9, 8, 5), stride))
    torch.testing.assert_close(y, F.conv3d(pad_same(x, kernel, stride), conv.weight, stride=stride))


def test_initialisation(cfg):
    torch.manual_seed(0)
    net = model.build_model(cfg)
    kernel = net.temporal.features.denseblock1.layers[0].conv2.weight        # (24, 96, 3, 3, 1)
    std = math.sqrt(2 / kernel[0].numel())
    assert abs(kernel.std().item() / std - 1) < 0.05                          # he_normal
    assert kernel.abs().max().item() <= 2 * std / 0.87962566103423978         # truncated at 2 sigma
    dense = net.spectral.features.attention1.spatial
    assert dense.weight.abs().max().item() <= math.sqrt(6 / (2 * 1024))       # glorot_uniform
    assert torch.count_nonzero(dense.bias) == 0
    bn = net.spectral.features.denseblock1.layers[0].norm1
    assert bn.weight.eq(1).all() and bn.bias.eq(0).all()
    assert (bn.eps, bn.momentum) == (1.1e-5, 0.01)


# ----------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("ini, nb_class", [(SEED_INI, 3), (SEED_IV_INI, 4)])
def test_forward_shape(ini, nb_class):
    c = config.load_config(ini)
    net = model.build_model(c)
    assert net(*model_inputs(c, 2)).shape == (2, nb_class)


@pytest.mark.parametrize("order", ["official", "paper"])
def test_every_parameter_gets_a_gradient(cfg, order):
    c = small(cfg, block_order=order)
    net = model.build_model(c)
    F.cross_entropy(net(*model_inputs(c, 4)), torch.tensor([0, 1, 2, 1])).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_fixed_seed_gives_identical_outputs(cfg):
    c = small(cfg)
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        net = model.build_model(c)
        outputs.append(net(*model_inputs(c, 3)))     # train mode: dropout draws from the same seed
    assert torch.equal(*outputs)


def test_a_few_steps_lower_the_loss(cfg):
    c = small(cfg)
    torch.manual_seed(0)
    net = model.build_model(c)
    optimizer = torch.optim.Adam(optim.param_groups(net, c.training.l2), lr=1e-3)
    spectral, temporal = model_inputs(c, 12)
    labels = torch.arange(12) % 3
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = F.cross_entropy(net(spectral, temporal), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_attention_weights(cfg):
    c = small(cfg, attention="spatial")
    net = model.build_model(c)
    weights = net.attention_weights(*model_inputs(c, 2))
    assert net.training                                            # mode restored
    assert sorted(weights) == [f"{s}.attention{b}" for s in ("spectral", "temporal") for b in (1, 2, 3)]
    assert weights["spectral.attention1"]["spatial"].shape == (2, 16, 16)
    assert weights["temporal.attention1"]["spatial"].shape == (2, 4, 4)
    assert all(set(w) == {"spatial"} for w in weights.values())
    both = model.build_model(small(cfg, block_order="official")).attention_weights(*model_inputs(c, 2))
    assert both["temporal.attention2"]["spectral_temporal"].shape == (2, 2)   # (4, 4, 5) -> (2, 2, 2)
    assert both["spectral.attention3"]["spatial"].shape == (2, 4, 4)
    assert ((w := both["spectral.attention2"]["spatial"]) > 0).all() and (w < 1).all()   # sigmoid


@pytest.mark.parametrize("keys, key", [
    ({"model": {"depth_spec": 15}}, "[model] depth_spec"),
    ({"model": {"depth_tem": 7}}, "[model] depth_tem"),
    ({"data": {"input_width": 8}}, "[data] input_width"),
    ({"data": {"temInput_length": 1}}, "[data] temInput_length"),
    ({"model": {"compression_spec": 0.01}}, "[model] compression_spec"),
])
def test_invalid_config_fails_at_construction(cfg, keys, key):
    with pytest.raises(errors.ConfigError, match=re.escape(key + ":")):
        model.build_model(cfg.replace(**keys))


def test_command_line_summary(tmp_path):
    run = subprocess.run([sys.executable, "model.py", "-c", "SEED.ini"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "trainable parameters: 1573185" in run.stdout.splitlines()
    assert "forward multiply-adds per sample: 213002890" in run.stdout.splitlines()
    assert "variant: block order paper, attention both, streams both" in run.stdout
    assert "inputs: spectral (N, 32, 32, 5), temporal (N, 32, 32, 25)" in run.stdout
    assert "spectral.denseblock1" in run.stdout and "(32, 32, 5, 48)" in run.stdout
    bad = tmp_path / "bad.ini"
    bad.write_text(SEED_INI.read_text().replace("depth_spec = 16", "depth_spec = 15"))
    run = subprocess.run([sys.executable, "model.py", "-c", str(bad)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1 and run.stderr.startswith("error: ") and "depth_spec" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_eval_mode_supports_gradients_of_gradients(cfg):
    """Eval mode runs plain ATen ops: input-gradient penalties (create_graph=True) work, e.g. for saliency."""
    c = small(cfg)
    net = model.build_model(c).eval()
    spectral, temporal = (x.requires_grad_() for x in model_inputs(c, 2))
    grad, = torch.autograd.grad(net(spectral, temporal).sum(), spectral, create_graph=True)
    grad.pow(2).sum().backward()
    assert all(p.grad is not None for p in net.spectral.parameters())


def test_bn_momentum_key_sets_every_running_statistics_update(cfg):
    """[model] bn_momentum (PyTorch convention; 0.01 = Keras' 0.99) weighs each batch in the running mean."""
    c = small(cfg)
    x = model_inputs(c, 4)
    first_means = {}
    for momentum in (0.01, 0.1):
        torch.manual_seed(0)
        net = model.build_model(c.replace(model={"bn_momentum": momentum})).train()
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
        assert bns and all(m.momentum == momentum for m in bns)
        net(*x)
        first_means[momentum] = bns[0].running_mean.clone()   # started at 0: momentum * batch mean
    assert torch.allclose(first_means[0.1], 10 * first_means[0.01], rtol=1e-4, atol=1e-7)
    assert first_means[0.1].abs().sum() > 0


# ----------------------------------------------------------------------------- keyword arguments, INI adapter


def test_keyword_defaults_are_the_papers_seed_network(cfg):
    """SSTEmotionNet() with its defaults is the network SEED.ini builds (same state dict, same seed)."""
    torch.manual_seed(0)
    from_kwargs = model.SSTEmotionNet()
    torch.manual_seed(0)
    from_ini = model.build_model(cfg)
    a, b = from_kwargs.state_dict(), from_ini.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert n_params(model.SSTEmotionNet(nb_class=4, block_order="official")) == 519_264


@pytest.mark.parametrize("kwargs, argument", [
    ({"block_order": "keras"}, "block_order"), ({"attention": "all"}, "attention"), ({"streams": "eeg"}, "streams"),
    ({"dropout": 1.0}, "dropout"), ({"nb_class": 0}, "nb_class"), ({"depth_tem": 12}, "depth_tem"),
    ({"input_width": 2}, "input_width"), ({"temInput_length": 1}, "temInput_length"),
    ({"attention_block": "se"}, "attention_block"), ({"bn_momentum": 0.0}, "bn_momentum"),
])
def test_bad_keyword_argument_names_it(kwargs, argument):
    with pytest.raises(ValueError, match=f"^{argument}: ") as info:
        model.SSTEmotionNet(**kwargs)
    assert info.value.argument == argument


def test_state_dict_layout_is_unchanged(cfg):
    """Keys, order, shapes and dtypes of the state dict equal those of the checkpoints written before
    the definition was rewritten (digest of the earlier model's state dict for SEED.ini)."""
    digests = {}
    for order in ("paper", "official"):
        sd = model.build_model(cfg.replace(model={"block_order": order})).state_dict()
        text = "\n".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in sd.items())
        digests[order] = (len(sd), hashlib.sha256(text.encode()).hexdigest()[:16])
    assert digests == {"paper": (264, "c2744b985c286e6a"), "official": (256, "991d4d5480555224")}


# ----------------------------------------------------------------------------- extending the model


class ToyStream(nn.Module):
    """A third stream for the extension test: (N, 8, 8, 3) maps -> (N, 6) features."""

    name = "toy"

    def __init__(self):
        super().__init__()
        self.input_size, self.feature_size = (8, 8, 3), 6
        self.linear = nn.Linear(8 * 8 * 3, 6)

    def forward(self, maps):
        return torch.relu(self.linear(maps.flatten(1)))


class GateAttention(nn.Module):
    """An attention variant for the extension test: one learned gate per depth position."""

    def __init__(self, size, attention="both", activation="sigmoid"):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(size[2]))

    def forward(self, x):
        return x * torch.sigmoid(self.gate)


def test_extra_stream_and_attention_variant_through_the_public_api(cfg):
    """A registered stream and a registered attention variant: built by name, forward unchanged,
    one training step (through the CPU accelerator too, which runs unknown parts as defined)."""
    from sst.training import fastcpu

    model.register_stream("toy", source="de")(lambda arguments: ToyStream())
    model.register_attention("gate")(GateAttention)
    try:
        c = small(cfg)
        net = model.SSTEmotionNet(input_width=16, temInput_length=9, depth_spec=10, depth_tem=10, gr_spec=4,
                                  gr_tem=6, streams=("spectral", "temporal", "toy"), attention_block="gate")
        assert net.feature_size == net.spectral.feature_size + net.temporal.feature_size + 6
        assert isinstance(net.spectral.features.attention1, GateAttention)
        spectral, temporal = model_inputs(c, 4)
        toy = torch.randn(4, 8, 8, 3)
        labels = torch.tensor([0, 1, 2, 1])
        optimizer = optim.adam(net, 1e-4, 1e-2)
        before = net.toy.linear.weight.detach().clone()
        for forward in (net, fastcpu.accelerate(net)):
            optimizer.zero_grad()
            F.cross_entropy(forward(spectral, temporal, toy), labels).backward()
            assert net.toy.linear.weight.grad.abs().sum() > 0 and net.spectral.features.attention1.gate.grad is not None
            optimizer.step()
        assert not torch.equal(before, net.toy.linear.weight)
        assert net(spectral, temporal, toy=toy).shape == (4, 3)
        summary = model.summary(net)         # a stream of another kind is traced as one stage
        assert re.search(r"^toy +\(6,\) +1,158 +1,152$", summary, re.M)
        streams = sum(v["macs"] for s in (net.spectral, net.temporal) for v in s.stages.values())
        head = net.head.hidden.weight.numel() + net.head.classifier.weight.numel()
        assert net.count_macs() == streams + 8 * 8 * 3 * 6 + head
        with pytest.raises(ValueError, match="toy: expected"):
            net(spectral, temporal)
    finally:
        model.STREAMS.pop("toy"), model.STREAM_SOURCES.pop("toy")
        model.ATTENTION_BLOCKS.pop("gate")


# ----------------------------------------------------------------------------- the authors' Keras weights


@pytest.mark.slow
def test_command_line_summary_from_the_authors_ini(tmp_path):
    """model.py reads only [model] and the input sizes: the authors' Keras config/SEED.ini prints the
    same network; --set changes it; a --set it does not read is an error."""
    from conftest import AUTHORS_INI

    ini = tmp_path / "authors.ini"
    ini.write_text(AUTHORS_INI)
    run = run_cli("model.py", "-c", str(ini))
    assert run.returncode == 0, run.stderr
    assert "trainable parameters: 1573185" in run.stdout.splitlines()
    assert "inputs: spectral (N, 32, 32, 5), temporal (N, 32, 32, 25)" in run.stdout
    run = run_cli("model.py", "-c", str(ini), "--set", "model.input_width=16", "--set", "data.temInput_length=9",
                  "--set", "model.depth_spec=10")
    assert run.returncode == 0, run.stderr
    assert "inputs: spectral (N, 16, 16, 5), temporal (N, 16, 16, 9)" in run.stdout
    run = run_cli("model.py", "-c", str(ini), "--set", "training.nbEpoch=5")
    assert run.returncode == 1 and run.stderr == ("error: --set training.nbEpoch=5: not used here: this command reads "
                                                  "only [model] and the input sizes\n")
