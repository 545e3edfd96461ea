"""The training loop: splits, one run's data, the Trainer (fit, evaluate), metrics.

    data = build_run_data(cfg, RunSpec(subject=1, session=1), sessions)   # pooled, split, normalised
    trainer = Trainer(cfg, spec, data, torch.device("cpu"))
    trainer.fit(on_epoch=lambda row: print(row))                          # early stopping, best checkpoint
    loss, predicted = trainer.predict(data.split.test)
    scores(confusion_matrix(truth, predicted, n_class))                   # accuracy, macro-F1, kappa

What happens around a run (resume, result files, progress, summaries) is results.py's and run.py's;
this module touches no file. See README.md for the protocols and what each may claim.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from config import Config
import checkpoints
import datasets
import fastcpu
import inputs
import model as model_lib
import optim
import utils
from utils import ConfigError, DataError, UserError, printable

# ----------------------------------------------------------------------------- runs and splits


# The names of runs: sub01_ses1, and sub01_ses1_rep2 for the third seed of [training] repeats.
RUN_NAME = re.compile(r"sub(\d+)_ses(\d+)(?:_rep([1-9]\d*))?")


@dataclass(frozen=True)
class RunSpec:
    """One unit of work: a model trained and tested. For loso, `subject` is the held-out subject;
    `repeat` r > 0 is the same run with seed [training] seed + r."""
    subject: int
    session: int
    repeat: int = 0

    @property
    def name(self) -> str:
        return f"sub{self.subject:02d}_ses{self.session}" + (f"_rep{self.repeat}" if self.repeat else "")

    @property
    def base(self) -> "RunSpec":
        """The same subject-session's first seed (repeat 0): what repeats are pooled under."""
        return RunSpec(self.subject, self.session)

    @classmethod
    def parse(cls, name: str) -> "RunSpec | None":
        """The RunSpec a run name stands for (RUN_NAME), or None for anything else."""
        match = RUN_NAME.fullmatch(name) if isinstance(name, str) and len(name) <= 64 else None   # int() of 4300+ digits fails
        return cls(int(match[1]), int(match[2]), int(match[3] or 0)) if match else None


def run_seed(cfg: Config, spec: RunSpec) -> int:
    """The seed of one run: [training] seed + its repeat (wrapping at 2**32, NumPy's limit). Every run of a
    repeat shares it, so results do not depend on run order or sharding; the random protocol's split
    keeps the base seed, so repeats differ in training only (initial weights, shuffling, dropout)."""
    return (cfg.training.seed + spec.repeat) % 2**32


def run_named(text: str, where: str) -> RunSpec:
    """The RunSpec of a run name given on the command line (--predict, --explain, figures.py --run): exactly as
    run.py names runs (training.RUN_NAME: sub01_ses1, sub01_ses1_rep2); anything else, a path above all, is
    one UserError, so that no name becomes a path outside the result folder."""
    spec = RunSpec.parse(text)
    if spec is None or spec.name != text:
        hint = f"; did you mean {spec.name}?" if spec is not None else ""
        raise UserError(f"{where} {printable(repr(text), 120)}: not a run name (expected subNN_sesK, e.g. "
                              f"sub01_ses1, or subNN_sesK_repR, as the files under runs/ are named){hint}")
    return spec


@dataclass(frozen=True)
class Split:
    """Sample indices into the run's pooled arrays. `val` may be empty (no early stopping)."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def trial_split(dataset: str, trial: np.ndarray, label: np.ndarray, val_trials_per_class: int) -> Split:
    """Standard split (SEED trials 1-9 / 10-15, SEED-IV 1-16 / 17-24); validation = the last
    `val_trials_per_class` training trials of each class, so no window of a validation trial
    is trained on and the test trials are never looked at."""
    n_train = datasets.N_TRAIN_TRIALS[dataset]
    train_mask = trial <= n_train
    val_mask = np.zeros_like(train_mask)
    if val_trials_per_class:
        for c in np.unique(label[train_mask]):
            trials_c = np.unique(trial[train_mask & (label == c)])
            val_mask |= np.isin(trial, trials_c[-val_trials_per_class:]) & train_mask
    return Split(np.flatnonzero(train_mask & ~val_mask), np.flatnonzero(val_mask), np.flatnonzero(~train_mask))


def random_split(n: int, test_fraction: float, val_fraction: float, seed: int) -> Split:
    """Random split of windows (leaky: neighbouring 1-s windows of a trial are nearly identical)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round((n - n_test) * val_fraction))
    return Split(np.sort(perm[n_test + n_val:]), np.sort(perm[n_test:n_test + n_val]), np.sort(perm[:n_test]))


