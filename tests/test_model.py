"""Tests for model.py: parity with the authors' Keras model (SPEC.md section 2), with a plain
nn.Conv3d reference implementation, and behaviour (gradients, determinism, learning, errors).

    python -m pytest tests/test_model.py -q
"""
import copy
import math
import re
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import model
import utils
from conftest import ROOT

SEED_INI = ROOT / "SEED.ini"
SEED_IV_INI = ROOT / "SEED_IV.ini"


@pytest.fixture(scope="module")
def cfg() -> utils.Config:
    return utils.load_config(SEED_INI)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def small(cfg: utils.Config, **model_keys) -> utils.Config:
    """A fast variant of SEED.ini: 16x16 maps, 5 bands, 9 time points, small depths and growth rates."""
    keys = dict(depth_spec=10, depth_tem=10, gr_spec=4, gr_tem=6)
    keys.update(model_keys)
    return cfg.replace(data={"input_width": 16, "temInput_length": 9}, model=keys)


def inputs(cfg: utils.Config, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
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
                 if isinstance(m, model.BatchNormReLU))
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


def test_stage_shapes_are_the_real_shapes(cfg):
    """The arithmetic shapes equal what a forward pass produces (one sample, eval mode)."""
    net = model.build_model(cfg).eval()
    seen = {}
    for stream in (net.spectral, net.temporal):
        for name, stage in stream.features.named_children():
            stage.register_forward_hook(
                lambda m, i, o, key=(stream.name, name): seen.__setitem__(
                    key, tuple((o[0] if isinstance(o, tuple) else o).shape)))
    with torch.no_grad():
        net(*inputs(cfg, 1))
    for stream in (net.spectral, net.temporal):
        for name, info in stream.stages.items():
            H, W, D, C = info["shape"]
            assert seen[(stream.name, name)] == (1, D, H, W, C), (stream.name, name)


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
    """Trainable parameters of one stream by arithmetic (SPEC.md section 2), and its feature size."""
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


@pytest.mark.parametrize("kernel, stride", [((5, 5, 3), (2, 2, 1)), ((3, 3, 1), (1, 1, 1)), ((1, 1, 3), (1, 1, 1)),
                                            ((1, 1, 1), (1, 1, 1)), ((2, 3, 2), (1, 2, 2))])
def test_conv_same_equals_padded_conv3d(kernel, stride):
    """Every Conv3DSame path, training and eval, equals Conv3d on Keras-padded (N, C, H, W, D) maps."""
    torch.manual_seed(0)
    conv = model.Conv3DSame(3, 4, kernel, stride).double()
    ref = RefConv(3, 4, kernel, stride).double()
    ref.weight = conv.weight
    x = torch.randn(2, 5, 9, 8, 3, dtype=torch.float64, requires_grad=True)      # (N, D, H, W, C)
    expected = ref(x.permute(0, 4, 2, 3, 1)).permute(0, 4, 2, 3, 1)                # back to (N, D, H, W, C)
    g = torch.randn_like(expected)
    grads = torch.autograd.grad(expected, (x, conv.weight), g)
    for training in (True, False):
        y = conv.train(training)(x)
        torch.testing.assert_close(y, expected)
        for a, b in zip(torch.autograd.grad(y, (x, conv.weight), g), grads):
            torch.testing.assert_close(a, b)


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


def test_param_groups_decay_exactly_the_l2_kernels(cfg):
    net = model.build_model(cfg)
    decay, rest = model.param_groups(net, 1e-4)
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
    opt_a = model.adam(a, l2, lr=1e-3)
    assert opt_a.defaults["fused"] and [g["weight_decay"] for g in opt_a.param_groups] == [2 * l2, 0.0]
    opt_b = torch.optim.Adam(b.parameters(), lr=1e-3)
    torch.manual_seed(1)
    F.cross_entropy(a(spectral, temporal), labels).backward()
    torch.manual_seed(1)
    penalty = sum((p ** 2).sum() for p in model.param_groups(b, l2)[0]["params"])
    (F.cross_entropy(b(spectral, temporal), labels) + l2 * penalty).backward()
    opt_a.step()
    opt_b.step()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, msg=name)


