"""SST-EmotionNet (Jia et al., ACM MM 2020) in plain PyTorch layers: two attention 3D dense streams and a head.

    python model.py -c SEED.ini                  # variant, input shapes, per-stage shapes, parameters, multiply-adds
    python model.py -c SEED.ini --keras-weights best.h5 --save sst.pt     # import the authors' Keras weights

    net = SSTEmotionNet(nb_class=3)                        # the paper's SEED network (keyword arguments)
    net = build_model(config.load_config("SEED.ini"))       # the same network from an INI file
    logits = net(spectral, temporal)   # (N, W, W, bands), (N, W, W, time points) maps -> (N, nb_class) logits
    net.attention_weights(spectral, temporal)              # A3DB weights, for figures

This file is the definition, read top to bottom: Keras conventions, the parts named as in the paper,
the streams, the network, `build_model` and the summary. CPU training runs it through `fastcpu.py`
(same parameters and state dict, held to this file by a parity test, and only while this file's
methods are the ones it was written for); CUDA training, evaluation and the tests run it as written.

The network is the authors' Keras model (docs/reference.md): per stream a stem, dense blocks of
pseudo-3D dense layers, transitions and A3DB attention blocks (`block_order`: the paper's figure 3, or
the authors' released order), BN-ReLU-global average pool; the head concatenates the streams ->
Dense(50) -> Dropout -> Dense(nb_class). Maps arrive as stored on disk, (N, H, W, D); a stream works
on (N, C, H, W, D), so a Keras kernel (kH, kW, kD, in, out) is a weight (out, in, kH, kW, kD), and
shapes in comments and the summary are Keras's channels-last (H, W, D, C). Keras details kept: 'same'
padding, he_normal kernels, glorot_uniform Dense, BN epsilon 1.1e-5 and momentum 0.99, L2 1e-4 on the
stem, bottleneck and transition kernels only; each deviation is written where it happens.

Extending (docs/model.md): `register_stream(name, source=...)`, `register_attention(name)`; by name from
Python or the INI file ([model] streams, attention_block; [model] plugins imports the files).
"""
from __future__ import annotations

import argparse
import inspect
import math
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from sst import cli, config, errors, fileio
from sst import plugins as sst_plugins

BN_EPSILON = 1.1e-5     # Keras BatchNormalization(epsilon=1.1e-5) in the authors' code
BN_MOMENTUM = 0.01      # Keras momentum 0.99 weighs the old running value; PyTorch's weighs the new one
HEAD_WIDTH = 50         # Dense(50) after the concatenated streams (authors' code)


class ModelArgumentError(ValueError):
    """An impossible value of one SSTEmotionNet keyword argument; `argument` names it."""

    def __init__(self, argument: str, detail: str):
        super().__init__(f"{argument}: {detail}")
        self.argument, self.detail = argument, detail


