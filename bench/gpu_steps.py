"""The steps of bench/gpu.sh, one subcommand each; figures go to DIR/figures.json for the estimate.

    python3 bench/gpu_steps.py info --device cuda
    python3 bench/gpu_steps.py data --dir DIR --device cuda        # synthetic SEED, 4 subjects, Preprocess --no-maps
    python3 bench/gpu_steps.py check --dir DIR --device cuda       # bf16 against float32 on one device, dropout off
    python3 bench/gpu_steps.py runs --dir DIR --device cuda --t0 T # two runs in one process: costs, checkpoint on CPU
    python3 bench/gpu_steps.py options --dir DIR --device cuda     # compiled / eager, float32 / bf16, sync save
    python3 bench/gpu_steps.py resume|jobs|throughput --dir DIR --device cuda
    python3 bench/gpu_steps.py estimate --dir DIR                  # a line per combination, the best last

Run by bench/gpu.sh (read it first); every step can be run again alone. On the CPU (--device cpu: the dry
run) the sizes are reduced (DRY_RUN) so that the whole takes a few minutes on two cores: its figures say
nothing about a GPU. The timing hooks (wrapped Trainer methods, a Progress that notes when each epoch
ends) live here, not in the code they measure.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sst import cli, config

RUNS, EPOCHS = 45, 50           # the SEED protocol: 15 subjects x 3 sessions, nbEpoch 50
SUBJECTS = 4                    # synthetic subjects written: --jobs 4 trains four runs at once
FULL = {"trial_fraction": 1.0, "epochs": 3, "jobs_epochs": 4, "warmup": 3, "steps": 20, "set": []}
# The dry run on the CPU: short trials, 16 x 16 maps, 9 raw time points, a network of one layer per block.
DRY_RUN = {"trial_fraction": 0.05, "epochs": 3, "jobs_epochs": 2, "warmup": 1, "steps": 2,
           "set": ["data.input_width=16", "data.temInput_length=9", "model.depth_spec=10", "model.depth_tem=10",
                   "model.nb_dense_block=2", "model.gr_spec=4", "model.gr_tem=4", "training.num_threads=1"]}


def sizes(device: str) -> dict:
    return DRY_RUN if device == "cpu" else FULL


def overrides(args, result: str) -> list[str]:
    """--set values of every command and config of the bench: sizes, device, folders."""
    d = args.dir
    return [*sizes(args.device)["set"], f"training.device={args.device}", f"path.dataset_root={d / 'SEED'}",
            f"path.preprocessed_root={d / 'pre'}", f"path.result_path={d / result}"]


def load(args, result: str = "res", **changes) -> config.Config:
    cfg = config.load_config(ROOT / "SEED.ini", overrides=overrides(args, result))
    return cfg.replace(**changes) if changes else cfg


def note(args, **figures) -> None:
    """Merge figures into DIR/figures.json (what `estimate` reads)."""
    path = args.dir / "figures.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps(known | figures, indent=1))


def verdict(ok: bool) -> str:
    return "ok" if ok else "FAILED"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- info, data


def info(args) -> int:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {cudnn}, python {sys.version.split()[0]}")
    if args.device == "cpu":
        print(f"GPU: none: dry run on the CPU ({os.cpu_count()} cores) with reduced sizes ({DRY_RUN['trial_fraction']} "
              f"of each trial, 16 x 16 maps, a network of one layer per block, {DRY_RUN['epochs']} epochs a run): "
              f"every line below is printed as on a GPU, none of its figures is a GPU figure")
        return 0
    if not torch.cuda.is_available():
        print("GPU: no CUDA device visible to torch")
        return 1
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}, "
          f"{torch.cuda.device_count()} visible, bf16 {torch.cuda.is_bf16_supported()}")
    return 0


def _write_subject(root: Path, subject: int, fraction: float) -> None:
    from sst.data import synthetic

    synthetic.write_seed(root, subjects=(subject,), sessions=(1,), trial_fraction=fraction, seed=0)


def data(args) -> int:
    import Preprocess

    start = time.perf_counter()
    fraction = sizes(args.device)["trial_fraction"]
    with ProcessPoolExecutor(SUBJECTS) as pool:      # one subject each: their files differ
        list(pool.map(_write_subject, [args.dir / "SEED"] * SUBJECTS, range(1, SUBJECTS + 1), [fraction] * SUBJECTS))
    cfg = load(args)
    with open(os.devnull, "w") as quiet, _redirect(quiet):      # a line per session
        Preprocess.preprocess(cfg, maps=False)
    from sst.data import session_store

    windows = [len(s.label) for s in session_store.load_preprocessed(cfg)]
    print(f"data: synthetic SEED, {SUBJECTS} subjects x 1 session ({windows[0]} windows each), Preprocess.py "
          f"--no-maps: {time.perf_counter() - start:.0f} s")
    return 0


# ----------------------------------------------------------------------------- correctness


def check(args) -> int:
    """bf16 autocast against float32 on one device: one training-mode step (dropout off) on a batch of the
    synthetic session's windows, its loss, logits and gradients."""
    from sst.data import session_store
    from sst.training import loop, runspec

    device = torch.device(args.device)
    if device.type == "cuda":     # the float32 reference in float32, not TF32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    cfg = load(args, model={"dropout": 0.0})
    spec = runspec.RunSpec(1, 1)
    data = loop.build_run_data(cfg, spec, session_store.load_preprocessed(cfg, [1], [1]))
    trainer = loop.Trainer(cfg, spec, data, device)
    idx = loop.to_device(torch.from_numpy(data.split.train[:64]), device)
    y = trainer.labels.index_select(0, idx)
    out = {}
    for precision in ("float32", "bf16"):
        net = copy.deepcopy(trainer.net).train()      # a copy each: training-mode BN updates its statistics
        trainer.autocast = precision == "bf16"
        logits = trainer._forward(idx, net)
        loss = F.cross_entropy(logits, y)
        grads = None
        if device.type == "cuda" or precision == "float32":
            loss.backward()
            grads = torch.cat([p.grad.flatten() for p in net.parameters()])
        out[precision] = (loss.item(), logits.detach(), grads)
    (loss32, logits32, grads32), (loss16, logits16, grads16) = out["float32"], out["bf16"]
    rel = abs(loss16 - loss32) / abs(loss32)
    line = (f"bf16 against float32 on {device.type}, training mode, dropout off, batch 64: loss {loss16:.4f} / "
            f"{loss32:.4f} (relative {rel:.1e}), logits max |diff| {(logits16 - logits32).abs().max().item():.3f}")
    ok = rel < 0.05
    if grads16 is not None:
        cosine = F.cosine_similarity(grads16, grads32, dim=0).item()
        finite = bool(torch.isfinite(grads16).all())
        line += f", gradients cosine {cosine:.4f}, all finite {finite}"
        ok = ok and cosine > 0.9 and finite
    else:
        line += ", gradients not compared (bf16 backward of 3D convolutions on a CPU gives NaN now and then)"
    print(f"correctness: {line}: {verdict(ok)}")
    return 0 if ok else 1