# ----------------------------------------------------------------------------- reference implementation


def pad_same(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    """Keras 'same' padding of (N, C, H, W, D) for a kernel/stride given in (H, W, D) order."""
    pads = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class RefConv(nn.Conv3d):
    """nn.Conv3d over (N, C, H, W, D) with Keras 'same' padding."""

    def __init__(self, cin, cout, kernel, stride=(1, 1, 1)):
        super().__init__(cin, cout, kernel, stride, bias=False)

    def forward(self, x):
        return super().forward(pad_same(x, self.kernel_size, self.stride))


def ref_bn(c):
    return nn.BatchNorm3d(c, eps=model.BN_EPSILON, momentum=model.BN_MOMENTUM)


class RefDenseLayer(nn.Module):
    def __init__(self, cin, k):
        super().__init__()
        self.norm1, self.conv1 = ref_bn(cin), RefConv(cin, 4 * k, (1, 1, 1))
        self.norm2, self.conv2 = ref_bn(4 * k), RefConv(4 * k, k, (3, 3, 1))
        self.conv3 = RefConv(k, k, (1, 1, 3))

    def forward(self, x):
        return self.conv3(self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x)))))))


class RefDenseBlock(nn.Module):
    def __init__(self, n, cin, k):
        super().__init__()
        self.layers = nn.ModuleList(RefDenseLayer(cin + i * k, k) for i in range(n))

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x


