"""Train and evaluate SST-EmotionNet: one fresh model per subject-session (or per LOSO fold).

    python run.py -c SEED.ini                       # every preprocessed subject-session
    python run.py -c SEED.ini --subjects 1,2 --sessions 1
    python run.py -c SEED.ini --set training.nbEpoch=5 --set model.block_order=official   # no INI edit
    python run.py -c SEED.ini --jobs 2              # two runs at once, in worker processes
    python run.py -c SEED.ini --shard 0/4           # one of 4 processes (--shard auto: a SLURM array); then:
    python run.py -c SEED.ini --summarize           # merge the per-run files
    python run.py --demo                            # synthetic data end to end, a few minutes on a CPU
    python run.py -c SEED.ini --explain sub01_ses1  # attention and input figures of one run
    python run.py -c SEED.ini --ablation            # the paper's six ablations, each in its --set subfolder; a table
    python run.py -c SEED.ini --paper-table         # SVM, DGCNN, SST-EmotionNet on one split, beside the paper's table 1
    python run.py -c SEED.ini --protocol-price      # the same configuration under paper, trial and random, paired
    python run.py --compare results/SEED results/SEED/model.name=linear_svm   # paired statistics of result folders
    python run.py -c SEED.ini --summarize --format latex                      # the table for a paper (or markdown, csv)

Needs `python Preprocess.py -c SEED.ini` first. This file plans the runs and calls them; the training
loop is training.py, the files under [path] result_path are results.py's (its docstring lists them).
Progress: one plain line per epoch, flushed as it happens (run k/N, epoch, train/validation loss and
accuracy, seconds, and an upper bound of the time left for the whole invocation); the per-epoch rows
also go to runs/<run>.epochs.csv and, with --tensorboard, to TensorBoard. A rerun skips finished runs
and resumes an interrupted run from its last finished epoch, so a killed job loses at most one epoch.
See README.md for the protocols and what each one may claim.
"""
from __future__ import annotations

import signal
import sys


def _interrupted_while_importing(signum, frame) -> None:
    print("interrupted: finished work is kept; rerun the same command to resume", file=sys.stderr)  # cli.INTERRUPTED
    sys.exit(128 + signum)      # 130 for Ctrl-C, 143 for SIGTERM, as cli.cli_main


# Ctrl-C or SIGTERM while torch and the rest import (1-2 s): one line, as at any later moment; one this process
# was started ignoring (Ctrl-C after a script's `cmd &`) stays ignored. cli.cli_main installs the handlers for the rest.
if __name__ == "__main__":
    for _stop in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(_stop) is not signal.SIG_IGN:
            signal.signal(_stop, _interrupted_while_importing)

import argparse
import importlib
import multiprocessing
import os
import time
from pathlib import Path

import torch

import Preprocess
from sst import cli, config, fileio, runtime
from sst.config import Config
from sst.data import session_store
from sst.errors import DataError, UserError, printable
from sst.models import kinds
from sst.reporting import experiments, predictions, studies, summaries, tables
from sst.results import provenance
from sst.results.store import ResultDir
from sst.training import protocols, runspec
from sst.training.loop import Diverged
from sst.training.runspec import RunSpec
from sst.training.sharding import CLAIM, parse_shard, plan_runs

# --demo: synthetic SEED data of this size, and these keys changed from the INI file's values.
DEMO_DATA = {"subjects": (1, 2), "sessions": (1,), "trial_fraction": 0.15, "seed": 0}
# Why these: a few hundred optimizer steps on ~200 windows. At lr 1e-4 nothing is learnt in that time,
# and Keras' BN momentum (0.99) leaves the running statistics far behind the fast-moving weights, so
# eval mode predicts one class; PyTorch's usual 0.1 keeps up. The full configuration is unchanged.
DEMO_KEYS = {"data": {"dataset": "SEED", "feature": "de_LDS"}, "model": {"nb_class": 3, "bn_momentum": 0.1},
             "training": {"nbEpoch": 10, "patience": 10, "lr": 1e-3, "batch_size": 16}}


