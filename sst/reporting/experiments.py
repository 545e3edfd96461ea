"""Experiments across result folders: paired comparisons and the paper's ablation study.

    python run.py --compare results/SEED results/SEED/model.attention=none results/SEED/model.name=linear_svm
    python run.py -c SEED.ini --ablation                # trains what is missing, then the table and bar chart

A result folder is what run.py writes under [path] result_path (runs/<run>.json, one record per run).
Folders are compared with the first, run by run: the runs both hold, paired by subject and session
(the held-out subject under loso, the tested session under cross_session), each run's repeats
([training] repeats: sub01_ses1, sub01_ses1_rep1, ...) averaged first (results.pool_repeats). Per folder:
  n          paired runs
  accuracy   mean +- std (population std, as summary.json) over those runs, percent
  difference folder - first, mean over the pairs, percentage points, with its 95% confidence interval
             from the t distribution of the paired differences: mean +- t(0.975, n-1) * sd / sqrt(n),
             sd the sample std (ddof 1); none for n < 2
  p          Wilcoxon signed-rank test of the paired differences, two-sided (scipy.stats.wilcoxon,
             zero_method="wilcox": pairs with equal accuracy are dropped, equal |differences| share their
             mean rank; method "auto"). It is none when every difference is 0, and with fewer than 6
             non-zero differences it cannot fall below 0.05 (2 / 2**5 = 0.0625): the table says so.
  d_z        standardised mean difference, mean / sd of the paired differences (MOABB reports it too)
  W/T/L      runs where the folder is above, equal to, below the first
MOABB's choice of a permutation t-test under 20 subjects is not followed: Wilcoxon is what the issue
and most EEG papers report; its p comes from scipy, unchanged.

Folders of another dataset or protocol, or holding no run of the first, are refused in one line.
Outputs (atomic writes): comparison.csv, .md, .tex (tables.py, one row per folder), paired_runs.csv (the
accuracy of every paired run in every folder) and comparison.png (figures.comparison_figure: one line per
subject-session) under --out, by default comparisons/<first>_vs_<second>... beside the first folder.
The ablation writes ablation.csv, .md, .tex, .png and paired_runs.csv the same way.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import re
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sst import errors, fileio, schemas
from sst.data import datasets
from sst.errors import ConfigError, DataError, UserError
from sst.models import kinds
from sst.reporting import summaries, tables
from sst.results import store
from sst.training.runspec import RunSpec

# The paper's ablation study (its bar charts; the values, where published, are the dataset entry's
# paper_ablation: SEED's): (name, the --set that makes it, which chart). The full model is in both charts.
ABLATIONS = (
    ("full model", None, "both"),
    ("spectral stream only", "model.streams=spectral", "streams"),
    ("temporal stream only", "model.streams=temporal", "streams"),
    ("spectral/temporal attention only", "model.attention=spectral_temporal", "attention"),
    ("spatial attention only", "model.attention=spatial", "attention"),
    ("no attention", "model.attention=none", "attention"),
)


# ----------------------------------------------------------------------------- reading result folders


@dataclass
class Folder:
    """One result folder's finished runs, repeats averaged: accuracy % by (subject, session)."""
    path: Path
    label: str
    dataset: str
    protocol: str
    model: str
    accuracy: dict[tuple[int, int], float]
    seed_stds: dict = field(default_factory=dict)   # each run's sample std between its seeds, percent points
    tests: dict = field(default_factory=dict)       # each run's test_digest (None: an earlier version's record)
    seed_counts: dict = field(default_factory=dict)  # each run's number of seeds
    settings: dict = field(default_factory=dict)    # [model] of the configuration (its summary.json), {} if unknown

    def seeds_shown(self, keys=None) -> int | str:
        """How many seeds the runs of `keys` (default: all) have: 3, or "1-3" where they differ."""
        counts = sorted({self.seed_counts.get(k, 1) for k in (self.accuracy if keys is None else keys)})
        return counts[0] if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"

    def seed_note(self, keys=None) -> str | None:
        """"b: 2 of 6 runs 3 seeds, 4 of 6 runs 1 seed" where the runs of `keys` have different numbers of seeds."""
        keys = list(self.accuracy if keys is None else keys)
        counts = [self.seed_counts.get(k, 1) for k in keys]
        if len(set(counts)) < 2:
            return None
        return f"{self.label}: " + ", ".join(f"{counts.count(c)} of {len(keys)} runs {c} seed{'s' * (c > 1)}"
                                             for c in sorted(set(counts), reverse=True))

    def variant(self, reference: "Folder") -> str:
        """The model column: the model's name, and where both folders' summary.json say, the [model] keys in
        which this configuration differs from the reference's (a plugin variant is not just "sst_emotionnet")."""
        if self is reference or self.model != reference.model or not (self.settings and reference.settings):
            return self.model
        shown = lambda v: ",".join(Path(str(p)).name for p in v) if isinstance(v, list) else str(v)     # noqa: E731
        differ = [f"{k} {shown(v)}" for k, v in sorted(self.settings.items()) if reference.settings.get(k) != v]
        return f"{self.model}: {'; '.join(differ)}" if differ else self.model

    def seed_std(self, keys=None) -> float | None:
        """results.seed_std over the runs of `keys` (default: all): percent points, None where no run has
        two seeds."""
        return summaries.seed_std(self.seed_stds.get(k) for k in (self.accuracy if keys is None else keys))