class RefTransition(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm, self.conv = ref_bn(cin), RefConv(cin, cout, (1, 1, 1))

    def forward(self, x):   # Keras order: convolve, then pool
        return F.avg_pool3d(self.conv(F.relu(self.norm(x))), 2)


class RefAttention(nn.Module):
    def __init__(self, h, w, d, attention, activation):
        super().__init__()
        self.spatial = nn.Linear(h * w, h * w) if attention in ("both", "spatial") else None
        self.spectral_temporal = nn.Linear(d, d) if attention in ("both", "spectral_temporal") else None
        self.act = torch.sigmoid if activation == "sigmoid" else (lambda t: torch.softmax(t, -1))

    def forward(self, x):   # (N, C, H, W, D), as the authors' Attention_block
        N, C, H, W, D = x.shape
        mean = x.mean(1)
        out = x
        if self.spatial is not None:
            out = out * self.act(self.spatial(mean.mean(-1).reshape(N, H * W))).view(N, 1, H, W, 1)
        if self.spectral_temporal is not None:
            out = out * self.act(self.spectral_temporal(mean.mean((1, 2)))).view(N, 1, 1, 1, D)
        return out


class RefStemPool(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = ref_bn(c)

    def forward(self, x):
        return F.max_pool3d(pad_same(F.relu(self.norm(x)), (2, 2, 2), (2, 2, 2), value=-math.inf), 2)


class RefGlobalPool(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = ref_bn(c)

    def forward(self, x):
        return F.relu(self.norm(x)).mean((2, 3, 4))


class RefStream(nn.Module):
    """A stream written the obvious way: (N, C, H, W, D) tensors, Keras layer order."""

    def __init__(self, m: utils.ModelConfig, size, depth, k, compression, temporal):
        super().__init__()
        n = (depth - 4) // 3 // 2
        h, w, d = size
        c = 2 * k
        stages = OrderedDict()
        if temporal:
            stages["stem"] = RefConv(1, c, (5, 5, 3), (2, 2, 1))
            stages["pool"] = RefStemPool(c)
            h, w = -(-h // 2), -(-w // 2)
            h, w, d = -(-h // 2), -(-w // 2), -(-d // 2)
        else:
            stages["stem"] = RefConv(1, c, (3, 3, 1))
        attend = m.attention != "none"
        for b in range(1, m.nb_dense_block + 1):
            if m.block_order == "paper" and attend:
                stages[f"attention{b}"] = RefAttention(h, w, d, m.attention, m.attention_activation)
            stages[f"denseblock{b}"] = RefDenseBlock(n, c, k)
            c += n * k
            if b == m.nb_dense_block:
                break
            stages[f"transition{b}"] = RefTransition(c, int(c * compression))
            c, h, w, d = int(c * compression), h // 2, w // 2, d // 2
            if m.block_order == "official" and attend:
                stages[f"attention{b + 1}"] = RefAttention(h, w, d, m.attention, m.attention_activation)
        self.features = nn.Sequential(stages)
        self.global_pool = RefGlobalPool(c)

    def forward(self, x):   # (N, H, W, D) maps
        return self.global_pool(self.features(x.unsqueeze(1)))


class RefNet(nn.Module):
    def __init__(self, cfg: utils.Config):
        super().__init__()
        m, w = cfg.model, cfg.data.input_width
        self.spectral = RefStream(m, (w, w, cfg.data.specInput_length), m.depth_spec, m.gr_spec,
                                  m.compression_spec, False) if m.streams != "temporal" else None
        self.temporal = RefStream(m, (w, w, cfg.data.temInput_length), m.depth_tem, m.gr_tem,
                                  m.compression_tem, True) if m.streams != "spectral" else None
        features = sum(s.global_pool.norm.num_features for s in (self.spectral, self.temporal) if s is not None)
        self.head = nn.Sequential(OrderedDict(hidden=nn.Linear(features, 50), dropout=nn.Dropout(m.dropout),
                                              classifier=nn.Linear(50, m.nb_class)))

    def forward(self, spectral, temporal):
        parts = [s(x) for s, x in ((self.spectral, spectral), (self.temporal, temporal)) if s is not None]
        return self.head(torch.cat(parts, 1))


def assert_same_model(net, ref, spectral, temporal, labels):
    """Two training steps (train-mode outputs, every gradient), running statistics, then eval outputs."""
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (net, ref)]
    ref_params = dict(ref.named_parameters())
    for _ in range(2):      # the second step reuses the dense blocks' workspaces
        for opt in optimizers:
            opt.zero_grad()
        torch.manual_seed(3)
        out = net(spectral, temporal)
        F.cross_entropy(out, labels).backward()
        torch.manual_seed(3)
        ref_out = ref(spectral, temporal)
        F.cross_entropy(ref_out, labels).backward()
        torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
        for name, p in net.named_parameters():
            q = ref_params[name]
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-5 * q.grad.abs().max().item(), msg=name)
        for opt in optimizers:
            opt.step()
    ref_buffers = dict(ref.named_buffers())
    for name, b in net.named_buffers():
        torch.testing.assert_close(b, ref_buffers[name], rtol=1e-4, atol=1e-6, msg=name)
    net.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(spectral, temporal), ref(spectral, temporal), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_keys", [
    {},
    {"block_order": "official"},
    {"attention": "spatial", "attention_activation": "softmax"},
    {"attention": "spectral_temporal", "streams": "spectral"},
    {"attention": "none", "streams": "temporal", "compression_tem": 0.5},
])
def test_fast_path_equals_reference(cfg, model_keys):
    """The channels-last fast path computes what plain nn.Conv3d/BatchNorm3d layers compute."""
    c = small(cfg, **model_keys)
    torch.manual_seed(0)
    net = model.build_model(c).double()
    with torch.no_grad():       # BN scales of both signs exercise every branch (e.g. min-pooling for s < 0)
        for m in net.modules():
            if isinstance(m, model.BatchNormReLU):
                m.weight.uniform_(-1.5, 1.5), m.bias.normal_(0, 0.5)
    ref = RefNet(c).double()
    ref.load_state_dict(net.state_dict())      # same names and shapes, strict
    spectral, temporal = (x.double() for x in inputs(c, 3))
    assert_same_model(net, ref, spectral, temporal, torch.tensor([0, 1, 2]))


def test_fast_path_equals_reference_seed_float32(cfg):
    """Full SEED.ini sizes in float32: tolerances of float32 arithmetic."""
    torch.manual_seed(0)
    net = model.build_model(cfg)
    ref = RefNet(cfg)
    ref.load_state_dict(net.state_dict())
    spectral, temporal = inputs(cfg, 4)
    torch.manual_seed(3)
    out = net(spectral, temporal)
    torch.manual_seed(3)
    torch.testing.assert_close(out, ref(spectral, temporal), rtol=1e-3, atol=1e-4)


def test_dense_block_gradient_is_exact():
    """The fused training-mode dense block: gradients equal autograd of its layers run one by one,
    and a central finite difference along a random direction (float64)."""
    torch.manual_seed(0)
    block = model.DenseBlock3D(2, 3, 2).double()
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, model.BatchNormReLU):
                m.weight.uniform_(-1.5, 1.5), m.bias.normal_(0, 0.5)
    x = torch.randn(2, 3, 4, 4, 3, dtype=torch.float64, requires_grad=True)
    inputs_ = [x, *block.parameters()]
    weights = torch.randn(2, 3, 4, 4, block.out_channels, dtype=torch.float64)

    def loss(fused: bool) -> torch.Tensor:
        if fused:
            return (block(x) * weights).sum()
        h = x
        for layer in block.layers:      # the plain definition: nn ops and BatchNormReLU
            h = torch.cat([h, layer(h)], dim=-1)
        return (h * weights).sum()

    fused = torch.autograd.grad(loss(True), inputs_)
    plain = torch.autograd.grad(loss(False), inputs_)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b)
    direction = [torch.randn_like(t) for t in inputs_]
    eps = 1e-6
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            for t, d in zip(inputs_, direction):
                t.add_(sign * eps * d)
            values.append(loss(True))
            for t, d in zip(inputs_, direction):
                t.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    analytic = sum((g * d).sum() for g, d in zip(fused, direction))
    torch.testing.assert_close(numeric, analytic, rtol=1e-6, atol=1e-8)


