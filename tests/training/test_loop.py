"""sst/training/loop.py: the Trainer's early stopping and checkpoint choice, seeds, resume (the CUDA path on the CPU: test_loop_cuda_path.py; on a GPU: test_loop_cuda.py)."""
import math

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL, make_ini, write_ini
from sst import config
from sst.training import loop, protocols, runspec


def test_early_stopping_and_checkpoint_follow_keras_semantics(tmp_path):
    """Best checkpoint: strictly higher val accuracy. Stop: `patience` epochs without lower val loss."""
    cfg = config.load_config(write_ini(tmp_path / "a.ini", training={"patience": 2}))
    trainer = loop.Trainer.__new__(loop.Trainer)
    trainer.cfg = cfg
    trainer.net = type("Net", (), {"state_dict": lambda self: {"epoch": len(rows)}})()
    trainer.best = {"val_accuracy": -math.inf, "val_loss": math.inf, "epoch": 0, "state": None, "wait": 0}
    rows, stops = [], []
    for epoch, (loss, acc) in enumerate([(1.0, 0.5), (0.8, 0.7), (0.9, 0.7), (0.85, 0.6)], start=1):
        rows.append(epoch)
        stops.append(trainer._update_best({"epoch": epoch, "val_loss": loss, "val_accuracy": acc}))
    assert stops == [False, False, False, True]
    assert trainer.best["epoch"] == 2 and trainer.best["state"] == {"epoch": 2}


def test_the_trainer_seeds_each_repeat(tmp_path):
    """Repeat r trains as the base run would with [training] seed + r: weights and shuffling."""
    import torch

    cfg = config.load_config(write_ini(tmp_path / "a.ini", data={"input_width": 16}, model=TINY_MODEL,
                                      training={"accelerator": "off"}))
    n = 12
    data = loop.RunData({"spectral": torch.zeros(n, 62, 5), "temporal": torch.zeros(n, 62, 25)},
                            torch.zeros(n, dtype=torch.long), protocols.Split(np.arange(8), np.arange(8, 10),
                                                                             np.arange(10, 12)), {}, [1])

    def start(c, repeat):
        t = loop.Trainer(c, runspec.RunSpec(1, 1, repeat), data, torch.device("cpu"))
        return t.net.state_dict(), torch.randperm(50, generator=t.shuffle)

    base, rep1, shifted = start(cfg, 0), start(cfg, 1), start(cfg.replace(training={"seed": 43}), 0)
    assert all(torch.equal(rep1[0][k], shifted[0][k]) for k in base[0]) and torch.equal(rep1[1], shifted[1])
    assert not all(torch.equal(rep1[0][k], base[0][k]) for k in base[0]) and not torch.equal(rep1[1], base[1])


def test_resumed_trainer_keeps_early_stopping_and_refuses_other_configs(tiny, tmp_path):
    """In-process: a partial state saved at an early stop trains no further; one of another config is refused."""
    from sst.config import load_config
    from sst.data import session_store
    from sst.results import provenance, store
    from sst.training import loop, runspec

    cfg = load_config(make_ini(tmp_path / "a.ini", tiny / "SEED", tiny / "pre", tmp_path / "res", patience=1))
    spec = runspec.RunSpec(1, 1)
    data = loop.build_run_data(cfg, spec, session_store.load_preprocessed(cfg, subjects=[1]))
    trainer = loop.Trainer(cfg, spec, data, torch.device("cpu"))
    trainer.history = [{"epoch": 1}, {"epoch": 2}]
    trainer.best["wait"] = 1  # the state saved when epoch 2 stopped training (patience 1)
    epochs = []
    trainer.fit(epochs.append)
    assert len(trainer.history) == 2 and epochs == []

    key = provenance.result_key(cfg)
    store.save_partial(tmp_path / "partial.pt", trainer, key)
    other = loop.Trainer(cfg.replace(training={"lr": 1e-3}), spec, data, torch.device("cpu"))
    with pytest.raises(ValueError, match="another configuration"):
        store.load_partial(tmp_path / "partial.pt", other, provenance.result_key(other.cfg))
    older = {k: v for k, v in trainer.state().items() if k != "subject_pool"}
    loop.Trainer(cfg, spec, data, torch.device("cpu")).load_state(older)   # trial protocol: the pool is not needed
    loso = cfg.replace(training={"protocol": "loso"})
    saved = loop.Trainer(loso, spec, data, torch.device("cpu")).state()
    data.subjects = [1, 2, 3]    # loso, after subjects 2 and 3 were preprocessed
    with pytest.raises(ValueError, match=r"pooled subjects \[1\], now \[1, 2, 3\]"):
        loop.Trainer(loso, spec, data, torch.device("cpu")).load_state(saved)


