"""sst/training/graphed.py: [training] compile, the full batches through torch.compile, on the CPU.

    python -m pytest tests/training/test_graphed.py -q
    SST_TEST_INDUCTOR=1 python -m pytest tests/training/test_graphed.py -q    # + inductor itself (about 2 min cold)

The loop's side (fixed shapes: full batches through the graph, the partial last batch and a partial evaluation
batch eagerly, one graph per mode) is tested with torch.compile's aot_eager backend: Dynamo's capture and
AOTAutograd's forward and backward graphs, run by aten's kernels, so a compiled run must equal an eager one
bit for bit (dropout included). Inductor's generated kernels are the same maths to float32 rounding; compiling
them costs 103 s cold on two cores, more than the suite's budget, so that test runs when asked (above).
"""
import json
import os

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from conftest import run_in_process, tiny_run
from sst.results import provenance, store
from sst.training import graphed, loop, protocols

# batch 256: 560 training windows (2 full batches + 48), 260 validation and 260 test windows (256 + 4)
BATCH, EPOCHS, TRAIN, VAL = 256, 2, 560, 260


class Recorder(torch.nn.Module):
    """The compiled module, noting the batch size of every call through it."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.sizes = inner, []

    def forward(self, **maps):
        self.sizes.append(len(next(iter(maps.values()))))
        return self.inner(**maps)


def trained(compile: str, order: str) -> tuple[loop.Trainer, list[int]]:
    cfg, spec, data = tiny_run(n=TRAIN + 2 * VAL, accelerator="off", compile=compile, batch_size=BATCH, nbEpoch=EPOCHS)
    rows = np.arange(TRAIN + 2 * VAL)
    data.split = protocols.Split(rows[:TRAIN], rows[TRAIN:TRAIN + VAL], rows[TRAIN + VAL:])
    trainer = loop.Trainer(cfg.replace(model={"block_order": order}), spec, data, torch.device("cpu"))
    sizes = []
    if trainer.graphed is not None:
        trainer.graphed = Recorder(trainer.graphed)
        sizes = trainer.graphed.sizes
    trainer.fit()
    trainer.test = trainer.predict(data.split.test)
    return trainer, sizes


def compare(order: str, exact: bool) -> None:
    eager, _ = trained("off", order)
    graphs = counters["stats"]["unique_graphs"]
    compiled, sizes = trained("on", order)
    assert compiled.graphed is not None and not compiled.accelerated and eager.graphed is None
    # full batches only, through two graphs (training, evaluation): 2 training batches an epoch, one validation
    # batch an epoch and one test batch; every partial batch went through the module itself
    assert sizes == ([BATCH] * 3) * EPOCHS + [BATCH]
    assert counters["stats"]["unique_graphs"] - graphs == 2
    tol = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-5, "atol": 1e-6}
    for a, b in zip(eager.history, compiled.history, strict=True):
        for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=tol["rtol"], abs=tol["atol"]), (order, a["epoch"], key)
    assert compiled.test[0] == pytest.approx(eager.test[0], rel=tol["rtol"], abs=tol["atol"])
    assert (compiled.test[1] == eager.test[1]).all()
    if exact:
        e, c = eager.net.state_dict(), compiled.net.state_dict()
        assert all(torch.equal(e[k], c[k]) for k in e), order


@pytest.mark.parametrize("order", ["paper", "official"])
def test_compiled_training_equals_eager_for_both_block_orders(order, monkeypatch):
    monkeypatch.setattr(graphed, "BACKEND", "aot_eager")
    compare(order, exact=True)


@pytest.mark.skipif(os.environ.get("SST_TEST_INDUCTOR") != "1", reason="inductor compiles for about 2 min on "
                    "2 cores (SST_TEST_INDUCTOR=1 runs it)")
@pytest.mark.parametrize("order", ["paper", "official"])
def test_inductor_training_equals_eager_to_float32_rounding(order):
    compare(order, exact=False)


def test_a_second_network_of_the_configuration_reuses_the_graph(monkeypatch):
    """The warm cache within a process: the runs of a process (run.py --jobs 1, a worker) compile once."""
    monkeypatch.setattr(graphed, "BACKEND", "aot_eager")
    cfg, spec, data = tiny_run(accelerator="off", compile="on")     # batch 16: 3 full training batches + 9
    loop.Trainer(cfg, spec, data, torch.device("cpu")).train_epoch(1)
    graphs = counters["stats"]["unique_graphs"]
    second = loop.Trainer(cfg, spec, data, torch.device("cpu"))
    second.train_epoch(1)
    assert second.graphed is not None and counters["stats"]["unique_graphs"] == graphs


def test_a_compiled_run_resumes_from_its_partial_state_as_if_uninterrupted(tmp_path, monkeypatch):
    """The state of a compiled run is the module's own (no compile wrapper in its keys): saved after epoch 1 and
    loaded by a fresh compiled Trainer, epoch 2 trains as the uninterrupted run's did, bit for bit."""
    monkeypatch.setattr(graphed, "BACKEND", "aot_eager")
    cfg, spec, data = tiny_run(accelerator="off", compile="on", nbEpoch=2)
    whole = loop.Trainer(cfg, spec, data, torch.device("cpu"))
    whole.fit()
    first = loop.Trainer(cfg.replace(training={"nbEpoch": 1}), spec, data, torch.device("cpu"))
    first.fit()
    store.save_partial(tmp_path / "p.pt", first, "key")
    assert not any("_orig_mod" in k for k in first.state()["net"])
    resumed = loop.Trainer(cfg, spec, data, torch.device("cpu"))
    store.load_partial(tmp_path / "p.pt", resumed, "key")
    resumed.fit()
    assert resumed.history[1]["train_loss"] == whole.history[1]["train_loss"]
    a, b = whole.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_run_py_trains_compiled_under_the_eager_runs_key(tiny_seed, tmp_path, capsys, monkeypatch):
    """[training] compile = on through run.py (in this process, aot_eager): the record says compiled, not
    accelerated, float32; the result key is the eager runs', so run.py without it finds the run finished."""
    monkeypatch.setattr(graphed, "BACKEND", "aot_eager")
    _, ini = tiny_seed
    args = ("-c", str(ini), "--result-path", str(tmp_path / "res"), "--subjects", "1")
    p = run_in_process(capsys, "run.py", *args, "--set", "training.compile=on")
    assert p.returncode == 0, p.stderr
    record = json.loads((tmp_path / "res" / "runs" / "sub01_ses1.json").read_text())
    assert record["compiled"] is True and record["accelerated"] is False and record["precision"] == "float32"
    p = run_in_process(capsys, "run.py", *args)
    assert p.returncode == 0 and "1 already finished" in p.stdout, p.stdout


