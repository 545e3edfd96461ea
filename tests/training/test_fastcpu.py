"""Tests for fastcpu.py, the CPU training accelerator: it computes what the definition (model.py)
computes, with the definition's own parameters, buffers and state dict.

    python -m pytest tests/training/test_fastcpu.py -q
"""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import model
from conftest import ROOT, model_inputs, small
from sst import config
from sst.training import fastcpu, optim


def twins(c: config.Config, memory_format=torch.contiguous_format) -> tuple[nn.Module, nn.Module]:
    """A float64 network with BN scales of both signs (every branch, e.g. min-pooling for s < 0) and its copy."""
    torch.manual_seed(0)
    net = model.build_model(c).double().to(memory_format=memory_format)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.uniform_(-1.5, 1.5), m.bias.normal_(0, 0.5)
    return net, copy.deepcopy(net)


def assert_trains_alike(net, definition, batches, labels, steps: int = 2):
    """`steps` Adam steps of the accelerated net and of the definition: loss, every gradient each step,
    then parameters, running statistics and eval outputs."""
    fast = fastcpu.accelerate(net)
    optimizers = [optim.adam(m, 1e-4, 1e-3) for m in (net, definition)]
    for step in range(steps):
        spectral, temporal = batches[step % len(batches)]
        losses = []
        for forward, opt in ((fast, optimizers[0]), (definition, optimizers[1])):
            opt.zero_grad()
            torch.manual_seed(3)        # the same dropout mask
            loss = F.cross_entropy(forward(spectral, temporal), labels)
            loss.backward()
            losses.append(loss)
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=1e-12)
        for (name, p), q in zip(net.named_parameters(), definition.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-7 * q.grad.abs().max().item(),
                                       msg=f"step {step}: {name}")
        for opt in optimizers:
            opt.step()
    for (name, a), b in zip(net.state_dict().items(), definition.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10, msg=name)
    net.eval(), definition.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(*batches[0]), definition(*batches[0]))


@pytest.mark.parametrize("model_keys", [
    {},
    {"block_order": "official"},
    {"attention": "spatial", "attention_activation": "softmax"},
    {"attention": "spectral_temporal", "streams": "spectral"},
    {"attention": "none", "streams": "temporal", "compression_tem": 0.5},
])
def test_accelerator_equals_definition(cfg, model_keys):
    """float64, two Adam steps: loss, every gradient and running statistic equal the definition's."""
    c = small(cfg, **model_keys)
    net, definition = twins(c)
    assert_trains_alike(net, definition, [model_inputs(c, 3, 0, torch.float64)], torch.tensor([0, 1, 2]))


def test_accelerator_on_channels_last_parameters(cfg):
    """run.py keeps the parameters channels-last 3D: the accelerator reads and updates them the same."""
    c = small(cfg)
    net, definition = twins(c, torch.channels_last_3d)
    assert net.spectral.features.denseblock1.layers[0].conv2.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert_trains_alike(net, definition, [model_inputs(c, 3, 0, torch.float64)], torch.tensor([0, 1, 2]))


def test_accelerator_batches_of_several_sizes(cfg):
    """Batches of 3, then 2 (workspace buffers reused as prefixes), then 4 (reallocated)."""
    c = small(cfg)
    net, definition = twins(c)
    fast = fastcpu.accelerate(net)
    for n, seed in ((3, 1), (2, 2), (4, 3)):
        batch = model_inputs(c, n, seed, torch.float64)
        labels = torch.arange(n) % c.model.nb_class
        for forward, m in ((fast, net), (definition, definition)):
            m.zero_grad()
            torch.manual_seed(3)
            F.cross_entropy(forward(*batch), labels).backward()
        for (name, p), q in zip(net.named_parameters(), definition.parameters()):
            torch.testing.assert_close(p.grad, q.grad, msg=f"batch {n}: {name}")


