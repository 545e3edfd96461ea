"""The result folder under [path] result_path: run records, checkpoints, resumable states, per-epoch logs,
failures, locks and claims, and which finished runs belong to this configuration and this code.

    runs/<run>.json            one per finished run: accuracy, macro-F1, kappa, confusion, history
    runs/<run>.epochs.csv      one row per epoch as it happens (also for a run still training)
    checkpoints/<run>.pt       the best model (by validation accuracy), its config and input statistics
    checkpoints/<run>.partial.pt   the state after the last finished epoch, until the run finishes
    failed/<run>.json          a run that diverged (its error), until a later attempt finishes it
    .lock/                     who writes the folder now (ResultDir.lock: run.py while it trains or summarizes)
    results.csv, summary.json, figures/*.png    the summary (sst.reporting.summaries), rebuilt from runs/
Every file is written atomically; the run JSON is written last, so its presence marks a finished run.
The folder never holds two configurations or two code identities (sst.results.provenance): training
(`code` given, by sst.models.kinds.result_dir) refuses other code's runs; reading (--summarize) refuses
a folder whose records disagree on it.
"""
from __future__ import annotations

import csv
import io
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sst import errors, fileio, schemas
from sst.config import Config
from sst.errors import ConfigError, DataError, printable
from sst.results import checkpoints, provenance
from sst.results.provenance import PRECISIONS, result_key
from sst.training import protocols
from sst.training.runspec import RunSpec

if TYPE_CHECKING:
    from sst.training.loop import Trainer

# ----------------------------------------------------------------------------- results


class ResultDir:
    """The layout under [path] result_path, and which runs in it are finished for this config.

    A run belongs to this configuration when its key (result_key: the settings and the precision) is
    this one's and, for training (`precision` and `code` given: sst.models.kinds.result_dir), when it was
    made by this code (its code identity, sst.results.provenance). `precision` None (summarize, predict)
    accepts the runs of either precision, but not a mix, and of one code identity, whichever it is.
    """

    def __init__(self, cfg: Config, precision: str | None = None, code: dict[str, str] | None = None):
        self.root = cfg.path.result_path
        self.source = cfg.source
        self.precision = precision
        self.keys = {p: result_key(cfg, p) for p in ((precision,) if precision else PRECISIONS)}
        self.config_key = self.keys[precision or "float32"]     # summarize: the key the runs have (finished())
        self.code = code
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
        changed = provenance.changes(made, self.code)
        return None if changed is None else f"{path}: made with other code ({changed}): another configuration"

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
        except errors.OutputError:
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
        self.check_parts()
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
                errors.warn(f"{path}: not the failure record of a run (run {printable(repr(run), 40)}); skipped")
                continue
            if record.get("config_key") == self.config_key and record["run"] not in done \
                    and (self.code is None or record.get("code") == self.code):
                out[record["run"]] = str(record.get("error", ""))
        return out

    def check_parts(self) -> None:
        """OutputError naming it if a part of the folder (runs/, checkpoints/, figures/, failed/, .lock/) is a
        symbolic link or not a folder: a received folder is read and written inside itself only."""
        for folder in (*self.folders[1:], self.root / ".lock"):
            fileio.real_folder(folder, f"{self.source}: [path] result_path")

    def check_writable(self) -> None:
        """Fail before any work if result_path or its folders cannot be created or written; creates nothing."""
        self.check_parts()
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
        self.check_parts()
        out, files = {}, {}
        codes: dict[str, tuple[Path, object]] = {}     # reading: each code identity the records hold, and where
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
                made = json.dumps(result.get("code"), sort_keys=True)
                codes.setdefault(made, (path, result.get("code")))
                if self.code is None and len(codes) > 1:     # reading: two codes would be two configurations
                    first, theirs = next(v for k, v in codes.items() if k != made)
                    differ = provenance.changes(theirs, result.get("code") or {})
                    raise ConfigError(f"{first} and {path}: made by different code ({differ}): a result folder holds "
                                      f"the runs of one configuration; move one set to another folder, or delete "
                                      f"one to redo its runs")
            problem = schemas.check(result, schemas.RUN_RECORD) or self._inconsistency(path, result)
            if problem:
                self.damaged.append((path, problem, file_identity(path)))
                continue
            key = _pool_key(result)
            if key is not None and key not in result:
                raise ConfigError(f"{path}: a {result['protocol']} result without its {key} (made by an older version); "
                                  f"delete it to redo that run")
            out[result["run"]] = result
            files[result["run"]] = path
        pools: dict[tuple, tuple[str, list]] = {}
        for result in out.values():   # loso: every run of a session must have pooled the same subjects, and so on
            protocol = protocols.PROTOCOLS.get(result["protocol"])
            if protocol is None or protocol.pool_key is None:
                continue
            spec, key = RunSpec(result["subject"], result["session"]), protocol.pool_key
            first = pools.setdefault((protocol.name, protocol.pool_group(spec)), (result["run"], result[key]))
            if result[key] != first[1]:
                paths = f"{files[first[0]]} and {files[result['run']]}"
                what = key.partition("_")[0]
                raise ConfigError(f"{paths}: {protocol.name} runs of {protocol.pool_group_name} "
                                  f"{protocol.pool_group(spec)} that pooled different {what}s ({first[1]} and "
                                  f"{result[key]}); choose another [path] result_path or delete the runs made with "
                                  f"the {what}s that are no longer preprocessed")
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
        if (problem := name_problem(path, r)) is not None:
            return problem
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

    def check_pools(self, done: dict[str, dict], sessions: list) -> None:
        """Finished runs must have pooled what their protocol would pool now from the preprocessed `sessions`
        (Protocol.pool_key, pool_now): a loso run the subjects of its session, a cross_session run the sessions
        of its subject. A group with nothing preprocessed now is not checked."""
        for result in done.values():
            protocol = protocols.PROTOCOLS.get(result["protocol"])
            if protocol is None or protocol.pool_key is None:
                continue
            spec, key = RunSpec(result["subject"], result["session"]), protocol.pool_key
            now = protocol.pool_now(spec, sessions)
            if now and result.get(key) != now:
                what, group = key.partition("_")[0], protocol.pool_group_name
                raise ConfigError(f"{self.run_json(spec)}: trained with {what}s {result.get(key)} of {group} "
                                  f"{protocol.pool_group(spec)}, but the preprocessed {what}s are now {now}; choose "
                                  f"another [path] result_path or delete {self.root / 'runs'} to start over")


