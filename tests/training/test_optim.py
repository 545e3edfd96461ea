"""sst/training/optim.py: the authors' optimizer, Adam with Keras's L2 on their kernels only."""
import torch
import torch.nn.functional as F

import model
from conftest import model_inputs, small
from sst.training import optim


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
    spectral, temporal = model_inputs(c, 4)
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
