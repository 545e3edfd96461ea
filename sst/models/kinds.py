"""Model kinds: one entry per kind of model a run can train ([model] name), and everything about it.

    kind = kinds.of(cfg)                     # the entry of cfg's [model] name
    kind.check(cfg)                          # a configuration it cannot make fails here, before any output
    out = kinds.result_dir(cfg, device)      # the result folder, keyed with the kind's precision and code
    record = kind.train_run(cfg, spec, sessions, device, out, progress)   # fit, select, test, write
    net = kind.load(cfg, checkpoint, path)   # a finished run's model, for --predict, --explain, load_trained
    kind.code(cfg)                           # the code identity of its runs (sst.results.provenance)

An entry says how its model is built, fitted (with model selection on the protocol's validation samples),
saved and loaded, which preprocessed arrays it reads (`sources`), how its inputs are batched, which code a
run of it is made of, how run.py reports a run (`result_line`) and how tables name it (`label`, and the
paper's row printed beside it, `paper_row`). run.py, checkpoints, summaries and experiments ask the entry;
nothing outside this file compares [model] name strings. A new kind is one entry registered here
(`register`), its module, and its tests (tests/models/test_kinds.py).

The network is model.py's SSTEmotionNet (with the variants plugins register); DGCNN is sst.models.dgcnn's
(trained by the same loop: LoopKind); the classical baselines are sst.models.baselines'. The network is the
one kind this package builds from model.py, the definition at the repository root.
"""
from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

import model as model_lib
from sst import config
from sst.data import datasets, inputs
from sst.errors import ConfigError, DataError, UserError
from sst.models import baselines, dgcnn
from sst.results import checkpoints, provenance, records, store
from sst.training import graphed, loop, protocols

if TYPE_CHECKING:
    from sst.config import Config
    from sst.training.runspec import RunSpec


class ModelKind:
    """The interface of a model kind; the attributes are what the rest of the code asks."""

    name = ""
    label = ""                  # how tables name its results ("<label>, ours")
    paper_row = ""              # the row of the paper's table 1 printed beside its results (a dataset's `paper`)
    has_attention = False       # --explain draws attention weights
    ablatable = False           # --ablation takes its streams and attention apart
    unused: tuple[str, ...] = ()    # modules its runs never execute although code they share names them

    def check(self, cfg: Config) -> None:
        """A configuration this kind cannot make raises one ConfigError naming the file, section and key."""

    def sources(self, cfg: Config) -> dict[str, str]:
        """{input name: preprocessed source array ("de" or "eeg")} its runs read."""
        raise NotImplementedError

    def precision(self, device, cfg: Config) -> str:
        """The effective precision of training on `device` (part of the result key): "float32", "bf16" or
        "bf16-compiled" (sst.training.graphed.precision)."""
        return "float32"

    def code_roots(self, cfg: Config, net: torch.nn.Module | None = None) -> list:
        """The classes and functions a run of this kind executes (the code identity follows them); `net`: the
        model already built (a checkpoint's), else the kind builds one from cfg when it needs to."""
        raise NotImplementedError

    def code(self, cfg: Config, net: torch.nn.Module | None = None) -> dict[str, str]:
        """The code identity of a run of cfg: the kind's code, its protocol's entry and the dataset facts
        training reads. Computed afresh each time (a fraction of a second), so that a class registered again
        from Python under the same name is seen."""
        facts = {f"dataset {cfg.data.dataset}": datasets.get(cfg.data.dataset).training_facts()}
        return provenance.identity([*self.code_roots(cfg, net), type(protocols.of(cfg))], facts, self.unused)

    def train_run(self, cfg: Config, spec: RunSpec, sessions: list, device, out: store.ResultDir, progress,
                  k: int = 1, n: int = 1, tensorboard: bool = False) -> dict:
        """Fit, select and test one run, resuming what can be resumed; write its checkpoint, then its record
        (last: it marks the run finished). Returns the record."""
        raise NotImplementedError

    def load(self, cfg: Config, checkpoint: dict, path) -> torch.nn.Module:
        """The trained model of a checkpoint (read safely, checked), in eval mode; DataError if it does not fit."""
        raise NotImplementedError

    def batches(self, net: torch.nn.Module, cfg: Config, arrays: dict[str, np.ndarray], batch_size: int, device):
        """Yield the model's keyword inputs over the rows of the normalised source arrays."""
        raise NotImplementedError

    def result_line(self, record: dict) -> str:
        """run.py's line for a finished run."""
        return (f"{record['run']}: accuracy {100 * record['accuracy']:.2f}%  macro-F1 {record['macro_f1']:.3f}  "
                f"kappa {record['kappa']:.3f}  {record['wall_seconds']:.1f} s")