def read_folder(path: Path, subjects=None, sessions=None) -> Folder:
    """The finished runs of a result folder (runs/*.json, checked against schemas.RUN_RECORD; a damaged
    record is skipped with a warning, not set aside: comparing changes nothing on disk), only those of
    `subjects` and `sessions` when given. One line naming the folder if it holds no run, or runs of
    several configurations."""
    path = Path(path).expanduser()
    runs = fileio.real_folder(path / "runs", str(path))
    if not runs.is_dir():
        raise DataError(f"{path}: not a result folder (no runs/ in it); give folders that run.py wrote results to")
    records = []
    for file in sorted(fileio.list_folder(runs, "*.json", str(path))):
        try:
            record = fileio.read_json(file)
        except fileio.NotRegular as e:
            errors.warn(f"{file}: not readable ({e}); left out")
            continue
        except (OSError, ValueError, UnicodeDecodeError) as e:
            errors.warn(f"{file}: not readable ({type(e).__name__}); left out")
            continue
        problem = schemas.check(record, schemas.RUN_RECORD) or store.name_problem(file, record)
        if problem:
            errors.warn(f"{file}: damaged ({problem}); left out")
            continue
        if (not subjects or record["subject"] in subjects) and (not sessions or record["session"] in sessions):
            records.append(record)
    if not records:
        selection = f" of subjects {subjects or 'all'}, sessions {sessions or 'all'}" if subjects or sessions else ""
        raise DataError(f"{runs}: no finished runs{selection} to compare")
    made = {(r["config_key"], r["dataset"], r["protocol"], r.get("model", kinds.NETWORK.name),
             json.dumps(r.get("code"), sort_keys=True)) for r in records}    # one configuration, made by one code
    if len(made) > 1:
        raise ConfigError(f"{runs}: runs of {len(made)} configurations (settings or code); a result folder compared "
                          f"must hold one")
    _, dataset, protocol, model, _ = made.pop()
    tests: dict[tuple[int, int], str | None] = {}
    for r in records:       # the seeds of a run share its test windows; if not, it pairs with nothing
        digest = r.get("test_digest") if isinstance(r.get("test_digest"), str) else None
        key = (r["subject"], r["session"])
        tests[key] = digest if tests.get(key, digest) == digest else "seeds tested on different windows"
    pooled = summaries.pool_repeats(records)
    return Folder(path, path.name or str(path), dataset, protocol, model,
                  {(r["subject"], r["session"]): 100 * r["accuracy"] for r in pooled},
                  {(r["subject"], r["session"]): r["accuracy_seed_std"] for r in pooled}, tests,
                  {(r["subject"], r["session"]): r["seeds"] for r in pooled}, _settings(path, records[0]["config_key"]))


