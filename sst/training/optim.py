"""The authors' optimizer: Adam with Keras's L2 penalty on their kernels only.

    optimizer = adam(net, l2=1e-4, lr=1e-4)
"""
from __future__ import annotations

import torch
import torch.nn as nn


def param_groups(net: nn.Module, l2: float) -> list[dict]:
    """Parameter groups for torch.optim.Adam reproducing Keras's kernel_regularizer=l2(l2).

    Keras adds l2 * sum(w ** 2) to the loss for the stem, bottleneck (1x1x1) and transition kernels
    only (model.Conv3DSame(regularized=True)), i.e. a gradient 2 * l2 * w; Adam's (coupled, not AdamW)
    weight_decay adds weight_decay * w to the gradient, so those kernels get weight_decay = 2 * l2 and
    every other parameter 0.
    """
    decay = {id(m.weight) for m in net.modules() if getattr(m, "regularized", False)}
    params = list(net.parameters())
    return [
        {"params": [p for p in params if id(p) in decay], "weight_decay": 2 * l2},
        {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0},
    ]


def adam(net: nn.Module, l2: float, lr: float) -> torch.optim.Adam:
    """The training optimizer: Adam (betas 0.9, 0.999, eps 1e-8) over `param_groups(net, l2)`.

    PyTorch's fused implementation (one kernel over all parameters): the same update rule, about
    5x faster than the per-parameter loop on the CPU (1.3 vs 6.9 ms a step for SEED.ini's 1.57 M
    parameters), which matters because the attention Dense(1024, 1024) is large.
    """
    return torch.optim.Adam(param_groups(net, l2), lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True)