# ----------------------------------------------------------------------------- two runs: costs


class Timers:
    """Wraps Trainer.train_epoch, Trainer.predict and StateWriter.save (seconds of each call), and notes
    when Trainer.fit starts; checks the gradients after each epoch, outside the timed part."""

    def __init__(self):
        from sst.results import store
        from sst.training import loop

        self.calls: list[tuple[str, float]] = []
        self.grads_finite: list[bool] = []
        timers = self

        def wrap(owner, name, label, after=None):
            original = getattr(owner, name)

            def timed(*a, **k):
                start = time.perf_counter()
                value = original(*a, **k)
                timers.calls.append((label, time.perf_counter() - start))
                if after:
                    after(*a)
                return value
            setattr(owner, name, timed)

        def check_grads(trainer, *_):       # after the epoch's last step: outside the timed part
            timers.grads_finite.append(all(bool(torch.isfinite(p.grad).all()) for p in trainer.net.parameters()
                                           if p.grad is not None))
        wrap(loop.Trainer, "train_epoch", "training", check_grads)
        wrap(loop.Trainer, "predict", "evaluation")
        wrap(store.StateWriter, "save", "state save")     # what training waits for ([training] state_save)
        self.fit_starts: list[float] = []
        fit = loop.Trainer.fit
        loop.Trainer.fit = lambda *a, **k: (self.fit_starts.append(time.perf_counter()), fit(*a, **k))[1]


