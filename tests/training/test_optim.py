"""sst/training/optim.py: the authors' optimizer, Adam with Keras's L2 on their kernels only."""
import copy

import pytest
import torch
import torch.nn.functional as F

import model
from conftest import model_inputs, small, tiny_run
from sst.training import loop, optim


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


def test_the_optimizer_key_chooses_adam_adamw_or_sgd_over_the_same_l2_groups(cfg):
    """[training] optimizer: adam is the authors' (as optim.adam), adamw decays the same kernels decoupled,
    sgd with momentum decays them coupled; 2 l2 on the L2 kernels, nothing on the others, for all three."""
    net = model.build_model(small(cfg))
    for name, cls in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        training = cfg.replace(training={"optimizer": name, "momentum": 0.8, "lr": 0.01}).training
        opt = optim.make(net, training)
        assert type(opt) is cls and [g["weight_decay"] for g in opt.param_groups] == [2 * training.l2, 0.0]
        assert all(g["lr"] == 0.01 for g in opt.param_groups)
        if name == "sgd":
            assert opt.param_groups[0]["momentum"] == 0.8
    adam = optim.make(net, cfg.training)
    assert adam.state_dict()["param_groups"] == optim.adam(net, cfg.training.l2, cfg.training.lr).state_dict()["param_groups"]


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_a_schedule_gives_pytorchs_rates_epoch_by_epoch(cfg, schedule):
    """optim.lr_at against PyTorch's own StepLR and CosineAnnealingLR stepped once an epoch."""
    training = cfg.replace(training={"lr_schedule": schedule, "lr": 0.1, "nbEpoch": 12, "lr_step_epochs": 3,
                                     "lr_gamma": 0.5}).training
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = (torch.optim.lr_scheduler.StepLR(opt, 3, 0.5) if schedule == "step"
                 else torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=12))
    for epoch in range(1, 13):
        assert optim.lr_at(training, epoch) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15), epoch
        opt.step()
        scheduler.step()
    assert optim.lr_at(cfg.training, 7) == cfg.training.lr          # none: the rate throughout


def test_a_scheduled_run_resumed_mid_way_trains_as_the_uninterrupted_one():
    """The rate is a function of the epoch: a run killed after epoch 2 and resumed gives the uninterrupted
    histories (cosine schedule, SGD)."""
    cfg, spec, data = tiny_run(nbEpoch=4, lr_schedule="cosine", optimizer="sgd", lr=0.05)
    whole = loop.Trainer(cfg, spec, data, torch.device("cpu"))
    whole.fit()
    first = loop.Trainer(cfg, spec, data, torch.device("cpu"))

    def killed_after_epoch_2(row: dict) -> None:
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        first.fit(killed_after_epoch_2)
    state = copy.deepcopy(first.state())
    second = loop.Trainer(cfg, spec, data, torch.device("cpu"))
    second.load_state(state)
    second.fit()
    assert [r["train_loss"] for r in second.history] == [r["train_loss"] for r in whole.history]
    assert second.optimizer.param_groups[0]["lr"] == pytest.approx(optim.lr_at(cfg.training, 4))
