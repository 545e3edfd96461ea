"""Train and evaluate SST-EmotionNet: one fresh model per subject-session (or per LOSO fold).

    python run.py -c SEED.ini                       # every preprocessed subject-session
    python run.py -c SEED.ini --subjects 1,2 --sessions 1
    python run.py -c SEED.ini --shard 0/4           # one of 4 processes; then:
    python run.py -c SEED.ini --summarize           # merge the per-run files
    python run.py --demo                            # synthetic data end to end, a few minutes on a CPU
    python run.py -c SEED.ini --explain sub01_ses1  # attention and input figures of one run

Needs the maps of `python Preprocess.py -c SEED.ini`. Writes under [path] result_path:
    runs/<run>.json        one per finished run: accuracy, macro-F1, kappa, confusion, history
    checkpoints/<run>.pt   the best model (by validation accuracy), its config and input statistics
    results.csv, summary.json, figures/*.png (the summary, rebuilt from runs/ each time)
    figures/<run>/*.png    attention and input figures, with --explain <run>
    failed/<run>.json      a run that diverged (its error), until a later attempt finishes it
Every file is written atomically. A rerun skips finished runs and resumes an interrupted run
from its last finished epoch (checkpoints/<run>.partial.pt), so a killed job loses at most one
epoch; what a killed process left (temporary files, partial states of finished runs) is
removed. See README.md for the protocols and what each one may claim.
"""
from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import inputs
import utils
from utils import Config, ConfigError, DataError, UserError

# The paper's table 1 (mean +- std accuracy %, subject-dependent), for the printed comparison (loso is
# cross-subject: the table says the two are not comparable).
PAPER_ACCURACY = {"SEED": (96.02, 2.17), "SEED-IV": (84.92, 6.66)}
PROTOCOL_NOTES = {
    "trial": "honest: whole trials held out, validation from training trials",
    "paper": "OPTIMISTIC: the test set is used for early stopping and checkpoint choice, as in the authors' code",
    "random": "LEAKY: adjacent windows of one trial fall in both train and test",
    "loso": "honest: leave one subject out, validation from another training subject",
}
# [training] keys that do not change what a run computes (nor does [path]): results made under
# other values are reused.
NON_RESULT_TRAINING_KEYS = ("device", "num_threads")


# ----------------------------------------------------------------------------- runs and splits


@dataclass(frozen=True)
class RunSpec:
    """One unit of work: a model trained and tested. For loso, `subject` is the held-out subject."""
    subject: int
    session: int

    @property
    def name(self) -> str:
        return f"sub{self.subject:02d}_ses{self.session}"


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
    import datasets

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