def make_progress(planned: int):
    """run.Progress that also notes the time each epoch's line is printed (after its state is saved)."""
    import run

    class NotingProgress(run.Progress):
        def __init__(self):
            super().__init__(planned)
            self.ends: list[float] = []

        def epoch_line(self, *a, **k):
            self.ends.append(time.perf_counter())
            return super().epoch_line(*a, **k)

    return NotingProgress()


def runs(args) -> int:
    """Two runs of sub01_ses1 one after the other in this process, as run.py trains them (--jobs 1): the first
    pays the one-off costs (cuDNN's autotuning, first kernels), the second shows the steady state. (Every run of
    SEED's trial protocol has the same batch sizes, 3394 windows a session: a process autotunes them once.)"""
    import run
    from sst.data import session_store
    from sst.models.trained import TrainedModel

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.zeros(1, device=device)
        synchronize(device)
    ready = time.time()
    startup = ready - args.t0 if args.t0 else 0.0
    run.prepare(device, 1 if device.type == "cpu" else None)
    timers = Timers()
    walls, intervals, splits, finite = [], [], [], []
    for k in (1, 2):
        result, wall, interval, by_kind, ok = timed_run(args, device, timers, f"runs{k}")
        walls.append(wall)
        intervals.append(interval)
        fixed = wall - float(np.sum(interval))
        splits.append(by_kind)
        finite.append(ok)
        epoch_seconds = ", ".join(f"{x:.2f}" for x in interval)
        print(f"run {k}: {result['epochs_run']} epochs of {result['n_train']} training and {result['n_val']} "
              f"validation windows: {walls[-1]:.1f} s (epochs {epoch_seconds} s; fixed {fixed:.2f} s); "
              f"losses and gradients finite: {verdict(finite[-1])}")
    # steady state from the second run; epochs from 2 on of both runs for the medians (the default options:
    # eager, bf16 autocast on CUDA, the state saved in the background)
    later = [x for interval in intervals for x in interval[1:]]
    median = statistics.median(later)
    part = {kind: statistics.median([s for split in splits for s in split[kind][1:]]) for kind in splits[0]}
    fixed = walls[1] - float(np.sum(intervals[1]))
    one_off = startup + max(0.0, walls[0] - walls[1])
    print(f"one-off cost: {one_off:.1f} s (start-up to a ready device {startup:.1f} s, the first run's extra "
          f"{max(0.0, walls[0] - walls[1]):.1f} s: on a GPU cuDNN's autotuning and first kernels)")
    print(f"fixed cost per run: {fixed:.2f} s (its data, network, test and result files)")
    rest = median - sum(part.values())
    print(f"median epoch from epoch 2: {median:.3f} s = training {part['training']:.3f} s + evaluation "
          f"{part['evaluation']:.3f} s + state save {part['state save']:.3f} s + the rest {rest:.3f} s "
          f"(epochs CSV, progress line)")
    note(args, one_off=one_off, fixed=fixed, epoch=median, train=part["training"], evaluation=part["evaluation"],
         save=part["state save"], default=option_name(load(args), device))

    # the first run's best checkpoint, loaded and predicted on the CPU, against the device
    trained = TrainedModel.load(load(args, "runs1").path.result_path / "checkpoints" / "sub01_ses1.pt")
    session = session_store.load_preprocessed(load(args), [1], [1])[0]
    arrays = trained.source_arrays([session], np.arange(min(256, len(session.label))))
    probabilities = {}
    for where in ("cpu", args.device):
        trained.net.eval().to(where)
        with torch.no_grad():
            probabilities[where] = np.concatenate([torch.softmax(trained.net(**maps).float(), 1).cpu().numpy()
                                                   for maps in trained.batches(arrays, 256, where)])
    cpu, dev = probabilities["cpu"], probabilities[args.device]
    agree = int((cpu.argmax(1) == dev.argmax(1)).sum())
    diff = float(np.abs(cpu - dev).max())
    ok = agree >= 0.99 * len(cpu) and diff < 0.05
    print(f"correctness: run 1's checkpoint loaded on the CPU: {agree}/{len(cpu)} windows predicted as on "
          f"{args.device}, probabilities max |diff| {diff:.1e}: {verdict(ok)}")
    return 0 if ok and all(finite) else 1


