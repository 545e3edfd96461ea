"""sst/models/dgcnn.py and the dgcnn model kind: the public form equals TorchEEG's DGCNN for the same weights
(its numbers stored here, its code not), the paper's form is the paper's equations (the Chebyshev recurrence
against its closed form), and `[model] name = dgcnn` trains through run.py under every honest protocol."""
import dataclasses
import json

import numpy as np
import pytest
import torch

import run
from conftest import run_in_process, write_ini
from sst import config
from sst.data import datasets, synthetic
from sst.models import dgcnn, kinds
from sst.results import provenance
from sst.training import optim


def seeded(shape, seed: int) -> torch.Tensor:
    """float64 values 0.3 * N(0, 1) from torch's generator seeded with `seed` (the same on any machine)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.3


# TorchEEG 1.1.3's DGCNN (torcheeg/models/gnn/dgcnn.py; in_channels 5, num_electrodes 6, num_layers 3,
# hid_channels 4, num_classes 3), float64, given the weights of `public_form()` below and the input seeded(30):
# its logits in training mode (BatchNorm on the batch), then in eval mode after that one training pass.
TORCHEEG_TRAIN = [[57330.078474788876, -6528.579947066322, 1099.0041074373926],
                  [-12488.263879040389, 2328.8181052914247, -910.3220058519934],
                  [-5559.077582033209, 1566.6840021800897, -264.8983507667148],
                  [46081.040065328554, -17381.580983610886, 12242.144240912869]]
TORCHEEG_EVAL = [[24333.974961264135, -2207.9372664841953, -2257.5381161914697],
                 [-676.8296693278932, 4469.173237282205, -3162.6051132799653],
                 [1656.359076954301, 184.96482054362912, -1817.7063691051972],
                 [21429.64141671736, -6671.228055149637, 1413.6011459184958]]


def public_form() -> dgcnn.DGCNN:
    """The public form with TorchEEG's sizes for the reference, every weight seeded (TorchEEG's A, gc1[k].weight,
    fc1, fc2, BN1 in that order of seeds)."""
    net = dgcnn.DGCNN(nb_class=3, n_electrodes=6, n_bands=5, order=3, channels=4, hidden=64, form="public").double()
    with torch.no_grad():
        net.adjacency.weight.copy_(seeded((6, 6), 1))
        for k in range(3):
            net.filter.weight[k].copy_(seeded((5, 4), 10 + k))
        net.fc1.weight.copy_(seeded((64, 24), 20))
        net.fc1.bias.copy_(seeded((64,), 21))
        net.fc2.weight.copy_(seeded((3, 64), 22))
        net.fc2.bias.copy_(seeded((3,), 23))
        net.bn.weight.copy_(seeded((5,), 24) + 1)
        net.bn.bias.copy_(seeded((5,), 25))
    return net


def test_the_public_form_equals_torcheegs_dgcnn():
    net, x = public_form(), seeded((4, 6, 5), 30)
    with torch.no_grad():
        np.testing.assert_allclose(net.train()(x).numpy(), TORCHEEG_TRAIN, rtol=1e-9)
        np.testing.assert_allclose(net.eval()(x).numpy(), TORCHEEG_EVAL, rtol=1e-9)


def symmetric_graph(n: int = 5, seed: int = 3) -> torch.Tensor:
    w = seeded((n, n), seed).abs()
    return w + w.T


def test_the_chebyshev_terms_equal_their_closed_form():
    """T_k(L~) x by the recurrence equals U cos(k arccos(lambda)) U^T x on a small graph, and the scaled
    normalised Laplacian's eigenvalues lie in [-1, 1] (lambda_max = 2 bounds the normalised Laplacian's)."""
    adjacency = dgcnn.Adjacency(5).double()
    with torch.no_grad():
        adjacency.weight.copy_(symmetric_graph())
    laplacian = adjacency.normalised_laplacian(0.0)
    scaled = 2 * laplacian / dgcnn.LAMBDA_MAX - torch.eye(5, dtype=torch.float64)
    eigenvalues, vectors = torch.linalg.eigh(scaled)
    assert eigenvalues.min() >= -1 - 1e-12 and eigenvalues.max() <= 1 + 1e-12
    x = seeded((2, 5, 3), 7)
    terms = dgcnn.chebyshev_terms(x, scaled, 5)
    for k, term in enumerate(terms):
        closed = vectors @ torch.diag(torch.cos(k * torch.arccos(eigenvalues.clamp(-1, 1)))) @ vectors.T
        torch.testing.assert_close(term, closed @ x, rtol=1e-10, atol=1e-10)


def test_the_papers_form_is_the_papers_equations():
    """The paper's form computed by hand from its parameters: normalised Laplacian of ReLU(W), the Chebyshev
    filters, the 1x1 convolution, ReLU, the fully connected layer (eval mode: no dropout)."""
    net = dgcnn.DGCNN(nb_class=3, n_electrodes=5, n_bands=4, order=3, channels=6, form="paper").double().eval()
    with torch.no_grad():
        net.adjacency.weight.copy_(seeded((5, 5), 4))      # some entries negative: the ReLU keeps them out
    x = seeded((2, 5, 4), 8)
    w = torch.relu(net.adjacency.weight.detach())
    d = torch.diag((w.sum(1) + 1e-5) ** -0.5)
    scaled = torch.eye(5, dtype=torch.float64) - d @ w @ d - torch.eye(5, dtype=torch.float64)   # L - I
    t0, t1 = x, scaled @ x
    t2 = 2 * scaled @ t1 - t0
    theta = net.filter.weight.detach()
    h = t0 @ theta[0] + t1 @ theta[1] + t2 @ theta[2]
    h = torch.relu(h @ net.conv1x1.weight.detach().T + net.conv1x1.bias.detach())
    expected = h.flatten(1) @ net.fc.weight.detach().T + net.fc.bias.detach()
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=1e-12, atol=1e-12)
        negative = net.adjacency.weight < 0
        before = net(x)
        net.adjacency.weight[negative] = -5.0           # only the non-negative part of W is the graph
        torch.testing.assert_close(net(x), before, rtol=0, atol=0)


def test_the_l2_term_is_on_the_filters_and_layers_not_the_graph():
    net = dgcnn.DGCNN()
    decay, rest = optim.param_groups(net, 1e-4)
    decayed = {id(p) for p in decay["params"]}
    assert decayed == {id(net.filter.weight), id(net.conv1x1.weight), id(net.fc.weight)}
    assert decay["weight_decay"] == 2e-4 and id(net.adjacency.weight) not in decayed


def test_the_ini_defaults_are_dgcnns(cfg):
    """[model] dgcnn_* defaults are the constructor's (LibEER's K = 2 and 64 filters; TorchEEG's 64 hidden
    units); they leave the result key of every earlier configuration as it was."""
    import inspect

    signature = inspect.signature(dgcnn.DGCNN)
    arguments = config.dgcnn_arguments(cfg)
    for key in ("order", "channels", "hidden", "form", "dropout"):
        assert arguments[key] == signature.parameters[key].default, key
    assert provenance.result_key(cfg) == "becab179af3e2815"       # SEED.ini's key before these keys existed
    dg = cfg.replace(model={"name": "dgcnn"})
    assert provenance.result_key(dg.replace(model={"dgcnn_form": "public"})) != provenance.result_key(dg)
    assert provenance.result_key(dg.replace(model={"dgcnn_order": 3})) != provenance.result_key(dg)


def test_the_kind_builds_reads_de_and_is_its_own_code(cfg):
    dg = cfg.replace(model={"name": "dgcnn"})
    kind = kinds.of(dg)
    assert kind.label == "DGCNN" and kind.sources(dg) == {"de": "de"} and not kind.has_attention
    code = kind.code(dg)
    assert "sst.models.dgcnn.DGCNN" in code and "sst.training.loop.Trainer" in code
    assert not any(name.startswith("model.") for name in code)          # SST-EmotionNet's edits are not its


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["trial", "loso", "cross_session"])
def test_dgcnn_learns_the_planted_signal_under_every_honest_protocol(tmp_path_factory, protocol, capsys):
    """Synthetic SEED (3 subjects x 2 sessions, DE only): the mean accuracy of DGCNN's runs is above the
    majority-class row, and --predict of one of its runs works."""
    root = tmp_path_factory.getbasetemp() / "dgcnn-data"
    if not (root / "pre").exists():
        synthetic.write_seed(root / "SEED", subjects=(1, 2, 3), sessions=(1, 2), trial_fraction=0.05, seed=0,
                             raw=False)
        ini = write_ini(root / "base.ini", path={"dataset_root": root / "SEED", "preprocessed_root": root / "pre",
                                                  "result_path": root / "unused"})
        assert run_in_process(capsys, "Preprocess.py", "-c", str(ini), "--no-maps").returncode == 0
    ini = write_ini(tmp_path_factory.mktemp(protocol) / "dg.ini",
                    path={"dataset_root": root / "SEED", "preprocessed_root": root / "pre",
                          "result_path": tmp_path_factory.getbasetemp() / f"res-{protocol}"},
                    model={"name": "dgcnn"}, training={"protocol": protocol, "nbEpoch": 8, "lr": 1e-3,
                                                        "batch_size": 32, "num_threads": 1})
    p = run_in_process(capsys, "run.py", "-c", str(ini))
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path_factory.getbasetemp() / f"res-{protocol}" / "summary.json").read_text())
    assert summary["model"] == "dgcnn" and summary["protocol"] == protocol
    assert summary["mean_accuracy"] > summary["majority_accuracy"] + 10, summary["mean_accuracy"]
    assert "DGCNN, ours" in p.stdout and "DGCNN on DE, paper" in p.stdout
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--predict", "sub01_ses1", "--subjects", "1",
                       "--sessions", "1")
    assert p.returncode == 0, p.stderr


def test_the_papers_dgcnn_row_is_the_dataset_entrys(monkeypatch):
    """The paper's DGCNN row comes from the dataset entry (SEED 90.40 +- 8.49, SEED-IV 69.88 +- 16.29, the
    paper's table 1): absent there, absent from the summary; run.py's line names the best epoch."""
    from sst.reporting import summaries

    assert summaries._paper("SEED", "DGCNN") == {"mean": 90.40, "std": 8.49}
    assert summaries._paper("SEED-IV", "DGCNN") == {"mean": 69.88, "std": 16.29}
    monkeypatch.setitem(datasets.DATASETS, "SEED", dataclasses.replace(datasets.SEED, paper={}))
    assert summaries._paper("SEED", "DGCNN") is None
    assert run.result_line({"run": "sub01_ses1", "model": "dgcnn", "accuracy": 0.5, "macro_f1": 0.5, "kappa": 0.2,
                            "best_epoch": 3, "epochs_run": 8, "wall_seconds": 1.0}).endswith("best epoch 3/8  1 s")