# ----------------------------------------------------------------------------- progress


def duration(seconds: float) -> str:
    """12s, 4m05s, 3h07m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Epochs done and still planned in this invocation, shared by its worker processes.

    The time left is the time per epoch so far times the epochs still planned: an upper bound,
    since early stopping ends runs sooner (a run that stops gives its unused epochs back).
    """

    def __init__(self, planned: int, jobs: int = 1, context=None):
        context = context or multiprocessing.get_context("spawn")
        self.start = time.time()
        self.planned, self.done = context.Value("l", planned), context.Value("l", 0)
        self.jobs = jobs

    def epoch_line(self, k: int, n: int, spec: RunSpec, row: dict, epochs: int) -> str:
        with self.done.get_lock():
            self.done.value += 1
            done, planned = self.done.value, self.planned.value
        left = (time.time() - self.start) / done * (planned - done)
        val = f"/{row['val_loss']:.3f}" if "val_loss" in row else ""
        val_acc = f"/{100 * row['val_accuracy']:.1f}" if "val_accuracy" in row else ""
        return (f"[{k}/{n}] {spec.name} ep {row['epoch']}/{epochs} loss {row['train_loss']:.3f}{val} "
                f"acc {100 * row['train_accuracy']:.1f}{val_acc}% {row['seconds']:.0f}s ETA {duration(left)}")

    def run_ended(self, unused_epochs: int) -> None:
        with self.planned.get_lock():
            self.planned.value -= unused_epochs


# ----------------------------------------------------------------------------- one run


def train_run(cfg: Config, spec: RunSpec, sessions: list, device: torch.device, out: ResultDir,
              progress: Progress, k: int = 1, n: int = 1, tensorboard: bool = False) -> dict:
    """Train, select and test one run, resuming its partial state; write its files. Returns its record. How is
    the model kind's ([model] name: sst.models.kinds)."""
    return kinds.of(cfg).train_run(cfg, spec, sessions, device, out, progress, k, n, tensorboard)


def result_line(r: dict) -> str:
    """The line run.py prints for a finished run, as its model kind words it."""
    kind = kinds.KINDS.get(r.get("model")) or kinds.NETWORK     # records before [model] name: the network
    return kind.result_line(r)


# ----------------------------------------------------------------------------- runs in worker processes

_WORKER: dict = {}      # per worker process: its device, thread count and the shared Progress


def prepare(device: torch.device, threads: int | None) -> None:
    """This process's settings for training on `device`: CPU threads (None: torch's default), cuDNN's
    autotuner on CUDA, and on the CPU freed memory kept (no page faults for each step's activations;
    bench/README.md)."""
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        runtime.keep_freed_memory()


def _start_worker(devices, threads: int, progress: Progress, parent: int, quiet: bool) -> None:
    if quiet:                       # --format other than text: the table alone on standard output
        sys.stdout = sys.stderr
    cli.worker_signals()            # Ctrl-C is the parent's: it stops every worker; SIGTERM ends this one
    cli.die_with_parent(parent)     # a killed parent leaves no worker training on
    device = torch.device(devices.get())
    prepare(device, threads)
    _WORKER.update(device=device, progress=progress)


def _run_in_worker(task: tuple) -> tuple[str, str, object]:
    """One run in a worker: its own sessions (memory-mapped), then train_run. ('done' | 'failed', run, result | error)."""
    cfg, spec, k, n, tensorboard = task
    sessions = session_store.load_preprocessed(cfg, *pooled(cfg, [spec.subject], [spec.session]))
    try:
        device = _WORKER["device"]
        return "done", spec.name, train_run(cfg, spec, sessions, device, kinds.result_dir(cfg, device),
                                            _WORKER["progress"], k, n, tensorboard)
    except Diverged as e:
        return "failed", spec.name, str(e)