def _settings(path: Path, config_key: str) -> dict:
    """[model] of the configuration that made a folder's runs, from its summary.json when that belongs to the
    same configuration (its config_key); {} otherwise (not summarized yet, damaged, another configuration)."""
    try:
        summary = fileio.read_json(path / "summary.json")
    except (OSError, ValueError):
        return {}
    if not isinstance(summary, dict) or summary.get("config_key") != config_key:
        return {}
    model = summary.get("config", {}).get("model") if isinstance(summary.get("config"), dict) else None
    return model if isinstance(model, dict) else {}


def read_folders(paths: list[Path], subjects=None, sessions=None) -> list[Folder]:
    """read_folder of each, checked to be comparable with the first: same dataset and protocol, runs in
    common. Labels are the folder names, or the paths where names repeat."""
    folders = [read_folder(p, subjects, sessions) for p in paths]
    first = folders[0]
    for f in folders[1:]:
        if (f.dataset, f.protocol) != (first.dataset, first.protocol):
            raise ConfigError(f"{f.path}: {f.dataset}, protocol {f.protocol}, but {first.path} is {first.dataset}, "
                              f"protocol {first.protocol}: compare folders of one dataset and protocol")
        if not set(f.accuracy) & set(first.accuracy):
            raise DataError(f"{f.path}: no run in common with {first.path} (runs are paired by subject and session)")
    if len({f.label for f in folders}) < len(folders):
        for f in folders:
            f.label = str(f.path)
    return folders


def same_tests(reference: Folder, other: Folder) -> list[str]:
    """ConfigError naming them if runs of `other` paired with `reference`'s (same subject and session) were
    tested on other windows (their records' test_digest differs: another split, e.g. random_test_fraction or
    train_trials): a paired test of such runs measures the split as much as the model. Returns the notes for
    the table: pairs that cannot be checked (records of an earlier version, without a digest)."""
    keys = sorted(set(reference.tests) & set(other.tests))
    differ = [k for k in keys if None not in (reference.tests[k], other.tests[k]) and reference.tests[k] != other.tests[k]]
    if differ:
        names = ", ".join(RunSpec(*k).name for k in differ[:3]) + (", ..." if len(differ) > 3 else "")
        raise ConfigError(f"{other.path}: {len(differ)} of the {len(keys)} runs paired with {reference.path} were tested "
                          f"on other windows ({names}: another split, e.g. random_test_fraction or train_trials); runs "
                          f"are paired only on the same test windows")
    unknown = [k for k in keys if None in (reference.tests[k], other.tests[k])]
    return [f"{other.label}: {len(unknown)} of its {len(keys)} pairs made by an earlier version, without a test digest: "
            f"their test windows were not checked to be the same"] if unknown else []


# ----------------------------------------------------------------------------- statistics


def paired_statistics(reference: dict, other: dict) -> dict:
    """The statistics of `other` against `reference` ({(subject, session): accuracy %}) on the runs both
    hold (module docstring): keys (the paired runs), n, mean, std, reference_mean, difference, ci (low,
    high) or None, p or None, d_z or None, wins, ties, losses."""
    keys = sorted(set(reference) & set(other))
    a = np.array([reference[k] for k in keys], dtype=np.float64)
    b = np.array([other[k] for k in keys], dtype=np.float64)
    d = np.round(b - a, 9)      # pooled means of equal runs can differ by rounding: those are ties
    n = len(d)
    out = {"keys": keys, "n": n, "mean": float(b.mean()), "std": float(b.std()), "reference_mean": float(a.mean()),
           "difference": float(d.mean()), "ci": None, "p": None, "d_z": None,
           "wins": int((d > 0).sum()), "ties": int((d == 0).sum()), "losses": int((d < 0).sum())}
    from scipy import stats  # here: importing scipy.stats costs a second that other commands need not pay

    if n >= 2:
        sd = float(d.std(ddof=1))
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        out["ci"] = (out["difference"] - half, out["difference"] + half)
        out["d_z"] = out["difference"] / sd if sd > 0 else None
    if (d != 0).any():
        with warnings.catch_warnings():     # small-sample notes: the table states the test and its limits
            warnings.simplefilter("ignore")
            out["p"] = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return out


