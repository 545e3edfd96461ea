"""CPU training accelerator for model.SSTEmotionNet: the same maths, parameters and state dict, faster.

    net = model.build_model(cfg)
    fast = fastcpu.accelerate(net)       # holds no parameters of its own: net's are trained
    loss = F.cross_entropy(fast(spectral, temporal), labels)     # training mode, CPU tensors
    torch.save(net.state_dict(), ...)    # the definition's checkpoint, whichever ran

`accelerate(net)` returns a callable that, in training mode on CPU tensors, runs the definition's
stages through fused autograd nodes reading and updating the definition's own parameters and BN
buffers; in eval mode, on CUDA, or for a stage it does not know (a module that is not exactly one
of model.py's classes, e.g. a stream or attention variant of your own) it runs the definition
itself. run.py uses it for CPU training only. tests/training/test_fastcpu.py holds it to the definition in
float64: loss, every gradient and running statistic over two Adam steps, both block orders, ablations.

Where the speed comes from, without changing the maths:
- inside a stream the tensors are (N, D, H, W, C) contiguous (channels last), so a 1x1x1 convolution
  is one matrix product over (N*D*H*W, C) rows, a 3x3x1 convolution a 2D convolution with the depth
  folded into the batch and a 1x1x3 convolution a 2D convolution over (D, H*W);
- a channel's batch statistics are the same for every layer of a dense block that normalises it:
  computed once per channel, passed to the next layers, the transition and the final BN;
- a dense block is one autograd node (`_DenseBlockFunction`): its layers read prefixes of one
  features buffer (no concatenation copies) and each BN-ReLU-Conv(1x1x1)-BN-ReLU folds the second BN
  into the 1x1x1 kernel, its statistics taken from a small Gram matrix (a batched product over row
  blocks, which MKL spreads over the threads; `_inner_products`);
- A3DB attention's channel mean and scaling have their own gradients (`_ChannelMean`,
  `_ChannelScale`): no full-size temporaries for the broadcast mean gradient or sum_c grad * x;
- BN backward uses column sums and fused multiply-adds (ATen's kernel does not gain from threads);
- a transition average-pools before its 1x1x1 convolution (both linear, they commute): 1/8 of the
  convolution's positions; BN-ReLU-MaxPool of the temporal stem normalises only the pooled values
  (relu(s x + t) is monotonic in x);
- large buffers are recycled between steps and ATen's large temporaries kept under 32 MiB
  (`_Workspace`): glibc returns bigger blocks to the kernel and page-faults them in again each step
  (what ATen and oneDNN still allocate faults too: run.py, training on the CPU, also calls
  `utils.keep_freed_memory`).
Backward overwrites saved activations it no longer needs, so backpropagating twice through one graph
(retain_graph=True) raises autograd's "modified by an inplace operation" error, and the custom
backwards are once_differentiable (create_graph=True fails): use the definition for such uses.
Under torch.autocast (CPU or CUDA) the fused nodes run in float32, their inputs cast.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

import model
from model import BN_EPSILON
from sst import runtime

ROW_BLOCK = 1 << 21     # elements per block of rows when a per-channel reduction needs a temporary
MMAP_BYTES = 32 << 20   # glibc's malloc maps blocks this large afresh (page faults) on every allocation
_AUTOCAST_DEVICES = ("cuda", "cpu")


def _float32_under_autocast(forward):
    for device_type in _AUTOCAST_DEVICES:
        forward = torch.amp.custom_fwd(forward, device_type=device_type, cast_inputs=torch.float32)
    return forward


def _autocast_as_forward(backward):
    for device_type in _AUTOCAST_DEVICES:
        backward = torch.amp.custom_bwd(backward, device_type=device_type)
    return backward


# ----------------------------------------------------------------------------- reductions


def _channels_last_4d(x: torch.Tensor) -> torch.Tensor:
    """(..., C) contiguous -> (1, C, P, 1) view, channels-last, so ATen takes its vectorised NHWC path."""
    return x.view(1, -1, 1, x.shape[-1]).permute(0, 3, 1, 2)


def _column_sum(flat: torch.Tensor) -> torch.Tensor:
    """(P, C) -> (C,) sums; rows are regrouped 16 at a time because a narrow C vectorises poorly."""
    P, C = flat.shape
    if P % 16 or not flat.is_contiguous():
        return flat.sum(0)
    return flat.view(P // 16, 16 * C).sum(0).view(16, C).sum(0)


def _samples_per_chunk(x: torch.Tensor) -> int:
    """Samples (along dim 0) per chunk such that a chunk of x stays below MMAP_BYTES."""
    return max(1, MMAP_BYTES // (x[0].numel() * x.element_size()))


def _block_rows(flat: torch.Tensor) -> int:
    """Rows per block (a multiple of 16, see _column_sum) whose temporary of ROW_BLOCK floats stays in cache."""
    return max(16, ROW_BLOCK // flat.shape[1] // 16 * 16)


def _column_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(P, C), (P, C) -> (C,) sums of a * b, over blocks of rows whose products stay in cache."""
    return sum(_column_sum(ra * rb) for ra, rb in zip(a.split(_block_rows(a)), b.split(_block_rows(b))))


def _inner_products(a: torch.Tensor, b: torch.Tensor, parts: int = 4) -> torch.Tensor:
    """a.T @ b for tall (P, m) and (P, n) matrices, as a batch of `parts` row blocks summed.

    MKL runs a single tall a.T @ b (a Gram matrix especially) on one thread; the batched product
    uses every thread (measured on 2 cores: 2x faster for the Gram matrices of SEED's first
    spectral dense block, 1.2-1.4x for the products of its backward). Same dtype throughout.
    """
    P = a.shape[0]
    rows = P // parts
    if rows < 1024:
        return a.t() @ b
    split = rows * parts
    out = torch.bmm(a[:split].unflatten(0, (parts, rows)).transpose(1, 2), b[:split].unflatten(0, (parts, rows))).sum(0)
    return out.addmm_(a[split:].t(), b[split:]) if split < P else out