class WorkerProcess(multiprocessing.context.SpawnProcess):
    """A spawned worker process that ignores Ctrl-C from its first instruction, so that a Ctrl-C while it
    still imports torch (seconds) prints no traceback of it; Ctrl-C is its parent's (run_parallel)."""

    @staticmethod
    def _Popen(process_obj):
        with cli.children_ignore_ctrl_c():        # only while this one process is started (a few ms)
            return multiprocessing.context.SpawnProcess._Popen(process_obj)


class WorkerContext(multiprocessing.context.SpawnContext):
    """multiprocessing's spawn context, its processes WorkerProcess (Pool, Value and Queue as usual)."""

    Process = WorkerProcess


def run_parallel(cfg: Config, todo: list[tuple[int, RunSpec]], n: int, jobs: int, device: torch.device,
                 threads: int, progress: Progress, tensorboard: bool, context):
    """Yield ('done' | 'failed', run, result | error) as worker processes finish runs, `jobs` at a time.

    CUDA: workers take the visible devices in turn (several per device when jobs > devices); CPU:
    `threads` threads each. Ctrl-C or SIGTERM terminates every worker; finished runs and the partial states
    of the others (written after each epoch) are kept, so the same command resumes. Workers end with
    this process however it ends (cli.die_with_parent), and ignore Ctrl-C from their start.
    """
    devices = context.Queue()
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    for i in range(jobs):     # cuda:N pins every worker to N; cuda or auto spreads them over the visible GPUs
        devices.put("cpu" if not count else f"cuda:{device.index}" if device.index is not None else f"cuda:{i % count}")
    pool = None
    try:
        with cli.stops_deferred():      # a Ctrl-C while the pool starts stops it once whole, not half-built
            pool = context.Pool(jobs, initializer=_start_worker,
                                initargs=(devices, threads, progress, os.getpid(), sys.stdout is sys.stderr))
        yield from pool.imap_unordered(_run_in_worker, [(cfg, spec, k, n, tensorboard) for k, spec in todo])
        pool.close()
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.join()


# ----------------------------------------------------------------------------- command line


def pooled(cfg: Config, subjects, sessions) -> tuple:
    """(subjects, sessions) to load for runs of these: what the protocol pools (loso every subject of a
    session, cross_session every session of a subject)."""
    return protocols.of(cfg).loading(subjects, sessions)


def demo_config(base: Config, root: Path) -> Config:
    """A reduced configuration of `base` on small synthetic SEED data under `root`."""
    from sst.data import datasets, synthetic

    data_root = root / "SEED"
    if not (data_root / datasets.get("SEED").raw_folder).exists():
        print(f"writing synthetic SEED-format data to {data_root}")
        synthetic.write_seed(data_root, **DEMO_DATA)
    paths = {"dataset_root": data_root, "preprocessed_root": root / "SEED_preprocessed", "result_path": root / "results"}
    return base.replace(path=paths, **DEMO_KEYS)


def override_folder(cfg: Config) -> str | None:
    """The result subfolder for --set overrides that change results (e.g. training.nbEpoch=5); None if
    there are none or they set the result path themselves. training.compile gets one too: under bf16 autocast
    it changes the precision (bf16-compiled), so its runs never share the eager runs' folder."""
    same = {f"training.{k}" for k in provenance.NON_RESULT_TRAINING_KEYS} - {"training.compile"}
    changing = [o for o in cfg.overrides if not o.startswith("path.") and o.split("=", 1)[0] not in same]
    if not changing or any(o.startswith("path.result_path=") for o in cfg.overrides):
        return None
    return config.folder_name(changing)


