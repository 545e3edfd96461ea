"""Tests for model.py, the definition: the authors' Keras model's reference figures (parameters,
BN statistics, multiply-adds, stage shapes; docs/reference.md), Keras conventions, construction
from keyword arguments and from the INI file, extension, importing Keras weights, and behaviour
(gradients, determinism, learning, errors). The CPU accelerator is held to this in test_fastcpu.py.

    python -m pytest tests/test_model.py -q
"""
import hashlib
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import model
from conftest import ROOT, run_cli, write_ini
from sst import config, errors
from sst.training import optim

SEED_INI = ROOT / "SEED.ini"
SEED_IV_INI = ROOT / "SEED_IV.ini"


@pytest.fixture(scope="module")
def cfg() -> config.Config:
    return config.load_config(SEED_INI)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def small(cfg: config.Config, **model_keys) -> config.Config:
    """A fast variant of SEED.ini: 16x16 maps, 5 bands, 9 time points, small depths and growth rates."""
    keys = dict(depth_spec=10, depth_tem=10, gr_spec=4, gr_tem=6)
    keys.update(model_keys)
    return cfg.replace(data={"input_width": 16, "temInput_length": 9}, model=keys)


def inputs(cfg: config.Config, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = cfg.data.input_width
    return (torch.randn(n, w, w, cfg.data.specInput_length, generator=g),
            torch.randn(n, w, w, cfg.data.temInput_length, generator=g))


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
    spectral, temporal = inputs(c, 2)
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


def test_param_groups_decay_exactly_the_l2_kernels(cfg):
    net = model.build_model(cfg)
    decay, rest = optim.param_groups(net, 1e-4)
    names = {id(p): n for n, p in net.named_parameters()}
    decayed = sorted(names[id(p)] for p in decay["params"])
    assert decay["weight_decay"] == 2e-4 and rest["weight_decay"] == 0
    assert len(decayed) + len(rest["params"]) == len(list(net.parameters()))
    # stems, bottlenecks (conv1 of every dense layer) and transitions; nothing else
    assert all(n.endswith(("stem.weight", ".conv1.weight", "conv.weight")) for n in decayed)
    assert sum(".conv1." in n for n in decayed) == 3 * 2 + 3 * 3
    assert sum("transition" in n for n in decayed) == 4 and sum("stem" in n for n in decayed) == 2


def test_adam_weight_decay_equals_keras_l2(cfg):
    """One step of model.adam (fused, weight_decay = 2 l2 on the L2 kernels) equals one step of
    PyTorch's default Adam on loss + l2 * sum(w^2) over the L2 kernels."""
    c = small(cfg)
    torch.manual_seed(0)
    a = model.build_model(c)
    b = model.build_model(c)
    b.load_state_dict(a.state_dict())
    spectral, temporal = inputs(c, 4)
    labels = torch.tensor([0, 1, 2, 0])
    l2 = 1e-2
    opt_a = optim.adam(a, l2, lr=1e-3)
    assert opt_a.defaults["fused"] and [g["weight_decay"] for g in opt_a.param_groups] == [2 * l2, 0.0]
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-3)
    torch.manual_seed(1)
    F.cross_entropy(a(spectral, temporal), labels).backward()
    torch.manual_seed(1)
    penalty = sum((p ** 2).sum() for p in optim.param_groups(b, l2)[0]["params"])
    (F.cross_entropy(b(spectral, temporal), labels) + l2 * penalty).backward()
    opt_a.step()
    opt_b.step()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, msg=name)


# ----------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("ini, nb_class", [(SEED_INI, 3), (SEED_IV_INI, 4)])
def test_forward_shape(ini, nb_class):
    c = config.load_config(ini)
    net = model.build_model(c)
    assert net(*inputs(c, 2)).shape == (2, nb_class)