def small_pair(cfg):
    """The small config, a float64 model built from it and the reference holding the same parameters."""
    c = small(cfg)
    torch.manual_seed(0)
    net = model.build_model(c).double()
    ref = RefNet(c).double()
    ref.load_state_dict(net.state_dict())
    return c, net, ref


def test_batch_stats_of_bf16_maps_are_float32():
    """Under autocast a block's input may be bf16; its statistics are still taken in float32."""
    x = torch.randn(4, 3, 8, 8, 5) * 3 + 100
    mean, var = model.batch_stats(x.bfloat16())
    assert mean.dtype == var.dtype == torch.float32
    exact = x.bfloat16().double().reshape(-1, 5)
    assert torch.allclose(mean.double(), exact.mean(0), rtol=1e-6)
    assert torch.allclose(var.double(), exact.var(0, unbiased=False), rtol=1e-4)


@pytest.mark.parametrize("rows", [10, 4096, 4099, 10007])
def test_inner_products_equal_the_plain_product(rows):
    """Row blocks plus the remainder rows: a.T @ b, also for a strided column slice."""
    g = torch.Generator().manual_seed(rows)
    a = torch.randn(rows, 7, generator=g, dtype=torch.float64)
    wide = torch.randn(rows, 9, generator=g, dtype=torch.float64)
    for b in (a, wide[:, 2:]):
        torch.testing.assert_close(model._inner_products(a, b), a.t() @ b)


def test_workspace_is_not_shared_between_live_graphs(cfg):
    """Two forwards before one backward (e.g. accumulated micro-batches) equal the reference."""
    c, net, ref = small_pair(cfg)
    batches = [tuple(x.double() for x in inputs(c, 3, seed)) for seed in (1, 2)]
    labels = torch.tensor([0, 1, 2])
    for m in (net, ref):
        torch.manual_seed(3)
        sum(F.cross_entropy(m(*b), labels) for b in batches).backward()
    ref_params = dict(ref.named_parameters())
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, msg=name)