STATISTICS_NOTES = [
    "accuracy %: mean +- std (population) over the runs paired with the first folder, each run's repeats averaged first; "
    "seed std: the std between the seeds of a run, pooled over the same runs (percent points; - for one seed)",
    "difference: this folder - the first, percentage points; 95% CI from the t distribution of the paired differences",
    "p: Wilcoxon signed-rank, two-sided (scipy.stats.wilcoxon, zero_method='wilcox': equal pairs dropped, "
    "tied |differences| share their mean rank)",
]


def limit_notes(stats: dict[str, dict]) -> list[str]:
    """Notes on the tests that cannot say much: no non-zero difference (no test), fewer than 6 (p >= 0.0625)."""
    none = [name for name, st in stats.items() if st["n"] == st["ties"]]
    few = [name for name, st in stats.items() if 0 < st["n"] - st["ties"] < 6]
    notes = [f"{', '.join(none)}: every paired difference is 0, no test"] if none else []
    if few:
        notes.append(f"{', '.join(few)}: fewer than 6 non-zero differences, so the two-sided Wilcoxon p cannot fall "
                     f"below 0.05")
    return notes


# ----------------------------------------------------------------------------- --compare


def compare(paths: list[Path], out: Path | None = None, fmt: str = "text", subjects=None, sessions=None,
            labels: list[str] | None = None) -> int:
    """--compare DIR_A DIR_B ...: each folder against the first (the runs of `subjects` and `sessions`
    only, when given), every row over the subject-sessions all folders hold; print the table, write the files.
    `labels` (--label, in the folders' order): the rows' names instead of the folders' names."""
    if len(paths) < 2:
        raise UserError("--compare: give at least two result folders, the first is the reference")
    if labels and len(labels) > len(paths):
        raise UserError(f"--label: {len(labels)} labels for {len(paths)} folders; give at most one per folder, in order")
    folders = read_folders(paths, subjects, sessions)
    for f, label in zip(folders, labels or ()):
        f.label = label
    first = folders[0]
    common = sorted(set.intersection(*(set(f.accuracy) for f in folders)))   # every row over the same runs
    if not common:
        raise DataError(f"{', '.join(str(f.path) for f in folders)}: no subject-session that every folder holds; "
                        f"compare fewer folders at a time")
    paired = {f.label: {k: f.accuracy[k] for k in common} for f in folders}     # paired_runs.csv keeps them all
    table = tables.Table(f"{first.dataset}, protocol {first.protocol}: compared with {first.label}, paired by "
                         f"subject and session", COMPARE_COLUMNS, notes=list(STATISTICS_NOTES),
                         caption=f"{first.dataset}, protocol {first.protocol}: test accuracy (%) of each folder against "
                                 f"{first.label}, {len(common)} runs paired by subject and session; ± is the std "
                                 f"over the runs, the difference's interval a 95% CI")
    table.rows.append([first.label, first.variant(first), len(common), first.seeds_shown(common),
                       mean_std_of(list(paired[first.label].values())), first.seed_std(common), None, None, None, None,
                       None])
    left_out = [f"{f.label}: {len(f.seed_counts) - len(common)} of its {len(f.seed_counts)} runs" for f in folders
                if len(f.seed_counts) > len(common)]
    table.notes.insert(0, f"n: every row is computed over the same {len(common)} subject-sessions, those every folder "
                          f"holds" + (f" (left out: {'; '.join(left_out)})" if left_out else ""))
    stats_by_folder = {}
    for f in folders[1:]:
        table.notes += same_tests(first, f)
        stat = stats_by_folder[f.label] = paired_statistics(paired[first.label], paired[f.label])
        table.rows.append(_stat_row(f, stat, first))
    table.notes += [note for f in folders if (note := f.seed_note(common))]
    table.notes += limit_notes(stats_by_folder)
    target = out or default_out(first.path, "_vs_".join(f.label for f in folders))
    written = write_outputs(target, "comparison", table, folders)
    from sst.reporting import figures

    written.append(figures.comparison_figure([f.label for f in folders], [paired[f.label] for f in folders],
                                             f"{first.dataset}, protocol {first.protocol}",
                                             stats_by_folder, target / "comparison.png"))
    tables.emit(table.render(fmt))
    print(written_line(target, written))
    return 0