def cross_session_split(session: np.ndarray, trial: np.ndarray, label: np.ndarray, test_session: int,
                        val_trials_per_class: int) -> Split:
    """One subject: test = every window of `test_session`, train = the other sessions, validation = the
    last `val_trials_per_class` trials of each class in each training session (never the test session)."""
    test = session == test_session
    val = np.zeros_like(test)
    if val_trials_per_class:
        for k in np.unique(session[~test]):
            in_k = session == k
            for c in np.unique(label[in_k]):
                trials_c = np.unique(trial[in_k & (label == c)])
                val |= in_k & np.isin(trial, trials_c[-val_trials_per_class:])
    return Split(np.flatnonzero(~test & ~val), np.flatnonzero(val), np.flatnonzero(test))


def make_split(cfg: Config, spec: RunSpec, subject: np.ndarray, trial: np.ndarray, label: np.ndarray,
               session: np.ndarray | None = None) -> Split:
    """The protocol's split of one run's pooled samples (see README: Protocols); `session` per sample
    is needed by cross_session only."""
    t = cfg.training
    if t.protocol == "cross_session":
        if len(np.unique(session)) < 2:
            raise DataError(f"{cfg.where('training', 'protocol')} = cross_session needs at least 2 preprocessed sessions "
                            f"of subject {spec.subject}, found {len(np.unique(session))} under "
                            f"{cfg.path.preprocessed_root}")
        return cross_session_split(session, trial, label, spec.session, t.val_trials_per_class)
    if t.protocol == "trial":
        split = trial_split(cfg.data.dataset, trial, label, t.val_trials_per_class)
        untrained = sorted(set(label[trial <= datasets.N_TRAIN_TRIALS[cfg.data.dataset]]) - set(label[split.train]))
        if untrained:   # e.g. SEED-IV: 2 training trials of class 3 in session 1, of class 0 in session 3
            name = datasets.CLASS_NAMES[cfg.data.dataset][untrained[0]]
            raise ConfigError(f"{cfg.where('training', 'val_trials_per_class')} = {t.val_trials_per_class} takes every "
                              f"training trial of class {untrained[0]} ({name}) of {spec.name} for validation; "
                              f"use a smaller value")
        return split
    if t.protocol == "paper":
        s = trial_split(cfg.data.dataset, trial, label, 0)
        return Split(s.train, s.test, s.test)  # the authors' code validates on the test set
    if t.protocol == "random":
        return random_split(len(label), t.random_test_fraction, t.val_fraction, t.seed)
    # loso: test = the held-out subject; validation = the next training subject (cyclically)
    others = np.unique(subject[subject != spec.subject])
    if len(others) < 2:
        raise DataError(f"{cfg.where('training', 'protocol')} = loso needs at least 3 preprocessed subjects for "
                        f"session {spec.session}, found {len(others) + 1} under {cfg.path.preprocessed_root}")
    val_subject = others[np.searchsorted(others, spec.subject) % len(others)]
    test = subject == spec.subject
    val = subject == val_subject
    return Split(np.flatnonzero(~test & ~val), np.flatnonzero(val), np.flatnonzero(test))



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


def run_split(cfg: Config, spec: RunSpec, sessions: list) -> tuple[list, np.ndarray, Split]:
    """The sessions a run pools, their labels (N,) and the protocol's split; DataError if it cannot be made.

    Cheap (trial numbers and labels only): main() calls it for every run before writing anything.
    """
    if cfg.training.protocol == "loso":
        parts = [s for s in sessions if s.session == spec.session]
    elif cfg.training.protocol == "cross_session":
        parts = [s for s in sessions if s.subject == spec.subject]
    else:
        parts = [s for s in sessions if (s.subject, s.session) == (spec.subject, spec.session)]
    subject = np.concatenate([np.full(len(s.label), s.subject) for s in parts])
    session = np.concatenate([np.full(len(s.label), s.session) for s in parts])
    trial = np.concatenate([np.asarray(s.trial) for s in parts])
    label = np.concatenate([np.asarray(s.label) for s in parts])
    split = make_split(cfg, spec, subject, trial, label, session)
    if len(split.train) == 0 or len(split.test) == 0:
        raise DataError(f"{spec.name}: protocol {cfg.training.protocol} leaves "
                        f"{len(split.train)} training and {len(split.test)} test samples")
    untrained = sorted(set(label[split.test].tolist()) - set(label[split.train].tolist()))
    if untrained:   # the model could never predict it: every test window of that class would count as an error
        names = ", ".join(f"{c} ({datasets.CLASS_NAMES[cfg.data.dataset][c]})" for c in untrained)
        tested = next((p for p in parts if (p.subject, p.session) == (spec.subject, spec.session)), parts[0])
        raise DataError(f"{tested.path}: class {names} has test windows but no training window under protocol "
                        f"{cfg.training.protocol} ({spec.name}); check the session's labels")
    return parts, label, split