def test_workspace_reuse_across_batch_sizes(cfg):
    """Batches of 3, then 2 (buffers reused as prefixes), then 4 (buffers reallocated) train as the reference."""
    c, net, ref = small_pair(cfg)
    ref_params = dict(ref.named_parameters())
    for n, seed in ((3, 1), (2, 2), (4, 3)):
        batch = tuple(x.double() for x in inputs(c, n, seed))
        labels = torch.arange(n) % c.model.nb_class
        for m in (net, ref):
            m.zero_grad()
            torch.manual_seed(3)
            F.cross_entropy(m(*batch), labels).backward()
        for name, p in net.named_parameters():
            torch.testing.assert_close(p.grad, ref_params[name].grad, msg=f"batch {n}: {name}")


# ----------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("ini, nb_class", [(SEED_INI, 3), (SEED_IV_INI, 4)])
def test_forward_shape(ini, nb_class):
    c = utils.load_config(ini)
    net = model.build_model(c)
    assert net(*inputs(c, 2)).shape == (2, nb_class)


@pytest.mark.parametrize("order", ["official", "paper"])
def test_every_parameter_gets_a_gradient(cfg, order):
    c = small(cfg, block_order=order)
    net = model.build_model(c)
    F.cross_entropy(net(*inputs(c, 4)), torch.tensor([0, 1, 2, 1])).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("order", ["paper", "official"])
def test_trains_under_cpu_bf16_autocast(cfg, order):
    """torch.autocast('cpu', bfloat16) around a training step: the fused nodes run in float32
    (their inputs cast), the rest in bf16; the loss stays near the float32 one, every gradient is finite."""
    c = small(cfg, block_order=order)
    torch.manual_seed(0)
    net = model.build_model(c)
    twin = copy.deepcopy(net)
    x, labels = inputs(c, 4), torch.tensor([0, 1, 2, 1])
    block_outputs = []
    for block in (m for m in net.modules() if isinstance(m, model.DenseBlock3D)):
        block.register_forward_hook(lambda module, args, out: block_outputs.append(out))
    torch.manual_seed(1)        # the same dropout masks for both
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(*x)
        loss = F.cross_entropy(logits, labels)
    loss.backward()
    torch.manual_seed(1)
    reference = F.cross_entropy(twin(*x), labels)
    assert logits.dtype == torch.bfloat16                           # the head ran in bf16
    tensors = lambda o: [o] if isinstance(o, torch.Tensor) else [t for item in o for t in tensors(item)]  # noqa: E731
    assert block_outputs and {t.dtype for t in tensors(block_outputs)} == {torch.float32}   # features and stats
    assert abs(loss.item() - reference.item()) < 0.05 * reference.item()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


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
    optimizer = torch.optim.Adam(model.param_groups(net, c.training.l2), lr=1e-3)
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
    with pytest.raises(utils.ConfigError, match=re.escape(key + ":")):
        model.build_model(cfg.replace(**keys))


def test_command_line_summary(tmp_path):
    run = subprocess.run([sys.executable, "model.py", "-c", "SEED.ini"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "trainable parameters: 1573185" in run.stdout.splitlines()
    assert "spectral.denseblock1" in run.stdout and "(32, 32, 5, 48)" in run.stdout
    bad = tmp_path / "bad.ini"
    bad.write_text(SEED_INI.read_text().replace("depth_spec = 16", "depth_spec = 15"))
    run = subprocess.run([sys.executable, "model.py", "-c", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.startswith("error: ") and "depth_spec" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_second_backward_through_one_graph_fails_loudly(cfg):
    """Backward overwrites saved activations it no longer needs: retain_graph=True reuse is refused."""
    c = small(cfg)
    loss = model.build_model(c)(*inputs(c, 2)).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


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
        bns = [m for m in net.modules() if isinstance(m, model.BatchNormReLU)]
        assert bns and all(m.momentum == momentum for m in bns)
        net(*x)
        first_means[momentum] = bns[0].running_mean.clone()   # started at 0: momentum * batch mean
    assert torch.allclose(first_means[0.1], 10 * first_means[0.01], rtol=1e-4, atol=1e-7)
    assert first_means[0.1].abs().sum() > 0