def timed_run(args, device: torch.device, timers: Timers, result: str, **training) -> tuple:
    """One run of sub01_ses1 as run.py trains it (train_run, in this process), `training` changing [training]:
    (its record, wall seconds, seconds of each epoch (end of the one before, or fit's start, to its end),
    {"training" | "evaluation" | "state save": seconds of each call}, losses and gradients finite)."""
    import run
    from sst.data import session_store
    from sst.models import kinds
    from sst.training import runspec

    epochs = sizes(args.device)["epochs"]
    cfg = load(args, result, training={"nbEpoch": epochs, "patience": epochs, **training})
    sessions = session_store.load_preprocessed(cfg, [1], [1])
    progress = make_progress(epochs)
    timers.calls.clear()
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet, _redirect(quiet):     # train_run's progress lines
        record = run.train_run(cfg, runspec.RunSpec(1, 1), sessions, device, kinds.result_dir(cfg, device), progress)
    wall = time.perf_counter() - start
    interval = np.diff([timers.fit_starts[-1], *progress.ends])
    by_kind = {kind: [s for label, s in timers.calls if label == kind] for kind in ("training", "evaluation",
                                                                                     "state save")}
    finite = all(timers.grads_finite[-len(interval):]) and all(np.isfinite([r["train_loss"] for r in record["history"]]))
    return record, wall, interval, by_kind, finite


def option_name(cfg: config.Config, device: torch.device) -> str:
    """How the estimate names a combination: "compiled|eager, bf16|float32, background|sync save" ([training]
    amp asks for bf16 autocast, which only CUDA has)."""
    from sst.training import graphed

    precision = ("bf16" if device.type == "cuda" else "bf16 (float32 on the CPU)") if cfg.training.amp else "float32"
    return (f"{'compiled' if graphed.wanted(cfg, device) else 'eager'}, {precision}, "
            f"{cfg.training.state_save} save")


# (the [training] changes of each combination the options step measures against the runs step's defaults), the
# cheap ones first: a step out of time keeps what it printed
OPTIONS = ({"amp": False}, {"state_save": "sync"}, {"compile": "on"}, {"compile": "on", "amp": False})


def options(args) -> int:
    """One run of sub01_ses1 under each other combination of [training] compile, amp (float32 / bf16) and
    state_save, one after the other in this process (after the runs step, which measured the defaults): each
    one's median epoch from epoch 2 (training, evaluation, what training waits for the state save) and its first
    epoch's extra (compiling, for a compiled one). On the CPU (the dry run) the compiled step uses the aot_eager
    backend (the same graphs, no code generated; inductor on two cores compiles for minutes) and there is no
    bf16 autocast: its bf16 lines train float32."""
    import run
    from torch._dynamo.utils import counters

    from sst.training import graphed

    device = torch.device(args.device)
    run.prepare(device, 1 if device.type == "cpu" else None)
    if device.type == "cpu":
        graphed.BACKEND = "aot_eager"
    timers, failed, measured = Timers(), False, {}
    default = option_name(load(args), device)
    for k, change in enumerate(OPTIONS, start=1):
        cfg = load(args, training=change)
        name, compiled = option_name(cfg, device), graphed.wanted(cfg, device)
        if name == default:     # compile = auto on where it measured faster: the runs step's defaults
            print(f"option {name}: the defaults, measured by the runs step")
            continue
        graphs, skips = counters["stats"]["unique_graphs"], counters["inductor"]["cudagraph_skips"]
        record, wall, interval, by_kind, ok = timed_run(args, device, timers, f"options{k}", **change)
        median = statistics.median(interval[1:])
        part = {kind: statistics.median(times[1:]) for kind, times in by_kind.items()}
        extra = interval[0] - median
        what = (f"graphs compiled {counters['stats']['unique_graphs'] - graphs}, CUDA graphs skipped "
                f"{counters['inductor']['cudagraph_skips'] - skips}; " if compiled else "")
        print(f"option {name}: median epoch {median:.3f} s (training {part['training']:.3f} s, evaluation "
              f"{part['evaluation']:.3f} s, state save {part['state save'] * 1000:.1f} ms); first epoch "
              f"+{max(0.0, extra):.1f} s{' (compiling)' if compiled else ''}; {what}{wall:.1f} s in all; losses and gradients "
              f"finite: {verdict(ok)}", flush=True)
        measured[name] = {"epoch": median, "extra": max(0.0, extra)}
        note(args, options=measured)
        failed |= not ok
    return 1 if failed else 0


