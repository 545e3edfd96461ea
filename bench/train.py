"""Training throughput of this project's SSTEmotionNet against TorchEEG's, in one run.

On the CPU three versions of this project's network are timed: the definition (model.py) run
through the CPU accelerator (fastcpu.py) in both block orders, as run.py trains it, and the plain
definition itself (paper order), which is what the accelerator is measured against. On CUDA the
definition is what trains, so both block orders run it; peak GPU memory is printed per model.

    python bench/train.py                          # CPU, batch 64, SEED.ini input sizes
    python bench/train.py --iters 10 --threads 1
    python bench/train.py --device cuda --amp --channels-last
    python bench/train.py --amp --channels-last         # CPU: bf16 autocast (AMX on recent Xeons)
    python bench/train.py --compile-torcheeg            # TorchEEG's model through torch.compile

    python bench/train.py --keep-freed-memory      # both models without glibc's page-fault cost

A training step is forward + cross-entropy + backward + (fused) Adam step on one fixed random
batch. The models take turns step by step (paper order, official order, TorchEEG, repeat), so a
machine whose speed drifts during the run slows them alike; each reports the median over
`--iters` timed steps after `--warmup` untimed ones, and each ratio is also given per round
(median, min, max of the step-time ratios of one round of turns). Then the single-sample
inference latency of this project's model (eval mode, no_grad, median of `--latency-runs`).

What the machine allows is measured in the same run too: a float32 2048 x 2048 matrix product,
timed once in every round of turns, gives its arithmetic rate at best (median over the rounds), and
torch's FlopCounterMode counts the floating-point operations of one training step of each model
(convolutions and matrix products, forward and backward; not the element-wise passes or the
optimizer). Each model's rate is printed as GFLOP/s and as a share of the matrix-product rate, and
so is the rate that 3x the reference's throughput would take.

The allocator matters. glibc's malloc hands large blocks (32 MiB or more, and smaller ones until
its dynamic threshold has risen) back to the kernel when they are freed, so a model that allocates
large activations every step pays page faults for them every step; how many depends on the heap's
state, so such a model's rate moves from run to run. The accelerated model reuses its largest
buffers (fastcpu._Workspace); the plain definition and TorchEEG's allocate afresh.
`--keep-freed-memory` calls utils.keep_freed_memory (mallopt, before the models are built: every
block from the heap, freed memory kept): both models then run without that cost, which compares the
computation alone. run.py makes the same call when it trains on the CPU. Both figures are reported
in the README.

TorchEEG (benchmark-only dependency, not in requirements.txt): `pip install --no-deps
torcheeg==1.1.3`. Only its model file is loaded (importing the package pulls in many
dependencies); its SSTEmotionNet takes (N, specInput_length + temInput_length, W, W) maps
and is built with the same input sizes, growth rates, depths and class count.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import model  # noqa: E402
from common import cpu_model, matrix_product  # noqa: E402  (bench/common.py)
from sst import cli, config, errors, runtime
from sst.training import fastcpu, optim

TORCHEEG_VERSION = "1.1.3"
PRODUCT_SIZE = 2048      # the reference matrix product: float32, PRODUCT_SIZE x PRODUCT_SIZE


def load_torcheeg_model():
    """TorchEEG's SSTEmotionNet class, loaded from its model file alone; None with a message if absent."""
    spec = importlib.util.find_spec("torcheeg")
    if spec is None or not spec.submodule_search_locations:
        print(f"torcheeg not installed: skipping it (pip install --no-deps torcheeg=={TORCHEEG_VERSION})")
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    path = root / "models" / "cnn" / "sst_emotion_net.py"
    if not path.is_file():
        print(f"torcheeg at {root} has no {path.relative_to(root)}: skipping it (expected torcheeg {TORCHEEG_VERSION})")
        return None
    module_spec = importlib.util.spec_from_file_location("torcheeg_sst_emotion_net", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SSTEmotionNet


def make_step(net, optimizer, forward, labels, autocast):
    """One training step as a closure; returns nothing (the loss stays on the device)."""
    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(forward(), labels)
        loss.backward()
        optimizer.step()
    return step


def counted_flops(step) -> int:
    """Floating-point operations of one call of step() (2 per multiply-add), as torch counts them."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def timed(fn, device: torch.device) -> float:
    """Seconds for fn(), waiting for the device to finish."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default=str(Path(__file__).resolve().parents[1] / "SEED.ini"),
                        help="INI file giving input sizes and model keys (default: SEED.ini)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64, the authors')")
    parser.add_argument("--iters", type=int, default=5, help="timed training steps per model (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first (default 2)")
    parser.add_argument("--latency-runs", type=int, default=50, help="single-sample inference runs (default 50)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default 0: torch's default)")
    parser.add_argument("--amp", action="store_true",
                        help="bf16 autocast around every model's forward, on CUDA or the CPU (run.py uses it "
                             "on CUDA only: [training] amp)")
    parser.add_argument("--channels-last", action="store_true",
                        help="channels-last 3D memory format for TorchEEG's model (this project's is "
                             "channels-last 3D always, as run.py trains it)")
    parser.add_argument("--compile-torcheeg", action="store_true",
                        help="torch.compile TorchEEG's model (inductor; this project's model, made of custom "
                             "autograd nodes, is not compiled); its compile time is printed apart")
    parser.add_argument("--no-torcheeg", action="store_true", help="time this project's model only")
    parser.add_argument("--no-plain", action="store_true", help="CPU: skip the plain definition (paper order)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc: serve large blocks from the heap and keep freed memory, for both models "
                             "(no page faults from re-mapping; see the docstring)")
    args = parser.parse_args(argv)
    if min(args.batch, args.iters, args.latency_runs) < 1 or args.warmup < 0:
        raise errors.UserError("--batch, --iters and --latency-runs must be >= 1, --warmup >= 0")
    if args.compile_torcheeg and args.warmup < 1:
        raise errors.UserError("--compile-torcheeg needs --warmup >= 1 (the first step compiles; it is not timed)")
    if args.compile_torcheeg and args.no_torcheeg:
        raise errors.UserError("--compile-torcheeg and --no-torcheeg exclude each other")
    if args.keep_freed_memory and not runtime.keep_freed_memory():
        raise errors.UserError("--keep-freed-memory needs glibc's mallopt, which this system's C library lacks")

    cfg = config.load_config(args.config)
    device = runtime.resolve_device(args.device, where="--device")
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True     # as run.py
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.amp else nullcontext

    data, m = cfg.data, cfg.model
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CPU: {cpu_model()}")
    print(f"device: {torch.cuda.get_device_name(device) if cuda else 'cpu'}, "
          f"{'bf16 autocast' if args.amp else 'float32'}, TorchEEG channels-last: {args.channels_last}, "
          f"TorchEEG compiled: {args.compile_torcheeg}")
    print("allocator: " + ("glibc, large blocks from the heap, freed memory kept (--keep-freed-memory)"
                           if args.keep_freed_memory else "default"))
    print(f"batch {args.batch}, maps {data.input_width}x{data.input_width}x{data.specInput_length} and "
          f"{data.input_width}x{data.input_width}x{data.temInput_length}, {m.nb_class} classes; "
          f"{args.warmup} warm-up + {args.iters} timed steps per model, taking turns")

    torch.manual_seed(0)
    w = data.input_width
    spectral = torch.randn(args.batch, w, w, data.specInput_length, device=device)
    temporal = torch.randn(args.batch, w, w, data.temInput_length, device=device)
    labels = torch.randint(0, m.nb_class, (args.batch,), device=device)

    steps, nets, flop_steps = {}, {}, {}
    variants = [(order, not cuda) for order in ("paper", "official")]      # (block order, accelerated)
    if not cuda and not args.no_plain:
        variants.append(("paper", False))
    for order, accelerated in variants:
        # as run.py builds it: channels-last 3D parameters (oneDNN's convolutions run faster on them)
        net = model.build_model(cfg.replace(model={"block_order": order})).to(device,
                                                                           memory_format=torch.channels_last_3d)
        optimizer = optim.adam(net, cfg.training.l2, cfg.training.lr)
        forward = fastcpu.accelerate(net) if accelerated else net
        if forward is None:     # the definition was edited: there is no accelerated figure to give
            raise errors.UserError("fastcpu stepped aside (see the line above): model.py is not the definition it "
                                  "was written for, so only the definition can be measured")
        name = f"{'accelerated' if accelerated else 'definition'} ({order})"
        nets[name] = net
        steps[name] = flop_steps[name] = make_step(net, optimizer, lambda f=forward: f(spectral, temporal), labels,
                                                   autocast)

    TorchEEGNet = None if args.no_torcheeg else load_torcheeg_model()
    if TorchEEGNet is not None:
        teeg = TorchEEGNet(grid_size=(w, w), spectral_in_channels=data.specInput_length,
                           temporal_in_channels=data.temInput_length, spectral_depth=m.depth_spec,
                           temporal_depth=m.depth_tem, spectral_growth_rate=m.gr_spec,
                           temporal_growth_rate=m.gr_tem, num_dense_block=m.nb_dense_block,
                           num_classes=m.nb_class).to(device)
        # its input: spectral then temporal maps stacked as channels, (N, bands + time points, W, W)
        stacked = torch.cat([spectral, temporal], dim=-1).permute(0, 3, 1, 2).contiguous()
        if args.channels_last:
            teeg = teeg.to(memory_format=torch.channels_last_3d)
            stacked = stacked.contiguous(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(teeg.parameters(), lr=cfg.training.lr, fused=True)   # as ours
        forward = torch.compile(teeg) if args.compile_torcheeg else teeg
        steps[f"torcheeg {TORCHEEG_VERSION}"] = make_step(teeg, optimizer, lambda: forward(stacked), labels, autocast)
        flop_steps[f"torcheeg {TORCHEEG_VERSION}"] = make_step(teeg, optimizer, lambda: teeg(stacked), labels, autocast)

    reference = f"torcheeg {TORCHEEG_VERSION}"
    gflops = {name: counted_flops(step) / args.batch / 1e9 for name, step in flop_steps.items()}   # per sample
    product, product_flops = matrix_product(device, PRODUCT_SIZE)
    peak_memory = {}
    for name, step in steps.items():
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        seconds = [timed(step, device) for _ in range(args.warmup)]
        if cuda:
            peak_memory[name] = torch.cuda.max_memory_allocated(device) / 2**30
        if args.compile_torcheeg and name == reference:
            print(f"TorchEEG's first step, compilation included: {seconds[0]:.1f} s")
    timed(product, device)
    times, product_times = {name: [] for name in steps}, []
    for _ in range(args.iters):
        for name, step in steps.items():
            times[name].append(timed(step, device))
        product_times.append(timed(product, device))
    peak = product_flops / statistics.median(product_times) / 1e9

    print(f"\ntraining throughput (forward + backward + Adam), median of {args.iters} steps:")
    rate = {name: args.batch / statistics.median(t) for name, t in times.items()}
    print(f"  {f'float32 {PRODUCT_SIZE}x{PRODUCT_SIZE} matmul':<28}{peak:9.0f} GFLOP/s        "
          "(the arithmetic rate at best)")
    for name, r in rate.items():
        print(f"  {name:<28}{r:9.1f} samples/s   ({1000 * statistics.median(times[name]):.0f} ms/step)   "
              f"{gflops[name]:.2f} GFLOP/sample, {r * gflops[name]:.0f} GFLOP/s = "
              f"{r * gflops[name] / peak:.0%} of the matrix product's")
    for name, gib in peak_memory.items():
        print(f"  peak GPU memory {name}: {gib:.2f} GiB (its warm-up steps; every model's parameters included)")
    plain, fast = "definition (paper)", "accelerated (paper)"
    if plain in rate and fast in rate:
        rounds = [b / a for a, b in zip(times[fast], times[plain])]
        print(f"  ratio {fast} / {plain}: {rate[fast] / rate[plain]:.2f}x   (per round: median "
              f"{statistics.median(rounds):.2f}x, min {min(rounds):.2f}x, max {max(rounds):.2f}x)")
    if reference in rate:
        for name in nets:
            rounds = [b / a for a, b in zip(times[name], times[reference])]
            print(f"  ratio {name} / torcheeg: {rate[name] / rate[reference]:.2f}x   (per round: median "
                  f"{statistics.median(rounds):.2f}x, min {min(rounds):.2f}x, max {max(rounds):.2f}x)")
        for name in [n for n in nets if n.startswith("accelerated")]:
            need = 3 * rate[reference] * gflops[name]
            print(f"  3x torcheeg would take {3 * rate[reference]:.1f} samples/s of {name}: {need:.0f} GFLOP/s, "
                  f"{need / peak:.0%} of the matrix product's rate")

    print(f"\nsingle-sample inference latency (eval, no_grad), median of {args.latency_runs} runs:")
    one_spectral, one_temporal = spectral[:1], temporal[:1]
    for name, net in {f"definition ({n.split('(')[1]}": net for n, net in nets.items()}.items():   # eval: the definition
        net.eval()
        with torch.no_grad(), autocast():
            for _ in range(3):
                net(one_spectral, one_temporal)
            latency = [timed(lambda: net(one_spectral, one_temporal), device) for _ in range(args.latency_runs)]
        print(f"  {name:<28}{1000 * statistics.median(latency):9.2f} ms")
    return 0


if __name__ == "__main__":
    cli.cli_main(main)
