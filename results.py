"""Result bookkeeping under [path] result_path: run files, checkpoints, resumable states, per-epoch
logs, failures, the summary, and which finished runs belong to this configuration.

    runs/<run>.json            one per finished run: accuracy, macro-F1, kappa, confusion, history
    runs/<run>.epochs.csv      one row per epoch as it happens (also for a run still training)
    checkpoints/<run>.pt       the best model (by validation accuracy), its config and input statistics
    checkpoints/<run>.partial.pt   the state after the last finished epoch, until the run finishes
    failed/<run>.json          a run that diverged (its error), until a later attempt finishes it
    .lock/                     who writes the folder now (ResultDir.lock: run.py while it trains or summarizes)
    results.csv, summary.json, figures/*.png    the summary, rebuilt from runs/ each time
Every file is written atomically; the run JSON is written last, so its presence marks a finished run.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from config import Config
import checkpoints
import config
import fileio
import schemas
import tables
import training
from training import run_named  # noqa: F401  (results.run_named)
from training import RunSpec, Trainer, scores
import utils
from utils import ConfigError, DataError, printable

# The paper's table 1 (mean +- std accuracy %, subject-dependent), for the printed comparison (loso is
# cross-subject: the table says the two are not comparable).
PAPER_ACCURACY = {"SEED": (96.02, 2.17), "SEED-IV": (84.92, 6.66)}
# The same table's SVM on DE features: the row a classical baseline ([model] name) is printed against.
PAPER_SVM_ACCURACY = {"SEED": (83.99, 9.72), "SEED-IV": (56.61, 20.05)}
PROTOCOL_NOTES = {
    "trial": "honest: whole trials held out, validation from training trials",
    "paper": "OPTIMISTIC: the test set is used for early stopping and checkpoint choice, as in the authors' code",
    "random": "LEAKY: adjacent windows of one trial fall in both train and test",
    "loso": "honest: leave one subject out, validation from another training subject",
    "cross_session": "honest: per subject, one session held out, trained on the others, validation from those",
}
# [training] keys that do not change what a run computes (nor does [path]): results made under
# other values are reused. (The accelerator computes the definition's maths, to float32 rounding, as a
# CUDA float32 run does.)
NON_RESULT_TRAINING_KEYS = ("device", "num_threads", "accelerator", "repeats")   # repeats: how many seeds, not which
# Keys added after result folders existed: left out of the key while they hold their default, so that
# results made before them keep their key.
ADDED_KEYS = {("model", "attention_block"), ("model", "name")}
# The code that computes a run (what it trains, how, on which inputs): its fingerprint is checked beside
# the key, with the [model] plugins files. A run is fingerprinted with the files its model uses
# (MODEL_CODE_FILES), so that editing a baseline does not make the network's results "other code".
CODE_FILES = ("model.py", "optim.py", "fastcpu.py", "training.py", "inputs.py", "baselines.py")
NETWORK_CODE_FILES = ("model.py", "optim.py", "fastcpu.py", "training.py", "inputs.py")
BASELINE_CODE_FILES = ("baselines.py", "training.py", "inputs.py")
PRECISIONS = ("float32", "bf16")


# ----------------------------------------------------------------------------- results


class ResultDir:
    """The layout under [path] result_path, and which runs in it are finished for this config.

    A run belongs to this configuration when its key (result_key: the settings and the precision) is
    this one's and, for training (`precision` given), when it was made by this code (code_fingerprint).
    `precision` None (summarize, predict) accepts the runs of either precision, but not a mix.
    """

    def __init__(self, cfg: Config, precision: str | None = None):
        self.root = cfg.path.result_path
        self.source = cfg.source
        self.precision = precision
        self.keys = {p: result_key(cfg, p) for p in ((precision,) if precision else PRECISIONS)}
        self.config_key = self.keys[precision or "float32"]     # summarize: the key the runs have (finished())
        self.code = code_fingerprint(cfg) if precision else None
        self.precision_found: str | None = None     # the precision of the runs finished() read
        self.nb_class = cfg.model.nb_class
        self.damaged: list[tuple[Path, str, tuple]] = []   # found by finished(), set aside by tidy()

    def other_code(self, path: Path, record: dict) -> str | None:
        """Why a record's run was made with other code than this (None if not, or if not training)."""
        if self.code is None:
            return None
        made = record.get("code")
        if not isinstance(made, dict):
            return (f"{path}: made by an earlier version that did not record its code, so it may come from other "
                    f"code: another configuration")
        changed = sorted(set(made) ^ set(self.code) | {f for f in made if f in self.code and made[f] != self.code[f]})
        if not changed:
            return None
        return (f"{path}: made with other code ({', '.join(changed)} changed since): another configuration")

    def refuse(self, problem: str) -> ConfigError:
        return ConfigError(f"{problem}; keep both with --result-path DIR (or another [path] result_path), or delete "
                           f"{self.root / 'runs'} and {self.root / 'checkpoints'} to redo the runs with this code")

    def run_json(self, spec: RunSpec) -> Path:
        return fileio.child(self.root / "runs", f"{spec.name}.json")

    def checkpoint(self, spec: RunSpec) -> Path:
        return fileio.child(self.root / "checkpoints", f"{spec.name}.pt")

    def partial(self, spec: RunSpec) -> Path:
        return fileio.child(self.root / "checkpoints", f"{spec.name}.partial.pt")

    def epochs_csv(self, spec: RunSpec) -> Path:
        return fileio.child(self.root / "runs", f"{spec.name}.epochs.csv")

    def failure(self, spec: RunSpec) -> Path:
        """The record of a run that failed (Diverged); removed when the run later finishes."""
        return fileio.child(self.root / "failed", f"{spec.name}.json")

    def lock(self, runs=()) -> fileio.FolderLock:
        """Hold result_path while this process trains `runs` (names) or summarizes (none): processes of this
        configuration share the folder (shards), unless they would train the same run; any other
        configuration (other settings, precision or code) is refused at once, naming the holder. Use as
        `with out.lock(names): ...`; the kernel releases it when the process ends, however it ends."""
        return fileio.FolderLock(self.root).acquire(self.holder_info(runs), self._conflict(runs))

    def claim(self, run: str) -> fileio.FolderLock | None:
        """Hold result_path for training `run` alone (as lock([run])), or None where a process of this
        configuration holds it already (--shard auto in a SLURM array of listed ids: each task takes the
        runs nobody has taken). Another configuration is refused as by lock."""
        folder_only, with_run = self._conflict(()), self._conflict([run])
        taken = []

        def conflict(holder: dict) -> str | None:
            problem = folder_only(holder)
            if problem is None and with_run(holder) is not None:
                taken.append(holder)
                return f"{run}: taken"
            return problem

        try:
            return fileio.FolderLock(self.root).acquire(
                self.holder_info([run]), conflict, required="--shard auto in an array of listed task ids needs, to "
                "share the runs; give --shard I/N, or use an evenly spaced --array")
        except utils.OutputError:
            if taken:
                return None
            raise

    def check_lock(self) -> None:
        """Refuse now, creating nothing, if a process of another configuration holds result_path (lock):
        before the folder is read, so that its runs are not reported as another configuration's instead."""
        fileio.FolderLock(self.root).check(self._conflict(()))

    def _conflict(self, runs):
        """conflict(holder info) -> why this process may not share result_path with that holder, or None."""
        mine = set(self.holder_info()["keys"])

        def conflict(holder: dict) -> str | None:
            who = (f"PID {holder.get('pid', '?')} on {printable(holder.get('host', '?'), 40)} "
                   f"({printable(holder.get('command', '?'), 160)}), since {printable(holder.get('since', '?'), 20)}")
            theirs = holder.get("code")
            if not mine & set(holder.get("keys") or ()) or (None not in (self.code, theirs) and theirs != self.code):
                return (f"{self.root}: in use by another configuration: {who}; wait for it to finish, or give this "
                        f"one another --result-path")
            both = sorted(set(runs) & set(holder.get("runs") or ()))
            if both:
                shown = ", ".join(printable(r, 20) for r in both[:4]) + (", ..." if len(both) > 4 else "")
                return (f"{self.root}: {shown} already being trained by {who}; wait for it to finish, or select "
                        f"other runs (--subjects, --sessions, --shard)")
            return None

        return conflict

    def holder_info(self, runs=()) -> dict:
        """What a lock holder of this configuration records (lock): its result keys, code and runs."""
        return {"keys": sorted(set(self.keys.values())), "code": self.code, "runs": list(runs)}

    @property
    def folders(self) -> tuple[Path, ...]:
        return self.root, self.root / "runs", self.root / "checkpoints", self.root / "figures", self.root / "failed"

    def record_failure(self, spec: RunSpec, error: str) -> None:
        fileio.write_json(self.failure(spec), {"run": spec.name, "error": error, "config_key": self.config_key,
                                               "code": self.code})

    def failures(self, done: dict[str, dict]) -> dict[str, str]:
        """run name -> error of the failed runs of this config that have not finished since."""
        out = {}
        for path in fileio.list_folder(self.root / "failed", "*.json", f"{self.source}: [path] result_path"):
            try:
                record = json_load(path)
            except (ValueError, UnicodeDecodeError):
                continue   # a damaged record only loses its message: the run is retried anyway
            except OSError as e:
                raise DataError(f"{path}: cannot read the failure record ({e.strerror or e})") from None
            run = record.get("run") if isinstance(record, dict) else None
            if RunSpec.parse(run) is None or f"{run}.json" != path.name:    # edited by hand, or not ours
                print(f"warning: {path}: not the failure record of a run (run {printable(repr(run), 40)}); skipped",
                      file=sys.stderr)
                continue
            if record.get("config_key") == self.config_key and record["run"] not in done \
                    and (self.code is None or record.get("code") == self.code):
                out[record["run"]] = str(record.get("error", ""))
        return out

    def check_writable(self) -> None:
        """Fail before any work if result_path or its folders cannot be created or written; creates nothing."""
        for folder in self.folders:
            fileio.check_output_folder(folder, f"{self.source}: [path] result_path")

    def tidy(self, runs: list[RunSpec], done: dict) -> None:
        """Set aside the damaged result files finished() found, and remove what killed processes left:
        temporary files, partial states of runs that have finished. Called once every check of the
        command has passed, so that a command refused for a user error changes nothing on disk."""
        self.set_aside_damaged()
        for folder in self.folders:
            fileio.remove_stale_temporaries(folder)
        for spec in runs:
            if spec.name in done:  # killed between writing the result and deleting the partial state
                self.partial(spec).unlink(missing_ok=True)

    def finished(self) -> dict[str, dict]:
        """Finished runs of this config, by run name. Results of another config are an error; a damaged
        result file counts as not finished, so its run is redone, and is listed in self.damaged for
        set_aside_damaged (renamed <run>.json.damaged, one warning line; tidy() does it)."""
        out, files = {}, {}
        self.damaged, self.precision_found = [], None
        for path in sorted(fileio.list_folder(self.root / "runs", "*.json", f"{self.source}: [path] result_path")):
            try:
                result = json_load(path)
            except (ValueError, UnicodeDecodeError):
                self.damaged.append((path, "not readable JSON", file_identity(path)))
                continue
            except OSError as e:     # there, but not ours to read: not damage, and not to be redone blindly
                raise DataError(f"{path}: cannot read the result file ({e.strerror or e})") from None
            if isinstance(result, dict) and isinstance(result.get("config_key"), str):
                if result["config_key"] not in self.keys.values():
                    raise ConfigError(f"{path}: made with a different configuration; choose another [path] "
                                      f"result_path or delete {self.root / 'runs'} to start over")
                found = next(p for p, k in self.keys.items() if k == result["config_key"])
                if self.precision_found not in (None, found):     # summarize: the runs' precision, one only
                    raise ConfigError(f"{path}: {found} results beside {self.precision_found} ones in "
                                      f"{self.root / 'runs'}; results of one precision never mix with the other")
                self.precision_found = found
                if (problem := self.other_code(path, result)) is not None:
                    raise self.refuse(problem)
            problem = schemas.check(result, schemas.RUN_RECORD) or self._inconsistency(path, result)
            if problem:
                self.damaged.append((path, problem, file_identity(path)))
                continue
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
        if self.precision_found is not None:
            self.config_key = self.keys[self.precision_found]
        return out

    def set_aside_damaged(self) -> None:
        """Rename the damaged result files the last finished() found (see set_aside), unless another
        process (a concurrent --shard) has set one aside or rewritten it since: then it is not ours."""
        for path, problem, identity in self.damaged:
            if file_identity(path) == identity:
                set_aside(path, problem)
        self.damaged = []

    def _inconsistency(self, path: Path, r: dict) -> str | None:
        """What a result record that passes its schema may still get wrong: its name, its sizes."""
        if f"{r['run']}.json" != path.name:
            return f"run: {printable(repr(r['run']), 40)} is not this file's run"
        if RunSpec.parse(r["run"]) is None:
            return f"run: {printable(repr(r['run']), 40)} is not a run name (subNN_sesK)"
        if len(r["confusion_matrix"]) != self.nb_class:
            return f"confusion_matrix: {len(r['confusion_matrix'])} classes, the configuration has {self.nb_class}"
        if sum(map(sum, r["confusion_matrix"])) != r["n_test"]:
            return f"confusion_matrix: counts {sum(map(sum, r['confusion_matrix']))} test windows, n_test says {r['n_test']}"
        if len(r["history"]) != r["epochs_run"]:
            return f"history: {len(r['history'])} epochs, epochs_run says {r['epochs_run']}"
        return None

    def without_checkpoint(self, done: dict[str, dict]) -> list[str]:
        """Finished runs whose best checkpoint is gone (deleted by hand): counted in the summary, but
        --explain and --predict cannot use them."""
        return [run for run in sorted(done) if not self.checkpoint(RunSpec.parse(run)).is_file()]

    def check_pools(self, done: dict[str, dict], pools: dict[int, list[int]],
                    session_pools: dict[int, list[int]] | None = None) -> None:
        """Finished loso runs must have pooled the subjects preprocessed now (`pools`: session -> subjects),
        finished cross_session runs the sessions (`session_pools`: subject -> sessions)."""
        for result in done.values():
            now = (session_pools or {}).get(result["subject"])
            if result["protocol"] == "cross_session" and now is not None and result.get("session_pool") != now:
                raise ConfigError(f"{self.run_json(RunSpec(result['subject'], result['session']))}: trained with "
                                  f"sessions {result.get('session_pool')} of subject {result['subject']}, but the "
                                  f"preprocessed sessions are now {now}; choose another [path] result_path or delete "
                                  f"{self.root / 'runs'} to start over")
            now = pools.get(result["session"])
            if result["protocol"] == "loso" and now is not None and result["subject_pool"] != now:
                raise ConfigError(f"{self.run_json(RunSpec(result['subject'], result['session']))}: trained with "
                                  f"subjects {result['subject_pool']} of session {result['session']}, but the "
                                  f"preprocessed subjects are now {now}; choose another [path] result_path or delete "
                                  f"{self.root / 'runs'} to start over")