def base_result_path(cfg: Config) -> Path:
    """The INI's result folder: result_path without the subfolder its --set overrides added (override_folder)."""
    folder = override_folder(cfg)
    root = cfg.path.result_path
    return root.parent if folder is not None and root.name == folder else root


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--config", default="SEED.ini", help="INI file (default SEED.ini)")
    config.add_set_argument(parser)
    parser.add_argument("--result-path", type=Path, help="write results here instead of [path] result_path (by "
                        "default, --set values that change results get their own subfolder of it)")
    parser.add_argument("--subjects", type=cli.int_list, help="comma-separated subject numbers (default: all preprocessed)")
    parser.add_argument("--sessions", type=cli.int_list, help="comma-separated session numbers (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in a worker process (CPU threads "
                        "divided among them; on CUDA spread over the visible devices); default 1")
    parser.add_argument("--shard", type=str, help="I/N: run every N-th run starting at I (0-based), or auto (a SLURM "
                        "array job); no summary")
    parser.add_argument("--tensorboard", action="store_true", help="also log each epoch to TensorBoard "
                        "(result_path/tensorboard/<run>; needs `pip install tensorboard`)")
    parser.add_argument("--summarize", action="store_true", help="only merge finished runs into summary.json")
    parser.add_argument("--explain", metavar="RUN", help="attention and input figures of a finished run, e.g. sub01_ses1")
    parser.add_argument("--predict", metavar="RUN", help="apply a finished run's checkpoint to the subject and session "
                        "given by --subjects S --sessions K; writes predictions/<RUN>_on_subSS_sesK.csv")
    parser.add_argument("--ablation", action="store_true", help="the paper's ablations (streams spectral, temporal; "
                        "attention spectral_temporal, spatial, none) beside the full model, each in the subfolder its "
                        "--set would use; then their table and bar chart (with --shard: training only)")
    parser.add_argument("--compare", nargs="+", type=Path, metavar="DIR", help="result folders of one dataset and "
                        "protocol, each compared with the first, paired by subject and session (no -c needed; "
                        "--subjects, --sessions: only those runs)")
    parser.add_argument("--paper-table", action="store_true", help="train (or reuse) SVM, DGCNN and SST-EmotionNet on "
                        "the INI's split, then their table beside the paper's table 1, paired (sst/reporting/studies.py)")
    parser.add_argument("--protocol-price", action="store_true", help="train (or reuse) the configuration under paper, "
                        "trial and random, then what each protocol adds to trial, paired")
    parser.add_argument("--out", type=Path, help="--compare, --ablation, --paper-table, --protocol-price: where their "
                        "tables and figure go (default: "
                        "comparisons/ beside the first result folder)")
    parser.add_argument("--format", choices=tables.FORMATS, default="text", help="how the table is printed: text "
                        "(default), markdown, latex or csv, alone on standard output (every other line goes to "
                        "standard error); --summarize, --compare and --ablation also write all of them")
    parser.add_argument("--label", action="append", metavar="NAME", help="--compare: the row name of each folder, in "
                        "order, once per folder (default: the folder's name)")
    parser.add_argument("--demo", action="store_true", help="synthetic SEED data, reduced training, end to end")
    parser.add_argument("--demo-dir", type=Path, default=Path(__file__).resolve().parent / ".cache" / "demo",
                        help="where --demo writes its data and results (default .cache/demo)")
    args = cli.refuse_empty_values(parser).parse_args(argv)
    for flag, name in (("--predict", args.predict), ("--explain", args.explain)):
        if name is not None:
            runspec.run_named(name, flag)       # before any work: a name is never a path
    actions = [flag for flag, given in (("--summarize", args.summarize), ("--explain", args.explain),
                                        ("--predict", args.predict), ("--demo", args.demo), ("--ablation", args.ablation),
                                        ("--paper-table", args.paper_table), ("--protocol-price", args.protocol_price),
                                        ("--compare", args.compare)) if given]
    if len(actions) > 1:
        raise UserError(f"{' and '.join(actions)}: one at a time")
    if args.out is not None and not (args.compare or args.ablation or args.paper_table or args.protocol_price):
        raise UserError("--out: only with --compare, --ablation, --paper-table or --protocol-price (results go under "
                        "[path] result_path)")
    if args.compare is not None and len(args.compare) < 2:
        raise UserError("--compare: give at least two result folders; the others are compared with the first")
    if args.jobs < 1:
        raise UserError(f"--jobs: expected a positive number of worker processes, got {args.jobs}")
    if args.tensorboard:
        try:
            importlib.import_module("torch.utils.tensorboard")
        except ImportError:
            raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return args


