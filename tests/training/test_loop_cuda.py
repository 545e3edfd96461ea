"""CUDA: the definition trains and evaluates on the GPU as on the CPU; the Trainer keeps a run's arrays on the
device and waits for it a fixed number of times per epoch; run.py end to end on CUDA. Skipped on a machine
without a CUDA device (bench/gpu.sh runs them where there is one; tests/training/test_loop_cuda_path.py runs the CUDA
branch of the Trainer on the CPU).

    python -m pytest tests/test_cuda.py -q
"""
import copy
import json

import pytest
import torch
import torch.nn.functional as F

import model
from conftest import ROOT, TINY_MODEL, run_cli, tiny_run, write_ini
from sst import config
from sst.training import optim

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def small() -> config.Config:
    cfg = config.load_config(ROOT / "SEED.ini")
    return cfg.replace(data={"input_width": 16, "temInput_length": 9},
                       model={"depth_spec": 10, "depth_tem": 10, "gr_spec": 4, "gr_tem": 6})


def batch(c: config.Config, n: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    w = c.data.input_width
    return (torch.randn(n, w, w, c.data.specInput_length, generator=g),
            torch.randn(n, w, w, c.data.temInput_length, generator=g), torch.arange(n) % c.model.nb_class)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last_3d])
def test_cuda_training_step_equals_cpu(memory_format):
    """One float32 training step (TF32 off): loss, gradients and running statistics as on the CPU."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    c = small()
    torch.manual_seed(0)
    cpu = model.build_model(c)
    gpu = copy.deepcopy(cpu).cuda().to(memory_format=memory_format)
    for m in (cpu, gpu):
        m.head.dropout.p = 0.0          # the devices draw different dropout masks
    spectral, temporal, labels = batch(c)
    loss_cpu = F.cross_entropy(cpu(spectral, temporal), labels)
    loss_cpu.backward()
    loss_gpu = F.cross_entropy(gpu(spectral.cuda(), temporal.cuda()), labels.cuda())
    loss_gpu.backward()
    torch.testing.assert_close(loss_gpu.cpu(), loss_cpu, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-3, atol=1e-4 * p.grad.abs().max().item(), msg=name)
    for (name, a), b in zip(cpu.state_dict().items(), gpu.state_dict().values()):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5, msg=name)


def test_cuda_bf16_autocast_trains():
    """[training] amp: bf16 autocast steps; the first loss near the float32 one of the same training-mode step
    (dropout off in both: like with like), every gradient finite, the loss falls."""
    c = small()
    torch.manual_seed(0)
    net = model.build_model(c).cuda().to(memory_format=torch.channels_last_3d)
    net.head.dropout.p = 0.0
    spectral, temporal, labels = (t.cuda() for t in batch(c, 16))
    with torch.no_grad():     # a copy: training-mode BN updates its running statistics
        reference = F.cross_entropy(copy.deepcopy(net).train()(spectral, temporal), labels).item()
    net.train()
    optimizer = optim.adam(net, 1e-4, 1e-3)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(spectral, temporal).float(), labels)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert abs(losses[0] - reference) < 0.05 * reference     # bf16 rounding only
    assert losses[-1] < losses[0]


def test_run_py_trains_on_cuda(tmp_path):
    """run.py with device = cuda: trains, writes results and a checkpoint that loads on the CPU."""
    from sst.data import synthetic

    synthetic.write_seed(tmp_path / "SEED", subjects=(1,), sessions=(1,), trial_fraction=0.05, seed=0)
    ini = write_ini(tmp_path / "cuda.ini",
                    path={"dataset_root": tmp_path / "SEED", "preprocessed_root": tmp_path / "pre",
                          "result_path": tmp_path / "res"},
                    data={"input_width": 16}, model=TINY_MODEL,
                    training={"nbEpoch": 2, "batch_size": 32, "device": "cuda", "amp": "true"})
    p = run_cli("Preprocess.py", "-c", str(ini))
    assert p.returncode == 0, p.stderr
    p = run_cli("run.py", "-c", str(ini))
    assert p.returncode == 0, p.stderr
    assert "device cuda" in p.stdout
    record = json.loads((tmp_path / "res" / "runs" / "sub01_ses1.json").read_text())
    assert 0 <= record["accuracy"] <= 1
    checkpoint = torch.load(tmp_path / "res" / "checkpoints" / "sub01_ses1.pt", map_location="cpu", weights_only=False)
    net = model.build_model(config.Config.from_dict(checkpoint["config"]))
    net.load_state_dict(checkpoint["model"])


def test_cuda_resume_keeps_the_partial_state(tmp_path):
    """A partial state saved on CUDA (one host buffer per dtype) loads with weights_only and resumes; its RNG
    states are CPU tensors; generator states of absent devices are left, with one line."""
    from sst.results import store
    from sst.training import loop

    cfg, spec, data = tiny_run(nbEpoch=1)
    trainer = loop.Trainer(cfg, spec, data, torch.device("cuda"))
    assert trainer.inputs["spectral"].is_cuda and trainer.labels.is_cuda
    trainer.fit()
    store.save_partial(tmp_path / "p.pt", trainer, "key")
    saved = torch.load(tmp_path / "p.pt", map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in saved["net"].values())
    resumed = loop.Trainer(cfg, spec, data, torch.device("cuda"))
    store.load_partial(tmp_path / "p.pt", resumed, "key")
    assert len(resumed.history) == 1
    resumed._load_cuda_rng(torch.cuda.get_rng_state_all() + [torch.cuda.get_rng_state(0)])   # one device too many


def test_cuda_epoch_waits_for_the_device_a_fixed_number_of_times():
    """torch's sync debug mode counts the real waits: an epoch and an evaluation pass wait as often with
    8 steps as with 1 (the end of the epoch, the end of the pass), never once per step."""
    import warnings

    from sst.training import loop

    counts = {}
    for batch_size, n in ((8, 100), (32, 40)):
        cfg, spec, data = tiny_run(n=n, batch_size=batch_size)
        trainer = loop.Trainer(cfg, spec, data, torch.device("cuda"))
        trainer.train_epoch(1)     # warm: the first epoch initialises cuDNN and the allocator
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                trainer.train_epoch(2)
                trainer.predict(data.split.val)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts[batch_size] = sum("synchroniz" in str(w.message) for w in caught)
    assert counts[8] == counts[32] <= 4, counts


def test_cuda_trainer_matches_the_cpu_cuda_branch_to_float32_rounding():
    """The Trainer on CUDA in float32 (TF32 off) against the same loop on the CPU with the accelerator off."""
    from sst.training import loop

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    histories = []
    for device, accelerator in ((torch.device("cpu"), "off"), (torch.device("cuda"), "auto")):
        cfg, spec, data = tiny_run(nbEpoch=2, amp=False, accelerator=accelerator)
        cfg = cfg.replace(model={"dropout": 0.0})     # the devices draw different dropout masks
        trainer = loop.Trainer(cfg, spec, data, device)
        trainer.fit()
        histories.append(trainer.history)
    for cpu_row, cuda_row in zip(*histories):
        for key in ("train_loss", "val_loss"):
            assert abs(cpu_row[key] - cuda_row[key]) < 1e-2 * abs(cpu_row[key]), (key, cpu_row, cuda_row)
