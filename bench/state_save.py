"""What saving a run's resumable state costs after each epoch: with and without fsync, in the background.

    python bench/state_save.py                       # SEED.ini's network, 15 saves of each kind
    python bench/state_save.py --repeats 30 --dir /scratch/tmp   # on the file system the results go to

A Trainer of the INI file's network on the CPU after one training step (Adam's moments exist) with a
best checkpoint, as after any epoch. Each kind of save is timed `--repeats` times, taking turns:
  Trainer.state()   on the CPU the live tensors (one storage each, about a thousand), as results.save_partial
  one buffer/dtype  the layout a GPU's state arrives in (training.host_copy: one copy per dtype), here
                    with the copy on the CPU, which a GPU's state does not pay (its copy is the transfer)
both through fileio.atomic_path with and without its fsync; in the background as run.py saves by default
([training] state_save = background: store.StateWriter), what training waits for (the host snapshot and the
hand-over) and the time until the write has landed; the copy alone, the fsync alone of a state just written
(the difference the choice makes, without the write's spread), and the per-epoch CSV. Prints
medians and ranges in ms, and what each adds over the SEED protocol (45 runs x 50 epochs, an upper bound).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import model as model_lib  # noqa: E402
from common import cpu_model  # noqa: E402
from sst import cli, config, errors, fileio, runtime
from sst.results import store
from sst.training import loop, protocols, runspec

EPOCHS = 45 * 50


def trainer_after_a_step(cfg: config.Config) -> loop.Trainer:
    """A CPU Trainer of `cfg`'s network on random inputs, one step of 8 windows trained, its best set."""
    n = 16
    g = torch.Generator().manual_seed(0)
    sources = set(model_lib.stream_sources(cfg).values())
    width = {"de": cfg.data.specInput_length, "eeg": cfg.data.temInput_length}
    arrays = {s: torch.randn(n, 62, width[s], generator=g) for s in sources}
    rows = np.arange(n)
    data = loop.RunData({name: arrays[s] for name, s in model_lib.stream_sources(cfg).items()},
                            torch.arange(n) % cfg.model.nb_class, protocols.Split(rows[:8], rows[8:12], rows[12:]),
                            {}, [1])
    trainer = loop.Trainer(cfg.replace(training={"batch_size": 8}), runspec.RunSpec(1, 1), data,
                               torch.device("cpu"))
    loss, accuracy = trainer.train_epoch(1)
    trainer.history.append({"epoch": 1, "train_loss": loss, "train_accuracy": accuracy, "seconds": 1.0})
    trainer._update_best({"epoch": 1, "val_accuracy": 0.5, "val_loss": 1.0})
    return trainer


def gpu_layout(trainer: loop.Trainer) -> dict:
    """Trainer.state() with its network, optimizer and best checkpoint in one host buffer per dtype."""
    state = trainer.state()
    return state | loop.host_copy({k: state[k] for k in ("net", "optimizer", "best")}, snapshot=True)


def fsync_alone(path: Path, trainer: loop.Trainer) -> float:
    """Seconds of the fsync of a state just written (the write itself not timed)."""
    torch.save({"config_key": "bench", "code": None, **trainer.state()}, path)
    with open(path, "rb+") as fh:
        start = time.perf_counter()
        os.fsync(fh.fileno())
        return time.perf_counter() - start


def timed_save(path: Path, make_state, durable: bool) -> float:
    start = time.perf_counter()
    with fileio.atomic_path(path, durable=durable) as tmp:
        torch.save({"config_key": "bench", "code": None, **make_state()}, tmp)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default=str(Path(__file__).resolve().parents[1] / "SEED.ini"))
    parser.add_argument("--repeats", type=int, default=15, help="saves of each kind (default 15)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write (default: a temporary folder under .cache/, the repository's file system)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        raise errors.UserError("--repeats must be >= 1")
    cfg = config.load_config(args.config)
    runtime.keep_freed_memory()       # as run.py on the CPU
    trainer = trainer_after_a_step(cfg)
    state = trainer.state()
    tensors = [t for part in ("net", "optimizer", "best") for t in loop.tensors_in(state[part])]
    mib = sum(t.numel() * t.element_size() for t in tensors) / 2**20
    root = args.dir or Path(__file__).resolve().parents[1] / ".cache"
    fileio.make_folder(root)
    with tempfile.TemporaryDirectory(dir=root) as folder:
        folder = Path(folder)
        kinds = {
            "Trainer.state(), fsync": lambda: timed_save(folder / "a.pt", trainer.state, True),
            "Trainer.state(), no fsync": lambda: timed_save(folder / "b.pt", trainer.state, False),
            "one buffer/dtype, fsync": lambda: timed_save(folder / "c.pt", lambda: gpu_layout(trainer), True),
            "one buffer/dtype, no fsync": lambda: timed_save(folder / "d.pt", lambda: gpu_layout(trainer), False),
            "background: training waits": lambda: background(writer, folder / "h.pt", trainer)[0],
            "background: the write": lambda: background(writer, folder / "i.pt", trainer)[1],
            "its copy on the CPU alone": lambda: _timed(lambda: gpu_layout(trainer)),
            "fsync alone of a state": lambda: fsync_alone(folder / "g.pt", trainer),
            "epochs CSV, fsync": lambda: _timed(lambda: _csv(folder / "e.csv", trainer.history * 25, True)),
            "epochs CSV, no fsync": lambda: _timed(lambda: _csv(folder / "f.csv", trainer.history * 25, False)),
        }
        writer = store.StateWriter()        # [training] state_save = background (run.py's default)
        times = {name: [] for name in kinds}
        for name, fn in kinds.items():     # one untimed round: first writes create the files
            fn()
        for _ in range(args.repeats):
            for name, fn in kinds.items():
                times[name].append(fn())
        size = (folder / "a.pt").stat().st_size / 2**20
        gpu_size = (folder / "c.pt").stat().st_size / 2**20
    print(f"torch {torch.__version__}, CPU: {cpu_model()}, {torch.get_num_threads()} threads; writing under {root}")
    print(f"state of {Path(args.config).name}'s network: {len(tensors)} tensors of network, Adam and best checkpoint, "
          f"{mib:.1f} MiB; file {size:.1f} MiB (one buffer per dtype: {gpu_size:.1f} MiB)")
    print(f"median (min-max) of {args.repeats} saves each, taking turns; over the protocol = median x {EPOCHS} epochs:")
    for name, t in times.items():
        ms = [1000 * x for x in t]
        print(f"  {name:<26}{statistics.median(ms):8.1f} ms  ({min(ms):.1f}-{max(ms):.1f})   "
              f"protocol {statistics.median(t) * EPOCHS:6.1f} s")
    return 0


def background(writer: store.StateWriter, path: Path, trainer: loop.Trainer) -> tuple[float, float]:
    """(seconds training waits for StateWriter.save: its host snapshot and the hand-over, seconds until the write
    has landed), the write before it landed first (in training they are an epoch apart)."""
    writer.wait()
    start = time.perf_counter()
    writer.save(path, trainer, "bench", None)
    handed = time.perf_counter()
    writer.wait()
    return handed - start, time.perf_counter() - start


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _csv(path: Path, history: list[dict], durable: bool) -> None:
    store.write_epochs_csv(path, [{**row, "epoch": k + 1} for k, row in enumerate(history)], durable)


if __name__ == "__main__":
    cli.cli_main(main)