class _redirect:
    """stdout to `stream` for a while (train_run's progress lines; the figures are printed here)."""

    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        self.saved, sys.stdout = sys.stdout, self.stream

    def __exit__(self, *exc):
        sys.stdout = self.saved


# ----------------------------------------------------------------------------- run.py: resume, jobs


EPOCH_LINE = re.compile(r"^\[\d+/\d+\] (sub\d+_ses\d+) ep (\d+)/\d+ ")


def run_py(args, result: str, *extra: str, log: Path) -> subprocess.Popen:
    sets = [a for o in overrides(args, result) for a in ("--set", o)]
    return subprocess.Popen([sys.executable, "run.py", "-c", "SEED.ini", *sets, *extra], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=open(log, "w"))


def resume(args) -> int:
    """run.py killed (SIGKILL) once its first epoch's state is saved, then run again: it resumes there."""
    epochs = sizes(args.device)["epochs"]
    sets = ["--set", f"training.nbEpoch={epochs}", "--subjects", "1"]
    partial = args.dir / "resume" / "checkpoints" / "sub01_ses1.partial.pt"
    first = run_py(args, "resume", *sets, log=args.logs / "resume-1.log")
    for line in first.stdout:
        if EPOCH_LINE.match(line) and partial.exists():
            first.send_signal(signal.SIGKILL)
            break
    first.wait()
    second = run_py(args, "resume", *sets, log=args.logs / "resume-2.log")
    output = second.stdout.read()
    second.wait()
    said = re.search(r"sub01_ses1: resuming after epoch (\d+)", output)
    record = args.dir / "resume" / "runs" / "sub01_ses1.json"
    done = json.loads(record.read_text())["epochs_run"] if record.is_file() else None
    ok = first.returncode == -signal.SIGKILL and said is not None and done == epochs and second.returncode == 0
    print(f"correctness: resume: run.py killed after epoch {said[1] if said else '?'}, the rerun "
          f"{'resumed there' if said else 'did not resume'} and finished {done}/{epochs} epochs: {verdict(ok)}")
    return 0 if ok else 1


def jobs(args) -> int:
    """run.py --jobs J on one device for J = 1, 2, 4, J runs each: when each epoch line comes, per run."""
    epochs = sizes(args.device)["jobs_epochs"]
    failed = False
    for j in (1, 2, 4):
        start = time.perf_counter()
        proc = run_py(args, f"jobs{j}", "--jobs", str(j), "--subjects", ",".join(map(str, range(1, j + 1))),
                      "--set", f"training.nbEpoch={epochs}", log=args.logs / f"jobs{j}.log")
        seen: dict[str, list[float]] = {}
        for line in proc.stdout:
            match = EPOCH_LINE.match(line)
            if match:
                seen.setdefault(match[1], []).append(time.perf_counter())
        proc.wait()
        wall = time.perf_counter() - start
        finished = len(list((args.dir / f"jobs{j}" / "runs").glob("sub*_ses1.json")))
        later = [x for ends in seen.values() for x in np.diff(ends)]     # epochs from 2 on, line to line
        if proc.returncode != 0 or not later:
            print(f"--jobs {j}: run.py exit {proc.returncode}, {finished}/{j} runs finished (see {args.logs})")
            failed = True
            continue
        median = statistics.median(later)
        rate = j / median * 60
        print(f"--jobs {j}: {j} run(s) of {epochs} epochs at once in {wall:.0f} s; median epoch {median:.2f} s a run "
              f"(epoch line to epoch line, from epoch 2): {rate:.0f} epochs/min, the protocol's {RUNS * EPOCHS} "
              f"epochs in {RUNS * EPOCHS / rate:.1f} min at that rate")
        note(args, **{f"jobs{j}_epoch": median})
        if j == 2:
            print(f"correctness: --jobs 2 on one {'GPU' if args.device != 'cpu' else 'CPU'}: {finished}/2 runs "
                  f"finished: {verdict(finished == 2)}")
            failed |= finished != 2
    return 1 if failed else 0


# ----------------------------------------------------------------------------- throughput