def make_split(cfg: Config, spec: RunSpec, subject: np.ndarray, trial: np.ndarray, label: np.ndarray) -> Split:
    """The protocol's split of one run's pooled samples (see README: Protocols)."""
    t = cfg.training
    if t.protocol == "trial":
        import datasets

        split = trial_split(cfg.data.dataset, trial, label, t.val_trials_per_class)
        untrained = sorted(set(label[trial <= datasets.N_TRAIN_TRIALS[cfg.data.dataset]]) - set(label[split.train]))
        if untrained:   # e.g. SEED-IV: 2 training trials of class 3 in session 1, of class 0 in session 3
            name = datasets.CLASS_NAMES[cfg.data.dataset][untrained[0]]
            raise ConfigError(f"{cfg.source}: [training] val_trials_per_class = {t.val_trials_per_class} takes every "
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
        raise DataError(f"{cfg.source}: [training] protocol = loso needs at least 3 preprocessed subjects for "
                        f"session {spec.session}, found {len(others) + 1} under {cfg.path.preprocessed_root}")
    val_subject = others[np.searchsorted(others, spec.subject) % len(others)]
    test = subject == spec.subject
    val = subject == val_subject
    return Split(np.flatnonzero(~test & ~val), np.flatnonzero(val), np.flatnonzero(test))


def plan_runs(cfg: Config, available: list[tuple[int, int]], subjects, sessions, shard) -> list[RunSpec]:
    """The runs of this invocation: all preprocessed (subject, session) pairs, filtered, then sharded."""
    runs = [RunSpec(s, k) for s, k in available
            if (subjects is None or s in subjects) and (sessions is None or k in sessions)]
    if shard is not None:
        index, count = shard
        runs = runs[index::count]  # round-robin: shards get similar amounts of work
    return runs


# ----------------------------------------------------------------------------- data


@dataclass
class RunData:
    """One run's samples at electrode level, z-scored with training-split statistics.

    de: (N, 62, specInput_length) float32; eeg: (N, 62, temInput_length) float32 or None.
    `subjects`: the subjects pooled (loso: every preprocessed subject of the session).
    """
    de: torch.Tensor
    eeg: torch.Tensor | None
    label: torch.Tensor
    split: Split
    stats: dict
    subjects: list[int]


def run_split(cfg: Config, spec: RunSpec, sessions: list) -> tuple[list, np.ndarray, Split]:
    """The sessions a run pools, their labels (N,) and the protocol's split; DataError if it cannot be made.

    Cheap (trial numbers and labels only): main() calls it for every run before writing anything.
    """
    if cfg.training.protocol == "loso":
        parts = [s for s in sessions if s.session == spec.session]
    else:
        parts = [s for s in sessions if (s.subject, s.session) == (spec.subject, spec.session)]
    subject = np.concatenate([np.full(len(s.label), s.subject) for s in parts])
    trial = np.concatenate([np.asarray(s.trial) for s in parts])
    label = np.concatenate([np.asarray(s.label) for s in parts])
    split = make_split(cfg, spec, subject, trial, label)
    if len(split.train) == 0 or len(split.test) == 0:
        raise DataError(f"{spec.name}: protocol {cfg.training.protocol} leaves "
                        f"{len(split.train)} training and {len(split.test)} test samples")
    untrained = sorted(set(label[split.test].tolist()) - set(label[split.train].tolist()))
    if untrained:   # the model could never predict it: every test window of that class would count as an error
        import datasets

        names = ", ".join(f"{c} ({datasets.CLASS_NAMES[cfg.data.dataset][c]})" for c in untrained)
        raise DataError(f"{parts[0].path}: class {names} has test windows but no training window under protocol "
                        f"{cfg.training.protocol} ({spec.name}); check the session's labels")
    return parts, label, split


def subject_pool(parts: list) -> list[int]:
    """The subjects of a run's pooled sessions (run_split), sorted."""
    return sorted(int(s.subject) for s in parts)


def build_run_data(cfg: Config, spec: RunSpec, sessions: list) -> RunData:
    """Pool the sessions a run needs, split them by protocol, normalise with training statistics."""
    parts, label, split = run_split(cfg, spec, sessions)
    de = np.concatenate([np.asarray(s.de) for s in parts])
    eeg = np.concatenate([np.asarray(s.eeg) for s in parts]) if cfg.model.streams != "spectral" else None
    stats = {}
    if cfg.training.normalization == "electrode":
        de, eeg, stats = inputs.normalise_run(de, eeg, split.train)
    return RunData(torch.from_numpy(np.ascontiguousarray(de, dtype=np.float32)),
                   None if eeg is None else torch.from_numpy(np.ascontiguousarray(eeg, dtype=np.float32)),
                   torch.from_numpy(label.astype(np.int64)), split, stats, subject_pool(parts))


# ----------------------------------------------------------------------------- metrics


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_class: int) -> np.ndarray:
    """(n_class, n_class) counts; rows = true class, columns = predicted class."""
    return np.bincount(y_true * n_class + y_pred, minlength=n_class * n_class).reshape(n_class, n_class)


def scores(cm: np.ndarray) -> dict:
    """Accuracy, macro-F1 (classes absent from both truth and prediction are skipped) and Cohen's kappa."""
    n = cm.sum()
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=present)
    p_observed = tp.sum() / n
    p_chance = float((support * predicted).sum()) / n ** 2
    kappa = (p_observed - p_chance) / (1 - p_chance) if p_chance < 1 else 1.0
    return {"accuracy": float(p_observed), "macro_f1": float(f1[present].mean()), "kappa": float(kappa)}


# ----------------------------------------------------------------------------- training


class Diverged(Exception):
    """The training or validation loss became NaN or Inf, or the test loss of the selected checkpoint did."""