class LoopKind(ModelKind):
    """A kind trained by the loop (sst.training.loop: epochs, early stopping, the best checkpoint by validation
    accuracy, a resumable state after each epoch). Subclasses say what the loop trains (`model`)."""

    def model(self) -> loop.Model:
        raise NotImplementedError

    def sources(self, cfg: Config) -> dict[str, str]:
        return self.model().sources(cfg)

    def precision(self, device, cfg: Config) -> str:
        """bf16 under CUDA autocast ([training] amp), bf16-compiled through torch.compile too, else float32."""
        return graphed.precision(cfg, device)

    def train_run(self, cfg: Config, spec: RunSpec, sessions: list, device, out: store.ResultDir, progress,
                  k: int = 1, n: int = 1, tensorboard: bool = False) -> dict:
        start = time.perf_counter()
        data = loop.build_run_data(cfg, spec, sessions, self.model())
        trainer = self._resumed(cfg, spec, data, device, out)
        progress.run_ended(len(trainer.history))        # epochs a resumed run does not redo
        tensorboard_writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            tensorboard_writer = SummaryWriter(log_dir=str(out.root / "tensorboard" / spec.name))

        def on_epoch(row: dict) -> None:
            writer.save(out.partial(spec), trainer, out.config_key, out.code)
            store.write_epochs_csv(out.epochs_csv(spec), trainer.history)
            if tensorboard_writer is not None:
                for key, value in row.items():
                    if key != "epoch":
                        tensorboard_writer.add_scalar(key, value, row["epoch"])
                tensorboard_writer.flush()
            print(progress.epoch_line(k, n, spec, row, cfg.training.nbEpoch), flush=True)

        try:
            with store.StateWriter(cfg.training.state_save == "background") as writer:
                trainer.fit(on_epoch)       # every state has landed when the block is left, however it is
        finally:
            if tensorboard_writer is not None:
                tensorboard_writer.close()
        progress.run_ended(cfg.training.nbEpoch - len(trainer.history))   # early stopping's unused epochs
        test_loss, truth, predicted = trainer.evaluate()
        steps = len(trainer.history) * math.ceil(len(data.split.train) / cfg.training.batch_size)
        record = records.run_record(
            cfg, spec, out, truth, predicted, test_loss, data.split, data.pools, steps=steps,
            best_epoch=trainer.best["epoch"], history=trainer.history,
            seconds=sum(r["seconds"] for r in trainer.history), wall_seconds=time.perf_counter() - start,
            device=str(device), accelerated=trainer.accelerated, compiled=trainer.graphed is not None)
        store.write_result(out, spec, self.checkpoint(cfg, trainer, out), record, trainer.history)
        return record

    @staticmethod
    def checkpoint(cfg: Config, trainer: loop.Trainer, out: store.ResultDir) -> dict:
        """What a finished run's checkpoint holds: the selected weights, the config, the run, its training
        statistics and pools, its code identity and precision (tensors, numbers and text only)."""
        spec = trainer.spec
        return {"model": loop.host_copy(trainer.best["state"]), "config": cfg.to_dict(), "run": spec.name,
                "subject": spec.subject, "session": spec.session, "epoch": trainer.best["epoch"],
                "normalization": checkpoints.as_tensors(trainer.data.stats), **trainer.data.pools,
                "code": out.code, "precision": out.precision}

    def _resumed(self, cfg: Config, spec: RunSpec, data, device, out: store.ResultDir) -> loop.Trainer:
        """A fresh Trainer, continued from the run's partial state when there is one of this configuration."""
        trainer = loop.Trainer(cfg, spec, data, device, self.model())
        partial = out.partial(spec)
        if not partial.exists():
            return trainer
        try:
            store.load_partial(partial, trainer, out.config_key, out)
            print(f"{spec.name}: resuming after epoch {len(trainer.history)} of {cfg.training.nbEpoch}", flush=True)
            return trainer
        except store.DamagedFile as e:     # set aside, so that no rerun trips over it again
            store.set_aside(partial, str(e))
        except store.OtherCode as e:     # another configuration: never resumed, never overwritten
            raise out.refuse(str(e)) from None
        except ValueError as e:     # another configuration's or pool's: overwritten after the first epoch
            print(f"{spec.name}: ignoring {partial.name} ({e}); starting over", file=sys.stderr)
        return loop.Trainer(cfg, spec, data, device, self.model())

    def result_line(self, record: dict) -> str:
        return (f"{record['run']}: accuracy {100 * record['accuracy']:.2f}%  macro-F1 {record['macro_f1']:.3f}  "
                f"kappa {record['kappa']:.3f}  best epoch {record['best_epoch']}/{record['epochs_run']}  "
                f"{record['wall_seconds']:.0f} s")