def _choice(argument: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ModelArgumentError(argument, f"expected one of {', '.join(map(str, choices))}, got {value!r}")


# ----------------------------------------------------------------------------- Keras conventions


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """Keras/TF 'same' padding along one axis: (output size, padding before, padding after).

    The output has ceil(size / stride) positions; when the total padding is odd the extra one goes
    at the end (TF's rule), e.g. size 32, kernel 5, stride 2 -> (16, 1, 2).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def he_normal_(weight: torch.Tensor) -> None:
    """Keras 2.3 he_normal: a normal of std sqrt(2 / fan_in) / 0.8796... (0.8796: the std of a unit normal
    truncated at +-2) cut at two of its stds; fan_in = in_channels * kH * kW * kD."""
    fan_in = weight[0].numel()
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


def dense(in_features: int, out_features: int) -> nn.Linear:
    """Keras Dense: glorot_uniform kernel, zero bias."""
    layer = nn.Linear(in_features, out_features)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def batch_norm(num_features: int, momentum: float = BN_MOMENTUM) -> nn.BatchNorm3d:
    """Keras BatchNormalization(epsilon=1.1e-5) over the channel axis of (N, C, H, W, D)."""
    return nn.BatchNorm3d(num_features, eps=BN_EPSILON, momentum=momentum)


class Conv3DSame(nn.Conv3d):
    """Keras Conv3D(padding='same', use_bias=False, kernel_initializer='he_normal') on (N, C, H, W, D).

    kernel and stride in Keras axis order (H, W, D); `regularized`: the authors' L2 (param_groups).
    Symmetric 'same' padding is the convolution's own; otherwise the extra position goes at the end (Keras).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int],
                 stride: tuple[int, int, int] = (1, 1, 1), regularized: bool = False):
        symmetric = all(s == 1 and k % 2 == 1 for k, s in zip(kernel, stride))
        padding = tuple(k // 2 for k in kernel) if symmetric else 0
        super().__init__(in_channels, out_channels, tuple(kernel), tuple(stride), padding=padding, bias=False)
        self.symmetric, self.regularized = symmetric, regularized

    def reset_parameters(self) -> None:
        he_normal_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            pads = []
            for size, k, s in reversed(list(zip(x.shape[2:], self.kernel_size, self.stride))):   # F.pad: last axis first
                pads += same_padding(size, k, s)[1:]
            x = F.pad(x, pads)
        return super().forward(x)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", l2" if self.regularized else "")


# ----------------------------------------------------------------------------- dense network parts