def name_problem(path: Path, r: dict) -> str | None:
    """Why a run record (passing schemas.RUN_RECORD) is not the record of the run its file is named after, or
    None: its `run` must be the file's name and a run name, and its `subject` and `session` those of that
    name. A record that disagrees would be merged into another run (an invented second seed) otherwise."""
    spec = RunSpec.parse(r["run"])
    if f"{r['run']}.json" != path.name:
        return f"run: {printable(repr(r['run']), 40)} is not this file's run"
    if spec is None:
        return f"run: {printable(repr(r['run']), 40)} is not a run name (subNN_sesK)"
    if (r["subject"], r["session"]) != (spec.subject, spec.session):
        return f"subject {r['subject']}, session {r['session']}: not those of its run {spec.name}"
    return None


def _pool_key(record: dict) -> str | None:
    """The pool field a record's protocol depends on (None: none, or a protocol this version does not know)."""
    protocol = protocols.PROTOCOLS.get(record.get("protocol"))
    return protocol.pool_key if protocol is not None else None


def json_load(path: Path):
    """A record's JSON, from a regular file of bounded size (fileio.read_json: a link, FIFO or device, or
    an oversized file, is a ValueError, so damaged)."""
    return fileio.read_json(path)


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
        raise errors.OutputError(f"{path}: damaged ({problem}), and it cannot be set aside ({e.strerror or e}); "
                                f"delete it to redo that run") from None
    errors.warn(f"{path}: damaged ({problem}); set aside as {target.name}, its run is redone")
    return target


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
    _write_partial(path, trainer.state(), config_key, code)


def _write_partial(path: Path, state: dict, config_key: str, code: dict | None) -> None:
    with fileio.atomic_path(path, durable=False) as tmp:
        torch.save({"config_key": config_key, "code": code, **state}, tmp)


class StateWriter:
    """Saves a run's resumable state after each epoch ([training] state_save), as save_partial does.

    background (the default): `save` copies the state on the host (Trainer.state(snapshot=True): one copy per
    dtype, from a device or of the CPU's live tensors) and returns; one thread writes it while the next epoch
    trains. Each save first waits for the write before it, so one write at most is in flight and states land
    in order: a kill loses the epoch it was in and, only while the state of the epoch before is still being
    written (at the start of the next), that finished epoch too. Ctrl-C and SIGTERM wait for the write
    (`with`: leaving the block waits). sync: written before `save` returns (save_partial): a kill never
    loses a finished epoch.

        with store.StateWriter(cfg.training.state_save == "background") as writer:
            trainer.fit(lambda row: writer.save(out.partial(spec), trainer, out.config_key, out.code))
        # every state has landed here: the result may be written, and the partial state removed
    """

    def __init__(self, background: bool = True):
        self.background = background
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def save(self, path: Path, trainer: Trainer, config_key: str, code: dict | None = None) -> None:
        self.wait()
        if not self.background:
            save_partial(path, trainer, config_key, code)
            return
        state = trainer.state(snapshot=True)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="state-save")
        self._pending = self._pool.submit(_write_partial, path, state, config_key, code)

    def wait(self) -> None:
        """Until the write in flight has landed; its error (OutputError naming the file) is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> "StateWriter":
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            self.wait()
        except Exception:
            if kind is None:    # else the block's own error is the one to report
                raise
        finally:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None


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


def write_result(out: ResultDir, spec: RunSpec, checkpoint: dict, record: dict, history: list | None = None) -> None:
    """A finished run's files: its best checkpoint (tensors, numbers and text only: what the safe loader
    reads), its epochs CSV (when it has epochs), then its record (last: it marks the run finished), each
    fsynced; its partial state and failure record go."""
    with fileio.atomic_path(out.checkpoint(spec)) as tmp:
        torch.save(checkpoint, tmp)
    if history is not None:
        write_epochs_csv(out.epochs_csv(spec), history, durable=True)
    fileio.write_json(out.run_json(spec), record)
    out.partial(spec).unlink(missing_ok=True)
    out.failure(spec).unlink(missing_ok=True)