def written_line(folder: Path, paths: list[Path]) -> str:
    return errors.printable(f"written to {folder}: {', '.join(p.name for p in paths)}", limit=None)


COMPARE_COLUMNS = [tables.Column("folder"), tables.Column("model"), tables.Column("n", "n_paired"),
                   tables.Column("seeds"), tables.Column("accuracy %", "accuracy_percent", kind="pm"),
                   tables.Column("seed std", "seed_std_points"),
                   tables.Column("difference", "difference_points", signed=True),
                   tables.Column("95% CI", "ci95_points", kind="interval", signed=True),
                   tables.Column("p", "wilcoxon_p", 3), tables.Column("d_z", "d_z", signed=True),
                   tables.Column("W/T/L", "wins_ties_losses")]


def mean_std_of(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def _stat_row(f: Folder, stat: dict, reference: Folder) -> list:
    return [f.label, f.variant(reference), stat["n"], f.seeds_shown(stat["keys"]), (stat["mean"], stat["std"]),
            f.seed_std(stat["keys"]), stat["difference"], stat["ci"], stat["p"], stat["d_z"],
            f"{stat['wins']}/{stat['ties']}/{stat['losses']}"]


def default_out(first: Path, name: str) -> Path:
    """comparisons/<name> beside the first folder, the name made safe and shortened with a digest when long."""
    safe = re.sub(r"[^A-Za-z0-9_.=+,-]", "_", name)
    if len(safe) > 100:
        safe = f"{safe[:80]}..{hashlib.sha256(safe.encode()).hexdigest()[:12]}"
    first = first if first.name not in ("", ".", "..") else first.resolve()    # the folder it is beside
    return first.parent / "comparisons" / safe


def write_outputs(folder: Path, stem: str, table: tables.Table, folders: list[Folder]) -> list[Path]:
    """<stem>.csv, .md, .tex and paired_runs.csv (accuracy % of every run of the first folder in each
    folder, empty where it has none) into `folder`, each written atomically."""
    fileio.check_output_folder(folder, "--out")
    written = []
    for ext, fmt in (("csv", "csv"), ("md", "markdown"), ("tex", "latex")):
        written.append(_write(folder / f"{stem}.{ext}", table.render(fmt) + "\n"))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["subject", "session", *(errors.csv_text(f"{f.label} accuracy %") for f in folders)])
    for key in sorted(folders[0].accuracy):
        writer.writerow([*key, *("" if key not in f.accuracy else repr(f.accuracy[key]) for f in folders)])
    written.append(_write(folder / "paired_runs.csv", buf.getvalue()))
    return written


def _write(path: Path, text: str) -> Path:
    with fileio.atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- --ablation


