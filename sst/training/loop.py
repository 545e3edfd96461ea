"""The network's training loop: one run's data, the Trainer (fit, evaluate), and moving tensors to and from a device.

    data = build_run_data(cfg, RunSpec(subject=1, session=1), sessions)   # pooled, split, normalised
    trainer = Trainer(cfg, spec, data, torch.device("cpu"))
    trainer.fit(on_epoch=lambda row: print(row))                          # early stopping, best checkpoint
    loss, predicted = trainer.predict(data.split.test)                   # (sst.training.metrics scores them)

What happens around a run (resume, result files, the record) is the network's model kind's
(sst.models.kinds.Network.train_run), planning and progress run.py's; this module touches no file.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

import model as model_lib
from sst import runtime
from sst.config import Config
from sst.data import inputs
from sst.errors import DataError
from sst.training import fastcpu, graphed, optim, protocols
from sst.training.protocols import Split
from sst.training.runspec import RunSpec, run_seed

# ----------------------------------------------------------------------------- data


@dataclass
class RunData:
    """One run's samples at electrode level, z-scored with training-split statistics.

    inputs: {stream name: its source array}, (N, 62, specInput_length) float32 DE for a "de" stream,
    (N, 62, temInput_length) float32 raw segments for an "eeg" stream (streams of one source share it).
    `subjects`: the subjects pooled (loso: every preprocessed subject of the session).
    """
    inputs: dict[str, torch.Tensor]
    label: torch.Tensor
    split: Split
    stats: dict
    subjects: list[int]
    sessions: list[int] = dataclasses.field(default_factory=list)    # cross_session: the subject's sessions pooled

    @property
    def pools(self) -> dict[str, list[int]]:
        """The pools a run records (the protocol's pool_key names the one it depends on)."""
        return {"subject_pool": self.subjects, "session_pool": self.sessions}


@dataclass(frozen=True)
class Model:
    """What the loop trains, as a model kind gives it: `build(cfg)` the module, `sources(cfg)` {input name:
    preprocessed source array}, `maps` whether each input is turned into W x W maps first (inputs.MapBuilder)
    or fed as electrode values (N, 62, D), `accelerate` whether CPU training may go through fastcpu."""
    build: Callable
    sources: Callable
    maps: bool = True
    accelerate: bool = True


NETWORK = Model(build=model_lib.build_model, sources=model_lib.stream_sources)     # SSTEmotionNet, model.py


def build_run_data(cfg: Config, spec: RunSpec, sessions: list, model: Model = NETWORK) -> RunData:
    """Pool the sessions a run needs, split them by protocol, normalise with training statistics. DataError
    naming the session folder that lacks a stream's source array (sst.models.kinds.check_run says it earlier,
    before anything is written)."""
    parts, label, split = protocols.run_split(cfg, spec, sessions)
    streams = model.sources(cfg)
    for name, source in streams.items():
        missing = next((s for s in parts if s.source(source) is None), None)
        if missing is not None:
            raise DataError(f"{missing.path}: no {source}.npy (no raw EEG was preprocessed), which stream {name} needs; "
                            f"set [model] streams = spectral to train the spatial-spectral stream only")
    arrays = {source: np.concatenate([np.asarray(s.source(source)) for s in parts]) for source in set(streams.values())}
    stats = {}
    if cfg.training.normalization == "electrode":
        arrays, stats = inputs.normalise_run(arrays, split.train)
    tensors = {source: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for source, x in arrays.items()}
    return RunData({name: tensors[source] for name, source in streams.items()},
                   torch.from_numpy(label.astype(np.int64)), split, stats, protocols.subject_pool(parts),
                   protocols.session_pool(parts))


# ----------------------------------------------------------------------------- device and host


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`x` on `device`: through pinned memory on CUDA (an asynchronous copy), `x` itself on the CPU."""
    if device.type == "cuda":
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


def to_host(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tensors on the host after one wait for the device: every copy is queued first (into pinned
    memory from CUDA), then the host waits once."""
    out = [t.to("cpu", non_blocking=True) for t in tensors]
    for device in {t.device for t in tensors if t.device.type == "cuda"}:
        torch.cuda.synchronize(device)
    return out


def tensors_in(tree) -> list[torch.Tensor]:
    """The tensors in `tree` (dicts, lists and tuples of tensors and plain values), depth first, in order."""
    if torch.is_tensor(tree):
        return [tree]
    if isinstance(tree, dict):
        return [t for value in tree.values() for t in tensors_in(value)]
    if isinstance(tree, (list, tuple)):
        return [t for value in tree for t in tensors_in(value)]
    return []


def host_copy(tree, snapshot: bool = False):
    """`tree` (dicts, lists and tuples of tensors and plain values) with its tensors on the host: those on a
    device come over in one copy per dtype, as contiguous views of one buffer (a state dict and Adam's moments
    are about a thousand tensors: one copy and one wait each, otherwise); torch.save writes each buffer once.
    Tensors already on the host are kept as they are (torch.save reads them at once: a copy would only cost
    time), or copied the same way with `snapshot` (a copy that later steps do not change)."""
    copied = lambda t: snapshot or t.device.type != "cpu"  # noqa: E731
    tensors = [t for t in tensors_in(tree) if copied(t)]
    kinds = list(dict.fromkeys((t.device, t.dtype) for t in tensors))    # in practice one device
    flat = [torch.cat([t.detach().reshape(-1) for t in tensors if (t.device, t.dtype) == kind]) for kind in kinds]
    buffers = dict(zip(kinds, to_host(*flat)))
    offsets = dict.fromkeys(kinds, 0)

    def rebuild(x):
        if torch.is_tensor(x) and copied(x):
            key = (x.device, x.dtype)
            start = offsets[key]
            offsets[key] += x.numel()
            return buffers[key][start:start + x.numel()].view(x.shape)
        if isinstance(x, dict):
            out = type(x)((k, rebuild(v)) for k, v in x.items())
            if hasattr(x, "_metadata"):     # a state dict's module versions
                out._metadata = x._metadata
            return out
        if isinstance(x, (list, tuple)):
            return type(x)(rebuild(v) for v in x)
        return x

    return rebuild(tree)


# ----------------------------------------------------------------------------- training


class Diverged(Exception):
    """The training or validation loss became NaN or Inf, or the test loss of the selected checkpoint did."""


class Trainer:
    """Trains one fresh model on one run's data; early stopping on validation loss, best
    checkpoint by validation accuracy (the authors' EarlyStopping + ModelCheckpoint)."""

    def __init__(self, cfg: Config, spec: RunSpec, data: RunData, device: torch.device, model: Model = NETWORK):
        self.cfg, self.spec, self.data, self.device = cfg, spec, data, device
        seed = run_seed(cfg, spec)  # the same for every run of a repeat: results don't depend on order or sharding
        runtime.set_seed(seed)
        # channels-last 3D parameters: oneDNN runs the definition's convolutions 1.65x faster on them
        # (evaluation, batch 256, 2-core CPU; bench/README.md), and cuDNN prefers them for bf16
        self.net = model.build(cfg).to(device, memory_format=torch.channels_last_3d)
        # CPU training runs the definition through its accelerator (same parameters, same state dict) unless
        # [training] accelerator = off or the definition is not the one it was written for (it steps aside);
        # CUDA training and every evaluation run the definition itself, and so does CPU training with the
        # accelerator off: the CUDA path's loop, which the tests run on the CPU that way
        # [training] compile: full batches through torch.compile (sst.training.graphed; the accelerator steps aside)
        self.graphed = graphed.compiled(self.net, device) if graphed.wanted(cfg, device) else None
        cpu_auto = device.type == "cpu" and cfg.training.accelerator == "auto" and self.graphed is None
        fast = fastcpu.accelerate(self.net) if model.accelerate and cpu_auto else None
        self.train_net, self.accelerated = fast or self.net, fast is not None
        self.optimizer = optim.make(self.net, cfg.training)
        self.shuffle = torch.Generator().manual_seed(seed)     # on the host: the batch order of any device
        self.maps = inputs.MapBuilder(cfg.data.input_width, device) if model.maps else None
        self.autocast = device.type == "cuda" and cfg.training.amp
        # the run's arrays on the device for the whole run (streams of one source share one copy): a batch is
        # a gather there, with no copy or wait per step
        moved: dict[int, torch.Tensor] = {}
        for x in data.inputs.values():
            if id(x) not in moved:
                moved[id(x)] = to_device(x, device)
        self.inputs = {name: moved[id(x)] for name, x in data.inputs.items()}
        self.labels = to_device(data.label, device)
        self.history: list[dict] = []
        self.best = {"val_accuracy": -math.inf, "val_loss": math.inf, "epoch": 0, "state": None, "wait": 0}

    def _forward(self, idx: torch.Tensor, net=None) -> torch.Tensor:
        """Logits of the samples `idx` (on the device): each stream's maps built from its source array."""
        net, maps, built = self.net if net is None else net, {}, {}
        for name, x in self.inputs.items():    # streams of one source share its maps
            if id(x) not in built:
                rows = x.index_select(0, idx)
                built[id(x)] = self.maps(rows) if self.maps is not None else rows
            maps[name] = built[id(x)]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return net(**maps).float()

    def _graph_for(self, batch: torch.Tensor, size: int):
        """The compiled module for a full batch of `size` (a new step through it begins), None for a partial one
        or without [training] compile: it runs eagerly, so that the graphs keep fixed shapes."""
        if self.graphed is None or len(batch) != size:
            return None
        graphed.step_begins()
        return self.graphed

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the training split in shuffled order: (mean loss, accuracy).

        The device never waits for the host inside the epoch: each step's loss and correct count stay
        on the device and come over once at its end, where a non-finite loss raises Diverged (naming
        the first one) before anything of the epoch is kept (history, best checkpoint, partial state).
        """
        self.net.train()
        if self.cfg.training.lr_schedule != "none":        # a function of the epoch: a resumed run gets the same
            optim.set_lr(self.optimizer, optim.lr_at(self.cfg.training, epoch))
        train = torch.from_numpy(self.data.split.train)
        order = to_device(train[torch.randperm(len(train), generator=self.shuffle)], self.device)
        losses, correct = [], []
        size = self.cfg.training.batch_size
        for batch in order.split(size):
            y = self.labels.index_select(0, batch)
            graph = self._graph_for(batch, size)
            logits = self._forward(batch, self.train_net if graph is None else graph)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.detach())
            correct.append((logits.argmax(1) == y).sum())
        losses, correct = (t.tolist() for t in to_host(torch.stack(losses), torch.stack(correct)))
        bad = next((x for x in losses if not math.isfinite(x)), None)
        if bad is not None:
            raise Diverged(f"{self.where(epoch)}: training loss became {bad}")
        total_loss = 0.0
        for k, loss in enumerate(losses):    # in float64, batch by batch, as the loss was always summed
            total_loss += loss * min(size, len(train) - k * size)
        return total_loss / len(train), sum(correct) / len(train)

    def where(self, epoch: int) -> str:
        s = self.spec
        return f"{s.name} (subject {s.subject}, session {s.session}), epoch {epoch}"

    @torch.no_grad()
    def predict(self, indices: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean cross-entropy and predicted classes of the given samples (eval mode, then back); one wait
        for the device per call."""
        was_training = self.net.training
        self.net.eval()
        losses, preds = [], []
        size = max(self.cfg.training.batch_size, 256)
        for batch in to_device(torch.from_numpy(indices), self.device).split(size):
            logits = self._forward(batch, self._graph_for(batch, size))    # eval mode: a graph of its own
            losses.append(F.cross_entropy(logits, self.labels.index_select(0, batch), reduction="sum"))
            preds.append(logits.argmax(1))
        self.net.train(was_training)
        losses, preds = to_host(torch.stack(losses), torch.cat(preds))
        return sum(losses.tolist()) / len(indices), preds.numpy()

    def state(self, snapshot: bool = False) -> dict:
        """Everything needed to continue bit-identically after a kill (CPU), on the host: the tensors of the
        network, the optimizer and the best checkpoint come from a device in one copy per dtype (host_copy);
        on the CPU they are the live tensors, which the next steps change (save them at once), unless
        `snapshot`: then they are copied too, so that the state may be written while training goes on."""
        tensors = host_copy({"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                             "best": dict(self.best)}, snapshot)
        return {"subject_pool": self.data.subjects, "session_pool": self.data.sessions, **tensors,
                "shuffle": self.shuffle.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "history": list(self.history)}

    def load_state(self, state: dict) -> None:
        """Continue from `state()`; ValueError if it was saved for another pool than the run's now (the protocol's
        pool_key: the subjects of a loso session, the sessions of a cross_session subject)."""
        key = protocols.of(self.cfg).pool_key
        if key is not None and state.get(key) != self.data.pools[key]:
            what = key.partition("_")[0] + "s"
            raise ValueError(f"saved when the run pooled {what} {state.get(key)}, now {self.data.pools[key]}")
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        # Adam's moments in their parameter's memory layout: a state saved with contiguous parameters
        # (before run.py kept them channels-last 3D, and every state since host_copy) would otherwise feed
        # the fused step mismatched strides
        for p, saved in self.optimizer.state.items():
            for key, value in saved.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    saved[key] = torch.empty_like(p).copy_(value)
        self.shuffle.set_state(state["shuffle"])
        torch.set_rng_state(state["torch_rng"])
        self._load_cuda_rng(state["cuda_rng"])
        self.history, self.best = state["history"], state["best"]

    def _load_cuda_rng(self, saved: list | None) -> None:
        """The saved CUDA generator states of the devices this machine has (one line if some do not fit)."""
        if not saved or not torch.cuda.is_available():
            return
        count = torch.cuda.device_count()
        for index, rng in enumerate(saved[:count]):
            torch.cuda.set_rng_state(rng, index)
        if len(saved) > count:
            print(f"{self.spec.name}: the partial state holds the CUDA generator states of {len(saved)} devices, "
                  f"this machine has {count}: restored those of cuda:0..{count - 1} only", flush=True)

    def fit(self, on_epoch: Callable[[dict], None] = lambda row: None) -> None:
        """Train up to nbEpoch epochs (from where a loaded state left off); `on_epoch(row)` after each
        epoch, once its row is in `history` and `best` is updated (save a resumable state there)."""
        t, split = self.cfg.training, self.data.split
        if self.best["wait"] >= t.patience:  # a resumed run that had already stopped early
            return
        for epoch in range(len(self.history) + 1, t.nbEpoch + 1):
            start = time.perf_counter()
            train_loss, train_acc = self.train_epoch(epoch)
            row = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc}
            if len(split.val):
                val_loss, val_pred = self.predict(split.val)
                if not math.isfinite(val_loss):
                    raise Diverged(f"{self.where(epoch)}: validation loss became {val_loss}")
                row.update(val_loss=val_loss, val_accuracy=float((val_pred == self.data.label[split.val].numpy()).mean()))
            row["seconds"] = time.perf_counter() - start
            self.history.append(row)
            stop = self._update_best(row)
            on_epoch(row)
            if stop:
                break

    def evaluate(self) -> tuple[float, np.ndarray, np.ndarray]:
        """The selected checkpoint on the test split: (mean loss, true classes, predicted classes)."""
        self.net.load_state_dict(self.best["state"])
        test = self.data.split.test
        loss, predicted = self.predict(test)
        if not math.isfinite(loss):   # finite training, but the model's outputs on the test set are not
            raise Diverged(f"{self.where(self.best['epoch'])}: test loss of the selected checkpoint became {loss}")
        return loss, self.data.label[test].numpy(), predicted

    def _update_best(self, row: dict) -> bool:
        """Track the checkpoint (best validation accuracy; the last epoch without validation)
        and early stopping (no validation-loss improvement for `patience` epochs). Returns stop."""
        b = self.best
        if "val_accuracy" not in row or row["val_accuracy"] > b["val_accuracy"]:
            b.update(val_accuracy=row.get("val_accuracy", -math.inf), epoch=row["epoch"],
                     state=copy.deepcopy(self.net.state_dict()))
        if "val_loss" not in row:
            return False
        if row["val_loss"] < b["val_loss"]:
            b.update(val_loss=row["val_loss"], wait=0)
            return False
        b["wait"] += 1
        return b["wait"] >= self.cfg.training.patience