def subject_pool(parts: list) -> list[int]:
    """The subjects of a run's pooled sessions (run_split), sorted."""
    return sorted(int(s.subject) for s in parts)


def check_run_data(cfg: Config, spec: RunSpec, sessions: list) -> tuple[list, np.ndarray, Split]:
    """run_split, and every session pooled holds the source array of every stream (no raw EEG: no
    spatial-temporal stream); DataError naming the session folder otherwise. Cheap: run.py calls it
    for every run before anything is written."""
    parts, label, split = run_split(cfg, spec, sessions)
    streams = model_lib.stream_sources(cfg) if cfg.model.name == "sst_emotionnet" else {}   # baselines: DE only
    for name, source in streams.items():
        missing = next((s for s in parts if s.source(source) is None), None)
        if missing is not None:
            raise DataError(f"{missing.path}: no {source}.npy (no raw EEG was preprocessed), which stream {name} needs; "
                            f"set [model] streams = spectral to train the spatial-spectral stream only")
    return parts, label, split


def build_run_data(cfg: Config, spec: RunSpec, sessions: list) -> RunData:
    """Pool the sessions a run needs, split them by protocol, normalise with training statistics."""
    parts, label, split = check_run_data(cfg, spec, sessions)
    streams = model_lib.stream_sources(cfg)
    arrays = {source: np.concatenate([np.asarray(s.source(source)) for s in parts]) for source in set(streams.values())}
    stats = {}
    if cfg.training.normalization == "electrode":
        arrays, stats = inputs.normalise_run(arrays, split.train)
    tensors = {source: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for source, x in arrays.items()}
    return RunData({name: tensors[source] for name, source in streams.items()},
                   torch.from_numpy(label.astype(np.int64)), split, stats, subject_pool(parts),
                   sorted({int(s.session) for s in parts}))



# ----------------------------------------------------------------------------- metrics


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_class: int) -> np.ndarray:
    """(n_class, n_class) counts; rows = true class, columns = predicted class."""
    return np.bincount(y_true * n_class + y_pred, minlength=n_class * n_class).reshape(n_class, n_class)


def scores(cm: np.ndarray) -> dict:
    """Accuracy, macro-F1 (classes absent from both truth and prediction are skipped), Cohen's kappa, and
    per class (lists indexed by class): precision, recall, F1 (0 where undefined) and support."""
    n = cm.sum()
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=present)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    p_observed = tp.sum() / n
    p_chance = float((support * predicted).sum()) / n ** 2
    kappa = (p_observed - p_chance) / (1 - p_chance) if p_chance < 1 else 1.0
    return {"accuracy": float(p_observed), "macro_f1": float(f1[present].mean()), "kappa": float(kappa),
            "per_class": {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
                          "support": support.tolist()}}


def result_warnings(cfg: Config, predicted: np.ndarray, steps: int) -> list[str]:
    """What makes a run's result mean less than its accuracy says: every test window predicted as one
    class (the model collapsed), or fewer than 100 optimizer steps (it hardly trained)."""
    out = []
    if len(np.unique(predicted)) == 1:
        c = int(predicted[0])
        out.append(f"every test window predicted as class {c} ({datasets.CLASS_NAMES[cfg.data.dataset][c]}): "
                   f"the model collapsed to one class")
    if steps < 100:
        out.append(f"trained for only {steps} optimizer steps (fewer than 100)")
    return out