def resolve_config(args: argparse.Namespace) -> Config:
    """The INI file with --set applied, the demo's keys, and the result and preprocessed folders: --result-path,
    or a subfolder named after the --set values that change results (and data.* ones for the maps)."""
    cfg = config.load_config(args.config, overrides=args.set)
    if args.demo:
        if args.set:
            raise UserError("--demo fixes its own keys (run.py's DEMO_KEYS) and takes no --set; edit a copy of "
                            "SEED.ini instead")
        cfg = demo_config(cfg, args.demo_dir)
    if args.result_path is not None:
        try:
            result_path = args.result_path.expanduser().resolve()
        except RuntimeError:        # ~user unknown, or no home directory
            raise UserError(f"--result-path: cannot expand {printable(repr(str(args.result_path)))} (unknown user "
                            f"or no home directory)") from None
        cfg = cfg.replace(path={"result_path": result_path})
    elif (folder := override_folder(cfg)) is not None:
        cfg = cfg.replace(path={"result_path": cfg.path.result_path / folder})
    cfg = config.data_override_root(cfg)
    if cfg.overrides:
        print(f"overrides: {' '.join(cfg.overrides)}; results under {cfg.path.result_path}")
    kinds.of(cfg).check(cfg)    # a config its model cannot be made from fails before any output; imports plugins
    return cfg


def summarize_results(cfg: Config, args: argparse.Namespace) -> int:
    """--summarize: merge the finished runs (all, or --subjects/--sessions of them) and print the table."""
    if args.shard:
        raise UserError("--summarize merges finished runs; --shard selects work to run, not results to merge "
                        "(use --subjects / --sessions to summarize a part)")
    out = ResultDir(cfg)
    out.check_lock()
    done = out.finished()
    if not done:
        raise DataError(f"{out.root / 'runs'}: no finished runs to summarize; run `python run.py -c {args.config}` first")
    out.check_writable()
    with out.lock():        # beside the shards of this configuration; never beside another's
        # sets damaged records aside only if not None
        if summaries.summarize(cfg, out, args.subjects, args.sessions, fmt=args.format) is None:
            raise DataError(f"{out.root / 'runs'}: no finished run of subjects {args.subjects or 'all'}, sessions "
                            f"{args.sessions or 'all'} to summarize")
        out.tidy([], done)
    return 0


def explain(cfg: Config, run: str) -> int:
    """--explain RUN: attention and input figures of a finished run, under figures/RUN."""
    from sst.reporting import figures

    spec = runspec.run_named(run, "--explain")
    root = cfg.path.result_path
    for path in figures.explain_run(experiments.checkpoint_path(cfg, spec.name, base_result_path(cfg)),
                                    cfg.path.preprocessed_root, fileio.child(root / "figures", spec.name)):
        print(path)
    return 0


