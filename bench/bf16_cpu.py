"""Why training on the CPU never runs under bf16 autocast: a minimal reproducer of wrong conv3d gradients.

    python bench/bf16_cpu.py           # prints one line per case and what this CPU and torch are

The weight gradient of a 3x3x3 convolution (padding 1, no bias) under torch.autocast("cpu", bfloat16) is set
beside the float64 gradient of the same bf16-representable inputs, weights and output gradient (so rounding to
bf16 alone accounts for a relative error of a few 1e-3). On maps of 2 x 2 positions, the size of the temporal
stream's last dense block (2x2x3, figure/architecture.png), oneDNN's avx512_core_bf16 backward-weights kernel
(torch 2.13.0, oneDNN 3.12) returns gradients off by up to 1e18 times their size, or infinite; on 4 x 4 maps it
is right. [training] amp is therefore a CUDA setting (sst/training/loop.py: autocast only on CUDA;
sst/models/kinds.py: precision float32 on the CPU), and tests/training/test_loop.py holds CPU training to
float32. A CPU without avx512_bf16 takes another kernel: the script then prints what that one gives.
"""
from __future__ import annotations

import torch


def case(shape: tuple[int, ...], out_channels: int = 12, seed: int = 0) -> tuple[bool, float]:
    """(all finite, max relative error) of the bf16-autocast weight gradient of one Conv3d on inputs `shape`
    (N, C, H, W, D) against float64 on the same bf16-representable values."""
    torch.manual_seed(seed)
    n, c, h, w, d = shape
    x = torch.randn(shape).bfloat16().float()
    weight = (torch.randn(out_channels, c, 3, 3, 3) / (27 * c) ** 0.5).bfloat16().float()
    grad_out = torch.randn(n, out_channels, h, w, d).bfloat16().float()
    reference = torch.nn.Conv3d(c, out_channels, 3, padding=1, bias=False).double()
    reference.weight.data = weight.double()
    reference(x.double()).backward(grad_out.double())
    conv = torch.nn.Conv3d(c, out_channels, 3, padding=1, bias=False)
    conv.weight.data = weight.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    y.float().backward(grad_out)
    got, ref = conv.weight.grad.double(), reference.weight.grad
    return bool(torch.isfinite(got).all()), float((got - ref).abs().max() / ref.abs().max())


def main() -> int:
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"oneDNN {'available' if torch.backends.mkldnn.is_available() else 'not available'}")
    for shape in ((8, 24, 2, 2, 2), (8, 24, 2, 2, 3), (8, 24, 2, 2, 4), (16, 48, 4, 4, 2), (16, 48, 4, 4, 3)):
        finite, error = case(shape)
        verdict = "ok" if finite and error < 0.05 else "WRONG"
        print(f"conv3d weight gradient, bf16 autocast on the CPU, input {shape}: finite {finite}, "
              f"max relative error {error:.3g}: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