@torch.no_grad()
def predict_probabilities(net: torch.nn.Module, cfg: Config, stats: dict, session, batch_size: int = 256,
                          device: str | torch.device = "cpu") -> np.ndarray:
    """(N, nb_class) class probabilities of a trained network for a preprocessed session's windows
    (preprocessed.Session), its inputs normalised with the training statistics `stats` (a checkpoint's
    "normalization") and mapped as in training (checkpoints.TrainedModel.probabilities)."""
    return checkpoints.TrainedModel(net, cfg, stats).probabilities(session, batch_size, device)



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

    def __init__(self, cfg: Config, spec: RunSpec, data: RunData, device: torch.device):
        self.cfg, self.spec, self.data, self.device = cfg, spec, data, device
        seed = run_seed(cfg, spec)  # the same for every run of a repeat: results don't depend on order or sharding
        utils.set_seed(seed)
        # channels-last 3D parameters: oneDNN runs the definition's convolutions 1.65x faster on them
        # (evaluation, batch 256, 2-core CPU; bench/README.md), and cuDNN prefers them for bf16
        self.net = model_lib.build_model(cfg).to(device, memory_format=torch.channels_last_3d)
        # CPU training runs the definition through its accelerator (same parameters, same state dict) unless
        # [training] accelerator = off or the definition is not the one it was written for (it steps aside);
        # CUDA training and every evaluation run the definition itself, and so does CPU training with the
        # accelerator off: the CUDA path's loop, which the tests run on the CPU that way
        fast = fastcpu.accelerate(self.net) if device.type == "cpu" and cfg.training.accelerator == "auto" else None
        self.train_net, self.accelerated = fast or self.net, fast is not None
        self.optimizer = optim.adam(self.net, cfg.training.l2, cfg.training.lr)
        self.shuffle = torch.Generator().manual_seed(seed)     # on the host: the batch order of any device
        self.maps = inputs.MapBuilder(cfg.data.input_width, device)
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
        net, maps, built = net or self.net, {}, {}
        for name, x in self.inputs.items():    # streams of one source share its maps
            if id(x) not in built:
                built[id(x)] = self.maps(x.index_select(0, idx))
            maps[name] = built[id(x)]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return net(**maps).float()

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the training split in shuffled order: (mean loss, accuracy).

        The device never waits for the host inside the epoch: each step's loss and correct count stay
        on the device and come over once at its end, where a non-finite loss raises Diverged (naming
        the first one) before anything of the epoch is kept (history, best checkpoint, partial state).
        """
        self.net.train()
        train = torch.from_numpy(self.data.split.train)
        order = to_device(train[torch.randperm(len(train), generator=self.shuffle)], self.device)
        losses, correct = [], []
        for batch in order.split(self.cfg.training.batch_size):
            y = self.labels.index_select(0, batch)
            logits = self._forward(batch, self.train_net)
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
        size = self.cfg.training.batch_size
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
        for batch in to_device(torch.from_numpy(indices), self.device).split(max(self.cfg.training.batch_size, 256)):
            logits = self._forward(batch)
            losses.append(F.cross_entropy(logits, self.labels.index_select(0, batch), reduction="sum"))
            preds.append(logits.argmax(1))
        self.net.train(was_training)
        losses, preds = to_host(torch.stack(losses), torch.cat(preds))
        return sum(losses.tolist()) / len(indices), preds.numpy()

    def state(self) -> dict:
        """Everything needed to continue bit-identically after a kill (CPU), on the host: the tensors of the
        network, the optimizer and the best checkpoint come from a device in one copy per dtype (host_copy);
        on the CPU they are the live tensors, which the next steps change (save them at once)."""
        tensors = host_copy({"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "best": self.best})
        return {"subject_pool": self.data.subjects, "session_pool": self.data.sessions, **tensors,
                "shuffle": self.shuffle.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "history": self.history}

    def load_state(self, state: dict) -> None:
        """Continue from `state()`; ValueError if it was saved for another pool of subjects (loso)."""
        if self.cfg.training.protocol == "loso" and state.get("subject_pool") != self.data.subjects:
            raise ValueError(f"saved when the run pooled subjects {state.get('subject_pool')}, now {self.data.subjects}")
        if self.cfg.training.protocol == "cross_session" and state.get("session_pool") != self.data.sessions:
            raise ValueError(f"saved when the run pooled sessions {state.get('session_pool')}, now {self.data.sessions}")
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
