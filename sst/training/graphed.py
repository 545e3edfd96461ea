"""The network's full batches through torch.compile ([training] compile = off | on | auto): on CUDA as CUDA
graphs, so that a step costs a few graph launches instead of about 560 kernel launches (826 under bf16).

    if graphed.wanted(cfg, device):                 # on, or auto where bench/gpu.sh measured it faster
        net_c = graphed.compiled(net, device)       # shares net's parameters, buffers and state dict
        graphed.step_begins(); logits = net_c(**maps)   # a full batch; a partial one goes through net itself

What the Trainer (sst.training.loop) does with it, and why:
  * fixed shapes (dynamic=False): only full batches go through the graph, one graph for training (forward and
    backward) and one for evaluation (eval mode is a guard of its own); the partial last batch of an epoch, and
    of an evaluation, runs eagerly through the same module. Padding it to a full batch would change
    BatchNorm's batch statistics, so it is never padded. A run therefore compiles twice, once per mode.
  * the same maths: dropout draws its masks as eager does (inductor's fallback_random), so a compiled float32
    run equals an eager one to float32 rounding, and compile is not part of the result key
    (sst.results.provenance). Under bf16 autocast it is: inductor fuses the casts autocast inserts and may keep
    a fused intermediate in float32 where eager rounds it to bf16, so a compiled bf16 run differs from an eager
    one by bf16 rounding; its precision is "bf16-compiled" (`precision`).
  * a warm cache: a fresh network of the same configuration reuses the graphs compiled in this process (the
    parameters are the graph's inputs, not its constants), and inductor's on-disk cache
    (TORCHINDUCTOR_CACHE_DIR, by default under the system's temporary folder) serves later processes, the
    workers of --jobs included: measured on the CPU, the test network compiles in 69 s cold, 5 s from the disk
    cache, 0.02 s for a second network in one process.
  * on the CPU, compile = on compiles the definition (the CPU accelerator, sst/training/fastcpu.py, steps aside);
    measured there it ran at 0.83-0.86x the accelerator after 94 s of compiling (issue 35), so auto leaves it off.
"""
from __future__ import annotations

import torch

# The devices, by the start of torch.cuda.get_device_name, where bench/gpu.sh measured the compiled step faster
# than the eager one over a whole run (compile included): where compile = auto turns it on. None yet: no GPU has
# run gpu.sh, so auto is off everywhere until one has (add the name here with the figures in bench/README.md).
# Adding one changes two things there: bf16 runs of the default settings become bf16-compiled (another result
# key: earlier bf16 folders on that GPU are then another configuration), and `wanted` asks the GPU's name in
# run.py's parent process, initialising CUDA there (make it ask in the workers first).
FASTER_ON: tuple[str, ...] = ()
BACKEND = "inductor"      # torch.compile's backend (tests use "aot_eager" too: the same graphs, run by aten)


def wanted(cfg, device) -> bool:
    """Whether runs of `cfg` on `device` train their full batches through torch.compile."""
    choice = cfg.training.compile
    if choice != "auto":
        return choice == "on"
    device = torch.device(device)
    # FASTER_ON tested first: asking a GPU's name initialises CUDA, which run.py's parent process must not do
    return bool(FASTER_ON) and device.type == "cuda" and torch.cuda.get_device_name(device).startswith(FASTER_ON)


def precision(cfg, device) -> str:
    """The effective precision of the network's training on `device` (part of the result key): "float32",
    "bf16" (CUDA autocast, [training] amp) or "bf16-compiled" (the same, through torch.compile)."""
    if torch.device(device).type != "cuda" or not cfg.training.amp:
        return "float32"
    return "bf16-compiled" if wanted(cfg, device) else "bf16"


def compiled(net: torch.nn.Module, device) -> torch.nn.Module:
    """`net` through torch.compile for fixed shapes: CUDA graphs on CUDA (mode reduce-overhead), dropout's
    masks drawn as eager draws them. Call `step_begins()` before each training step through it."""
    import torch._dynamo.config
    import torch._inductor.config

    torch._inductor.config.fallback_random = True
    # one graph per mode and configuration; a process may train several configurations (--ablation)
    limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"   # torch < 2.6
    setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 64))
    mode = "reduce-overhead" if torch.device(device).type == "cuda" and BACKEND == "inductor" else None
    return torch.compile(net, backend=BACKEND, mode=mode, dynamic=False)


def step_begins() -> None:
    """A new training step: the CUDA graphs' outputs of the last one (logits, gradients) may be overwritten."""
    torch.compiler.cudagraph_mark_step_begin()
