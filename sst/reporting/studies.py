"""Studies that train (or reuse) several configurations on one split and set them side by side, paired.

    python run.py -c SEED.ini --paper-table       # SVM, DGCNN and SST-EmotionNet: the paper's table 1, our way
    python run.py -c SEED.ini --protocol-price    # one configuration under paper, trial and random: what each adds

Each configuration is trained exactly as `--set` would train it (its own result subfolder, finished runs
reused; --subjects, --sessions, --jobs and --shard as given); the configuration the INI file names itself uses
the INI's own result folder, so folders trained before are read as they are and give the same numbers. Then
one table, printed and written (csv, md, tex, paired_runs.csv, a png with one line per subject-session) under
--out, by default comparisons/<first>_<stem> beside the INI's result folder:

  --paper-table     model | the paper's table-1 row (mean +- std %, the dataset entry's) | ours (mean +- std,
                    with the std between seeds when repeats > 1) | the paired difference to SST-EmotionNet, its
                    95% CI, Wilcoxon p and W/T/L, as --compare computes them (sst.reporting.experiments)
  --protocol-price  protocol | what it may claim | ours | the paired difference to `trial`, CI, p, W/T/L: the
                    points that test-set selection (`paper`) and leaky splits (`random`) add
Runs are paired by subject and session. Under `random` the test windows differ from `trial`'s (a random 40%
of the session's windows), so its pairs compare the same subject-session, not the same windows: the table
says so.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sst import config
from sst.data import datasets
from sst.errors import ConfigError, DataError, UserError
from sst.models import kinds
from sst.reporting import experiments, tables
from sst.training import protocols

PAPER_TABLE = ("linear_svm", "dgcnn", "sst_emotionnet")   # model kinds (`paper_row` names the row), the reference last
PRICED = ("trial", "paper", "random")          # the reference first


def plan(args: argparse.Namespace, resolve, flag: str, rows: list[tuple[str, str | None]], fixed: tuple[str, ...]):
    """[(row, --set or None, run.py arguments, resolved Config)] of a study, every configuration resolved and
    checked before anything is trained. `fixed`: the keys the study sets itself (refused in --set)."""
    given = [o.partition("=")[0].strip() for o in args.set or ()]
    clash = [k for k in given if k in fixed]
    if clash:
        raise UserError(f"{flag} sets {clash[0]} itself, once per configuration; leave out --set {clash[0]}")
    if args.result_path is not None:
        raise UserError(f"{flag} puts each configuration in the subfolder of [path] result_path its --set names; "
                        f"--result-path would put them all in one folder (set [path] result_path instead)")
    plans = []
    for name, override in rows:
        run_args = argparse.Namespace(**{**vars(args), "set": [*(args.set or ()), *([override] if override else [])]})
        plans.append((name, override, run_args, resolve(run_args)))
    if len({p[3].path.result_path for p in plans}) < len(plans):
        cfg = plans[0][3]
        raise ConfigError(f"{cfg.where('path', 'result_path')}: set by --set, it would hold every configuration; "
                          f"{flag} needs their own subfolders (set it in the INI file instead)")
    return plans


def train_all(plans: list, train, args: argparse.Namespace, flag: str, what: str) -> int:
    """Train each configuration of `plans` (run.py's `train`); the exit code, 1 if any run failed."""
    code = 0
    for i, (name, override, run_args, cfg) in enumerate(plans, start=1):
        print(f"{what} {i}/{len(plans)}: {name}" + (f" (--set {override})" if override else "")
              + f"; results under {cfg.path.result_path}", flush=True)
        code |= train(cfg, run_args)
    if args.shard:
        print(f"shard {args.shard} of the {what} done; after every shard has finished, the same command without "
              f"--shard trains nothing more and prints the table: python run.py -c {args.config} {flag}"
              + "".join(f" --set {o}" for o in args.set or ()))
    return code


def _folders(plans: list, subjects, sessions) -> list:
    """The result folder of each configuration (experiments.Folder), labelled by its row; None where none finished."""
    out = []
    for name, _, _, cfg in plans:
        try:
            folder = experiments.read_folder(cfg.path.result_path, subjects, sessions)
        except DataError:
            out.append(None)
            continue
        folder.label = name
        out.append(folder)
    return out


def _paired_rows(table: tables.Table, folders: list, reference, extra, same_tests: bool = True) -> dict[str, dict]:
    """One row per folder against `reference` (paired statistics), the reference first; `extra(folder)`: the
    row's own leading cells; `same_tests`: pairs must have been tested on the same windows (experiments.same_tests;
    not for protocols, whose splits differ by design). Returns the statistics by label (for the figure and notes)."""
    stats = {}
    for f in folders:
        if f is None:
            continue
        if same_tests and f is not reference:
            table.notes += experiments.same_tests(reference, f)
        stat = experiments.paired_statistics(reference.accuracy, f.accuracy) if f is not reference else None
        if stat:
            stats[f.label] = stat
        table.rows.append([*extra(f), len(f.accuracy), experiments.mean_std_of(list(f.accuracy.values())),
                           f.seed_std(), stat["difference"] if stat else None, stat["ci"] if stat else None,
                           stat["p"] if stat else None,
                           f"{stat['wins']}/{stat['ties']}/{stat['losses']}" if stat else None])
    return stats


STAT_COLUMNS = [tables.Column("runs", "n_runs"), tables.Column("ours %", "accuracy_percent", kind="pm"),
                tables.Column("seed std", "seed_std_points"),
                tables.Column("difference", "difference_points", signed=True),
                tables.Column("95% CI", "ci95_points", kind="interval", signed=True),
                tables.Column("p", "wilcoxon_p", 3), tables.Column("W/T/L", "wins_ties_losses")]


def _finish(table: tables.Table, stats: dict, folders: list, stem: str, title: str, out: Path | None, fmt: str) -> int:
    """Notes on what the tests cannot show, the files and the figure; print the table."""
    present = [f for f in folders if f is not None]
    table.notes += experiments.STATISTICS_NOTES + experiments.limit_notes(stats)
    target = out or experiments.default_out(present[0].path, f"{present[0].path.name}_{stem}")
    written = experiments.write_outputs(target, stem, table, present)
    from sst.reporting import figures

    written.append(figures.comparison_figure([f.label for f in present], [f.accuracy for f in present], title, stats,
                                             target / f"{stem}.png"))
    tables.emit(table.render(fmt))
    print(experiments.written_line(target, written))
    return 0


# ----------------------------------------------------------------------------- --paper-table


def paper_table(args: argparse.Namespace, resolve, train) -> int:
    """--paper-table: train (or reuse) the SVM, DGCNN and SST-EmotionNet on the INI's split and protocol, then
    their table beside the paper's table 1 (with --shard: training only)."""
    base = config.load_config(args.config, overrides=args.set)       # the INI's own model: its own folder
    rows = [(kinds.KINDS[k].paper_row, None if base.model.name == k else f"model.name={k}") for k in PAPER_TABLE]
    plans = plan(args, resolve, "--paper-table", rows, ("model.name",))
    code = train_all(plans, train, args, "--paper-table", "paper table")
    if args.shard:
        return code
    folders = _folders(plans, args.subjects, args.sessions)
    network = folders[-1]
    if network is None:
        raise DataError(f"{plans[-1][3].path.result_path}: no finished run of SST-EmotionNet to compare with")
    entry = datasets.DATASETS.get(network.dataset)
    protocol = protocols.PROTOCOLS.get(network.protocol)
    table = tables.Table(f"{network.dataset}, protocol {network.protocol}: the paper's table 1 and ours, paired with "
                         f"SST-EmotionNet by subject and session",
                         [tables.Column("model"), tables.Column("paper %", "paper_percent", kind="pm"), *STAT_COLUMNS])

    def paper(f):
        value = entry.paper.get(f.label) if entry is not None else None
        return [f.label, tuple(value) if value else None]

    stats = _paired_rows(table, [*folders[-1:], *folders[:-1]], network, paper)
    for (name, _), f in zip(rows, folders):
        if f is None:
            table.notes.append(f"{name}: no finished runs")
    selection = "the test set chose the checkpoint" if protocol and protocol.selects_on_test else \
        "the checkpoint is chosen on validation data"
    table.notes.insert(0, f"ours: protocol {network.protocol} ({protocol.note if protocol else '?'}); {selection}")
    table.notes.insert(1, "paper: its table 1, subject-dependent, one model per subject-session, obtained as the "
                          "authors' code does (the test set chose the checkpoint): compare it with protocol paper; "
                          "an honest protocol (trial) is expected lower (LibEER's DGCNN: 89.48 under test-set "
                          "selection, 82.55 chosen on validation)")
    return _finish(table, stats, [*folders[-1:], *folders[:-1]], "paper_table",
                   f"{network.dataset}, protocol {network.protocol}", args.out, args.format) or code


# ----------------------------------------------------------------------------- --protocol-price


def protocol_price(args: argparse.Namespace, resolve, train) -> int:
    """--protocol-price: train (or reuse) the INI's configuration under paper, trial and random, then what each
    protocol adds to `trial`, paired by subject and session (with --shard: training only)."""
    base = config.load_config(args.config, overrides=args.set)       # the INI's own protocol: its own folder
    rows = [(name, None if base.training.protocol == name else f"training.protocol={name}") for name in PRICED]
    plans = plan(args, resolve, "--protocol-price", rows, ("training.protocol",))
    code = train_all(plans, train, args, "--protocol-price", "protocol price")
    if args.shard:
        return code
    folders = _folders(plans, args.subjects, args.sessions)
    trial = folders[0]
    if trial is None:
        raise DataError(f"{plans[0][3].path.result_path}: no finished run under protocol trial to compare with")
    table = tables.Table(f"{trial.dataset}, {trial.model}: the price of each protocol, paired with trial by "
                         f"subject and session", [tables.Column("protocol"), tables.Column("may claim", "note"),
                                                  *STAT_COLUMNS])
    stats = _paired_rows(table, folders, trial, lambda f: [f.label, protocols.PROTOCOLS[f.label].note.split(":")[0]],
                         same_tests=False)
    for name, f in zip(PRICED, folders):
        if f is None:
            table.notes.append(f"{name}: no finished runs")
    table.notes.insert(0, "difference: this protocol's accuracy - trial's, the same subject-session; paper tests on "
                          "trial's test windows but lets them choose the checkpoint; random tests on a random 40% of "
                          "the session's windows (other windows than trial's), its neighbours in training")
    return _finish(table, stats, folders, "protocol_price", f"{trial.dataset}, {trial.model}", args.out,
                   args.format) or code