def train(cfg: Config, args: argparse.Namespace) -> int:
    """Train every selected run not finished yet (resuming partial ones), then summarize (not with --shard)."""
    subjects, sessions = args.subjects, args.sessions
    shard = parse_shard(args.shard) if args.shard else None
    if shard == CLAIM and args.jobs > 1:
        raise UserError("--shard auto: this SLURM array's task ids are not evenly spaced, so each task takes one run "
                        "at a time that no other has taken; leave out --jobs, or use an evenly spaced --array")
    device = runtime.resolve_device(cfg.training.device, cfg.where("training", "device"))
    out = kinds.result_dir(cfg, device)
    if args.demo:
        Preprocess.preprocess(cfg)
    all_sessions = session_store.load_preprocessed(cfg, *pooled(cfg, subjects, sessions))
    runs = plan_runs([(s.subject, s.session) for s in all_sessions], subjects, sessions, shard,
                     cfg.training.repeats)
    if not runs:
        raise DataError(f"no preprocessed subject-session under {cfg.path.preprocessed_root} matches the selection")
    out.check_lock()        # another configuration training here: named now, before its runs are read
    done = finished_runs(out, all_sessions)
    todo = [(k, r) for k, r in enumerate(runs, start=1) if r.name not in done]
    for _, spec in todo:  # every run's split and inputs can be made before anything is written
        kinds.check_run(cfg, spec, all_sessions)
    out.check_writable()
    if shard == CLAIM:
        return claim_runs(cfg, args, out, runs, todo, all_sessions, device)
    with out.lock([spec.name for _, spec in todo]):     # another configuration's run.py is refused here, named
        done = finished_runs(out, all_sessions)        # again, now that no other configuration can write
        todo = [(k, r) for k, r in todo if r.name not in done]
        out.tidy(runs, done)
        return train_runs(cfg, args, out, runs, todo, all_sessions, device, shard)


def finished_runs(out: ResultDir, all_sessions: list) -> dict[str, dict]:
    """out.finished(), checked against the subjects and sessions preprocessed now (loso, cross_session pools)."""
    done = out.finished()
    out.check_pools(done, all_sessions)
    return done