@pytest.mark.parametrize("order", ["official", "paper"])
def test_every_parameter_gets_a_gradient(cfg, order):
    c = small(cfg, block_order=order)
    net = model.build_model(c)
    F.cross_entropy(net(*inputs(c, 4)), torch.tensor([0, 1, 2, 1])).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_fixed_seed_gives_identical_outputs(cfg):
    c = small(cfg)
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        net = model.build_model(c)
        outputs.append(net(*inputs(c, 3)))     # train mode: dropout draws from the same seed
    assert torch.equal(*outputs)


def test_a_few_steps_lower_the_loss(cfg):
    c = small(cfg)
    torch.manual_seed(0)
    net = model.build_model(c)
    optimizer = torch.optim.Adam(optim.param_groups(net, c.training.l2), lr=1e-3)
    spectral, temporal = inputs(c, 12)
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
    weights = net.attention_weights(*inputs(c, 2))
    assert net.training                                            # mode restored
    assert sorted(weights) == [f"{s}.attention{b}" for s in ("spectral", "temporal") for b in (1, 2, 3)]
    assert weights["spectral.attention1"]["spatial"].shape == (2, 16, 16)
    assert weights["temporal.attention1"]["spatial"].shape == (2, 4, 4)
    assert all(set(w) == {"spatial"} for w in weights.values())
    both = model.build_model(small(cfg, block_order="official")).attention_weights(*inputs(c, 2))
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
    run = subprocess.run([sys.executable, "model.py", "-c", "SEED.ini"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "trainable parameters: 1573185" in run.stdout.splitlines()
    assert "forward multiply-adds per sample: 213002890" in run.stdout.splitlines()
    assert "variant: block order paper, attention both, streams both" in run.stdout
    assert "inputs: spectral (N, 32, 32, 5), temporal (N, 32, 32, 25)" in run.stdout
    assert "spectral.denseblock1" in run.stdout and "(32, 32, 5, 48)" in run.stdout
    bad = tmp_path / "bad.ini"
    bad.write_text(SEED_INI.read_text().replace("depth_spec = 16", "depth_spec = 15"))
    run = subprocess.run([sys.executable, "model.py", "-c", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.startswith("error: ") and "depth_spec" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_eval_mode_supports_gradients_of_gradients(cfg):
    """Eval mode runs plain ATen ops: input-gradient penalties (create_graph=True) work, e.g. for saliency."""
    c = small(cfg)
    net = model.build_model(c).eval()
    spectral, temporal = (x.requires_grad_() for x in inputs(c, 2))
    grad, = torch.autograd.grad(net(spectral, temporal).sum(), spectral, create_graph=True)
    grad.pow(2).sum().backward()
    assert all(p.grad is not None for p in net.spectral.parameters())


def test_bn_momentum_key_sets_every_running_statistics_update(cfg):
    """[model] bn_momentum (PyTorch convention; 0.01 = Keras' 0.99) weighs each batch in the running mean."""
    c = small(cfg)
    x = inputs(c, 4)
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
    from sst.models import fastcpu

    model.register_stream("toy", source="de")(lambda arguments: ToyStream())
    model.register_attention("gate")(GateAttention)
    try:
        c = small(cfg)
        net = model.SSTEmotionNet(input_width=16, temInput_length=9, depth_spec=10, depth_tem=10, gr_spec=4,
                                  gr_tem=6, streams=("spectral", "temporal", "toy"), attention_block="gate")
        assert net.feature_size == net.spectral.feature_size + net.temporal.feature_size + 6
        assert isinstance(net.spectral.features.attention1, GateAttention)
        spectral, temporal = inputs(c, 4)
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


def keras_layers(net: nn.Module, first_counter: int = 1) -> list[tuple[str, list[tuple[str, "np.ndarray"]]]]:
    """net's Conv3d, BatchNorm3d and Linear modules as the authors' Keras code names and lays them out:
    per-type counters in creation order (Keras 2.3 starts at _1, tf.keras at no suffix), the stem
    convolution of each stream built twice (the first one never reaches the file), Keras axis orders."""
    counters = {"conv3d": first_counter, "batch_normalization": first_counter, "dense": first_counter}
    layers = []
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv3d):
            kind, weights = "conv3d", [("kernel", m.weight.detach().permute(2, 3, 4, 1, 0))]
            if name.endswith("features.stem"):
                counters[kind] += 1     # the stem built twice: the first one is not in the model
        elif isinstance(m, nn.BatchNorm3d):
            kind = "batch_normalization"
            weights = [("gamma", m.weight), ("beta", m.bias), ("moving_mean", m.running_mean),
                       ("moving_variance", m.running_var)]
        elif isinstance(m, nn.Linear):
            kind, weights = "dense", [("kernel", m.weight.detach().t()), ("bias", m.bias)]
        else:
            continue
        counter = counters[kind]
        counters[kind] += 1
        layer = kind if counter == 0 else f"{kind}_{counter}"
        layers.append((layer, [(w, t.detach().numpy().copy()) for w, t in weights]))
    return layers


def write_keras_h5(path, layers, full_model: bool, shuffle_seed: int = 0):
    """An .h5 in Keras's layout: layer_names, one group per layer with weight_names, datasets at
    <layer>/<layer>/<weight>:0, also layers without weights; a full model nests it in /model_weights."""
    import random

    import h5py

    names = [name for name, _ in layers] + ["input_1", "activation_1", "concatenate_1"]
    random.Random(shuffle_seed).shuffle(names)      # Keras lists layers topologically, not by counter
    weights = dict(layers)
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        if full_model:
            f.attrs["model_config"] = b"{}"
            f.create_group("optimizer_weights").create_dataset("Adam/iterations:0", data=7)
        root.attrs["layer_names"] = [n.encode() for n in names]
        root.attrs["backend"], root.attrs["keras_version"] = b"tensorflow", b"2.3.1"
        for name in names:
            group = root.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{w}:0".encode() for w, _ in weights.get(name, [])]
            for w, value in weights.get(name, []):
                group.create_dataset(f"{name}/{w}:0", data=value)


def randomised(net: nn.Module) -> nn.Module:
    """net with every parameter and BN statistic drawn at random (so a wrong mapping shows)."""
    with torch.no_grad():
        for t in (*net.parameters(), *net.buffers()):
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5)
    return net


@pytest.mark.parametrize("full_model, first_counter", [(True, 1), (False, 1), (True, 0)])
def test_load_keras_weights(cfg, tmp_path, full_model, first_counter):
    """A Keras-layout file of one network loads into a fresh one: same state dict, same outputs."""
    c = small(cfg, block_order="official")
    torch.manual_seed(0)
    source = randomised(model.build_model(c)).eval()
    path = tmp_path / "weights.h5"
    write_keras_h5(path, keras_layers(source, first_counter), full_model)
    target = model.build_model(c).eval()
    loaded = model.load_keras_weights(target, path)
    assert loaded == sum(p.numel() > 0 for p in source.parameters()) + 2 * sum(
        isinstance(m, nn.BatchNorm3d) for m in source.modules())
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        if "num_batches_tracked" not in name:
            assert torch.equal(a, b), name
    x = inputs(c, 2)
    with torch.no_grad():
        torch.testing.assert_close(target(*x), source(*x), rtol=0, atol=0)


def test_module_order_is_the_authors_keras_creation_order(cfg, tmp_path):
    """model.py's official-order network at SEED.ini sizes against the authors' model as tf-keras 2.21
    builds it (tests/keras_official_seed_layers.json: written by bench/keras_parity.py --layer-list from
    its tf-keras re-statement of their model/model.py, not from model.py): the same Keras names, in the
    same creation order, with the same weight shapes; and a file laid out so loads every tensor.
    keras_layers(net) alone, as the tests above use it, follows model.py's own order."""
    listed = json.loads((ROOT / "tests" / "keras_official_seed_layers.json").read_text())
    assert listed["config"] == "SEED.ini"
    net = model.build_model(cfg.replace(model={"block_order": "official"}))

    def creation(name: str) -> tuple[str, int]:
        match = re.fullmatch(r"(.+?)(?:_(\d+))?", name)
        return match[1], int(match[2] or 0)

    ours = sorted(((name, {w: list(v.shape) for w, v in weights}) for name, weights in keras_layers(net, 0)),
                  key=lambda layer: creation(layer[0]))
    assert ours == [(layer["name"], layer["weights"]) for layer in listed["layers"]]
    rng = np.random.default_rng(0)
    layers = [(layer["name"], [(w, rng.uniform(0.5, 1.5, shape).astype(np.float32))
                               for w, shape in layer["weights"].items()]) for layer in listed["layers"]]
    write_keras_h5(tmp_path / "authors.h5", layers, full_model=True)
    assert model.load_keras_weights(model.build_model(cfg.replace(model={"block_order": "official"})),
                                    tmp_path / "authors.h5") == 219


def test_keras_weights_mismatch_names_the_layer(cfg, tmp_path):
    c = small(cfg, block_order="official")
    net = model.build_model(c)
    layers = keras_layers(net)
    name, weights = layers[5]
    layers[5] = (name, [(w, v[..., :-1]) if w == "kernel" else (w, v) for w, v in weights])   # one output too few
    write_keras_h5(tmp_path / "bad.h5", layers, full_model=True)
    with pytest.raises(errors.DataError, match=f"Keras layer {name} kernel has shape .* expected"):
        model.load_keras_weights(model.build_model(c), tmp_path / "bad.h5")
    write_keras_h5(tmp_path / "short.h5", keras_layers(net)[:-1], full_model=False)   # the last Dense missing
    with pytest.raises(errors.DataError, match="dense layers with weights, the network has"):
        model.load_keras_weights(model.build_model(c), tmp_path / "short.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(errors.DataError, match="text.h5: not a readable HDF5"):
        model.load_keras_weights(model.build_model(c), tmp_path / "text.h5")
    with pytest.raises(errors.ConfigError, match="official"):
        model.load_keras_weights(model.build_model(small(cfg)), tmp_path / "short.h5")


def _replace(f, path: str, **dataset):
    del f[path]
    f.create_dataset(path, **dataset)


def _set_one(f, path: str, value: float):
    data = f[path][()]
    data.flat[0] = value
    f[path][...] = data


def _external_storage(f, path: str, tmp_path):
    shape, raw = f[path].shape, tmp_path / "raw.bin"
    np.zeros(shape, np.float32).tofile(raw)
    del f[path]
    f.create_dataset(path, shape=shape, dtype="f4", external=[(str(raw), 0, raw.stat().st_size)])


def _virtual(f, path: str, tmp_path):
    import h5py

    shape = f[path].shape
    with h5py.File(tmp_path / "source.h5", "w") as source:
        source.create_dataset("x", data=np.zeros(shape, np.float32))
    layout = h5py.VirtualLayout(shape=shape, dtype="f4")
    layout[...] = h5py.VirtualSource(str(tmp_path / "source.h5"), "x", shape=shape)
    del f[path]
    f.create_virtual_dataset(path, layout)


def _names(f, group: str, attribute: str, change):
    """Rewrite a names attribute as bytes, change(name) applied to each (bytes)."""
    f[group].attrs[attribute] = np.array([change(n.encode() if isinstance(n, str) else n)
                                          for n in f[group].attrs[attribute]], dtype="S")


# One bad Keras file of each kind; `layer` is the first conv3d layer's group, `kernel` its kernel dataset.
# Each is refused with one DataError before any weight is read (the shapes and types come from metadata).
KERAS_DAMAGE = {
    "complex-kernel": (lambda f, layer, kernel, tmp: _replace(f, kernel, data=f[kernel][()].astype(np.complex64)),
                       "kernel:0: expected real floating-point numbers, got complex numbers"),
    "text-kernel": (lambda f, layer, kernel, tmp: _replace(f, kernel, data=np.array([b"weights"] * 3)),
                    "kernel:0: expected real floating-point numbers, got text"),
    "compound-kernel": (lambda f, layer, kernel, tmp: _replace(f, kernel, data=np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])),
                        "kernel:0: expected real floating-point numbers, got a compound type"),
    "integer-kernel": (lambda f, layer, kernel, tmp: _replace(f, kernel, data=f[kernel][()].astype(np.int32)),
                       "kernel:0: expected real floating-point numbers, got int32"),
    "nan-in-a-kernel": (lambda f, layer, kernel, tmp: _set_one(f, kernel, np.nan), "kernel: 1 NaN/Inf values"),
    "inf-in-a-kernel": (lambda f, layer, kernel, tmp: _set_one(f, kernel, -np.inf), "kernel: 1 NaN/Inf values"),
    "a-declared-400-GB-kernel": (lambda f, layer, kernel, tmp: _replace(f, kernel, shape=(10 ** 5, 10 ** 5, 10),
                                                                     dtype="f4", chunks=(1, 1, 10)),
                                 "kernel has shape (100000, 100000, 10), expected"),
    "layer-a-soft-link": (lambda f, layer, kernel, tmp: (f.move(layer, layer + "_moved"),
                                                         f.__setitem__(layer, __import__("h5py").SoftLink("/" + layer + "_moved"))),
                          "is reached through a SoftLink"),
    "layer-a-soft-link-loop": (lambda f, layer, kernel, tmp: (f.__delitem__(layer),
                                                              f.__setitem__(layer, __import__("h5py").SoftLink("/" + layer))),
                               "is reached through a SoftLink"),
    "kernel-an-external-link": (lambda f, layer, kernel, tmp: (f.__delitem__(kernel), f.__setitem__(
        kernel, __import__("h5py").ExternalLink(str(tmp / "weights.h5"), "/" + kernel))), "is reached through a ExternalLink"),
    "kernel-in-an-external-raw-file": (lambda f, layer, kernel, tmp: _external_storage(f, kernel, tmp),
                                       "its data lies in other files (external storage)"),
    "kernel-a-virtual-dataset": (lambda f, layer, kernel, tmp: _virtual(f, kernel, tmp),
                                 "its data lies in other files (virtual storage)"),
    "layer-name-not-utf8": (lambda f, layer, kernel, tmp: _names(f, "model_weights", "layer_names",
                                                                 lambda n: b"\xffconv" if n == layer.split("/")[1].encode() else n),
                            "attribute layer_names: a name that is not UTF-8 text (b'\\xffconv': byte 0xff at offset 0)"),
    "weight-name-not-utf8": (lambda f, layer, kernel, tmp: _names(f, layer, "weight_names", lambda n: n + b"\xfe"),
                             "attribute weight_names: a name that is not UTF-8 text"),
    "weight-name-above-the-layer": (lambda f, layer, kernel, tmp: _names(f, layer, "weight_names", lambda n: b"../" + n),
                                    "is not a name inside the file"),
}


@pytest.mark.parametrize("damage", KERAS_DAMAGE)
def test_keras_files_are_checked_before_reading(cfg, tmp_path, damage):
    import h5py

    c = small(cfg, block_order="official")
    net = model.build_model(c)
    layers = keras_layers(net)
    write_keras_h5(tmp_path / "weights.h5", layers, full_model=True)
    path = tmp_path / "bad.h5"
    write_keras_h5(path, layers, full_model=True)
    name = layers[0][0]
    layer, kernel = f"model_weights/{name}", f"model_weights/{name}/{name}/kernel:0"
    edit, expected = KERAS_DAMAGE[damage]
    with h5py.File(path, "r+") as f:
        edit(f, layer, kernel, tmp_path)
    with pytest.raises(errors.DataError) as refused:
        model.load_keras_weights(model.build_model(c), path)
    assert str(refused.value).startswith(f"{path}: ") and expected in str(refused.value), str(refused.value)


def test_keras_weights_path_over_255_bytes_is_one_clear_error(tmp_path):
    """A path component longer than file systems allow is named, as for the other path options, both on
    the command line and through model.load_keras_weights."""
    ini = write_ini(tmp_path / "small.ini")
    long = tmp_path / ("k" * 300 + ".h5")
    with pytest.raises(errors.UserError, match=r"^--keras-weights: a path component of 303 bytes \(k+.*at most 255"):
        model.main(["-c", str(ini), "--keras-weights", str(long)])
    with pytest.raises(errors.DataError, match=r"Keras weights file: a path component of 303 bytes"):
        model.load_keras_weights(model.build_model(small(config.load_config(ini), block_order="official")), long)


@pytest.mark.parametrize("target", ["the-same-path", "another-spelling", "a-symbolic-link", "a-hard-link", "the-ini-file"])
def test_save_onto_an_input_is_refused(tmp_path, target):
    """model.py --save never writes over what it reads: the Keras file (by any name of it) or the INI file."""
    import os

    ini = write_ini(tmp_path / "small.ini")
    weights = tmp_path / "mine.h5"
    weights.write_bytes(b"the user's only copy of their Keras weights")
    save = {"the-same-path": weights, "another-spelling": tmp_path / "." / "mine.h5",
            "a-symbolic-link": tmp_path / "link.h5", "a-hard-link": tmp_path / "hard.h5", "the-ini-file": ini}[target]
    if target == "a-symbolic-link":
        save.symlink_to(weights)
    if target == "a-hard-link":
        os.link(weights, save)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(errors.UserError, match=rf"^--save {re.escape(str(save))}: that is the (--keras-weights|-c) file "):
        model.main(["-c", str(ini), "--keras-weights", str(weights), "--save", str(save)])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.slow
def test_command_line_keras_import(cfg, tmp_path):
    """model.py --keras-weights FILE --save FILE.pt: summary, tensors loaded, a state dict run.py can load."""
    ini = write_ini(tmp_path / "small.ini", data={"input_width": 16, "temInput_length": 9},
                    model={"depth_spec": 10, "depth_tem": 10, "gr_spec": 4, "gr_tem": 6})
    c = config.load_config(ini).replace(model={"block_order": "official"})
    torch.manual_seed(0)
    source = randomised(model.build_model(c))
    write_keras_h5(tmp_path / "best.h5", keras_layers(source), full_model=True)
    run = run_cli("model.py", "-c", str(ini), "--keras-weights", str(tmp_path / "best.h5"),
                  "--save", str(tmp_path / "sst.pt"))
    assert run.returncode == 0, run.stderr
    assert "block order: official" in run.stdout and "variant: block order official" in run.stdout
    assert re.search(r"^tensors loaded from .*best\.h5: \d+$", run.stdout, re.M)
    state = torch.load(tmp_path / "sst.pt", weights_only=True)
    assert torch.equal(state["head.hidden.weight"], source.head.hidden.weight.detach())
    run = run_cli("model.py", "-c", str(ini), "--keras-weights", str(tmp_path / "missing.h5"))
    assert run.returncode == 1 and run.stderr.startswith("error: ") and "missing.h5" in run.stderr


@pytest.mark.slow
def test_command_line_summary_from_the_authors_ini(tmp_path):
    """model.py reads only [model] and the input sizes: the authors' Keras config/SEED.ini prints the
    same network; --set changes it; a --set it does not read is an error."""
    from test_config import AUTHORS_INI

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