def ablation(args: argparse.Namespace, resolve, train) -> int:
    """--ablation: train the six configurations of ABLATIONS (each exactly as `--set` would: its own result
    subfolder, finished runs reused, --subjects/--sessions/--jobs/--shard as given), then print their table
    against the paper's values and the full model (paired), and write it with the bar chart. `resolve`
    and `train` are run.py's resolve_config and train. With --shard: training only."""
    given = [o.partition("=")[0].strip() for o in args.set or ()]
    fixed = [k for k in given if k in ("model.streams", "model.attention")]
    if fixed:
        raise UserError(f"--ablation sets {fixed[0]} itself, once per configuration; leave out --set {fixed[0]}")
    if args.result_path is not None:
        raise UserError("--ablation puts each configuration in the subfolder of [path] result_path its --set names; "
                        "--result-path would put all six in one folder (set [path] result_path instead)")
    plans = []      # every configuration resolved and checked before anything is trained
    for name, override, _ in ABLATIONS:
        run_args = argparse.Namespace(**{**vars(args), "set": [*(args.set or ()), *([override] if override else [])]})
        plans.append((name, override, run_args, resolve(run_args)))
    cfg = plans[0][3]
    if (cfg.model.streams, cfg.model.attention) != ("both", "both"):
        raise ConfigError(f"{cfg.source}: [model] streams = {cfg.model.streams}, attention = {cfg.model.attention}: "
                          f"the ablation starts from the full model (both and both)")
    if not kinds.of(cfg).ablatable:
        raise ConfigError(f"{cfg.where('model', 'name')}: --ablation takes the network apart; {cfg.model.name} "
                          f"has no streams or attention")
    if len({p[3].path.result_path for p in plans}) < len(plans):
        raise ConfigError(f"{cfg.where('path', 'result_path')}: set by --set, it would hold all six configurations; "
                          f"--ablation needs their own subfolders (set it in the INI file instead)")
    code = 0
    for i, (name, override, run_args, cfg) in enumerate(plans, start=1):
        print(f"ablation {i}/{len(plans)}: {name}" + (f" (--set {override})" if override else "")
              + f"; results under {cfg.path.result_path}", flush=True)
        code |= train(cfg, run_args)
    cfgs = [p[3] for p in plans]
    if args.shard:
        print(f"shard {args.shard} of the ablation done; after every shard has finished, the same command without "
              f"--shard trains nothing more and prints the table: python run.py -c {args.config} --ablation"
              + "".join(f" --set {o}" for o in args.set or ()))
        return code
    return ablation_table(cfgs, args.out, args.format, args.subjects, args.sessions) or code