def batch_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel batch mean and biased variance of channels-last x (..., C); no autograd.

    Two passes (mean, then centred squares) keep float32 accurate when |mean| >> std; the squares
    are taken over blocks of rows that stay in cache instead of a full-size temporary.
    """
    with torch.no_grad():
        flat = x.reshape(-1, x.shape[-1])
        flat = flat.to(torch.promote_types(flat.dtype, torch.float32))   # float32 statistics of a bf16 x (autocast)
        P = flat.shape[0]
        mean = _column_sum(flat) / P
        var = sum(_column_sum(F.mse_loss(rows, mean.expand_as(rows), reduction="none"))
                  for rows in flat.split(_block_rows(flat))) / P
    return mean, var


@torch.no_grad()
def track(bn: nn.BatchNorm3d, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """Update bn's running statistics with a batch's mean and biased variance over `count` values, as
    nn.BatchNorm3d does in training (unbiased variance, `bn.momentum` weighing the batch)."""
    bn.running_mean.lerp_(mean, bn.momentum)
    bn.running_var.lerp_(var * (count / max(count - 1, 1)), bn.momentum)
    bn.num_batches_tracked.add_(1)


def _batch_norm_backward(grad_z: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor,
                         invstd: torch.Tensor, out: torch.Tensor | None = None):
    """Training-mode batch-norm gradient on (P, C) tensors: (grad_x, grad_weight, grad_bias).

    grad_z is the gradient at the normalised output; grad_x is written to `out`, by default over
    grad_z (a temporary of the caller). Written with column sums and fused multiply-adds because
    ATen's channels-last kernel gets no faster (slower, measured) with a second thread; these do.
    sum_p g (x - mean) is taken as sum_p g x - mean sum_p g: float32 holds unless |mean| >> std(x).
    """
    P = x.shape[0]
    grad_bias = _column_sum(grad_z)
    grad_weight = invstd * (_column_dot(grad_z, x) - mean * grad_bias)      # sum_p g * normalised x
    scale = weight * invstd
    slope = -scale * invstd * grad_weight / P
    grad_x = torch.addcmul(-scale * grad_bias / P - slope * mean, grad_z, scale, out=grad_z if out is None else out)
    return grad_x.addcmul_(x, slope), grad_weight, grad_bias


class _BatchNormReLUFunction(torch.autograd.Function):
    """relu(batch_norm(x)) with given batch statistics, as one autograd node.

    The backward is the full training-mode batch-norm gradient (it accounts for the statistics
    depending on x), so the statistics may be computed outside, once per channel.
    """

    @staticmethod
    @_float32_under_autocast
    def forward(ctx, x, weight, bias, mean, var):
        y4 = F.batch_norm(_channels_last_4d(x), mean, var, weight, bias, training=False, eps=BN_EPSILON)
        ctx.save_for_backward(x, y4.clamp_min_(0), weight, mean, torch.rsqrt(var + BN_EPSILON))
        return y4.permute(0, 2, 3, 1).view(x.shape)

    @staticmethod
    @once_differentiable
    @_autocast_as_forward
    def backward(ctx, grad_y):
        x, y4, weight, mean, invstd = ctx.saved_tensors
        C = x.shape[-1]
        y = y4.permute(0, 2, 3, 1).view(-1, C)
        grad_z = torch.ops.aten.threshold_backward(grad_y.reshape(-1, C), y, 0)
        grad_x, grad_weight, grad_bias = _batch_norm_backward(grad_z, x.view(-1, C), weight, mean, invstd)
        return grad_x.view(x.shape), grad_weight, grad_bias, None, None


def bn_relu(bn: nn.BatchNorm3d, x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Training-mode relu(bn(x)) on channels-last x (..., C), with x's batch statistics if known."""
    x = x.contiguous()
    mean, var = stats if stats is not None else batch_stats(x)
    track(bn, mean, var, x.numel() // x.shape[-1])
    return _BatchNormReLUFunction.apply(x, bn.weight, bn.bias, mean, var)


class _Workspace:
    """Large buffers that a training-mode autograd node reuses from one step to the next.

    glibc's malloc gives every block of 32 MiB or more back to the kernel when it is freed, so each
    step would page-fault its large activations in again (measured: ~15 ms per 63 MB, a fifth of a
    training step). A node starts a generation in its forward (`begin`), takes its buffers with `get`
    and gives them back at the end of its backward (`release`). A forward that finds the last
    generation unreleased (its graph not yet backpropagated, or dropped) starts over with fresh
    buffers, so two graphs never share memory; a graph whose buffers were reused and that is then
    backpropagated a second time (retain_graph=True) fails on autograd's version check. Not for
    concurrent forwards from several threads.
    """

    def __init__(self):
        self.buffers: dict[str, torch.Tensor] = {}
        self.generation = 0
        self.released = False

    def begin(self) -> int:
        if not self.released:
            self.buffers = {}       # still in use by a graph, which keeps them alive as long as it needs them
        self.released = False
        self.generation += 1
        return self.generation

    def get(self, name: str, numel: int, like: torch.Tensor, on_new=None) -> torch.Tensor:
        """A flat buffer of at least `numel` elements, dtype and device of `like`; `on_new(buffer)` runs
        when it is newly allocated (to set what every later use finds unchanged, such as a column of ones)."""
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self.buffers[name] = like.new_empty(numel)
            if on_new is not None:
                on_new(buffer)
        return buffer[:numel]

    def release(self, generation: int) -> None:
        if generation == self.generation:
            self.released = True


# ----------------------------------------------------------------------------- convolutions, channels last


def conv_kind(conv: model.Conv3DSame) -> str:
    """The cheapest exact formulation of a Conv3DSame on (N, D, H, W, C): 'pointwise' (a matrix
    product), 'spatial' (kH x kW x 1: 2D, depth folded into the batch), 'depth' (1 x 1 x kD: 2D over
    (D, H*W)) or 'general' (a 3D convolution after explicit Keras padding)."""
    kH, kW, kD = conv.kernel_size
    if not conv.symmetric:
        return "general"
    return "pointwise" if kH == kW == kD == 1 else "spatial" if kD == 1 else "depth" if kH == kW == 1 else "general"


def _images(conv: model.Conv3DSame, rows: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """(N*D*H*W, C) channels-last rows -> the channels-last image batch of the 2D convolution."""
    N, D, H, W = shape
    if conv_kind(conv) == "spatial":
        return rows.view(N * D, H, W, -1).permute(0, 3, 1, 2)      # (N*D, C, H, W)
    return rows.view(N, D, H * W, -1).permute(0, 3, 1, 2)          # (N, C, D, H*W)


def _kernel_2d(conv: model.Conv3DSame, weight: torch.Tensor) -> torch.Tensor:
    kH, kW, kD = conv.kernel_size
    return weight.reshape(conv.out_channels, conv.in_channels, *((kH, kW) if conv_kind(conv) == "spatial" else (kD, 1)))


def _padding_2d(conv: model.Conv3DSame) -> list[int]:
    kH, kW, kD = conv.kernel_size
    return [kH // 2, kW // 2] if conv_kind(conv) == "spatial" else [kD // 2, 0]


def conv2d(conv: model.Conv3DSame, rows: torch.Tensor, shape: tuple[int, int, int, int],
           weight: torch.Tensor) -> torch.Tensor:
    """A 'spatial' or 'depth' convolution of (N*D*H*W, in) rows of an (N, D, H, W) grid -> (N*D*H*W, out)."""
    y = F.conv2d(_images(conv, rows, shape), _kernel_2d(conv, weight), padding=_padding_2d(conv))
    return y.permute(0, 2, 3, 1).reshape(-1, conv.out_channels)   # channels-last out: a view


def conv2d_backward(conv: model.Conv3DSame, grad: torch.Tensor, rows: torch.Tensor,
                    shape: tuple[int, int, int, int], weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (w.r.t. rows (N*D*H*W, in), w.r.t. weight) of conv2d, given grad (N*D*H*W, out)."""
    grad_images, grad_weight, _ = torch.ops.aten.convolution_backward(
        _images(conv, grad, shape), _images(conv, rows, shape), _kernel_2d(conv, weight), None, [1, 1],
        _padding_2d(conv), [1, 1], False, [0, 0], 1, [True, True, False])
    return grad_images.permute(0, 2, 3, 1).reshape(-1, conv.in_channels), grad_weight.reshape(weight.shape)


def _keras_padding(conv: model.Conv3DSame, size: tuple[int, int, int]) -> list[tuple[int, int]]:
    """Keras 'same' padding (before, after) along H, W, D of an (H, W, D) map."""
    return [model.same_padding(n, k, s)[1:] for n, k, s in zip(size, conv.kernel_size, conv.stride)]


def _pad(conv: model.Conv3DSame, x: torch.Tensor) -> torch.Tensor:
    """(N, D, H, W, C) -> zero-padded for 'same', possibly more at the end than at the start."""
    N, D, H, W, C = x.shape
    (top, bottom), (left, right), (front, back) = _keras_padding(conv, (H, W, D))
    return F.pad(x, (0, 0, left, right, top, bottom, front, back))


def _conv3d(conv: model.Conv3DSame, padded: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Convolution of padded (N, D, H, W, in) maps -> (N, D', H', W', out), as a channels-last Conv3d."""
    sH, sW, sD = conv.stride
    y = F.conv3d(padded.permute(0, 4, 1, 2, 3), weight.permute(0, 1, 4, 2, 3), stride=(sD, sH, sW))
    return y.permute(0, 2, 3, 4, 1)


class _Conv3DFunction(torch.autograd.Function):
    """A 'general' Conv3DSame (the spatial-temporal stem) in CPU training, a few samples at a time.

    Its output (for SEED.ini 78 MB per 64 samples) lives in the convolution's _Workspace; ATen's
    per-chunk outputs and gradients stay below glibc's mmap threshold.
    """

    @staticmethod
    @_float32_under_autocast
    def forward(ctx, conv, workspace, x, weight):
        N, D, H, W, C = x.shape
        Ho, Wo, Do = (model.same_padding(n, k, s)[0] for n, k, s in zip((H, W, D), conv.kernel_size, conv.stride))
        padded = _pad(conv, x)
        generation = workspace.begin()
        y = workspace.get("y", N * Do * Ho * Wo * conv.out_channels, x).view(N, Do, Ho, Wo, -1)
        samples = _samples_per_chunk(y)
        for start in range(0, N, samples):
            y[start:start + samples] = _conv3d(conv, padded[start:start + samples], weight)
        ctx.conv, ctx.workspace, ctx.generation, ctx.input_shape = conv, workspace, generation, x.shape
        ctx.save_for_backward(padded, weight)
        return y

    @staticmethod
    @once_differentiable
    @_autocast_as_forward
    def backward(ctx, grad_y):
        padded, weight = ctx.saved_tensors
        conv, N = ctx.conv, padded.shape[0]
        grad_padded = torch.zeros_like(padded) if ctx.needs_input_grad[2] else None
        grad_weight = torch.zeros_like(weight)
        samples = _samples_per_chunk(grad_y)
        sH, sW, sD = conv.stride
        for start in range(0, N, samples):
            part = slice(start, start + samples)
            grad_input, grad_kernel, _ = torch.ops.aten.convolution_backward(
                grad_y[part].permute(0, 4, 1, 2, 3), padded[part].permute(0, 4, 1, 2, 3), weight.permute(0, 1, 4, 2, 3),
                None, [sD, sH, sW], [0, 0, 0], [1, 1, 1], False, [0, 0, 0], 1, [grad_padded is not None, True, False])
            grad_weight += grad_kernel.permute(0, 1, 3, 4, 2)
            if grad_padded is not None:
                grad_padded[part] = grad_input.permute(0, 2, 3, 4, 1)
        ctx.workspace.release(ctx.generation)
        grad_x = None
        if grad_padded is not None:     # drop the padding
            N, D, H, W, C = ctx.input_shape
            (top, _), (left, _), (front, _) = _keras_padding(conv, (H, W, D))
            grad_x = grad_padded[:, front:front + D, top:top + H, left:left + W].contiguous()
        return None, None, grad_x, grad_weight


# ----------------------------------------------------------------------------- dense block


def _bottleneck_forward(x, mean1, var1, weight1, bias1, kernel, weight2, bias2, z1, y):
    """Training-mode BN-ReLU-Conv(1x1x1)-BN-ReLU on (P, C) rows, into the buffers z1 (P, C+1) and y (P, M).

    z = relu(bn1(x)) is written next to a trailing column of ones (set once, when z1 is allocated).
    bn2's batch statistics follow from z without computing the convolution b = z @ kernel.T:
    mean(b) = kernel mean(z) and
    var(b) = diag(kernel cov(z) kernel.T), cov(z) from the (C+1)x(C+1) Gram matrix of [z, 1]; bn2
    then folds into the kernel and y = relu([z, 1] @ [kernel * s, t].T) is one matrix product.
    Returns (mean2, biased var2, what _bottleneck_backward needs).
    """
    P, C = x.shape
    invstd1 = torch.rsqrt(var1 + BN_EPSILON)
    scale1 = weight1 * invstd1
    z = z1[:, :C]
    torch.addcmul(bias1 - mean1 * scale1, x, scale1, out=z).clamp_min_(0)
    gram = _inner_products(z1, z1)                                  # (C+1, C+1): [z, 1]^T [z, 1]
    mean_z = gram[C, :C] / P
    cov_z = gram[:C, :C] / P - torch.outer(mean_z, mean_z)
    mean2 = kernel @ mean_z                                         # (M,)
    var2 = ((kernel @ cov_z) * kernel).sum(1).clamp_min_(0)         # (M,)
    invstd2 = torch.rsqrt(var2 + BN_EPSILON)
    scale2 = weight2 * invstd2
    folded = torch.cat([kernel * scale2[:, None], (bias2 - mean2 * scale2)[:, None]], dim=1)   # (M, C+1)
    torch.mm(z1, folded.t(), out=y).clamp_min_(0)
    return mean2, var2, (mean1, invstd1, weight1, mean_z, cov_z, mean2, invstd2, scale2)


def _bottleneck_backward(grad_o, x, z1, saved, kernel, grad_x):
    """Gradients of _bottleneck_forward: (grad_x, grad_weight1, grad_bias1, grad_kernel, grad_weight2, grad_bias2).

    grad_o (P, M) is the gradient at bn2's output (through the final ReLU); grad_x (P, C) the output
    buffer. bn2's exact training-mode gradient, rewritten in the small matrices of the forward; then bn1's.
    """
    mean1, invstd1, weight1, mean_z, cov_z, mean2, invstd2, scale2 = saved
    P, C = x.shape
    z = z1[:, :C]
    sums = _inner_products(grad_o, z1)                              # (M, C+1): [sum_p g z, sum_p g]
    grad_oz, grad_bias2 = sums[:, :C], sums[:, C]
    grad_weight2 = invstd2 * ((grad_oz * kernel).sum(1) - mean2 * grad_bias2)          # sum_p g * normalised b
    k = grad_weight2 * invstd2
    grad_kernel = scale2[:, None] * (grad_oz - torch.outer(grad_bias2, mean_z) - k[:, None] * (kernel @ cov_z))
    # dL/dz = g @ (s W) - z @ (W.T diag(s k / P) W) + c: bn2's backward, its two mean terms as a (C+1, C) product
    quad = -(kernel.t() * (scale2 * k / P)) @ kernel
    shift = ((scale2 * k * mean2 - scale2 * grad_bias2) / P) @ kernel
    torch.mm(grad_o, kernel * scale2[:, None], out=grad_x)
    grad_x.addmm_(z1, torch.cat([quad, shift[None]], dim=0))
    torch.ops.aten.threshold_backward.grad_input(grad_x, z, 0, grad_input=grad_x)      # bn1's ReLU
    grad_x, grad_weight1, grad_bias1 = _batch_norm_backward(grad_x, x, weight1, mean1, invstd1)
    return grad_x, grad_weight1, grad_bias1, grad_kernel, grad_weight2, grad_bias2


class _DenseBlockFunction(torch.autograd.Function):
    """A model.DenseBlock3D in training mode as one autograd node, on the block's _Workspace.

    The layers' inputs are prefixes of one features buffer (no concatenation copies), their
    gradients are accumulated in place, and each layer runs _bottleneck_forward, then its 3x3x1
    and 1x1x3 convolutions as oneDNN 2D convolutions on channels-last views (ATen's backward).
    forward(block, workspace, x (N, D, H, W, C0), batch mean and var of x, the layers' parameters in
    DenseLayer3D.parameters() order) -> (features (N, D, H, W, C), their batch mean and var).
    """

    @staticmethod
    @_float32_under_autocast
    def forward(ctx, block, workspace, x, mean, var, *params):
        N, D, H, W, C0 = x.shape
        P, k = N * D * H * W, block.growth_rate
        generation = workspace.begin()
        features = workspace.get("features", P * block.out_channels, x).view(P, block.out_channels)
        features[:, :C0].copy_(x.reshape(P, C0))
        means, variances, saved = [mean], [var], []
        for i, layer in enumerate(block.layers):
            weight1, bias1, kernel1, weight2, bias2, kernel2, kernel3 = params[7 * i:7 * i + 7]
            C, M = C0 + i * k, kernel1.shape[0]
            mean1, var1 = torch.cat(means), torch.cat(variances)
            z1 = workspace.get(f"z{i}", P * (C + 1), x, lambda b, C=C: b.view(-1, C + 1)[:, C].fill_(1)).view(P, C + 1)
            y = workspace.get(f"y{i}", P * M, x).view(P, M)
            mean2, var2, bottleneck = _bottleneck_forward(
                features[:, :C], mean1, var1, weight1, bias1, kernel1.reshape(M, C), weight2, bias2, z1, y)
            t = conv2d(layer.conv2, y, (N, D, H, W), kernel2)         # (P, k)
            u = conv2d(layer.conv3, t, (N, D, H, W), kernel3)
            features[:, C:C + k].copy_(u)
            new_mean, new_var = batch_stats(u)
            means.append(new_mean)
            variances.append(new_var)
            track(layer.norm1, mean1, var1, P)
            track(layer.norm2, mean2, var2, P)
            saved += [z1, y, t, *bottleneck]
        ctx.block, ctx.workspace, ctx.generation, ctx.shape = block, workspace, generation, (N, D, H, W)
        ctx.save_for_backward(features, *params, *saved)
        mean, var = torch.cat(means), torch.cat(variances)
        ctx.mark_non_differentiable(mean, var)
        return features.view(N, D, H, W, -1), mean, var

    @staticmethod
    @once_differentiable
    @_autocast_as_forward
    def backward(ctx, grad_features, _grad_mean, _grad_var):
        block, workspace, (N, D, H, W) = ctx.block, ctx.workspace, ctx.shape       # P = N*D*H*W rows
        features, *tensors = ctx.saved_tensors
        params, saved = tensors[:7 * len(block.layers)], tensors[7 * len(block.layers):]
        P, k = N * D * H * W, block.growth_rate
        C0 = block.out_channels - len(block.layers) * k
        grad = grad_features.reshape(P, -1)     # gradient of features[:, :C + k], read only
        grads = [None] * len(params)
        for i in reversed(range(len(block.layers))):
            layer = block.layers[i]
            kernel1, kernel2, kernel3 = params[7 * i + 2], params[7 * i + 5], params[7 * i + 6]
            z1, y, t, *bottleneck = saved[11 * i:11 * i + 11]
            C, M = C0 + i * k, kernel1.shape[0]
            grad_u = grad[:, C:C + k].contiguous()
            grad_t, grads[7 * i + 6] = conv2d_backward(layer.conv3, grad_u, t, (N, D, H, W), kernel3)
            # the 3x3x1 convolution's input gradient (P, M), masked by the ReLU and written over y (its
            # last use), a few samples at a time: ATen's temporaries stay below glibc's mmap threshold
            grads[7 * i + 5] = torch.zeros_like(kernel2)
            step = _samples_per_chunk(y.view(N, -1)) * D * H * W      # rows of whole samples
            for start in range(0, P, step):
                part = slice(start, min(start + step, P))
                n = (part.stop - start) // (D * H * W)
                grad_y, grad_kernel2 = conv2d_backward(layer.conv2, grad_t[part], y[part], (n, D, H, W), kernel2)
                grads[7 * i + 5] += grad_kernel2
                torch.ops.aten.threshold_backward.grad_input(grad_y, y[part], 0, grad_input=y[part])
            # the first layer's input gradient leaves the node: fresh memory; the others alternate two buffers
            out = features.new_empty(P, C) if i == 0 else workspace.get(f"grad{i % 2}", P * C, features).view(P, C)
            grad_x, grads[7 * i], grads[7 * i + 1], grad_kernel1, grads[7 * i + 3], grads[7 * i + 4] = \
                _bottleneck_backward(y, features[:, :C], z1, bottleneck, kernel1.reshape(M, C), out)
            grads[7 * i + 2] = grad_kernel1.view(kernel1.shape)
            grad = grad_x.add_(grad[:, :C])        # plus what reached these channels through the concatenation
        workspace.release(ctx.generation)
        return (None, None, grad.view(N, D, H, W, C0), None, None, *grads)


# ----------------------------------------------------------------------------- transition, stem pool


def avg_pool_2x2x2(x: torch.Tensor) -> torch.Tensor:
    """AveragePooling3D((2, 2, 2)), 'valid', on (N, D, H, W, C) -> (N, D//2, H//2, W//2, C).

    Odd sizes lose their last row. Summing strided halves axis by axis is several times faster on
    the CPU than a reduction over the 2x2x2 windows or avg_pool3d on channels-last tensors.
    """
    N, D, H, W, C = x.shape
    D2, H2, W2 = D // 2, H // 2, W // 2
    windows = x[:, :2 * D2, :2 * H2, :2 * W2].view(N, D2, 2, H2, 2, W2, 2, C)
    y = windows[:, :, 0] + windows[:, :, 1]                 # (N, D2, H2, 2, W2, 2, C)
    y = y[:, :, :, 0] + y[:, :, :, 1]                       # (N, D2, H2, W2, 2, C)
    return (y[:, :, :, :, 0] + y[:, :, :, :, 1]).mul_(0.125)


class _BatchNormReLUPoolFunction(torch.autograd.Function):
    """avg_pool_2x2x2(relu(batch_norm(x))) with given batch statistics, as one autograd node.

    The full-resolution BN-ReLU output lives in the transition's _Workspace, and so does the input
    gradient (read by the dense block's backward right after) unless autograd would keep it: for a
    leaf or a tensor that retains its grad it is fresh memory. The backward feeds the pooled gradient
    to the ReLU mask as a broadcast view: the full-resolution gradient of the pooling is never written.
    """

    @staticmethod
    @_float32_under_autocast
    def forward(ctx, workspace, x, weight, bias, mean, var):
        C = x.shape[-1]
        generation = workspace.begin()
        y = workspace.get("y", x.numel(), x).view(x.shape)
        invstd = torch.rsqrt(var + BN_EPSILON)
        scale = weight * invstd
        torch.addcmul(bias - mean * scale, x.view(-1, C), scale, out=y.view(-1, C)).clamp_min_(0)
        ctx.workspace, ctx.generation = workspace, generation
        ctx.grad_kept = x.is_leaf or x.retains_grad
        ctx.save_for_backward(x, y, weight, mean, invstd)
        return avg_pool_2x2x2(y)

    @staticmethod
    @once_differentiable
    @_autocast_as_forward
    def backward(ctx, grad_pooled):
        x, grad_z, weight, mean, invstd = ctx.saved_tensors     # grad_z: written over y, its last use
        N, D, H, W, C = x.shape
        D2, H2, W2 = D // 2, H // 2, W // 2
        grad_z[:, 2 * D2:] = 0                  # rows that 'valid' pooling drops get no gradient
        grad_z[:, :, 2 * H2:] = 0
        grad_z[:, :, :, 2 * W2:] = 0
        shape8 = (N, D2, 2, H2, 2, W2, 2, C)
        grad_windows = (grad_pooled * 0.125)[:, :, None, :, None, :, None, :].expand(shape8)
        windows = grad_z[:, :2 * D2, :2 * H2, :2 * W2].view(shape8)
        torch.ops.aten.threshold_backward.grad_input(grad_windows, windows, 0, grad_input=windows)
        out = torch.empty_like(x) if ctx.grad_kept else ctx.workspace.get("grad", x.numel(), x)
        grad_x, grad_weight, grad_bias = _batch_norm_backward(
            grad_z.view(-1, C), x.view(-1, C), weight, mean, invstd, out=out.view(-1, C))
        ctx.workspace.release(ctx.generation)
        return None, grad_x.view(x.shape), grad_weight, grad_bias, None, None


def max_pool_2x2x2_same(x: torch.Tensor, return_indices: bool = False):
    """MaxPooling3D((2, 2, 2), padding='same') on (N, D, H, W, C) -> (N, ceil(D/2), ..., C).

    With return_indices, also the argmax as an index into each (n, c) plane of D*H*W positions.
    """
    out = F.max_pool3d(x.permute(0, 4, 1, 2, 3), kernel_size=2, ceil_mode=True, return_indices=return_indices)
    if return_indices:
        return out[0].permute(0, 2, 3, 4, 1), out[1].permute(0, 2, 3, 4, 1)
    return out.permute(0, 2, 3, 4, 1)


class _BatchNormReLUMaxPoolFunction(torch.autograd.Function):
    """max_pool_2x2x2_same(relu(batch_norm(x))) with given batch statistics, as one autograd node.

    relu(s x + t) is monotonic in x, so its window maximum is relu(s max(x) + t) for s >= 0 (min(x)
    for s < 0): only the pooled eighth is normalised. In the backward the gradient of the batch
    statistics is dense (an affine function of x, written in one pass) and the rest goes to the
    argmax positions.
    """

    @staticmethod
    @_float32_under_autocast
    def forward(ctx, x, weight, bias, mean, var):
        invstd = torch.rsqrt(var + BN_EPSILON)
        scale = weight * invstd
        pooled, index = max_pool_2x2x2_same(x, return_indices=True)
        negative = scale < 0
        if negative.any():
            low, low_index = max_pool_2x2x2_same(-x, return_indices=True)
            pooled, index = torch.where(negative, -low, pooled), torch.where(negative, low_index, index)
        y = torch.addcmul(bias - mean * scale, pooled, scale).clamp_min_(0)     # (N, D', H', W', C)
        ctx.save_for_backward(x, pooled, index, y, mean, invstd, scale)
        return y

    @staticmethod
    @once_differentiable
    @_autocast_as_forward
    def backward(ctx, grad_y):
        x, pooled, index, y, mean, invstd, scale = ctx.saved_tensors
        N, D, H, W, C = x.shape
        P = x.numel() // C
        grad_o = torch.ops.aten.threshold_backward(grad_y, y, 0).reshape(-1, C)   # at bn's output, argmax only
        grad_bias = grad_o.sum(0)
        grad_weight = ((grad_o * (pooled.reshape(-1, C) - mean)).sum(0)) * invstd
        slope = -scale * invstd * grad_weight / P
        # the statistics' share, dense and affine in x, written over x (its last use)
        grad_x = torch.addcmul(-scale * grad_bias / P - slope * mean, x, slope, out=x)
        grad_x.permute(0, 4, 1, 2, 3).view(N, C, -1).scatter_add_(
            2, index.permute(0, 4, 1, 2, 3).reshape(N, C, -1),
            (grad_o * scale).view(y.shape).permute(0, 4, 1, 2, 3).reshape(N, C, -1))
        return grad_x, grad_weight, grad_bias, None, None


# ----------------------------------------------------------------------------- attention


class _ChannelMean(torch.autograd.Function):
    """x.mean(-1) whose gradient is a broadcast view: autograd adds it to x's other gradient in one
    pass instead of first writing the full-size expanded gradient (ATen's MeanBackward)."""

    @staticmethod
    def forward(ctx, x):
        ctx.channels = x.shape[-1]
        return x.mean(-1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        return (grad / ctx.channels).unsqueeze(-1).expand(*grad.shape, ctx.channels)


class _ChannelScale(torch.autograd.Function):
    """x * scale for channels-last x (..., C) and scale (..., 1), both contiguous; the gradient of
    scale, sum over c of grad * x, is a batch of row dot products (no full-size temporary)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x, scale)
        return x * scale

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, scale = ctx.saved_tensors
        C = x.shape[-1]
        grad = grad.contiguous()
        grad_x = grad * scale if ctx.needs_input_grad[0] else None
        grad_scale = torch.bmm(grad.view(-1, 1, C), x.view(-1, C, 1)).view(scale.shape)
        return grad_x, grad_scale


def attention(stage: model.A3DBAttention, x: torch.Tensor) -> torch.Tensor:
    """A3DBAttention.forward on channels-last (N, D, H, W, C), with the stage's own Dense layers."""
    N, D, H, W, C = x.shape
    mean = _ChannelMean.apply(x) if x.requires_grad else x.mean(-1)        # (N, D, H, W)
    scale = x.new_ones(())
    if stage.spatial is not None:
        scale = scale * stage.activate(stage.spatial(mean.mean(1).view(N, H * W))).view(N, 1, H, W, 1)
    if stage.spectral_temporal is not None:
        scale = scale * stage.activate(stage.spectral_temporal(mean.mean((2, 3)))).view(N, D, 1, 1, 1)
    if not x.requires_grad:
        return x * scale
    return _ChannelScale.apply(x.contiguous(), scale.expand(N, D, H, W, 1).contiguous())


# ----------------------------------------------------------------------------- the accelerator


def _is_standard_bn(bn: nn.Module) -> bool:
    """A BN the fused nodes compute exactly: model.py's, training (not frozen), Keras's epsilon, a momentum."""
    return (type(bn) is nn.BatchNorm3d and bn.training and bn.affine and bn.track_running_stats
            and bn.momentum is not None and bn.eps == BN_EPSILON)


class FastCPUTraining:
    """Training-mode forward of an SSTEmotionNet on the CPU through fused nodes; see the module docstring.

    Holds only workspaces (reused buffers), keyed by the definition's modules; call it as the network.
    """

    def __init__(self, net: model.SSTEmotionNet):
        self.net = net
        self.workspaces: dict[nn.Module, _Workspace] = {}

    def workspace(self, module: nn.Module) -> _Workspace:
        if module not in self.workspaces:
            self.workspaces[module] = _Workspace()
        return self.workspaces[module]

    def __call__(self, *maps, **named_maps) -> torch.Tensor:
        net = self.net
        given = [x for x in (*maps, *named_maps.values()) if x is not None]
        own_forward = (type(net).forward is not model.SSTEmotionNet.forward
                       or type(net).forward_features is not model.SSTEmotionNet.forward_features)
        if not net.training or own_forward or any(x.device.type != "cpu" for x in given):
            return net(*maps, **named_maps)
        features = [self.stream(stream, x) for stream, x in net.stream_inputs(*maps, **named_maps)]
        return net.forward_head(torch.cat(features, dim=1) if len(features) > 1 else features[0])

    def stream(self, stream: nn.Module, maps: torch.Tensor) -> torch.Tensor:
        """(N, H, W, D) maps -> (N, feature_size), the stream's stages fused where they are model.py's own."""
        if not isinstance(stream, model.DenseStream3D) or type(stream).forward is not model.DenseStream3D.forward:
            return stream(maps)
        x = maps.permute(0, 3, 1, 2).contiguous().unsqueeze(-1)      # (N, D, H, W, 1): channels last
        stats = None    # batch statistics of x, when the dense block that made x has them
        for stage in stream.features:
            x, stats = self.stage(stage, x, stats)
        pool = stream.global_pool
        if type(pool) is model.GlobalPool and _is_standard_bn(pool.norm):
            N, C = x.shape[0], x.shape[-1]
            return bn_relu(pool.norm, x, stats).view(N, -1, C).mean(1)
        return pool(_definition_layout(x))

    def stage(self, stage: nn.Module, x: torch.Tensor, stats) -> tuple[torch.Tensor, tuple | None]:
        """One stage on channels-last (N, D, H, W, C) -> (output, its batch statistics or None)."""
        kind = type(stage)
        if kind is model.DenseBlock3D and all(type(layer) is model.DenseLayer3D and _is_standard_bn(layer.norm1)
                                              and _is_standard_bn(layer.norm2) for layer in stage.layers):
            x = x.contiguous()
            params = [p for layer in stage.layers for p in layer.parameters()]
            x, mean, var = _DenseBlockFunction.apply(stage, self.workspace(stage), x, *batch_stats(x), *params)
            return x, (mean, var)
        if kind is model.Transition3D and _is_standard_bn(stage.norm):
            x = x.contiguous()
            mean, var = stats if stats is not None else batch_stats(x)
            track(stage.norm, mean, var, x.numel() // x.shape[-1])
            pooled = _BatchNormReLUPoolFunction.apply(self.workspace(stage), x, stage.norm.weight, stage.norm.bias,
                                                      mean, var)
            return F.linear(pooled, stage.conv.weight.reshape(stage.conv.out_channels, -1)), None
        if kind is model.A3DBAttention:
            return attention(stage, x), None
        if kind is model.StemPool and _is_standard_bn(stage.norm):
            x = x.contiguous()
            mean, var = batch_stats(x)
            track(stage.norm, mean, var, x.numel() // x.shape[-1])
            return _BatchNormReLUMaxPoolFunction.apply(x, stage.norm.weight, stage.norm.bias, mean, var), None
        if kind is model.Conv3DSame:
            return self.conv(stage, x), None
        return _fast_layout(stage(_definition_layout(x))), None     # anything else: the definition's forward

    def conv(self, conv: model.Conv3DSame, x: torch.Tensor) -> torch.Tensor:
        N, D, H, W, C = x.shape
        kind = conv_kind(conv)
        if kind == "pointwise":
            return F.linear(x, conv.weight.reshape(conv.out_channels, C))
        if kind in ("spatial", "depth"):
            return conv2d(conv, x.contiguous().view(-1, C), (N, D, H, W), conv.weight).view(N, D, H, W, -1)
        return _Conv3DFunction.apply(conv, self.workspace(conv), x, conv.weight)


def _definition_layout(x: torch.Tensor) -> torch.Tensor:
    """(N, D, H, W, C) -> (N, C, H, W, D), the definition's layout (a view)."""
    return x.permute(0, 4, 2, 3, 1)


def _fast_layout(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W, D) -> (N, D, H, W, C) contiguous."""
    return x.permute(0, 4, 2, 3, 1).contiguous()


# ----------------------------------------------------------------------------- held to the definition where it runs

# The definition's code that the fused nodes stand in for: every method of the parts they fuse, and the
# forwards they replace. WRITTEN_FOR holds each one's runtime.code_digest (comments, docstrings and layout do
# not count) as it was when tests/training/test_fastcpu.py last held this file to model.py. `python -m sst.training.fastcpu`
# prints the live table: copy it here only once the parity tests pass on the edited definition.
REPLACED = {
    "Conv3DSame": None, "DenseLayer3D": None, "DenseBlock3D": None, "Transition3D": None, "A3DBAttention": None,
    "StemPool": None, "GlobalPool": None,                    # None: every method the class defines
    "DenseStream3D": ("forward",), "SSTEmotionNet": ("forward", "forward_features"),
}
WRITTEN_FOR = {
    'Conv3DSame.__init__': 'bbbd6e98d1a4162d',
    'Conv3DSame.extra_repr': 'e0721464db5c5859',
    'Conv3DSame.forward': 'a164bedc7372f7e2',
    'Conv3DSame.reset_parameters': 'd6b1acc6c6515b6a',
    'DenseLayer3D.__init__': 'b6c5cfe7267f9fc8',
    'DenseLayer3D.forward': 'aaa717ca3c21f947',
    'DenseBlock3D.__init__': 'ab003cf170ec7b74',
    'DenseBlock3D.forward': 'a7fc2e5bc760fff4',
    'Transition3D.__init__': '52c4c96fc3af4806',
    'Transition3D.forward': '6e8db6faa55e4291',
    'A3DBAttention.__init__': '1c4dd6072d268a18',
    'A3DBAttention.activate': 'da53be5ee4a4a788',
    'A3DBAttention.extra_repr': '5da3536559ad4d73',
    'A3DBAttention.forward': '14d06b8c7b851df2',
    'A3DBAttention.weights': '2425fd9b159dce3a',
    'StemPool.__init__': 'eed4cf685fe407bd',
    'StemPool.forward': '26098f426556da1f',
    'GlobalPool.__init__': 'eed4cf685fe407bd',
    'GlobalPool.forward': '07c38f20de583629',
    'DenseStream3D.forward': '4248199171f6f862',
    'SSTEmotionNet.forward': 'dfe58e3aecf18125',
    'SSTEmotionNet.forward_features': '2d443f049ba94784',
}


def _digest(function) -> str:
    try:
        return runtime.code_digest(inspect.getsource(function))
    except (OSError, TypeError, SyntaxError):    # no source: defined at run time (exec, a lambda's line, C)
        return "no source"


def definition_fingerprints() -> dict[str, str]:
    """{"Class.method": digest} of the live definition for everything REPLACED names (WRITTEN_FOR's form)."""
    out = {}
    for name, methods in REPLACED.items():
        cls = getattr(model, name)
        names = methods or sorted(k for k, v in vars(cls).items() if inspect.isfunction(v))
        for method in names:
            out[f"{name}.{method}"] = _digest(getattr(cls, method, None))
    return out


def definition_changes(net: nn.Module) -> list[str]:
    """The replaced methods that are not the ones the accelerator was written for: edited in model.py,
    added or removed, replaced on the class at run time, or set on one of `net`'s modules ("Class.method")."""
    live = definition_fingerprints()
    changed = sorted(k for k in set(live) | set(WRITTEN_FOR) if live.get(k) != WRITTEN_FOR.get(k))
    for module in net.modules():
        name = type(module).__name__
        if name in REPLACED and type(module) is getattr(model, name):
            changed += [f"{name}.{k} (set on a module)" for k in vars(module) if f"{name}.{k}" in live]
    return changed


_TOLD: set[tuple] = set()    # step-aside lines printed by this process


def accelerate(net: model.SSTEmotionNet) -> FastCPUTraining | None:
    """The CPU training accelerator of `net` (see the module docstring), or None when the definition is not
    the one it was written for (definition_changes): it then steps aside, saying so in one line (once per
    process), and the caller trains the definition. `net` itself is unchanged."""
    changes = definition_changes(net)
    if changes:
        if tuple(changes) not in _TOLD:
            _TOLD.add(tuple(changes))
            print(f"fastcpu: {', '.join(changes)} differ{'s' * (len(changes) == 1)} from what the accelerator was "
                  f"written for; training runs the definition (model.py) on the CPU", flush=True)
        return None
    return FastCPUTraining(net)


if __name__ == "__main__":      # the live table, for WRITTEN_FOR
    print("WRITTEN_FOR = {")
    for key, value in definition_fingerprints().items():
        print(f"    {key!r}: {value!r},")
    print("}")