def throughput(args) -> int:
    """Training steps of the network as the Trainer runs it (channels-last 3D, fused Adam; the accelerator
    on the CPU), at batch 64 and 256, float32 and bf16 autocast: samples/s and peak device memory."""
    import run

    device = torch.device(args.device)
    run.prepare(device, None)
    cfg, warmup, steps = load(args), sizes(args.device)["warmup"], sizes(args.device)["steps"]
    for precision in ("float32", "bf16"):
        for batch in (64, 256):
            rate, peak = _training_steps(cfg, device, batch, precision == "bf16", warmup, steps)
            memory = f"{peak / 2**30:.2f} GiB" if device.type == "cuda" else "n/a on the CPU"
            print(f"throughput: batch {batch}, {precision}: {rate:.0f} samples/s ({steps} steps), peak memory {memory}")
    return 0


def _training_steps(cfg: config.Config, device: torch.device, batch: int, bf16: bool, warmup: int,
                    steps: int) -> tuple[float, int]:
    """(samples/s over `steps` steps after `warmup` untimed ones, peak bytes allocated on a CUDA device) of a
    fresh network."""
    import model as model_lib
    from sst.training import fastcpu, optim

    torch.manual_seed(0)
    if device.type == "cuda":       # what earlier networks left is freed (they were locals of earlier calls)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    net = model_lib.build_model(cfg).to(device, memory_format=torch.channels_last_3d).train()
    forward = (fastcpu.accelerate(net) or net) if device.type == "cpu" else net     # as the Trainer
    optimizer = optim.adam(net, cfg.training.l2, cfg.training.lr)
    w = cfg.data.input_width
    maps = {"spectral": torch.randn(batch, w, w, cfg.data.specInput_length, device=device),
            "temporal": torch.randn(batch, w, w, cfg.data.temInput_length, device=device)}
    labels = torch.randint(0, cfg.model.nb_class, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(**maps).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    rate = batch * steps / (time.perf_counter() - start)
    return rate, torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0


# ----------------------------------------------------------------------------- estimate


def estimate(args) -> int:
    """The protocol's time for each combination measured, one line each, then the best as the last line:
    one-off + 45 runs x (fixed + 50 epochs x median epoch). The runs step's defaults (--jobs 1); each option's
    epoch, with its first epoch's extra (compiling) paid once, in its one-off; --jobs J (the defaults, J runs at
    once on the GPU): the epoch of a run among J divided by J, the GPU's time per epoch at that rate."""
    path = args.dir / "figures.json"
    f = json.loads(path.read_text()) if path.is_file() else {}
    if not all(k in f for k in ("one_off", "fixed", "epoch")):
        print(f"protocol estimate: n/a (one-off n/a s + {RUNS} x (fixed n/a s + {EPOCHS} x median epoch n/a s))")
        return 0
    default = f.get("default", "the defaults")
    candidates = {f"{default}, --jobs 1": (f["one_off"], f["epoch"])}
    for name, o in f.get("options", {}).items():
        candidates[f"{name}, --jobs 1"] = (f["one_off"] + o["extra"], o["epoch"])
    for j in (2, 4):
        if f"jobs{j}_epoch" in f:
            candidates[f"{default}, --jobs {j}"] = (f["one_off"], f[f"jobs{j}_epoch"] / j)
    totals = {name: one_off + RUNS * (f["fixed"] + EPOCHS * epoch) for name, (one_off, epoch) in candidates.items()}
    for name, total in sorted(totals.items(), key=lambda item: item[1]):
        print(f"estimate: {total / 60:.1f} min with {name}")
    best = min(totals, key=totals.get)
    one_off, epoch = candidates[best]
    print(f"protocol estimate: {totals[best] / 60:.1f} min (one-off {one_off:.1f} s + {RUNS} x (fixed "
          f"{f['fixed']:.2f} s + {EPOCHS} x median epoch {epoch:.3f} s)), the best of {len(totals)} measured: {best}")
    return 0


STEPS = {"info": info, "data": data, "check": check, "runs": runs, "options": options, "resume": resume,
         "jobs": jobs, "throughput": throughput, "estimate": estimate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("--dir", type=Path, default=Path("."), help="the bench's folder (data, results, figures.json)")
    parser.add_argument("--logs", type=Path, default=None, help="where run.py's output goes (default: --dir)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu (the dry run)")
    parser.add_argument("--t0", type=float, default=0.0, help="runs: when the process was started (time.time())")
    args = parser.parse_args(argv)
    args.dir = args.dir.resolve()
    args.logs = (args.logs or args.dir).resolve()
    args.logs.mkdir(parents=True, exist_ok=True)
    return STEPS[args.step](args)


if __name__ == "__main__":
    cli.cli_main(main)