def test_two_forwards_before_one_backward(cfg):
    """Accumulated micro-batches: a second forward before the first backward takes fresh buffers."""
    c = small(cfg)
    net, definition = twins(c)
    fast = fastcpu.accelerate(net)
    batches = [model_inputs(c, 3, seed, torch.float64) for seed in (1, 2)]
    labels = torch.tensor([0, 1, 2])
    for forward in (fast, definition):
        torch.manual_seed(3)
        sum(F.cross_entropy(forward(*b), labels) for b in batches).backward()
    for (name, p), q in zip(net.named_parameters(), definition.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_checkpoints_load_both_ways(cfg):
    """The accelerator has no state of its own: a state dict written after accelerated training loads
    into a fresh definition unchanged and evaluates identically."""
    c = small(cfg)
    torch.manual_seed(0)
    net = model.build_model(c)
    fast = fastcpu.accelerate(net)
    opt = optim.adam(net, 1e-4, 1e-3)
    x = model_inputs(c, 4)
    F.cross_entropy(fast(*x), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    fresh = model.build_model(c)
    fresh.load_state_dict(net.state_dict())
    for m in (net, fresh):
        m.eval()
    with torch.no_grad():
        assert torch.equal(fast(*x), fresh(*x))


def test_seed_sizes_float32(cfg):
    """Full SEED.ini sizes in float32, one training forward: tolerances of float32 arithmetic."""
    torch.manual_seed(0)
    net = model.build_model(cfg)
    definition = copy.deepcopy(net)
    x = model_inputs(cfg, 4)
    torch.manual_seed(3)
    out = fastcpu.accelerate(net)(*x)
    torch.manual_seed(3)
    torch.testing.assert_close(out, definition(*x), rtol=1e-3, atol=1e-4)
    for a, b in zip(net.buffers(), definition.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_dense_block_gradient_is_exact():
    """The fused dense block: gradients equal autograd of the definition's layers, and a central finite
    difference along a random direction (float64)."""
    torch.manual_seed(0)
    block = model.DenseBlock3D(2, 3, 2).double()
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.uniform_(-1.5, 1.5), m.bias.normal_(0, 0.5)
    fast = fastcpu.FastCPUTraining(None)
    x = torch.randn(2, 3, 4, 4, 3, dtype=torch.float64, requires_grad=True)     # (N, D, H, W, C)
    tensors = [x, *block.parameters()]
    weights = torch.randn(2, 3, 4, 4, block.out_channels, dtype=torch.float64)

    def loss(fused: bool) -> torch.Tensor:
        if fused:
            out, _ = fast.stage(block, x, None)
        else:
            out = block(x.permute(0, 4, 2, 3, 1)).permute(0, 4, 2, 3, 1)
        return (out * weights).sum()

    fused = torch.autograd.grad(loss(True), tensors)
    plain = torch.autograd.grad(loss(False), tensors)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b)
    direction = [torch.randn_like(t) for t in tensors]
    eps = 1e-6
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            for t, d in zip(tensors, direction):
                t.add_(sign * eps * d)
            values.append(loss(True))
            for t, d in zip(tensors, direction):
                t.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    analytic = sum((g * d).sum() for g, d in zip(fused, direction))
    torch.testing.assert_close(numeric, analytic, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("order", ["paper", "official"])
def test_trains_under_cpu_bf16_autocast(cfg, order):
    """torch.autocast('cpu', bfloat16) around an accelerated step: the fused nodes run in float32 (their
    inputs cast), the rest in bf16; the loss stays near the float32 one, every gradient is finite."""
    c = small(cfg, block_order=order)
    torch.manual_seed(0)
    net = model.build_model(c)
    twin = copy.deepcopy(net)
    x, labels = model_inputs(c, 4), torch.tensor([0, 1, 2, 1])
    torch.manual_seed(1)        # the same dropout masks for both
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = fastcpu.accelerate(net)(*x)
        loss = F.cross_entropy(logits, labels)
    loss.backward()
    torch.manual_seed(1)
    reference = F.cross_entropy(twin(*x), labels)
    assert logits.dtype == torch.bfloat16                           # the head ran in bf16
    assert abs(loss.item() - reference.item()) < 0.05 * reference.item()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_batch_stats_of_bf16_maps_are_float32():
    """Under autocast a block's input may be bf16; its statistics are still taken in float32."""
    x = torch.randn(4, 3, 8, 8, 5) * 3 + 100
    mean, var = fastcpu.batch_stats(x.bfloat16())
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
        torch.testing.assert_close(fastcpu._inner_products(a, b), a.t() @ b)


def test_second_backward_through_one_graph_fails_loudly(cfg):
    """Backward overwrites saved activations it no longer needs: retain_graph=True reuse is refused."""
    c = small(cfg)
    loss = fastcpu.accelerate(model.build_model(c))(*model_inputs(c, 2)).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_eval_mode_runs_the_definition(cfg):
    """In eval mode the accelerator is the definition: gradients of gradients work (e.g. saliency)."""
    c = small(cfg)
    net = model.build_model(c).eval()
    spectral, temporal = (x.requires_grad_() for x in model_inputs(c, 2))
    grad, = torch.autograd.grad(fastcpu.accelerate(net)(spectral, temporal).sum(), spectral, create_graph=True)
    grad.pow(2).sum().backward()
    assert all(p.grad is not None for p in net.spectral.parameters())


def test_frozen_batch_norm_and_own_forward_run_as_defined(cfg):
    """What the fused nodes do not compute is left to the definition: BN layers frozen in eval mode
    inside a training network (fine-tuning), a BN with another epsilon, a network with its own forward."""
    c = small(cfg)
    torch.manual_seed(0)
    net = model.build_model(c).double()
    for m in net.spectral.features.denseblock1.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.eval()
    net.temporal.features.transition1.norm.eps = 1e-3
    x = model_inputs(c, 3, 0, torch.float64)
    definition = copy.deepcopy(net)
    torch.manual_seed(3)
    fast = fastcpu.accelerate(net)(*x)
    torch.manual_seed(3)
    torch.testing.assert_close(fast, definition(*x))
    for (name, a), b in zip(net.state_dict().items(), definition.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)

    class Doubled(model.SSTEmotionNet):
        def forward(self, *maps, **named):
            return 2 * super().forward(*maps, **named)

    torch.manual_seed(0)
    doubled = Doubled(**{k: getattr(c.model, k) for k in ("depth_spec", "depth_tem", "gr_spec", "gr_tem")},
                      input_width=16, temInput_length=9).double()
    torch.manual_seed(3)
    out = fastcpu.accelerate(doubled)(*x)
    torch.manual_seed(3)
    torch.testing.assert_close(out, doubled(*x))


# ----------------------------------------------------------------------------- held to the definition where it runs


def test_the_accelerator_was_written_for_this_definition(cfg):
    """WRITTEN_FOR records the definition the parity tests above hold it to. After an edit of model.py that
    these tests accept, refresh the table with `python -m sst.training.fastcpu` (and only then)."""
    live = fastcpu.definition_fingerprints()
    stale = {k: (fastcpu.WRITTEN_FOR.get(k), v) for k, v in live.items() if fastcpu.WRITTEN_FOR.get(k) != v}
    assert not stale and set(live) == set(fastcpu.WRITTEN_FOR), f"run `python -m sst.training.fastcpu` after the parity tests: {stale}"
    assert fastcpu.definition_changes(model.build_model(small(cfg))) == []


@pytest.mark.parametrize("where", ["class", "module"])
def test_a_method_replaced_at_run_time_makes_it_step_aside(cfg, monkeypatch, capsys, where):
    """A monkeypatched forward (on the class or on one module of the network): accelerate() returns None
    after one line naming the class and method, and the definition (with the patch) is what trains."""
    net = model.build_model(small(cfg))
    ones = lambda self, x: x     # noqa: E731  (attention switched off: all weights one)
    if where == "class":
        monkeypatch.setattr(model.A3DBAttention, "forward", ones)
    else:
        net.spectral.features.attention1.forward = ones.__get__(net.spectral.features.attention1)
    fastcpu._TOLD.clear()
    assert fastcpu.accelerate(net) is None
    line = capsys.readouterr().out.strip()
    assert line.startswith("fastcpu: A3DBAttention.forward") and "training runs the definition (model.py)" in line
    assert fastcpu.accelerate(net) is None and capsys.readouterr().out == ""     # said once per process


@pytest.mark.slow
def test_an_edit_of_the_definition_trains_as_edited(tmp_path):
    """An in-place edit of A3DBAttention.forward in model.py (spatial attention all ones): CPU training
    with accelerator = auto trains the edited maths (first-epoch loss as with accelerator = off, to float32
    rounding), not the accelerator's copy of the unedited one."""
    import csv
    import shutil

    from conftest import run_cli, tiny_seed_tree

    root, ini = tiny_seed_tree(tmp_path / "data")
    edited = tmp_path / "edited"
    edited.mkdir()
    for path in ROOT.glob("*.py"):
        shutil.copy(path, edited / path.name)
    shutil.copytree(ROOT / "sst", edited / "sst", ignore=shutil.ignore_patterns("__pycache__"))
    text = (edited / "model.py").read_text()
    original = "        spatial, depth = self.weights(x)\n        if spatial is not None:"
    assert original in text
    (edited / "model.py").write_text(text.replace(original, "        spatial, depth = self.weights(x)\n"
                                                  "        spatial = torch.ones_like(spatial)\n"
                                                  "        if spatial is not None:"))

    def first_epoch_loss(tree, accelerator):
        out = tmp_path / f"res-{tree.name}-{accelerator}"
        p = run_cli(str(tree / "run.py"), "-c", str(ini), "--subjects", "1", "--result-path", str(out),
                    "--set", "training.nbEpoch=1", "--set", f"training.accelerator={accelerator}", cwd=tree)
        assert p.returncode == 0, p.stderr
        with open(out / "runs" / "sub01_ses1.epochs.csv") as fh:
            return float(next(csv.DictReader(fh))["train_loss"]), p.stdout

    auto, said = first_epoch_loss(edited, "auto")
    off, _ = first_epoch_loss(edited, "off")
    unedited, unedited_said = first_epoch_loss(ROOT, "auto")
    assert "fastcpu: A3DBAttention.forward differs" in said and "fastcpu:" not in unedited_said
    assert auto == pytest.approx(off, rel=1e-5)
    assert abs(auto - unedited) > 1e-4 * abs(unedited)