class DenseLayer3D(nn.Module):
    """Pseudo-3D dense layer: BN-ReLU-Conv(1x1x1, 4k) - BN-ReLU-Conv(3x3x1, k) - Conv(1x1x3, k).

    No BN between the last two convolutions (authors' code). (N, C, H, W, D) -> (N, k, H, W, D).
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        bottleneck = 4 * growth_rate
        self.norm1 = batch_norm(in_channels, bn_momentum)
        self.conv1 = Conv3DSame(in_channels, bottleneck, (1, 1, 1), regularized=True)
        self.norm2 = batch_norm(bottleneck, bn_momentum)
        self.conv2 = Conv3DSame(bottleneck, growth_rate, (3, 3, 1))
        self.conv3 = Conv3DSame(growth_rate, growth_rate, (1, 1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(self.norm1(x)))
        return self.conv3(self.conv2(F.relu(self.norm2(x))))


class DenseBlock3D(nn.Module):
    """`num_layers` DenseLayer3D, each concatenating k channels: C -> C + num_layers * k channels."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        self.growth_rate = growth_rate
        self.out_channels = in_channels + num_layers * growth_rate
        self.layers = nn.ModuleList(DenseLayer3D(in_channels + i * growth_rate, growth_rate, bn_momentum)
                                    for i in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class Transition3D(nn.Module):
    """BN-ReLU-Conv(1x1x1, out_channels)-AvgPool(2x2x2, 'valid': an odd size loses its last position)."""

    def __init__(self, in_channels: int, out_channels: int, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        self.norm = batch_norm(in_channels, bn_momentum)
        self.conv = Conv3DSame(in_channels, out_channels, (1, 1, 1), regularized=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(self.conv(F.relu(self.norm(x))), 2)


class A3DBAttention(nn.Module):
    """A3DB attention on (N, C, H, W, D): channel mean -> spatial and spectral/temporal weights.

    (a) spatial: mean over depth -> Dense(H*W -> H*W) -> activation -> multiply every (h, w);
    (b) spectral/temporal: mean over H, W -> Dense(D -> D) -> activation -> multiply every depth.
    `attention` keeps both parts, one ('spatial', 'spectral_temporal') or none; `activation` is
    'sigmoid' (authors' code) or 'softmax' (over the H*W, resp. D, positions; paper's figure 5).
    """

    def __init__(self, size: tuple[int, int, int], attention: str = "both", activation: str = "sigmoid"):
        super().__init__()
        H, W, D = size
        self.size, self.activation = tuple(size), activation
        self.spatial = dense(H * W, H * W) if attention in ("both", "spatial") else None
        self.spectral_temporal = dense(D, D) if attention in ("both", "spectral_temporal") else None

    def activate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) if self.activation == "sigmoid" else torch.softmax(x, dim=-1)

    def weights(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Spatial weights (N, H, W) and spectral/temporal weights (N, D); None for a part switched off."""
        mean = x.mean(1)                                        # (N, H, W, D)
        N, H, W, D = mean.shape
        spatial = depth = None
        if self.spatial is not None:
            spatial = self.activate(self.spatial(mean.mean(3).reshape(N, H * W))).view(N, H, W)  # Keras flattens h*W + w
        if self.spectral_temporal is not None:
            depth = self.activate(self.spectral_temporal(mean.mean((1, 2))))
        return spatial, depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial, depth = self.weights(x)
        if spatial is not None:
            x = x * spatial[:, None, :, :, None]
        if depth is not None:
            x = x * depth[:, None, None, None, :]
        return x

    def extra_repr(self) -> str:
        return f"size={self.size}, activation={self.activation}"


ATTENTION_BLOCKS: dict[str, type[nn.Module]] = {"a3db": A3DBAttention}


def register_attention(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make an attention variant selectable as SSTEmotionNet(attention_block=name)."""
    def register(cls: type[nn.Module]) -> type[nn.Module]:
        ATTENTION_BLOCKS[name] = cls
        return cls
    return register


class StemPool(nn.Module):
    """BN-ReLU-MaxPool(2x2x2, 'same') closing the spatial-temporal stem: odd sizes keep a short last window."""

    def __init__(self, channels: int, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        self.norm = batch_norm(channels, bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(F.relu(self.norm(x)), 2, ceil_mode=True)


class GlobalPool(nn.Module):
    """Final BN-ReLU then global average pool: (N, C, H, W, D) -> (N, C)."""

    def __init__(self, channels: int, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        self.norm = batch_norm(channels, bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(x)).mean((2, 3, 4))


@torch.no_grad()
def trace(module: nn.Module, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """(output shape, multiply-adds) of one sample of `shape` (e.g. (C, H, W, D)) through `module`: a forward
    of zeros in eval mode (restored), counting convolution and Dense kernels only, as the Keras model's
    multiply-adds (no BN, activation, pooling or bias). Shapes and multiply-adds come only from here."""
    macs = []

    def count(m, _inputs, out):
        per_position = m.weight.numel() // m.weight.shape[0]       # kernel size x input channels
        macs.append(out[0].numel() * per_position)

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, (nn.Conv3d, nn.Linear))]
    was_training = module.training
    try:
        out = module.eval()(torch.zeros(1, *shape, device=next(module.parameters(), torch.zeros(())).device))
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()
    return tuple(out.shape[1:]), sum(macs)


# ----------------------------------------------------------------------------- streams


class DenseStream3D(nn.Module):
    """One stream: stem -> A3DB attention, dense blocks and transitions in `block_order` -> BN-ReLU-pool;
    (N, H, W, D) maps -> (N, feature_size). Stages are traced as built: `stages[name]` = output shape
    (H, W, D, C) and multiply-adds per sample. Subclasses build the stem and name their arguments."""

    name = ""           # prefix of its stages in the summary and in attention_weights; its forward's keyword
    arguments = {"depth": "depth", "length": "length", "compression": "compression"}

    def __init__(self, input_size: tuple[int, int, int], depth: int, growth_rate: int, compression: float,
                 nb_dense_block: int = 3, block_order: str = "paper", attention: str = "both",
                 attention_activation: str = "sigmoid", attention_block: str = "a3db",
                 bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        layers = (depth - 4) // 3 // 2 if (depth - 4) % 3 == 0 else 0      # DenseNet-BC: (depth - 4) / 3 / 2
        if layers < 1:
            raise ModelArgumentError(self.arguments["depth"], "expected a depth of the form 3N+4 giving at least "
                                     f"one layer per block (N // 2 >= 1: 10, 13, 16, ...), got {depth}")
        self.input_size = tuple(input_size)
        self.stages: OrderedDict[str, dict] = OrderedDict()
        self.features = nn.Sequential()
        self.output_shape = (1, *self.input_size)       # (C, H, W, D) of the last stage's output, one sample
        attend = attention != "none"
        make_attention = ATTENTION_BLOCKS[attention_block]

        for stage_name, module in self.make_stem(2 * growth_rate, bn_momentum):
            self.add(stage_name, module)
        for b in range(1, nb_dense_block + 1):
            if attend and block_order == "paper":
                self.add(f"attention{b}", self.attention_block(make_attention, attention, attention_activation))
            channels = self.output_shape[0]
            self.add(f"denseblock{b}", DenseBlock3D(layers, channels, growth_rate, bn_momentum))
            if b == nb_dense_block:
                break
            channels, out_channels = self.output_shape[0], int(self.output_shape[0] * compression)    # Keras int(): floor
            if out_channels < 1:
                raise ModelArgumentError(self.arguments["compression"], f"{compression} leaves none of the "
                                         f"{channels} channels after transition{b}")
            self.check_poolable(f"transition{b}", nb_dense_block)
            self.add(f"transition{b}", Transition3D(channels, out_channels, bn_momentum))
            if attend and block_order == "official":    # numbered like the paper order's: before dense block b + 1
                self.add(f"attention{b + 1}", self.attention_block(make_attention, attention, attention_activation))
        self.feature_size = self.output_shape[0]
        self.global_pool = GlobalPool(self.feature_size, bn_momentum)

    def attention_block(self, make: type[nn.Module], attention: str, activation: str) -> nn.Module:
        """An attention block for this stage's (H, W, D) maps, given their channel count where it takes `channels`."""
        C, *size = self.output_shape
        channels = {"channels": C} if "channels" in inspect.signature(make).parameters else {}
        return make(tuple(size), attention=attention, activation=activation, **channels)

    def add(self, stage_name: str, module: nn.Module) -> None:
        """Append a stage and record its traced output shape (H, W, D, C) and multiply-adds."""
        self.features.add_module(stage_name, module)
        self.output_shape, macs = trace(module, self.output_shape)
        C, H, W, D = self.output_shape
        self.stages[stage_name] = {"shape": (H, W, D, C), "macs": macs}

    def check_poolable(self, stage: str, nb_dense_block: int) -> None:
        """A 2x2x2 'valid' pooling needs two positions on every axis; else name the argument that is too small."""
        _, H, W, D = self.output_shape
        if min(H, W, D) >= 2:
            return
        argument, value = ("input_width", self.input_size[0]) if min(H, W) < 2 else \
            (self.arguments["length"], self.input_size[2])
        raise ModelArgumentError(argument, f"{value} is too small for {nb_dense_block} dense blocks of the "
                                 f"{self.name} stream (the (H, W, D) map is {(H, W, D)} at {stage}, which halves it)")

    @classmethod
    def from_arguments(cls, a: dict) -> "DenseStream3D":
        """The stream from SSTEmotionNet's keyword arguments `a`, read through the names in `arguments`."""
        n, keys = cls.arguments, ("nb_dense_block", "block_order", "attention", "attention_activation",
                                  "attention_block", "bn_momentum")
        return cls((a["input_width"], a["input_width"], a[n["length"]]), a[n["depth"]], a[n["growth_rate"]],
                   a[n["compression"]], **{k: a[k] for k in keys})

    def make_stem(self, channels: int, bn_momentum: float) -> Iterator[tuple[str, nn.Module]]:
        """Yields (name, module) for the stem's stages."""
        raise NotImplementedError

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """(N, H, W, D) maps -> (N, feature_size)."""
        return self.global_pool(self.features(maps.unsqueeze(1)))     # (N, 1, H, W, D): one input channel


STREAMS: dict[str, Callable[[dict], nn.Module]] = {}
STREAM_SOURCES: dict[str, str] = {}
# The session arrays a stream's maps are built from (preprocessed.Session), and the size that is their depth.
SOURCES = config.SOURCE_LENGTHS


def register_stream(name: str, source: str | None = None) -> Callable:
    """Decorator: `builder(arguments) -> stream module` (arguments: SSTEmotionNet's keyword arguments) makes a
    stream buildable by name (SSTEmotionNet(streams=(..., name)), `[model] streams`). `source`: the session
    array its (N, W, W, D) maps are built from, "de" (D = specInput_length) or "eeg" (D = temInput_length)."""
    if source not in SOURCES:
        raise ValueError(f"register_stream({name!r}): expected source='de' or source='eeg' (the session array "
                         f"its maps are built from), got {source!r}")

    def register(builder):
        STREAMS[name], STREAM_SOURCES[name] = builder, source
        return builder
    return register


class SpatialSpectralStream(DenseStream3D):
    """Spatial-spectral stream on (N, W, W, bands) DE maps; stem Conv(3x3x1), stride 1, no BN."""

    name, source = "spectral", "de"
    arguments = {"depth": "depth_spec", "length": "specInput_length", "compression": "compression_spec",
                 "growth_rate": "gr_spec"}

    def make_stem(self, channels: int, bn_momentum: float):
        yield "stem", Conv3DSame(1, channels, (3, 3, 1), regularized=True)


class SpatialTemporalStream(DenseStream3D):
    """Spatial-temporal stream on (N, W, W, time points) raw-EEG maps.

    Stem Conv(5x5x3), stride (2, 2, 1), 'same'; then BN-ReLU-MaxPool(2x2x2, 'same') ('pool').
    """

    name, source = "temporal", "eeg"
    arguments = {"depth": "depth_tem", "length": "temInput_length", "compression": "compression_tem",
                 "growth_rate": "gr_tem"}

    def make_stem(self, channels: int, bn_momentum: float):
        yield "stem", Conv3DSame(1, channels, (5, 5, 3), (2, 2, 1), regularized=True)
        yield "pool", StemPool(channels, bn_momentum)


register_stream("spectral", source="de")(SpatialSpectralStream.from_arguments)
register_stream("temporal", source="eeg")(SpatialTemporalStream.from_arguments)


# ----------------------------------------------------------------------------- the network

BUILT_IN_STREAMS = ("spectral", "temporal")     # forward's first two positional maps, present or not


class SSTEmotionNet(nn.Module):
    """Streams -> concat -> Dense(50) -> Dropout -> Dense(nb_class) logits. Defaults: the paper's SEED network.

    `streams`: 'both', 'spectral' or 'temporal' (the paper's ablations), or a sequence of stream
    names (`register_stream`) and built stream modules. Input maps are given positionally in the
    order spectral, temporal, then any other stream (None for a stream the network lacks), or by
    stream name: `net(spectral, temporal)`, `net(None, temporal)`, `net(spectral, None, mine)`.
    """

    def __init__(self, nb_class: int = 3, input_width: int = 32, specInput_length: int = 5,
                 temInput_length: int = 25, depth_spec: int = 16, depth_tem: int = 22, gr_spec: int = 12,
                 gr_tem: int = 24, nb_dense_block: int = 3, compression_spec: float = 0.5,
                 compression_tem: float = 1.0, block_order: str = "paper", attention: str = "both",
                 attention_activation: str = "sigmoid", attention_block: str = "a3db", streams="both",
                 dropout: float = 0.5, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        arguments = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        for name in ("nb_class", "input_width", "specInput_length", "temInput_length", "gr_spec", "gr_tem",
                     "nb_dense_block"):
            if not isinstance(arguments[name], int) or arguments[name] < 1:
                raise ModelArgumentError(name, f"expected a positive integer, got {arguments[name]!r}")
        _choice("block_order", block_order, ("paper", "official"))
        _choice("attention", attention, ("both", "spatial", "spectral_temporal", "none"))
        _choice("attention_activation", attention_activation, ("sigmoid", "softmax"))
        _choice("attention_block", attention_block, tuple(ATTENTION_BLOCKS))
        if not 0 <= dropout < 1:
            raise ModelArgumentError("dropout", f"expected a number in [0, 1), got {dropout!r}")
        for name in ("bn_momentum", "compression_spec", "compression_tem"):
            if not 0 < arguments[name] <= 1:
                raise ModelArgumentError(name, f"expected a number in (0, 1], got {arguments[name]!r}")
        if isinstance(streams, str):
            streams = BUILT_IN_STREAMS if streams == "both" else (streams,)
        self.stream_names: list[str] = []
        for stream in streams:
            if isinstance(stream, str):
                _choice("streams", stream, tuple(STREAMS))
                source = STREAM_SOURCES[stream]
                stream = STREAMS[stream](arguments)
                stream.source = getattr(stream, "source", None) or source
            if not stream.name or stream.name in self.stream_names:
                raise ModelArgumentError("streams", f"expected streams with distinct names, got {stream.name!r} twice "
                                         "or unnamed")
            self.add_module(stream.name, stream)
            self.stream_names.append(stream.name)
        if not self.stream_names:
            raise ModelArgumentError("streams", "expected at least one stream")
        for name in [n for n in BUILT_IN_STREAMS if n not in self.stream_names]:    # net.temporal: None if spectral only
            self.register_module(name, None)
        self.input_names = (*BUILT_IN_STREAMS, *(n for n in self.stream_names if n not in BUILT_IN_STREAMS))
        given = arguments["streams"]
        self.streams = given if isinstance(given, str) else "+".join(self.stream_names)     # for the summary
        self.block_order, self.attention, self.input_width = block_order, attention, input_width
        self.feature_size = sum(s.feature_size for s in self.named_streams().values())
        self.head = nn.Sequential(OrderedDict(
            hidden=dense(self.feature_size, HEAD_WIDTH),        # no activation (authors' code)
            dropout=nn.Dropout(dropout),
            classifier=dense(HEAD_WIDTH, nb_class),
        ))

    def named_streams(self) -> OrderedDict[str, nn.Module]:
        return OrderedDict((name, getattr(self, name)) for name in self.stream_names)

    @property
    def sources(self) -> dict[str, str]:
        """{stream name: the session array its maps are built from ("de" or "eeg")}, in concatenation order."""
        return {name: getattr(stream, "source", None) for name, stream in self.named_streams().items()}

    def stream_inputs(self, *maps, **named_maps) -> list[tuple[nn.Module, torch.Tensor]]:
        """(stream, its maps) pairs in concatenation order, each checked against the stream's input size."""
        if len(maps) > len(self.input_names):
            raise ValueError(f"expected at most {len(self.input_names)} positional maps "
                             f"({', '.join(self.input_names)}), got {len(maps)}")
        given = dict(zip(self.input_names, maps))
        for name, x in named_maps.items():
            if name not in self.input_names or given.get(name) is not None:
                raise ValueError(f"{name}: not a stream of this network or given twice ({', '.join(self.input_names)})")
            given[name] = x
        pairs = []
        for name, stream in self.named_streams().items():
            x, size = given.get(name), tuple(stream.input_size)
            if x is None or x.dim() != len(size) + 1 or tuple(x.shape[1:]) != size:
                got = None if x is None else tuple(x.shape)
                raise ValueError(f"{name}: expected (N, {', '.join(map(str, size))}) maps, got {got}")
            pairs.append((stream, x))
        return pairs

    def forward_features(self, *maps, **named_maps) -> torch.Tensor:
        """Maps (see the class docstring) -> (N, feature_size) concatenated stream features."""
        features = [stream(x) for stream, x in self.stream_inputs(*maps, **named_maps)]
        return torch.cat(features, dim=1) if len(features) > 1 else features[0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(N, feature_size) -> (N, nb_class) logits."""
        return self.head(features)

    def forward(self, *maps, **named_maps) -> torch.Tensor:
        return self.forward_head(self.forward_features(*maps, **named_maps))

    @torch.no_grad()
    def attention_weights(self, *maps, **named_maps) -> dict[str, dict]:
        """Attention weights for figures, in eval mode without gradients (the mode is restored).

        Returns {'spectral.attention1': {'spatial': (N, H, W), 'spectral_temporal': (N, D)}, ...} with
        only the parts that exist, for every stage that has a `weights` method (A3DBAttention).
        """
        pairs = self.stream_inputs(*maps, **named_maps)
        was_training = self.training
        self.eval()
        out: dict[str, dict] = {}
        try:
            for stream, x in pairs:
                if not isinstance(stream, DenseStream3D):
                    continue
                x = x.unsqueeze(1)
                for name, stage in stream.features.named_children():
                    if hasattr(stage, "weights"):
                        spatial, depth = stage.weights(x)
                        parts = {"spatial": spatial, "spectral_temporal": depth}
                        out[f"{stream.name}.{name}"] = {k: v for k, v in parts.items() if v is not None}
                    x = stage(x)
        finally:
            self.train(was_training)
        return out

    def stream_stages(self, name: str) -> OrderedDict[str, dict]:
        """{stage: {"shape": (H, W, D, C) or the output shape, "macs": per sample}} of a stream; a stream
        that is not a DenseStream3D is traced as one stage."""
        stream = getattr(self, name)
        if isinstance(stream, DenseStream3D):
            return stream.stages
        shape, macs = trace(stream, stream.input_size)     # (N, H, W, D) maps in: the input size is one sample's shape
        return OrderedDict(stream={"shape": shape, "macs": macs})

    def count_macs(self) -> int:
        """Forward multiply-adds per sample of the Keras model: convolution and Dense kernels only."""
        total = sum(stage["macs"] for name in self.stream_names for stage in self.stream_stages(name).values())
        return total + sum(m.weight.numel() for m in self.head if isinstance(m, nn.Linear))


# ----------------------------------------------------------------------------- from the INI file

def stream_sources(cfg: config.Config) -> dict[str, str]:
    """{stream name: source array} of the network `cfg` builds, without building it (plugins imported)."""
    sst_plugins.import_plugins(cfg.model.plugins, cfg.where("model", "plugins"))
    return {name: STREAM_SOURCES.get(name) for name in config.stream_names(cfg.model.streams)}


def build_model(cfg: config.Config, plugins: bool = True) -> SSTEmotionNet:
    """The network for a config (config.model_arguments maps the INI keys), [model] plugins imported first
    (plugins=False: not, e.g. for a checkpoint's config, whose variants must be registered already). A
    config it cannot build raises one ConfigError naming the file, section and key."""
    if plugins:
        sst_plugins.import_plugins(cfg.model.plugins, cfg.where("model", "plugins"))
    try:
        net = SSTEmotionNet(**config.model_arguments(cfg))
    except ModelArgumentError as e:
        raise config.model_error(cfg, e.argument, e.detail) from None
    for name, stream in net.named_streams().items():    # its maps are built from its source array
        source = getattr(stream, "source", None)
        size = (cfg.data.input_width, cfg.data.input_width, getattr(cfg.data, SOURCES.get(source, ""), None))
        if tuple(stream.input_size) != size:
            raise config.model_error(cfg, "streams", f"stream {name} takes {tuple(stream.input_size)} maps, but its "
                                     f"source {source!r} ('de' or 'eeg', register_stream) gives {size}")
    return net


# ----------------------------------------------------------------------------- the authors' Keras weights, summary


def load_keras_weights(net: SSTEmotionNet, path: str | Path) -> int:
    """The authors' Keras .h5 into an official-order `net`, in place (keras_weights.py); tensors loaded."""
    from sst.models.keras_weights import load_keras_weights as load
    return load(net, path)


def summary(net: SSTEmotionNet) -> str:
    """Variant and input shapes, per-stage output shapes (H, W, D, C), parameters and multiply-adds, totals."""
    streams = net.named_streams()
    rows = [f"variant: block order {net.block_order}, attention {net.attention}, streams {net.streams}",
            "inputs: " + ", ".join(f"{name} (N, {', '.join(f'{n:,}' for n in s.input_size)})"
                                   for name, s in streams.items()),
            f"{'stage':<28}{'output (H, W, D, C)':>22}{'parameters':>14}{'multiply-adds':>16}"]
    for name, stream in streams.items():
        if not isinstance(stream, DenseStream3D):      # a stream of another kind: one row
            info = net.stream_stages(name)["stream"]
            params = sum(p.numel() for p in stream.parameters())
            rows.append(f"{name:<28}{str(info['shape']):>22}{params:>14,}{info['macs']:>16,}")
            continue
        for stage_name, module in stream.features.named_children():
            info = stream.stages[stage_name]
            params = sum(p.numel() for p in module.parameters())
            rows.append(f"{name + '.' + stage_name:<28}{str(info['shape']):>22}{params:>14,}{info['macs']:>16,}")
        params = sum(p.numel() for p in stream.global_pool.parameters())
        rows.append(f"{name + '.global_pool':<28}{str((stream.feature_size,)):>22}{params:>14,}{0:>16,}")
    for name, module in net.head.named_children():
        params = sum(p.numel() for p in module.parameters())
        width = module.out_features if isinstance(module, nn.Linear) else HEAD_WIDTH
        macs = module.weight.numel() if isinstance(module, nn.Linear) else 0
        rows.append(f"{'head.' + name:<28}{str((width,)):>22}{params:>14,}{macs:>16,}")
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    rows += [f"trainable parameters: {trainable}", f"forward multiply-adds per sample: {net.count_macs()}"]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="SEED.ini", help="INI file (default: SEED.ini); only [model] and "
                        "the input sizes are read, so the authors' config/SEED.ini works too")
    config.add_set_argument(parser)
    parser.add_argument("--keras-weights", type=Path, metavar="FILE.h5", help="load the authors' Keras weights "
                        "(.h5) into the official-order network")
    parser.add_argument("--save", type=Path, metavar="FILE.pt", help="with --keras-weights: save the state dict")
    args = cli.refuse_empty_values(parser).parse_args(argv)
    cfg = config.load_config(args.config, args.set, sections=("model",))  # the network needs no paths or training keys
    if args.save:   # written by an atomic rename: an input named there would be lost, not read
        if not args.keras_weights:
            raise errors.UserError("--save goes with --keras-weights")
        fileio.refuse_overwriting(args.save, "--save", [("--keras-weights", args.keras_weights), ("-c", args.config),
                                                        *(("[model] plugins", p) for p in cfg.model.plugins)])
    if args.keras_weights and cfg.model.block_order != "official":
        print(f"block order: official (the authors' code; {args.config} says {cfg.model.block_order})")
        cfg = cfg.replace(model={"block_order": "official"})
    print(summary(net := build_model(cfg)))
    if args.keras_weights:
        print(f"tensors loaded from {args.keras_weights}: {load_keras_weights(net, args.keras_weights)}")
    if args.save:
        with fileio.atomic_path(args.save) as tmp:
            torch.save(net.state_dict(), tmp)
        print(f"state dict saved: {args.save}")
    return 0


if __name__ == "__main__":    # run as the module `model`, the one a plugin's `import model` registers its variants in
    cli.cli_main(__import__("model").main)