class Network(LoopKind):
    """SST-EmotionNet (model.py), with the attention blocks and streams registered by name."""

    name = "sst_emotionnet"
    label = "SST-EmotionNet"
    paper_row = "SST-EmotionNet"
    has_attention = True
    ablatable = True

    def model(self) -> loop.Model:
        return loop.NETWORK

    def check(self, cfg: Config) -> None:
        model_lib.build_model(cfg)      # imports the plugins; raises a ConfigError naming the key

    def code_roots(self, cfg: Config, net: torch.nn.Module | None = None) -> list:
        net = net if net is not None else model_lib.build_model(cfg)
        classes = sorted({type(m) for m in net.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}")
        builders = [model_lib.STREAMS[name] for name in net.stream_names if name in model_lib.STREAMS]
        return [*classes, *builders, model_lib.build_model, loop.Trainer, loop.build_run_data]

    def load(self, cfg: Config, checkpoint: dict, path) -> torch.nn.Module:
        try:
            net = model_lib.build_model(cfg, plugins=False)
        except UserError as e:
            plugins = ", ".join(p.name for p in cfg.model.plugins)
            hint = (f"; it was trained with [model] plugins {plugins}: name them in the INI file given with -c, "
                    f"or call utils.import_plugins first") if plugins else ""
            raise DataError(f"{path}: its network cannot be built here ({e}){hint}") from None
        _load_state(net, checkpoint, path)
        return net.eval()

    def batches(self, net: torch.nn.Module, cfg: Config, arrays: dict[str, np.ndarray], batch_size: int, device):
        to_maps = inputs.MapBuilder(cfg.data.input_width, device)
        n = len(next(iter(arrays.values())))
        for start in range(0, n, batch_size):
            maps = {source: to_maps(torch.from_numpy(x[start:start + batch_size]).to(device))
                    for source, x in arrays.items()}
            yield {name: maps[source] for name, source in net.sources.items()}


def build_dgcnn(cfg: Config) -> dgcnn.DGCNN:
    """DGCNN from [model] (config.dgcnn_arguments: the one mapping of its INI keys)."""
    return dgcnn.DGCNN(**config.dgcnn_arguments(cfg))


class Graph(LoopKind):
    """DGCNN (sst/models/dgcnn.py) on the DE features of the 62 electrodes, trained by the loop as the network."""

    name = "dgcnn"
    label = "DGCNN"
    paper_row = "DGCNN"
    unused = ("model", "sst.training.fastcpu")      # the loop's network and its accelerator: never DGCNN's
    MODEL = loop.Model(build=build_dgcnn, sources=lambda cfg: {"de": "de"}, maps=False, accelerate=False)

    def model(self) -> loop.Model:
        return self.MODEL

    def check(self, cfg: Config) -> None:
        build_dgcnn(cfg)

    def code_roots(self, cfg: Config, net: torch.nn.Module | None = None) -> list:
        net = net if net is not None else build_dgcnn(cfg)
        classes = sorted({type(m) for m in net.modules()}, key=lambda c: f"{c.__module__}.{c.__qualname__}")
        return [*classes, build_dgcnn, loop.Trainer, loop.build_run_data]

    def load(self, cfg: Config, checkpoint: dict, path) -> torch.nn.Module:
        net = build_dgcnn(cfg)
        _load_state(net, checkpoint, path)
        return net.eval()

    def batches(self, net: torch.nn.Module, cfg: Config, arrays: dict[str, np.ndarray], batch_size: int, device):
        x = arrays["de"]        # (N, 62, bands), normalised with the run's training statistics
        for start in range(0, len(x), batch_size):
            yield {"de": torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size])).to(device)}