def ablation_table(cfgs: list, out: Path | None, fmt: str = "text", subjects=None, sessions=None) -> int:
    """The ablation's table (ABLATIONS order) from the configurations' result folders (the runs of
    `subjects` and `sessions` only, when given): ours, the paper's, and the difference from our full
    model, paired; printed and written with the bar chart."""
    folders = []
    for cfg in cfgs:
        try:
            folders.append(read_folder(cfg.path.result_path, subjects, sessions))
        except DataError:       # no finished run (all failed, say): a row that says so
            folders.append(None)
    full = folders[0]
    if full is None:
        raise DataError(f"{cfgs[0].path.result_path}: no finished run of the full model to compare with")
    entry = datasets.DATASETS.get(full.dataset)
    values = entry.paper_ablation if entry is not None else {}
    published = [d.name for d in datasets.DATASETS.values() if d.paper_ablation]
    table = tables.Table(f"Ablation, {full.dataset}, protocol {full.protocol}: difference from our full model, paired "
                         f"by subject and session", ABLATION_COLUMNS, notes=list(STATISTICS_NOTES))
    full_pair = values.get("full model")
    table.notes.insert(0, f"paper: read off its bar charts (about +-0.3), {full.dataset}; the full model is "
                          f"{full_pair[0]} in its streams chart, {full_pair[1]} in its attention chart; obtained under "
                          f"the authors' protocol (the test set chose the checkpoint)" if values else
                          f"paper: the paper's ablation values are {', '.join(published) or 'none'}'s; none for "
                          f"{full.dataset}")
    target = out or default_out(full.path, f"{full.label}_ablation")
    stats_by_name, bars = {}, []
    for (name, override, chart), f in zip(ABLATIONS, folders):
        value = values.get(name)
        if f is not None and f.protocol != full.protocol:
            raise ConfigError(f"{f.path}: protocol {f.protocol}, the full model's is {full.protocol}")
        if f is not None and f is not full:
            table.notes += same_tests(full, f)
        stat = None if f is None else paired_statistics(full.accuracy, f.accuracy) if f is not full else None
        paper_value = f"{value[0]} / {value[1]}" if isinstance(value, tuple) else value
        mean_std = mean_std_of(list(f.accuracy.values())) if f is not None else None
        table.rows.append([name, override or "-", len(f.accuracy) if f else 0, mean_std, f.seed_std() if f else None,
                           paper_value,
                           stat["difference"] if stat else None, stat["ci"] if stat else None,
                           stat["p"] if stat else None])
        if f is None:
            table.notes.append(f"{name}: no finished runs")
        else:
            f.label = name      # paired_runs.csv's columns
            if stat:
                stats_by_name[name] = stat
        bars.append((name, chart, mean_std, value))
    table.notes += limit_notes(stats_by_name)
    written = write_outputs(target, "ablation", table, [f for f in folders if f is not None])
    from sst.reporting import figures

    written.append(figures.ablation_figure(bars, f"{full.dataset}, protocol {full.protocol}", target / "ablation.png"))
    tables.emit(table.render(fmt))
    print(written_line(target, written))
    return 0


ABLATION_COLUMNS = [tables.Column("configuration"), tables.Column("--set", "set"), tables.Column("runs", "n_runs"),
                    tables.Column("ours %", "accuracy_percent", kind="pm"), tables.Column("seed std", "seed_std_points"),
                    tables.Column("paper %", "paper_percent", 1),
                    tables.Column("vs full", "difference_points", signed=True),
                    tables.Column("95% CI", "ci95_points", kind="interval", signed=True),
                    tables.Column("p", "wilcoxon_p", 3)]


# ----------------------------------------------------------------------------- finding a run's checkpoint


def checkpoint_path(cfg, run: str, base: Path) -> Path:
    """The best checkpoint of `run` under cfg's result folder, for --predict and --explain. If neither it
    nor the run's record is there but other result folders under `base` (the INI's result_path: the
    --set subfolders) hold the run, one UserError names them and how to reach them; otherwise the path,
    for checkpoints.load_checkpoint to load or report."""
    root = cfg.path.result_path
    path = root / "checkpoints" / f"{run}.pt"
    if path.is_file() or (root / "runs" / f"{run}.json").is_file() or RunSpec.parse(run) is None:
        return path
    holders = [p.parent.parent for p in sorted(Path(base).glob(f"*/checkpoints/{run}.pt"))]
    holders += [Path(base)] if (Path(base) / "checkpoints" / f"{run}.pt").is_file() else []
    holders = [h for h in holders if h.resolve() != root.resolve()]
    if not holders:
        return path
    hints = []
    for folder in holders:
        try:
            summary = fileio.read_json(folder / "summary.json")
            sets = summary.get("overrides") if isinstance(summary, dict) else []
            sets = [str(o) for o in sets] if isinstance(sets, list) else []
        except (OSError, ValueError):
            sets = []
        how = "without --set" if folder == Path(base) else " ".join(f"--set {shlex.quote(o)}" for o in sets)
        hints.append(f"{folder}" + (f" (trained {'with ' * (folder != Path(base))}{how})" if how else ""))
    raise UserError(f"{path}: checkpoint not found; {run} is in {'; '.join(hints)}: repeat the --set values it was "
                    f"trained with, or give --result-path with its folder")