def json_load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


class DamagedFile(Exception):
    """A state file that cannot be what it claims (truncated, not a checkpoint, fields missing or of the wrong type)."""


def file_identity(path: Path) -> tuple | None:
    """(inode, modification time, size) of a file, None if it is gone: whether it is still the file read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def set_aside(path: Path, problem: str) -> Path:
    """Rename a damaged file to <name>.damaged (or .damaged.1, ...) so that its work is redone; one warning line."""
    target = path.with_name(path.name + ".damaged")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged.{n}")
    try:
        os.replace(path, target)
    except OSError as e:
        raise utils.OutputError(f"{path}: damaged ({problem}), and it cannot be set aside ({e.strerror or e}); "
                                f"delete it to redo that run") from None
    print(f"warning: {path}: damaged ({problem}); set aside as {target.name}, its run is redone", file=sys.stderr)
    return target


def result_key(cfg: Config, precision: str = "float32") -> str:
    """A short fingerprint of every setting that changes results (not paths, device, threads or the
    accelerator) and of the effective precision: "float32", or "bf16" (CUDA autocast, [training] amp).
    Float32 keys are those of earlier versions (keys added since count only when set)."""
    d = cfg.to_dict()
    del d["path"]
    for k in NON_RESULT_TRAINING_KEYS:
        del d["training"][k]
    del d["model"]["plugins"]       # paths of this machine; their code is in code_fingerprint
    for section, key in ADDED_KEYS:
        if d[section][key] == _default(section, key):
            del d[section][key]
    if precision != "float32":
        d["precision"] = precision
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _default(section: str, key: str):
    return next(f.default for f in dataclasses.fields(config.SECTIONS[section]) if f.name == key)


def precision(device, cfg: Config) -> str:
    """The effective precision of training on `device`: bf16 under CUDA autocast ([training] amp), else float32
    (the baselines: float64 on the CPU whatever the device, keyed as float32, "no autocast")."""
    network = cfg.model.name == "sst_emotionnet"
    return "bf16" if network and getattr(device, "type", device) == "cuda" and cfg.training.amp else "float32"


def code_fingerprint(cfg: Config) -> dict[str, str]:
    """{file: short hash} of the code that computes a run: CODE_FILES and the [model] plugins (plugin:<name>),
    each normalised so that comments, docstrings and layout do not count."""
    here = Path(__file__).resolve().parent
    names = NETWORK_CODE_FILES if cfg.model.name == "sst_emotionnet" else BASELINE_CODE_FILES
    files = {name: here / name for name in CODE_FILES if name in names}
    files |= {f"plugin:{p.name}": p for p in cfg.model.plugins}
    out = {}
    for name, path in files.items():
        try:
            out[name] = utils.code_digest(path.read_text(encoding="utf-8"), str(path))
        except (OSError, SyntaxError, UnicodeDecodeError):
            out[name] = "unreadable"     # a plugin that cannot be read fails to import anyway
    return out


def summarize(cfg: Config, out: ResultDir, subjects=None, sessions=None, this_invocation=(),
              fmt: str = "text") -> dict | None:
    """Merge runs/*.json into results.csv and summary.json (failed/*.json into its failed_runs),
    print the table (`fmt`: tables.FORMATS; text is results_table) and draw the figures. `subjects`,
    `sessions`: only those runs (the held-out subject under loso, the tested session under cross_session);
    `this_invocation`: the run names this command trained, for the table.

    Repeats ([training] repeats: sub01_ses1, sub01_ses1_rep1, ...) are averaged per subject-session
    first (pool_repeats): n_runs, the mean, the std between runs, per-subject values and the majority
    bar count subject-sessions, whatever the number of seeds; seed_std_accuracy is the std between seeds."""
    selected = lambda subject, session: (not subjects or subject in subjects) and (not sessions or session in sessions)  # noqa: E731
    done = {name: r for name, r in out.finished().items() if selected(r["subject"], r["session"])}
    failed = {run: printable(error, 300) for run, error in out.failures(done).items()
              if selected(RunSpec.parse(run).subject, RunSpec.parse(run).session)}
    missing = out.without_checkpoint(done)
    if missing:
        print(f"warning: {out.root / 'checkpoints'}: no checkpoint for finished run(s) {', '.join(missing)} "
              f"(deleted?): counted here, but --explain cannot use them; delete their runs/*.json to redo them",
              file=sys.stderr)
    results = sorted(done.values(), key=lambda r: (r["subject"], r["session"], run_repeat(r)))
    if not results:
        print(f"no finished runs under {out.root / 'runs'}")
        for run, error in failed.items():
            print(f"failed: {run}: {error}")
        return None
    out.set_aside_damaged()     # a summary comes after the command's checks: damage found now is set aside
    runs = pool_repeats(results)
    acc = np.array([r["accuracy"] for r in runs]) * 100
    per_subject = {}
    for r in runs:
        per_subject.setdefault(r["subject"], []).append(r["accuracy"] * 100)
    cm = np.sum([r["confusion_matrix"] for r in results], axis=0)
    with_classes = [r["per_class"] for r in results if isinstance(r.get("per_class"), dict)
                    and all(len(r["per_class"].get(k, ())) == cfg.model.nb_class for k in ("precision", "recall", "f1"))]
    per_class = {k: np.mean([c[k] for c in with_classes], axis=0).tolist()
                 for k in ("precision", "recall", "f1")} if with_classes else {}
    warnings = {r["run"]: r["warnings"] for r in results if r.get("warnings")}
    # one test set per subject-session, whatever its seeds: the first seed's confusion gives its class counts
    majority = [scores(majority_confusion(r["records"][0]["confusion_matrix"])) for r in runs]
    summary = {
        "dataset": cfg.data.dataset, "protocol": cfg.training.protocol,
        "protocol_note": PROTOCOL_NOTES[cfg.training.protocol],
        "model": cfg.model.name,
        "n_runs": len(runs),
        "mean_accuracy": float(acc.mean()), "std_accuracy": float(acc.std()),  # percent; population std
        "mean_macro_f1": float(np.mean([r["macro_f1"] for r in runs])),
        "mean_kappa": float(np.mean([r["kappa"] for r in runs])),
        "chance_accuracy": 100 / cfg.model.nb_class,
        # always answering each run's most frequent test class: the bar a collapsed model reaches
        "majority_accuracy": float(np.mean([m["accuracy"] for m in majority]) * 100),
        "majority_macro_f1": float(np.mean([m["macro_f1"] for m in majority])),
        "majority_kappa": float(np.mean([m["kappa"] for m in majority])),   # 0, or 1 for a one-class test set
        # seeds per subject-session (the most any has), every training counted, and the std between seeds:
        # percent, the pooled within-run sample std, sqrt(mean over runs of the seeds' variance (ddof 1))
        "repeats": max(r["seeds"] for r in runs), "n_trainings": len(results),
        "seed_std_accuracy": seed_std(r["accuracy_seed_std"] for r in runs),
        "per_class": per_class,   # precision, recall, F1 per class, means over the runs
        "warnings": warnings,
        "runs_of_this_invocation": sum(any(x["run"] in this_invocation for x in r["records"]) for r in runs),
        "selection": {"subjects": sorted(subjects) if subjects else None, "sessions": sorted(sessions) if sessions else None},
        "per_subject": {str(s): float(np.mean(v)) for s, v in sorted(per_subject.items())},
        "confusion_matrix": cm.tolist(),
        "paper_accuracy": {"mean": PAPER_ACCURACY[cfg.data.dataset][0], "std": PAPER_ACCURACY[cfg.data.dataset][1]},
        "failed_runs": failed,
        "runs_without_checkpoint": missing,
        "overrides": list(cfg.overrides),
        "config": cfg.to_dict(), "config_key": out.config_key, "git_commit": utils.git_commit(),
    }
    if cfg.model.name != "sst_emotionnet":
        summary["paper_svm_accuracy"] = dict(zip(("mean", "std"), PAPER_SVM_ACCURACY[cfg.data.dataset]))
    table = results_table(summary) if fmt == "text" else summary_table(summary).render(fmt)
    if subjects or sessions:     # a part: printed, not written over the whole invocation's files
        print(table)
        print(f"(subjects {subjects or 'all'}, sessions {sessions or 'all'} only: results.csv and summary.json not written)")
        return summary
    # accuracy stays a fraction, as in runs/*.json; accuracy_percent is the number the table and summary.json give
    columns = ["run", "subject", "session", "accuracy", "macro_f1", "kappa", "test_loss",
               "best_epoch", "epochs_run", "n_train", "n_val", "n_test", "seconds", "accuracy_percent", "repeat", "seed"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in results:
        repeat = run_repeat(r)
        writer.writerow({**r, "accuracy_percent": 100 * r["accuracy"], "repeat": repeat,
                         "seed": r.get("seed", (cfg.training.seed + repeat) % 2**32)})
    with fileio.atomic_path(out.root / "results.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    fileio.write_json(out.root / "summary.json", summary)
    print(table)
    import figures      # here: matplotlib is 0.3 s of every command that draws nothing

    figures.run_figures(results, summary, out.root / "figures")
    return summary


def run_repeat(record: dict) -> int:
    """The repeat of a run record (its name: sub01_ses1_rep2 is 2; records before repeats are 0)."""
    spec = RunSpec.parse(record.get("run"))
    return spec.repeat if spec else 0


def pool_repeats(records: list[dict]) -> list[dict]:
    """One entry per subject-session, its seeds (runs sub01_ses1, sub01_ses1_rep1, ...) averaged, sorted:
    run (the first seed's name), subject, session, seeds (how many), accuracy, macro_f1, kappa (means over
    the seeds, as in the records: fractions), accuracy_seed_std (percent points, sample std over the seeds;
    None for one seed) and records (the runs pooled, first seed first)."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for r in sorted(records, key=run_repeat):
        groups.setdefault((r["subject"], r["session"]), []).append(r)
    out = []
    for (subject, session), rs in sorted(groups.items()):
        acc = 100 * np.array([r["accuracy"] for r in rs])
        out.append({"run": RunSpec(subject, session).name, "subject": subject, "session": session, "seeds": len(rs),
                    **{k: float(np.mean([r[k] for r in rs])) for k in ("accuracy", "macro_f1", "kappa")},
                    "accuracy_seed_std": float(acc.std(ddof=1)) if len(rs) > 1 else None, "records": rs})
    return out


def seed_std(run_stds) -> float | None:
    """The std between seeds of runs whose own seed std (pool_repeats' accuracy_seed_std, percent points;
    None for one seed) is given: the pooled within-run sample std, sqrt(mean over the runs of several
    seeds of their seeds' variance (ddof 1)); None if no run has two."""
    var = [std ** 2 for std in run_stds if std is not None]
    return float(np.sqrt(np.mean(var))) if var else None


def majority_confusion(cm) -> np.ndarray:
    """The confusion matrix (rows true, columns predicted) of always predicting the most frequent true
    class of `cm` (the first of equals)."""
    support = np.asarray(cm).sum(axis=1)
    out = np.zeros((len(support), len(support)), dtype=np.int64)
    out[:, int(np.argmax(support))] = support
    return out


def model_label(summary: dict) -> str:
    """The row of the runs in the table, named after the model that made them (summary["model"], the
    [model] name), beside the paper's rows: "SST-EmotionNet, ours", "linear_svm, ours", ..."""
    model = summary.get("model", "sst_emotionnet")
    return f"{'SST-EmotionNet' if model == 'sst_emotionnet' else model}, ours"


def _table_notes(summary: dict) -> list[str]:
    """The lines under the table: seeds, comparability, warnings, failures, overrides."""
    rows = []
    if summary.get("repeats", 1) > 1:
        seed = summary.get("config", {}).get("training", {}).get("seed")
        first = f" (seeds {seed} to {seed + summary['repeats'] - 1})" if isinstance(seed, int) else ""
        rows.append(f"{summary['repeats']} seeds per run{first}, averaged per run: std between runs "
                    f"{summary['std_accuracy']:.2f}, between seeds {summary['seed_std_accuracy'] or 0:.2f} points "
                    f"({summary['n_trainings']} trainings)")
    if summary["protocol"] in ("loso", "cross_session"):
        rows.append(f"(the paper's number is subject-dependent, one model per subject-session: not comparable with "
                    f"{summary['protocol']})")
    if summary.get("warnings"):
        rows.append(f"runs with warnings (see summary.json): {', '.join(summary['warnings'])}")
    if summary["failed_runs"]:
        rows.append(f"failed runs (not counted): {', '.join(summary['failed_runs'])}")
    if summary.get("overrides"):
        rows.append(f"overrides of the INI file: {' '.join(summary['overrides'])}")
    return rows


def _invocation(summary: dict) -> str:
    n, ours = summary["n_runs"], summary.get("runs_of_this_invocation", 0)
    return "all of this invocation" if ours == n else "none of this invocation" if ours == 0 else \
        f"{ours} of this invocation"


def results_table(summary: dict) -> str:
    """The printed comparison: chance level, the majority class of each run's test windows, the paper's
    number (and its SVM's, for a baseline), the runs' model with macro-F1 and kappa, how many runs the row
    covers and how many of them this invocation trained."""
    paper, n = summary["paper_accuracy"], summary["n_runs"]
    W = max(24, len(model_label(summary)) + 1)      # the first column: the longest row name and a space
    rows = [
        f"{summary['dataset']}, protocol {summary['protocol']} ({summary['protocol_note']})",
        f"{'':{W}s}{'accuracy %':>16s}{'macro-F1':>11s}{'kappa':>8s}  runs",
        f"{'chance level':{W}s}{summary['chance_accuracy']:>10.2f}{'':17s}{0.0:>8.3f}",
        f"{'majority class':{W}s}{summary['majority_accuracy']:>10.2f}{'':8s}{summary['majority_macro_f1']:>9.3f}"
        f"{summary['majority_kappa']:>8.3f}",
        f"{'SST-EmotionNet, paper':{W}s}{paper['mean']:>10.2f} +- {paper['std']:<3.2f}{'-':>9s}{'-':>8s}  45",
    ]
    if "paper_svm_accuracy" in summary:
        svm = summary["paper_svm_accuracy"]
        rows.append(f"{'SVM on DE, paper':{W}s}{svm['mean']:>10.2f} +- {svm['std']:<3.2f}{'-':>9s}{'-':>8s}  45")
    rows.append(f"{model_label(summary):{W}s}{summary['mean_accuracy']:>10.2f} +- {summary['std_accuracy']:<3.2f}"
                f"{summary['mean_macro_f1']:>9.3f}{summary['mean_kappa']:>8.3f}  {n} ({_invocation(summary)})")
    return "\n".join(rows + _table_notes(summary))


def summary_table(summary: dict) -> "tables.Table":
    """results_table's rows as a tables.Table (--format markdown, latex, csv): accuracy in percent, macro-F1
    and kappa as fractions, as in the text table."""
    table = tables.Table(f"{summary['dataset']}, protocol {summary['protocol']} ({summary['protocol_note']})",
                         [tables.Column("", "row"), tables.Column("accuracy %", "accuracy_percent", kind="pm"),
                          tables.Column("macro-F1", "macro_f1", 3), tables.Column("kappa", "kappa", 3),
                          tables.Column("runs", "runs")], notes=_table_notes(summary))
    paper = summary["paper_accuracy"]
    table.rows += [["chance level", (summary["chance_accuracy"], None), None, 0.0, None],
                   ["majority class", (summary["majority_accuracy"], None), summary["majority_macro_f1"],
                    summary["majority_kappa"], None],
                   ["SST-EmotionNet, paper", (paper["mean"], paper["std"]), None, None, 45]]
    if "paper_svm_accuracy" in summary:
        svm = summary["paper_svm_accuracy"]
        table.rows.append(["SVM on DE, paper", (svm["mean"], svm["std"]), None, None, 45])
    table.rows.append([model_label(summary), (summary["mean_accuracy"], summary["std_accuracy"]),
                       summary["mean_macro_f1"], summary["mean_kappa"], summary["n_runs"]])
    return table


EPOCH_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")


def write_epochs_csv(path: Path, history: list[dict], durable: bool = False) -> None:
    """runs/<run>.epochs.csv: one row per epoch so far (rewritten whole, atomically, after each epoch; not
    fsynced, as the partial state, unless `durable`: write_result writes the last one durably)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EPOCH_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    with fileio.atomic_path(path, durable) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")


def save_partial(path: Path, trainer: Trainer, config_key: str, code: dict | None = None) -> None:
    """The resumable state after an epoch, tagged with the configuration and the code it belongs to. It must
    hold only what load_partial's safe loader takes: tensors, dicts, lists, str, int, float, bool, None.

    Atomic, not fsynced: a killed process loses at most the epoch it was in; a power loss may lose the
    state (then the run starts over), never a finished run (docs/guarantees.md; measured in bench/README.md)."""
    with fileio.atomic_path(path, durable=False) as tmp:
        torch.save({"config_key": config_key, "code": code, **trainer.state()}, tmp)


class OtherCode(Exception):
    """A partial state made with other code than this (ResultDir.other_code says how)."""


def load_partial(path: Path, trainer: Trainer, config_key: str, out: "ResultDir | None" = None) -> None:
    """Continue `trainer` from a saved partial state, read without running any code of its own
    (checkpoints.read_safely: tensors, dicts, lists, str, int, float, bool, None). DamagedFile if it
    cannot be one (truncated, fields missing or of the wrong type, objects whose loading would run
    code); DataError if the file system refuses to read it (permissions: not damage); ValueError if it
    belongs to another configuration or subject pool; OtherCode if `out` is given and the state was
    made with other code."""
    try:
        state = checkpoints.read_safely(path)       # on the CPU: RNG states must stay CPU tensors
    except checkpoints.NotLoaded as e:
        if e.kind == "unreadable":
            raise DataError(checkpoints.refusal(path, e, "the run")) from None
        what = {"unsafe": "holds objects whose loading would run code", "earlier": "holds NumPy arrays"}
        raise DamagedFile(f"{what[e.kind]} ({e}): not a partial state this project writes" if e.kind in what
                          else f"not a checkpoint ({e})") from None
    if isinstance(state, dict) and isinstance(state.get("config_key"), str) and state["config_key"] != config_key:
        raise ValueError("saved under another configuration")
    if out is not None and isinstance(state, dict) and (problem := out.other_code(path, state)) is not None:
        raise OtherCode(problem)
    problem = schemas.check(state, schemas.PARTIAL_STATE)
    if problem:
        raise DamagedFile(problem)
    try:
        trainer.load_state(state)
    except (KeyError, TypeError, RuntimeError) as e:     # tensors of other shapes, an optimizer of another model
        raise DamagedFile(f"does not fit the network ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:80]})") \
            from None


def load_trained(path: Path):
    """(network in eval mode, its Config, its input statistics) from a run's best checkpoint
    (checkpoints.TrainedModel.load)."""
    trained = checkpoints.TrainedModel.load(path)
    return trained.net, trained.cfg, trained.stats


def write_result(out: "ResultDir", cfg: Config, trainer: Trainer, result: dict) -> None:
    """The run's best checkpoint, its epochs CSV, then its JSON (last: it marks the run finished), each
    fsynced; its partial state and failure record go."""
    spec = trainer.spec
    with fileio.atomic_path(out.checkpoint(spec)) as tmp:
        torch.save({"model": training.host_copy(trainer.best["state"]), "config": cfg.to_dict(), "run": spec.name,
                    "subject": spec.subject, "session": spec.session, "epoch": trainer.best["epoch"],
                    "normalization": checkpoints.as_tensors(trainer.data.stats),   # the safe loader takes tensors
                    "subject_pool": trainer.data.subjects, "session_pool": trainer.data.sessions,
                    "code": out.code, "precision": out.precision}, tmp)
    write_epochs_csv(out.epochs_csv(spec), trainer.history, durable=True)
    fileio.write_json(out.run_json(spec), result)
    out.partial(spec).unlink(missing_ok=True)
    out.failure(spec).unlink(missing_ok=True)