class Trainer:
    """Trains one fresh model on one run's data; early stopping on validation loss, best
    checkpoint by validation accuracy (the authors' EarlyStopping + ModelCheckpoint)."""

    def __init__(self, cfg: Config, spec: RunSpec, data: RunData, device: torch.device):
        import fastcpu
        import model as model_lib

        self.cfg, self.spec, self.data, self.device = cfg, spec, data, device
        self.config_key = result_key(cfg)
        utils.set_seed(cfg.training.seed)  # same seed for every run: results don't depend on order or sharding
        # channels-last 3D parameters: oneDNN runs the definition's convolutions 1.65x faster on them
        # (evaluation, batch 256, 2-core CPU; README: Speed), and cuDNN prefers them for bf16
        self.net = model_lib.build_model(cfg).to(device, memory_format=torch.channels_last_3d)
        # CPU training runs the definition through its accelerator (same parameters, same state dict);
        # CUDA training and every evaluation run the definition itself
        self.train_net = fastcpu.accelerate(self.net) if device.type == "cpu" else self.net
        self.optimizer = model_lib.adam(self.net, cfg.training.l2, cfg.training.lr)
        self.shuffle = torch.Generator().manual_seed(cfg.training.seed)
        self.maps = inputs.MapBuilder(cfg.data.input_width, device)
        self.autocast = device.type == "cuda" and cfg.training.amp
        self.use_temporal = cfg.model.streams != "spectral"
        self.use_spectral = cfg.model.streams != "temporal"
        self.history: list[dict] = []
        self.best = {"val_accuracy": -math.inf, "val_loss": math.inf, "epoch": 0, "state": None, "wait": 0}

    def _forward(self, idx: torch.Tensor, net=None) -> torch.Tensor:
        d, net = self.data, net or self.net
        spectral = self.maps(d.de[idx].to(self.device, non_blocking=True)) if self.use_spectral else None
        temporal = self.maps(d.eeg[idx].to(self.device, non_blocking=True)) if self.use_temporal else None
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return net(spectral, temporal).float()

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        self.net.train()
        train = torch.from_numpy(self.data.split.train)
        order = train[torch.randperm(len(train), generator=self.shuffle)]
        total_loss, correct = 0.0, 0
        for batch in order.split(self.cfg.training.batch_size):
            y = self.data.label[batch].to(self.device)
            logits = self._forward(batch, self.train_net)
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise Diverged(f"{self.where(epoch)}: training loss became {loss.item()}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += loss.item() * len(batch)
            correct += (logits.argmax(1) == y).sum().item()
        return total_loss / len(train), correct / len(train)

    def where(self, epoch: int) -> str:
        s = self.spec
        return f"{s.name} (subject {s.subject}, session {s.session}), epoch {epoch}"

    @torch.no_grad()
    def predict(self, indices: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean cross-entropy and predicted classes of the given samples (eval mode, then back)."""
        was_training = self.net.training
        self.net.eval()
        losses, preds = [], []
        for batch in torch.from_numpy(indices).split(max(self.cfg.training.batch_size, 256)):
            logits = self._forward(batch)
            losses.append(F.cross_entropy(logits, self.data.label[batch].to(self.device), reduction="sum").item())
            preds.append(logits.argmax(1).cpu())
        self.net.train(was_training)
        return sum(losses) / len(indices), torch.cat(preds).numpy()

    def state(self) -> dict:
        """Everything needed to continue bit-identically after a kill (CPU)."""
        return {"config_key": self.config_key, "subject_pool": self.data.subjects, "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "shuffle": self.shuffle.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "history": self.history, "best": self.best}

    def load_state(self, state: dict) -> None:
        """Continue from `state()`; ValueError if it was saved under another configuration."""
        if state.get("config_key") != self.config_key:
            raise ValueError("saved under another configuration")
        if self.cfg.training.protocol == "loso" and state.get("subject_pool") != self.data.subjects:
            raise ValueError(f"saved when the run pooled subjects {state.get('subject_pool')}, now {self.data.subjects}")
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.shuffle.set_state(state["shuffle"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.history, self.best = state["history"], state["best"]

    def fit(self, partial_path: Path, progress) -> None:
        """Train up to nbEpoch epochs, saving a resumable state after each epoch."""
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
            with utils.atomic_path(partial_path) as tmp:
                torch.save(self.state(), tmp)
            progress.update(1)
            progress.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k.endswith(("loss", "accuracy"))})
            if stop:
                break

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


def train_run(cfg: Config, spec: RunSpec, sessions: list, device: torch.device, out: "ResultDir") -> dict:
    """Train, select, test one run and write its result JSON and checkpoint. Returns the result."""
    from tqdm import tqdm

    start = time.perf_counter()
    data = build_run_data(cfg, spec, sessions)
    trainer = Trainer(cfg, spec, data, device)
    partial = out.partial(spec)
    if partial.exists():
        try:
            trainer.load_state(torch.load(partial, map_location=device, weights_only=False))
            print(f"{spec.name}: resuming after epoch {len(trainer.history)} of {cfg.training.nbEpoch}")
        except Exception as e:  # a partial state of other code or config: start the run afresh
            print(f"{spec.name}: ignoring {partial.name} ({type(e).__name__}: {e}); starting over", file=sys.stderr)
            trainer = Trainer(cfg, spec, data, device)
    with tqdm(total=cfg.training.nbEpoch, initial=len(trainer.history), desc=spec.name, unit="epoch",
              leave=False, disable=None, file=sys.stderr) as progress:
        trainer.fit(partial, progress)

    trainer.net.load_state_dict(trainer.best["state"])
    test = data.split.test
    test_loss, pred = trainer.predict(test)
    if not math.isfinite(test_loss):   # finite training, but the model's outputs on the test set are not
        raise Diverged(f"{trainer.where(trainer.best['epoch'])}: test loss of the selected checkpoint became {test_loss}")
    truth = data.label[test].numpy()
    cm = confusion_matrix(truth, pred, cfg.model.nb_class)
    result = {
        "run": spec.name, "subject": spec.subject, "session": spec.session,
        "protocol": cfg.training.protocol, "dataset": cfg.data.dataset,
        **scores(cm), "test_loss": test_loss, "confusion_matrix": cm.tolist(),
        "n_train": len(data.split.train), "n_val": len(data.split.val), "n_test": len(test),
        "subject_pool": data.subjects,
        "best_epoch": trainer.best["epoch"], "epochs_run": len(trainer.history),
        "history": trainer.history, "seconds": sum(r["seconds"] for r in trainer.history),
        "wall_seconds": time.perf_counter() - start, "device": str(device),
        "config_key": out.config_key,
    }
    with utils.atomic_path(out.checkpoint(spec)) as tmp:
        torch.save({"model": trainer.best["state"], "config": cfg.to_dict(), "run": spec.name, "subject": spec.subject,
                    "session": spec.session, "epoch": trainer.best["epoch"], "normalization": data.stats}, tmp)
    utils.write_json(out.run_json(spec), result)  # written last: its presence marks the run finished
    partial.unlink(missing_ok=True)
    out.failure(spec).unlink(missing_ok=True)
    return result


# ----------------------------------------------------------------------------- results


class ResultDir:
    """The layout under [path] result_path, and which runs in it are finished for this config."""

    def __init__(self, cfg: Config):
        self.root = cfg.path.result_path
        self.source = cfg.source
        self.config_key = result_key(cfg)

    def run_json(self, spec: RunSpec) -> Path:
        return self.root / "runs" / f"{spec.name}.json"

    def checkpoint(self, spec: RunSpec) -> Path:
        return self.root / "checkpoints" / f"{spec.name}.pt"

    def partial(self, spec: RunSpec) -> Path:
        return self.root / "checkpoints" / f"{spec.name}.partial.pt"

    def failure(self, spec: RunSpec) -> Path:
        """The record of a run that failed (Diverged); removed when the run later finishes."""
        return self.root / "failed" / f"{spec.name}.json"

    @property
    def folders(self) -> tuple[Path, ...]:
        return self.root, self.root / "runs", self.root / "checkpoints", self.root / "figures", self.root / "failed"

    def record_failure(self, spec: RunSpec, error: str) -> None:
        utils.write_json(self.failure(spec), {"run": spec.name, "error": error, "config_key": self.config_key})

    def failures(self, done: dict[str, dict]) -> dict[str, str]:
        """run name -> error of the failed runs of this config that have not finished since."""
        out = {}
        for path in sorted((self.root / "failed").glob("*.json")):
            try:
                record = json_load(path)
            except ValueError:
                continue   # a damaged record only loses its message: the run is retried anyway
            if not isinstance(record, dict) or not isinstance(record.get("run"), str):
                continue
            if record.get("config_key") == self.config_key and record["run"] not in done:
                out[record["run"]] = str(record.get("error", ""))
        return out

    def check_writable(self) -> None:
        """Fail before any work if result_path or its folders cannot be created or written; creates nothing."""
        for folder in self.folders:
            utils.check_output_folder(folder, f"{self.source}: [path] result_path")

    def tidy(self, runs: list[RunSpec], done: dict) -> None:
        """Remove what killed processes left: temporary files, partial states of runs that have finished."""
        for folder in self.folders:
            utils.remove_stale_temporaries(folder)
        for spec in runs:
            if spec.name in done:  # killed between writing the result and deleting the partial state
                self.partial(spec).unlink(missing_ok=True)

    def finished(self) -> dict[str, dict]:
        """Finished runs of this config, by run name. Results of another config are an error."""
        out, files = {}, {}
        for path in sorted((self.root / "runs").glob("*.json")):
            try:
                result = json_load(path)
            except ValueError:
                raise DataError(f"{path}: not a readable result file; delete it to redo that run") from None
            if not isinstance(result, dict) or not isinstance(result.get("run"), str):
                raise DataError(f"{path}: not a result record; delete it to redo that run")
            if result.get("config_key") != self.config_key:
                raise ConfigError(f"{path}: made with a different configuration; choose another [path] result_path "
                                  f"or delete {self.root / 'runs'} to start over")
            if result["protocol"] == "loso" and "subject_pool" not in result:
                raise ConfigError(f"{path}: a loso result without its subject_pool (made by an older version); "
                                  f"delete it to redo that run")
            out[result["run"]] = result
            files[result["run"]] = path
        pools: dict[int, tuple[str, list]] = {}
        for result in out.values():   # loso: every run of a session must have pooled the same subjects
            if result["protocol"] != "loso":
                continue
            first = pools.setdefault(result["session"], (result["run"], result["subject_pool"]))
            if result["subject_pool"] != first[1]:
                paths = f"{files[first[0]]} and {files[result['run']]}"
                raise ConfigError(f"{paths}: loso runs of session {result['session']} that pooled different subjects "
                                  f"({first[1]} and {result['subject_pool']}); choose another [path] result_path "
                                  f"or delete the runs made with the subjects that are no longer preprocessed")
        return out

    def check_pools(self, done: dict[str, dict], pools: dict[int, list[int]]) -> None:
        """Finished loso runs must have pooled the subjects preprocessed now (`pools`: session -> subjects)."""
        for result in done.values():
            now = pools.get(result["session"])
            if result["protocol"] == "loso" and now is not None and result["subject_pool"] != now:
                raise ConfigError(f"{self.run_json(RunSpec(result['subject'], result['session']))}: trained with "
                                  f"subjects {result['subject_pool']} of session {result['session']}, but the "
                                  f"preprocessed subjects are now {now}; choose another [path] result_path or delete "
                                  f"{self.root / 'runs'} to start over")


def json_load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def result_key(cfg: Config) -> str:
    """A short fingerprint of every setting that changes results (not paths, device or threads)."""
    d = cfg.to_dict()
    del d["path"]
    for k in NON_RESULT_TRAINING_KEYS:
        del d["training"][k]
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def summarize(cfg: Config, out: ResultDir) -> dict | None:
    """Merge runs/*.json into results.csv and summary.json (failed/*.json into its failed_runs),
    print the table and draw the figures."""
    done = out.finished()
    failed = out.failures(done)
    results = sorted(done.values(), key=lambda r: (r["subject"], r["session"]))
    if not results:
        print(f"no finished runs under {out.root / 'runs'}")
        for run, error in failed.items():
            print(f"failed: {run}: {error}")
        return None
    acc = np.array([r["accuracy"] for r in results]) * 100
    per_subject = {}
    for r in results:
        per_subject.setdefault(r["subject"], []).append(r["accuracy"] * 100)
    cm = np.sum([r["confusion_matrix"] for r in results], axis=0)
    summary = {
        "dataset": cfg.data.dataset, "protocol": cfg.training.protocol,
        "protocol_note": PROTOCOL_NOTES[cfg.training.protocol],
        "n_runs": len(results),
        "mean_accuracy": float(acc.mean()), "std_accuracy": float(acc.std()),  # percent; population std
        "mean_macro_f1": float(np.mean([r["macro_f1"] for r in results])),
        "mean_kappa": float(np.mean([r["kappa"] for r in results])),
        "per_subject": {str(s): float(np.mean(v)) for s, v in sorted(per_subject.items())},
        "confusion_matrix": cm.tolist(),
        "paper_accuracy": {"mean": PAPER_ACCURACY[cfg.data.dataset][0], "std": PAPER_ACCURACY[cfg.data.dataset][1]},
        "failed_runs": failed,
        "config": cfg.to_dict(), "config_key": out.config_key, "git_commit": utils.git_commit(),
    }
    columns = ["run", "subject", "session", "accuracy", "macro_f1", "kappa", "test_loss",
               "best_epoch", "epochs_run", "n_train", "n_val", "n_test", "seconds"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(results)
    with utils.atomic_path(out.root / "results.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    utils.write_json(out.root / "summary.json", summary)
    print(results_table(summary))
    import figures

    figures.run_figures(results, summary, out.root / "figures")
    return summary


def results_table(summary: dict) -> str:
    paper = summary["paper_accuracy"]
    rows = [
        f"{summary['dataset']}, protocol {summary['protocol']} ({summary['protocol_note']})",
        f"{'':28s}{'accuracy %':>18s}{'runs':>6s}",
        f"{'SST-EmotionNet, paper':28s}{paper['mean']:>10.2f} +- {paper['std']:<5.2f}{45:>6d}",
        f"{'this run':28s}{summary['mean_accuracy']:>10.2f} +- {summary['std_accuracy']:<5.2f}{summary['n_runs']:>6d}",
    ]
    if summary["protocol"] == "loso":
        rows.append("(the paper's number is subject-dependent, one model per subject-session: not comparable with loso)")
    if summary["failed_runs"]:
        rows.append(f"failed runs (not counted): {', '.join(summary['failed_runs'])}")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- command line


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard: expected I/N such as 0/4, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard: expected 0 <= I < N, got {text!r}")
    return index, count


# --demo: synthetic SEED data of this size, and these keys changed from the INI file's values.
DEMO_DATA = {"subjects": (1, 2), "sessions": (1,), "trial_fraction": 0.15, "seed": 0}
# Why these: a few hundred optimizer steps on ~200 windows. At lr 1e-4 nothing is learnt in that time,
# and Keras' BN momentum (0.99) leaves the running statistics far behind the fast-moving weights, so
# eval mode predicts one class; PyTorch's usual 0.1 keeps up. The full configuration is unchanged.
DEMO_KEYS = {"data": {"dataset": "SEED", "feature": "de_LDS"}, "model": {"nb_class": 3, "bn_momentum": 0.1},
             "training": {"nbEpoch": 10, "patience": 10, "lr": 1e-3, "batch_size": 16}}


def demo_config(base: Config, root: Path) -> Config:
    """A reduced configuration of `base` on small synthetic SEED data under `root`."""
    import datasets
    import synthetic

    data_root = root / "SEED"
    if not (data_root / datasets.RAW_FOLDER["SEED"]).exists():
        print(f"writing synthetic SEED-format data to {data_root}")
        synthetic.write_seed(data_root, **DEMO_DATA)
    paths = {"dataset_root": data_root, "preprocessed_root": root / "SEED_preprocessed", "result_path": root / "results"}
    return base.replace(path=paths, **DEMO_KEYS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--config", default="SEED.ini", help="INI file (default SEED.ini)")
    parser.add_argument("--subjects", type=utils.int_list, help="comma-separated subject numbers (default: all preprocessed)")
    parser.add_argument("--sessions", type=utils.int_list, help="comma-separated session numbers (default: all)")
    parser.add_argument("--shard", type=str, help="I/N: run every N-th run starting at I (0-based); no summary")
    parser.add_argument("--summarize", action="store_true", help="only merge finished runs into summary.json")
    parser.add_argument("--explain", metavar="RUN", help="attention and input figures of a finished run, e.g. sub01_ses1")
    parser.add_argument("--demo", action="store_true", help="synthetic SEED data, reduced training, end to end")
    parser.add_argument("--demo-dir", type=Path, default=Path(__file__).resolve().parent / ".cache" / "demo",
                        help="where --demo writes its data and results (default .cache/demo)")
    args = parser.parse_args(argv)

    cfg = utils.load_config(args.config)
    if args.demo:
        cfg = demo_config(cfg, args.demo_dir)
    subjects, sessions = args.subjects, args.sessions
    shard = parse_shard(args.shard) if args.shard else None

    import model as model_lib
    import Preprocess

    model_lib.build_model(cfg)  # a config the network cannot be built from fails before any output
    out = ResultDir(cfg)
    if args.summarize:
        done = out.finished()
        if not done:
            raise DataError(f"{out.root / 'runs'}: no finished runs to summarize; run `python run.py -c {args.config}` first")
        out.check_writable()
        out.tidy([], done)
        summarize(cfg, out)
        return 0
    if args.explain:
        import figures

        for path in figures.explain_run(out.root / "checkpoints" / f"{args.explain}.pt", cfg.path.preprocessed_root,
                                        out.root / "figures" / args.explain):
            print(path)
        return 0
    if args.demo:
        Preprocess.preprocess(cfg)

    device = utils.resolve_device(cfg.training.device, f"{cfg.source}: [training] device")
    if cfg.training.num_threads:
        torch.set_num_threads(cfg.training.num_threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        utils.keep_freed_memory()   # no page faults for each step's activations (README: Speed)

    all_sessions = Preprocess.load_preprocessed(cfg, subjects=None if cfg.training.protocol == "loso" else subjects,
                                                sessions=sessions)
    if cfg.model.streams != "spectral" and any(s.eeg is None for s in all_sessions):
        missing = next(s for s in all_sessions if s.eeg is None)
        raise DataError(f"{missing.path}: no spatial-temporal maps (no raw EEG was found); "
                        f"set [model] streams = spectral to train the spatial-spectral stream only")
    runs = plan_runs(cfg, [(s.subject, s.session) for s in all_sessions], subjects, sessions, shard)
    if not runs:
        raise DataError(f"no preprocessed subject-session under {cfg.path.preprocessed_root} matches the selection")
    done = out.finished()
    out.check_pools(done, {k: subject_pool([s for s in all_sessions if s.session == k])
                           for k in {s.session for s in all_sessions}})
    todo = [r for r in runs if r.name not in done]
    for spec in todo:  # every split can be made (e.g. loso has enough subjects) before anything is written
        run_split(cfg, spec, all_sessions)
    out.check_writable()
    out.tidy(runs, done)
    print(f"{cfg.data.dataset}, protocol {cfg.training.protocol}: {len(runs)} runs, {len(runs) - len(todo)} already "
          f"finished, device {device}")

    failed = {}
    for spec in todo:
        try:
            r = train_run(cfg, spec, all_sessions, device, out)
        except Diverged as e:
            failed[spec.name] = str(e)
            out.record_failure(spec, str(e))
            print(f"error: {e}; skipping this run (it is retried on the next invocation)", file=sys.stderr)
            continue
        print(f"{spec.name}: accuracy {100 * r['accuracy']:.2f}%  macro-F1 {r['macro_f1']:.3f}  "
              f"kappa {r['kappa']:.3f}  best epoch {r['best_epoch']}/{r['epochs_run']}  {r['wall_seconds']:.0f} s")
    if shard is None:
        summarize(cfg, out)
    else:
        print(f"shard {args.shard} done; after every shard has finished: python run.py -c {args.config} --summarize")
    return 1 if failed else 0


if __name__ == "__main__":
    utils.cli_main(main)
