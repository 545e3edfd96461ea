"""The CUDA path, checked on the CPU where a stand-in is faithful: the training loop keeps its results
bit-identical to the loop that synchronised every step, waits for the device once per epoch and once per
evaluation pass, and the resumable state comes over in one copy per dtype.

    python -m pytest tests/training/test_loop_cuda_path.py -q

The CUDA branch of the Trainer is the CPU Trainer with the accelerator off ([training] accelerator = off):
the definition, device-resident arrays, no per-step waits, one check per epoch. It runs here in float32
only (bf16 backward of 3D convolutions on this CPU gives NaN gradients now and then: no stand-in).
tests/test_cuda.py runs the same on a GPU.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from conftest import tiny_run
from sst.results import store
from sst.training import loop


class PerStepSyncTrainer(loop.Trainer):
    """The training loop as it was before the CUDA path lost its per-step waits (commit 1c9fefe), for the
    bit-identity tests: host arrays copied per batch, the loss checked and read every step."""

    def _forward(self, idx, net=None):
        net, maps, built = net or self.net, {}, {}
        for name, x in self.data.inputs.items():
            if id(x) not in built:
                built[id(x)] = self.maps(x[idx].to(self.device, non_blocking=True))
            maps[name] = built[id(x)]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return net(**maps).float()

    def train_epoch(self, epoch):
        self.net.train()
        train = torch.from_numpy(self.data.split.train)
        order = train[torch.randperm(len(train), generator=self.shuffle)]
        total_loss, correct = 0.0, 0
        for batch in order.split(self.cfg.training.batch_size):
            y = self.data.label[batch].to(self.device)
            logits = self._forward(batch, self.train_net)
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise loop.Diverged(f"{self.where(epoch)}: training loss became {loss.item()}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += loss.item() * len(batch)
            correct += (logits.argmax(1) == y).sum().item()
        return total_loss / len(train), correct / len(train)

    @torch.no_grad()
    def predict(self, indices):
        was_training = self.net.training
        self.net.eval()
        losses, preds = [], []
        for batch in torch.from_numpy(indices).split(max(self.cfg.training.batch_size, 256)):
            logits = self._forward(batch)
            losses.append(F.cross_entropy(logits, self.data.label[batch].to(self.device), reduction="sum").item())
            preds.append(logits.argmax(1).cpu())
        self.net.train(was_training)
        return sum(losses) / len(indices), torch.cat(preds).numpy()


def old_state(trainer: loop.Trainer) -> dict:
    """Trainer.state() as it was (commit 1c9fefe): the live tensors, one storage each, in their layouts."""
    return {"subject_pool": trainer.data.subjects, "session_pool": trainer.data.sessions,
            "net": trainer.net.state_dict(), "optimizer": trainer.optimizer.state_dict(),
            "shuffle": trainer.shuffle.get_state(), "torch_rng": torch.get_rng_state(), "cuda_rng": None,
            "history": trainer.history, "best": trainer.best}


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: these tiny steps gain nothing from two, and lose much when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- bit-identity


@pytest.mark.parametrize("accelerator", ["auto", "off"])    # off: the CUDA branch, on the CPU
def test_results_are_bit_identical_to_the_per_step_sync_loop(accelerator):
    """History, best checkpoint, final weights and test predictions, bit for bit, for the same seed."""
    cfg, spec, data = tiny_run(accelerator=accelerator)
    trainers, outcomes = [], []
    for cls in (PerStepSyncTrainer, loop.Trainer):     # one after the other: a Trainer seeds torch's generator
        trainers.append(cls(cfg, spec, data, CPU))
        trainers[-1].fit()
        outcomes.append(trainers[-1].evaluate())
    old, new = trainers
    assert len(new.history) == cfg.training.nbEpoch
    assert without_seconds(new.history) == without_seconds(old.history)
    assert {k: v for k, v in new.best.items() if k != "state"} == {k: v for k, v in old.best.items() if k != "state"}
    assert_same_tensors(new.best["state"], old.best["state"])
    assert_same_tensors(new.net.state_dict(), old.net.state_dict())
    (old_loss, old_truth, old_pred), (new_loss, new_truth, new_pred) = outcomes
    assert new_loss == old_loss and np.array_equal(new_truth, old_truth) and np.array_equal(new_pred, old_pred)


def poison(trainer: loop.Trainer, row: int) -> None:
    """Make one training window's values NaN in the trainer's device arrays (and its host arrays)."""
    for x in (*trainer.inputs.values(), *trainer.data.inputs.values()):
        x[row] = math.nan


def test_a_diverging_epoch_fails_as_before_and_is_not_kept():
    """A NaN loss in epoch 1: the same Diverged message as the per-step check; nothing of the epoch kept."""
    cfg, spec, data = tiny_run()
    messages = []
    for cls in (PerStepSyncTrainer, loop.Trainer):
        run = copy.deepcopy(data)
        trainer = cls(cfg, spec, run, CPU)
        poison(trainer, int(run.split.train[-1]))
        kept = []
        with pytest.raises(loop.Diverged) as e:
            trainer.fit(kept.append)
        messages.append(str(e.value))
        assert kept == [] and trainer.history == [] and trainer.best["state"] is None
    assert messages[0] == messages[1] == "sub01_ses1 (subject 1, session 1), epoch 1: training loss became nan"


def test_an_epoch_that_turned_non_finite_leaves_the_last_finished_one():
    """Divergence in epoch 2: epoch 1's row, best checkpoint and saved state are what remains."""
    cfg, spec, data = tiny_run()
    trainer = loop.Trainer(cfg, spec, copy.deepcopy(data), CPU)
    saved = []

    def on_epoch(row):
        saved.append(copy.deepcopy(trainer.state()))
        poison(trainer, int(data.split.train[0]))    # epoch 2 sees a NaN window

    with pytest.raises(loop.Diverged, match=r"epoch 2: training loss became nan"):
        trainer.fit(on_epoch)
    assert len(saved) == 1 and [r["epoch"] for r in trainer.history] == [1] and trainer.best["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in trainer.best["state"].values() if t.is_floating_point())
    assert all(torch.isfinite(t).all() for t in saved[0]["net"].values() if t.is_floating_point())


# ----------------------------------------------------------------------------- waits for the device


# Tensor operations that make the host wait for a CUDA device (its values read, or copied to the host).
WAITS = {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__format__", "nonzero"}


class CountWaits(TorchFunctionMode):
    """Counts the operations of WAITS, and .to() towards the host: on CUDA, each is a wait for the device."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        to_host = name == "to" and any(str(a) == "cpu" for a in (*args[1:], kwargs.get("device")))
        self.count += name in WAITS or to_host
        return func(*args, **kwargs)


def waits(fn) -> int:
    with CountWaits() as counter:
        fn()
    return counter.count


@pytest.mark.parametrize("cls, per_step", [(loop.Trainer, False), (PerStepSyncTrainer, True)])
def test_the_cuda_branch_waits_once_per_epoch_and_once_per_evaluation(cls, per_step):
    """The CUDA branch (definition, arrays on the device) on the CPU: the number of operations that would make
    the host wait for a CUDA device does not grow with the steps of an epoch or the batches of an evaluation
    (tests/test_cuda.py counts the real waits on a GPU). The old loop, counted the same way, does."""
    counts = {}
    for batch_size in (8, 32):     # 8 steps an epoch and 2 evaluation batches, or 1 and 1
        cfg, spec, data = tiny_run(n=40 if batch_size == 32 else 100, batch_size=batch_size, accelerator="off")
        trainer = cls(cfg, spec, data, CPU)
        trainer.predict(data.split.val)     # warm: first calls may initialise things
        counts[batch_size] = (waits(lambda: trainer.train_epoch(1)),
                              waits(lambda: trainer.predict(np.arange(300 if batch_size == 8 else 100) % 40)))
    train_small, eval_small = counts[32]
    train_large, eval_large = counts[8]
    if per_step:
        assert train_large > train_small and eval_large > eval_small
    else:
        assert train_large == train_small and eval_large == eval_small


def test_the_run_arrays_are_moved_once_and_shared():
    cfg, spec, data = tiny_run()
    data.inputs["spectral_again"] = data.inputs["spectral"]
    trainer = loop.Trainer(cfg, spec, data, CPU)
    assert trainer.inputs["spectral_again"] is trainer.inputs["spectral"]
    assert trainer.inputs["spectral"] is data.inputs["spectral"]    # on the CPU: no copy at all


# ----------------------------------------------------------------------------- the resumable state


def storages(tree) -> set:
    return {t.untyped_storage().data_ptr() for t in loop.tensors_in(tree)}


def test_partial_state_is_one_buffer_per_dtype_loads_safely_and_resumes_bit_identically(tmp_path):
    """The state as a CUDA Trainer saves it (host_copy: one host buffer per dtype; on the CPU the live tensors are
    saved, so snapshot=True stands in): torch.load(weights_only=True) reads it, and it resumes bit-identically."""
    cfg, spec, data = tiny_run(nbEpoch=2)
    uninterrupted = loop.Trainer(cfg, spec, data, CPU)
    uninterrupted.fit()
    first = loop.Trainer(cfg, spec, data, CPU)

    def save_after_epoch_1(row):
        if row["epoch"] == 1:
            state = first.state()
            state |= loop.host_copy({k: state[k] for k in ("net", "optimizer", "best")}, snapshot=True)
            torch.save({"config_key": "key", "code": None, **state}, tmp_path / "p.pt")

    first.fit(save_after_epoch_1)
    saved = torch.load(tmp_path / "p.pt", map_location="cpu", weights_only=True)     # plain types only
    parts = {k: saved[k] for k in ("net", "optimizer", "best")}
    dtypes = {t.dtype for t in saved["net"].values()}
    assert len(storages(parts)) == len(dtypes) == 2    # float32 and int64 (BN batch counts)
    assert saved["best"]["epoch"] == 1 and len(saved["history"]) == 1

    resumed = loop.Trainer(cfg, spec, data, CPU)
    store.load_partial(tmp_path / "p.pt", resumed, "key")
    resumed.fit()
    assert without_seconds(resumed.history) == without_seconds(uninterrupted.history)
    assert_same_tensors(resumed.net.state_dict(), uninterrupted.net.state_dict())
    assert_same_tensors(resumed.best["state"], uninterrupted.best["state"])


def test_the_saved_partial_state_loads_with_weights_only(tmp_path):
    cfg, spec, data = tiny_run(nbEpoch=1)
    trainer = loop.Trainer(cfg, spec, data, CPU)
    trainer.fit()
    store.save_partial(tmp_path / "p.pt", trainer, "key", {"training.py": "abc"})
    saved = torch.load(tmp_path / "p.pt", map_location="cpu", weights_only=True)
    assert saved["config_key"] == "key" and saved["code"] == {"training.py": "abc"} and saved["best"]["epoch"] == 1


def test_a_partial_state_of_the_former_layout_resumes_bit_identically(tmp_path):
    """A state saved as before (live tensors, channels-last Adam moments, one storage each) still resumes."""
    cfg, spec, data = tiny_run(nbEpoch=2)
    uninterrupted = loop.Trainer(cfg, spec, data, CPU)
    uninterrupted.fit()
    first = loop.Trainer(cfg, spec, data, CPU)
    first.fit(lambda row: torch.save({"config_key": "key", "code": None, **old_state(first)}, tmp_path / "old.pt")
              if row["epoch"] == 1 else None)
    resumed = loop.Trainer(cfg, spec, data, CPU)
    store.load_partial(tmp_path / "old.pt", resumed, "key")
    resumed.fit()
    assert without_seconds(resumed.history) == without_seconds(uninterrupted.history)
    assert_same_tensors(resumed.net.state_dict(), uninterrupted.net.state_dict())


def test_host_copy_keeps_values_shapes_types_and_state_dict_versions():
    net = torch.nn.Sequential(torch.nn.Conv3d(2, 3, 1), torch.nn.BatchNorm3d(3))
    net = net.to(memory_format=torch.channels_last_3d)
    tree = {"net": net.state_dict(), "pair": (torch.ones(2, dtype=torch.int64), 3), "list": [torch.zeros(()), "x"]}
    assert loop.host_copy(tree)["net"]["0.weight"] is tree["net"]["0.weight"]   # host tensors: as they are
    copied = loop.host_copy(tree, snapshot=True)
    assert type(copied["net"]) is type(tree["net"]) and copied["net"]._metadata == tree["net"]._metadata
    assert_same_tensors(copied["net"], tree["net"])
    assert isinstance(copied["pair"], tuple) and copied["pair"][1] == 3 and copied["list"][1] == "x"
    assert copied["list"][0].shape == () and torch.equal(copied["pair"][0], tree["pair"][0])
    tree["net"]["0.weight"].add_(1)                       # a copy, not the live tensors
    assert not torch.equal(copied["net"]["0.weight"], tree["net"]["0.weight"])


# ----------------------------------------------------------------------------- CUDA details on the CPU


def test_resume_restores_the_cuda_generator_states_that_fit(monkeypatch, capsys):
    """A state saved with more CUDA generators than this machine has devices: those that fit, and one line."""
    cfg, spec, data = tiny_run()
    trainer = loop.Trainer(cfg, spec, data, CPU)
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((int(state[0]), device)))
    states = [torch.full((4,), i, dtype=torch.uint8) for i in range(3)]
    trainer._load_cuda_rng(states)
    assert restored == [(0, 0), (1, 1)]
    out = capsys.readouterr().out.splitlines()
    assert out == ["sub01_ses1: the partial state holds the CUDA generator states of 3 devices, this machine has 2: "
                   "restored those of cuda:0..1 only"]
    restored.clear()
    trainer._load_cuda_rng(states[:1])       # fewer than the devices: all fit, nothing to say
    assert restored == [(0, 0)] and capsys.readouterr().out == ""


# ----------------------------------------------------------------------------- precision in the result key