class LinearBaseline(ModelKind):
    """A classical baseline on the flattened DE features (sst.models.baselines): one linear scikit-learn
    estimator, `estimator(C, seed)`, with C chosen on the protocol's validation samples."""

    paper_row = "SVM"

    def __init__(self, name: str, estimator):
        self.name = self.label = name
        self.estimator = estimator

    def sources(self, cfg: Config) -> dict[str, str]:
        return {"de": "de"}

    def code_roots(self, cfg: Config, net: torch.nn.Module | None = None) -> list:
        return [baselines.train_run, baselines.LinearDE, self.estimator]

    def train_run(self, cfg: Config, spec: RunSpec, sessions: list, device, out: store.ResultDir, progress,
                  k: int = 1, n: int = 1, tensorboard: bool = False) -> dict:
        return baselines.train_run(cfg, spec, sessions, out, progress, self.estimator, k, n)

    def load(self, cfg: Config, checkpoint: dict, path) -> torch.nn.Module:
        weight = checkpoint["model"].get("linear.weight")
        if not torch.is_tensor(weight) or weight.ndim != 2:
            raise DataError(f"{path}: damaged checkpoint (a {cfg.model.name} run without its linear map); delete it "
                            f"and its runs/*.json to redo the run")
        net = baselines.LinearDE(weight.shape[1], weight.shape[0])
        _load_state(net, checkpoint, path)
        return net.requires_grad_(False).eval()

    def batches(self, net: torch.nn.Module, cfg: Config, arrays: dict[str, np.ndarray], batch_size: int, device):
        x = arrays["de"]        # (N, 62, bands): the linear map flattens it itself
        for start in range(0, len(x), batch_size):
            yield {"de": torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size])).to(device)}

    def result_line(self, record: dict) -> str:
        return baselines.result_line(record)


def _load_state(net: torch.nn.Module, checkpoint: dict, path) -> None:
    try:
        net.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise DataError(f"{path}: damaged checkpoint (its config or weights do not make a network: "
                        f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:80]})") from None


KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    """Add a model kind, by its name ([model] name)."""
    KINDS[kind.name] = kind
    return kind


NETWORK = register(Network())
register(Graph())
register(LinearBaseline("linear_svm", baselines.linear_svm))
register(LinearBaseline("logistic_regression", baselines.logistic_regression))


def get(name: str) -> ModelKind:
    """The entry of a [model] name; UserError naming the known ones otherwise."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise UserError(f"[model] name: expected one of {', '.join(KINDS)}, got {name!r}") from None


def of(cfg: Config) -> ModelKind:
    """The model kind of a configuration; ConfigError naming where [model] name was set if it is none."""
    if cfg.model.name not in KINDS:
        raise ConfigError(f"{cfg.where('model', 'name')}: expected one of {', '.join(KINDS)}, got {cfg.model.name!r}")
    return KINDS[cfg.model.name]


def result_dir(cfg: Config, device=None, precision: str | None = None) -> store.ResultDir:
    """cfg's result folder for training on `device` (or at `precision`): keyed with the kind's precision and
    holding its code identity, so that it refuses another configuration's or other code's runs."""
    kind = of(cfg)
    precision = precision or kind.precision(device, cfg)
    return store.ResultDir(cfg, precision, kind.code(cfg))


def check_run(cfg: Config, spec: RunSpec, sessions: list) -> tuple[list, np.ndarray, protocols.Split]:
    """The protocol's run_split, and every session pooled holds each source array the kind reads (no raw
    EEG: no spatial-temporal stream); DataError naming the session folder otherwise. Cheap: run.py calls it
    for every run before anything is written."""
    parts, label, split = protocols.run_split(cfg, spec, sessions)
    for name, source in of(cfg).sources(cfg).items():
        missing = next((s for s in parts if s.source(source) is None), None)
        if missing is not None:
            raise DataError(f"{missing.path}: no {source}.npy (no raw EEG was preprocessed), which stream {name} needs; "
                            f"set [model] streams = spectral to train the spatial-spectral stream only")
    return parts, label, split