def test_compile_auto_is_off_until_a_device_measured_it_faster(monkeypatch):
    cfg, _, _ = tiny_run()
    assert cfg.training.compile == "auto"
    assert not graphed.wanted(cfg, "cpu") and not graphed.wanted(cfg, "cuda")      # FASTER_ON is empty
    assert graphed.wanted(cfg.replace(training={"compile": "on"}), "cpu")
    assert not graphed.wanted(cfg.replace(training={"compile": "off"}), "cuda")
    monkeypatch.setattr(graphed, "FASTER_ON", ("Some GPU",))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU 80GB")
    assert graphed.wanted(cfg, "cuda") and not graphed.wanted(cfg, "cpu")


def test_compile_is_in_the_result_key_under_bf16_only():
    """float32: the same maths to float32 rounding, one key; bf16 autocast: compiled is a precision of its own."""
    cfg, _, _ = tiny_run()
    on, off = (cfg.replace(training={"compile": c, "state_save": s}) for c, s in (("on", "sync"), ("off", "background")))
    assert graphed.precision(on, "cpu") == graphed.precision(off, "cpu") == "float32"
    assert provenance.result_key(on) == provenance.result_key(off) == provenance.result_key(cfg)
    assert graphed.precision(on, "cuda") == "bf16-compiled" and graphed.precision(off, "cuda") == "bf16"
    assert graphed.precision(on.replace(training={"amp": False}), "cuda") == "float32"
    keys = {provenance.result_key(cfg, p) for p in provenance.PRECISIONS}
    assert len(keys) == 3