def train_runs(cfg: Config, args: argparse.Namespace, out: ResultDir, runs: list[RunSpec], todo: list, all_sessions: list,
               device: torch.device, shard) -> int:
    """Train `todo` ((k, RunSpec) of `runs`), serially or in --jobs workers; record failures; summarize
    unless sharded. Exit code 1 if a run failed."""
    jobs = min(args.jobs, max(len(todo), 1))
    threads = cfg.training.num_threads or max(1, torch.get_num_threads() // jobs)
    print(f"{cfg.data.dataset}, protocol {cfg.training.protocol}: {len(runs)} runs, {len(runs) - len(todo)} already "
          f"finished, device {device}" + (f", {jobs} worker processes of {threads} threads" if jobs > 1 else ""),
          flush=True)

    context = WorkerContext()
    progress = Progress(len(todo) * cfg.training.nbEpoch, jobs, context)
    if jobs > 1:
        outcomes = run_parallel(cfg, todo, len(runs), jobs, device, threads, progress, args.tensorboard, context)
    else:
        prepare(device, cfg.training.num_threads or None)
        outcomes = serial(cfg, todo, len(runs), all_sessions, device, out, progress, args.tensorboard)
    failed = report(out, todo, outcomes)
    if shard is None:
        summaries.summarize(cfg, out, this_invocation={spec.name for _, spec in todo}, fmt=args.format)
        if args.demo:
            demo_epilogue(out, cfg, runs[0])
    elif not (args.ablation or args.paper_table or args.protocol_price):     # a study says once what to run after
        print(f"shard {args.shard} done; after every shard has finished: python run.py -c {args.config} --summarize")
    return 1 if failed else 0


def report(out: ResultDir, todo: list, outcomes) -> bool:
    """Print each outcome of `todo`'s runs ((status, run, result | error)), record failures; True if any failed."""
    failed, specs = False, {spec.name: spec for _, spec in todo}
    for status, run, value in outcomes:
        if status == "failed":
            failed = True
            out.record_failure(specs[run], value)
            print(f"error: {value}; skipping this run (it is retried on the next invocation)", file=sys.stderr)
        else:
            print(result_line(value), flush=True)
    return failed


def claim_runs(cfg: Config, args: argparse.Namespace, out: ResultDir, runs: list[RunSpec], todo: list,
               all_sessions: list, device: torch.device) -> int:
    """--shard auto in a SLURM array of listed task ids (sharding.CLAIM): train the runs of `todo` that no
    other process of this configuration has taken, one at a time, holding result_path for that run alone
    (ResultDir.claim), so tasks started at any time share the work. Passes over the runs again while a
    pass trained something (a run whose holder ended, killed, is resumed); a run that failed in another
    task since this one started is left to the next invocation. Exit code 1 if a run failed here."""
    print(f"{cfg.data.dataset}, protocol {cfg.training.protocol}: {len(runs)} runs, {len(runs) - len(todo)} already "
          f"finished, device {device}; the array's task ids are not evenly spaced, so this task takes the runs "
          f"no other has taken, one at a time", flush=True)
    started = time.time()
    with out.lock():        # what killed processes left, once, as a command that trains in one go
        out.tidy(runs, finished_runs(out, all_sessions))
    prepare(device, cfg.training.num_threads or None)
    failed, trained, pending = False, 0, list(todo)
    while pending:
        taken = []
        for k, spec in pending:
            lock = out.claim(spec.name)
            if lock is None:        # another task is training it
                taken.append((k, spec))
                continue
            with lock:
                if spec.name in finished_runs(out, all_sessions) or failed_since(out.failure(spec), started):
                    continue        # done, or failed in another task, meanwhile
                outcomes = serial(cfg, [(k, spec)], len(runs), all_sessions, device, out, Progress(cfg.training.nbEpoch),
                                  args.tensorboard)
                failed |= report(out, [(k, spec)], outcomes)
                trained += 1
        if len(taken) == len(pending):      # nothing was free: the others' tasks hold them
            break
        pending = taken
    if pending:
        print(f"left to the tasks training them: {', '.join(spec.name for _, spec in pending)}")
    if not (args.ablation or args.paper_table or args.protocol_price):
        print(f"shard auto done ({trained} trained by this task); after every task has finished: "
              f"python run.py -c {args.config} --summarize")
    return 1 if failed else 0


def failed_since(record: Path, since: float) -> bool:
    """Whether a failure record was written at or after `since` (a time.time())."""
    try:
        return record.stat().st_mtime >= since
    except FileNotFoundError:
        return False


def demo_epilogue(out: ResultDir, cfg: Config, first: RunSpec) -> None:
    """--demo: the attention and input figures of its first run, then where everything went."""
    from sst.reporting import figures

    made = sorted(out.root.glob("figures/*.png"))
    if out.checkpoint(first).is_file():
        made += figures.explain_run(out.checkpoint(first), cfg.path.preprocessed_root, out.root / "figures" / first.name)
    print(f"results: {out.root} (runs/*.json, checkpoints/, results.csv, summary.json)")
    print("figures:\n" + "\n".join(f"  {p}" for p in made))


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    with tables.table_output(alone=args.format != "text"):
        return command(args)


def command(args: argparse.Namespace) -> int:
    if args.label and not args.compare:
        raise UserError("--label names the rows of --compare; give it with --compare")
    if args.compare:
        return experiments.compare(args.compare, args.out, args.format, args.subjects, args.sessions, args.label)
    if args.ablation:
        return experiments.ablation(args, resolve_config, train)
    if args.paper_table:
        return studies.paper_table(args, resolve_config, train)
    if args.protocol_price:
        return studies.protocol_price(args, resolve_config, train)
    cfg = resolve_config(args)
    if args.summarize:
        return summarize_results(cfg, args)
    if args.predict:
        return predictions.predict(cfg, ResultDir(cfg), args.predict, args.subjects, args.sessions,
                                   base_result_path(cfg))
    if args.explain:
        return explain(cfg, args.explain)
    return train(cfg, args)


def serial(cfg: Config, todo: list[tuple[int, RunSpec]], n: int, sessions: list, device: torch.device, out: ResultDir,
           progress: Progress, tensorboard: bool):
    """Yield ('done' | 'failed', run, result | error) for each run, one after the other, in this process."""
    for k, spec in todo:
        try:
            yield "done", spec.name, train_run(cfg, spec, sessions, device, out, progress, k, n, tensorboard)
        except Diverged as e:
            yield "failed", spec.name, str(e)


if __name__ == "__main__":
    cli.cli_main(main)