def test_resume_from_a_contiguous_optimizer_state_trains_as_uninterrupted(tiny, tmp_path):
    """A partial state written when the parameters were contiguous (before run.py kept them channels-last
    3D) resumes with Adam's moments in the parameters' layout: the next step equals the uninterrupted one."""
    import copy

    from sst.config import load_config
    from sst.data import session_store
    from sst.training import loop, runspec

    cfg = load_config(make_ini(tmp_path / "a.ini", tiny / "SEED", tiny / "pre", tmp_path / "res"))
    spec = runspec.RunSpec(1, 1)
    data = loop.build_run_data(cfg, spec, session_store.load_preprocessed(cfg, subjects=[1]))
    first = loop.Trainer(cfg, spec, data, torch.device("cpu"))
    first.train_epoch(1)
    state = copy.deepcopy(first.state())        # state() holds live tensors, which the next steps change
    for moments in state["optimizer"]["state"].values():           # as saved from contiguous parameters
        for key, value in moments.items():
            if torch.is_tensor(value) and value.dim() == 5:
                moments[key] = value.contiguous()
    assert any(v.dim() == 5 and v.is_contiguous() for m in state["optimizer"]["state"].values()
               for v in m.values() if torch.is_tensor(v))
    resumed = loop.Trainer(cfg, spec, data, torch.device("cpu"))
    resumed.load_state(state)
    reference = loop.Trainer(cfg, spec, data, torch.device("cpu"))
    reference.load_state(copy.deepcopy(first.state()))
    for trainer in (resumed, reference):
        torch.manual_seed(5)
        trainer.train_epoch(2)
    for (name, a), b in zip(resumed.net.state_dict().items(), reference.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_cpu_training_never_runs_under_bf16_autocast(tmp_path, monkeypatch):
    """[training] amp = true is a CUDA setting: on the CPU a step never enters bf16 autocast (oneDNN's bf16
    backward-weights kernel gives wrong conv3d gradients on 2 x 2 maps: bench/bf16_cpu.py), and the run's
    precision, in its result key, is float32."""
    from sst.models import kinds

    cfg = config.load_config(write_ini(tmp_path / "a.ini", data={"input_width": 16}, model=TINY_MODEL,
                                      training={"amp": "true", "batch_size": 4, "nbEpoch": 1}))
    n = 12
    data = loop.RunData({"spectral": torch.randn(n, 62, 5), "temporal": torch.randn(n, 62, 25)},
                        torch.arange(n) % 3, protocols.Split(np.arange(8), np.arange(8, 10), np.arange(10, 12)),
                        {}, [1])
    entered = []
    real = torch.autocast

    class Watched(real):
        def __enter__(self):
            entered.append((self.device, self._enabled))
            return super().__enter__()

    monkeypatch.setattr(torch, "autocast", Watched)
    trainer = loop.Trainer(cfg, runspec.RunSpec(1, 1), data, torch.device("cpu"))
    trainer.fit(lambda row: None)
    assert not trainer.autocast and kinds.NETWORK.precision(torch.device("cpu"), cfg) == "float32"
    assert entered and all(not enabled for _, enabled in entered), entered     # each step asked, none enabled
    assert kinds.NETWORK.precision(torch.device("cuda"), cfg) == "bf16"     # where it does apply
