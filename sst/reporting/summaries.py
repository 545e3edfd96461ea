"""TODO docstring (from results.py)"""
from __future__ import annotations

import csv
import io

import numpy as np

from sst import errors, fileio, runtime
from sst.config import Config
from sst.data import datasets
from sst.errors import printable
from sst.models import kinds
from sst.reporting import tables
from sst.results.store import ResultDir
from sst.training import protocols
from sst.training.metrics import scores
from sst.training.runspec import RunSpec


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
        errors.warn(f"{out.root / 'checkpoints'}: no checkpoint for finished run(s) {', '.join(missing)} "
              f"(deleted?): counted here, but --explain cannot use them; delete their runs/*.json to redo them")
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
        "protocol_note": protocols.of(cfg).note,
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
        "seeds_per_run": {str(k): sum(r["seeds"] == k for r in runs) for k in sorted({r["seeds"] for r in runs}, reverse=True)},
        "seed_std_accuracy": seed_std(r["accuracy_seed_std"] for r in runs),
        "per_class": per_class,   # precision, recall, F1 per class, means over the runs
        "warnings": warnings,
        "runs_of_this_invocation": sum(any(x["run"] in this_invocation for x in r["records"]) for r in runs),
        "selection": {"subjects": sorted(subjects) if subjects else None, "sessions": sorted(sessions) if sessions else None},
        "per_subject": {str(s): float(np.mean(v)) for s, v in sorted(per_subject.items())},
        "confusion_matrix": cm.tolist(),
        # the paper's table 1 for this dataset, where published (None: a dataset without it)
        "paper_accuracy": _paper(cfg.data.dataset, "SST-EmotionNet"),
        "failed_runs": failed,
        "runs_without_checkpoint": missing,
        "overrides": list(cfg.overrides),
        "config": cfg.to_dict(), "config_key": out.config_key, "git_commit": runtime.git_commit(),
    }
    # beside the network's, the paper's row of the runs' model kind (the SVM beside a baseline), where published
    row = kinds.of(cfg).paper_row
    if row != kinds.NETWORK.paper_row and (paper := _paper(cfg.data.dataset, row)) is not None:
        summary[f"paper_{row.lower()}_accuracy"] = {"row": f"{row} on DE, paper", **paper}
    table = results_table(summary) if fmt == "text" else summary_table(summary).render(fmt)
    if subjects or sessions:     # a part: printed, not written over the whole invocation's files
        tables.emit(table)
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
    as_table = summary_table(summary)
    for fmt_name, ext in (("csv", "csv"), ("markdown", "md"), ("latex", "tex")):    # for a paper, beside summary.json
        with fileio.atomic_path(out.root / f"summary.{ext}") as tmp:
            tmp.write_text(as_table.render(fmt_name) + "\n", encoding="utf-8")
    tables.emit(table)
    from sst.reporting import figures

    figures.run_figures(results, summary, out.root / "figures")
    return summary


def _paper(dataset: str, row: str) -> dict | None:
    """{mean, std} of the paper's table 1 for a dataset and model row; None where it gave none."""
    entry = datasets.DATASETS.get(dataset)
    value = entry.paper.get(row) if entry is not None else None
    return dict(zip(("mean", "std"), value)) if value else None


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
    model = summary.get("model", kinds.NETWORK.name)
    kind = kinds.KINDS.get(model)
    return f"{kind.label if kind is not None else model}, ours"


def _table_notes(summary: dict) -> list[str]:
    """The lines under the table: seeds, comparability, warnings, failures, overrides."""
    rows = []
    if summary.get("repeats", 1) > 1:
        seed = summary.get("config", {}).get("training", {}).get("seed")
        first = f" (seeds {seed} to {seed + summary['repeats'] - 1})" if isinstance(seed, int) else ""
        counts = summary.get("seeds_per_run") or {str(summary["repeats"]): summary["n_runs"]}
        how = f"{summary['repeats']} seeds per run" if len(counts) == 1 else "seeds per run: " + ", ".join(
            f"{n} of {summary['n_runs']} runs {k} seed{'s' * (k != '1')}" for k, n in counts.items())
        rows.append(f"{how}{first}, averaged per run: std between runs {summary['std_accuracy']:.2f}, between seeds "
                    f"{summary['seed_std_accuracy'] or 0:.2f} points ({summary['n_trainings']} trainings)")
    protocol = protocols.PROTOCOLS.get(summary["protocol"])
    if protocol is not None and not protocol.subject_dependent:
        rows.append(f"(the paper's number is subject-dependent, one model per subject-session: not comparable with "
                    f"{summary['protocol']})")
    if summary.get("warnings"):
        names = list(summary["warnings"])
        more = f" and {len(names) - 4} more" if len(names) > 4 else ""
        rows.append(f"{len(names)} run{'s' * (len(names) > 1)} with warnings ({', '.join(names[:4])}{more}; "
                    f"listed with them in summary.json)")
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
    n = summary["n_runs"]
    W = max(24, len(model_label(summary)) + 1)      # the first column: the longest row name and a space
    rows = [
        f"{summary['dataset']}, protocol {summary['protocol']} ({summary['protocol_note']})",
        f"{'':{W}s}{'accuracy %':>16s}{'macro-F1':>11s}{'kappa':>8s}  runs",
        f"{'chance level':{W}s}{summary['chance_accuracy']:>10.2f}{'':17s}{0.0:>8.3f}",
        f"{'majority class':{W}s}{summary['majority_accuracy']:>10.2f}{'':8s}{summary['majority_macro_f1']:>9.3f}"
        f"{summary['majority_kappa']:>8.3f}",
    ]
    for name, paper in _paper_rows(summary):
        rows.append(f"{name:{W}s}{paper['mean']:>10.2f} +- {paper['std']:<3.2f}{'-':>9s}{'-':>8s}  45")
    rows.append(f"{model_label(summary):{W}s}{summary['mean_accuracy']:>10.2f} +- {summary['std_accuracy']:<3.2f}"
                f"{summary['mean_macro_f1']:>9.3f}{summary['mean_kappa']:>8.3f}  {n} ({_invocation(summary)})")
    return "\n".join(errors.printable(row, limit=None) for row in rows + _table_notes(summary))


def _paper_rows(summary: dict) -> list[tuple[str, dict]]:
    """(row name, {mean, std}) of the paper's numbers a summary holds: the network's, and the SVM's beside a
    baseline; none for a dataset the paper did not report."""
    rows = [("SST-EmotionNet, paper", summary.get("paper_accuracy"))]
    rows += [(value.get("row", key), value) for key, value in summary.items()       # the kind's row (paper_svm_accuracy)
             if key.startswith("paper_") and key.endswith("_accuracy") and key != "paper_accuracy"
             and isinstance(value, dict)]
    return [(name, paper) for name, paper in rows if isinstance(paper, dict) and {"mean", "std"} <= set(paper)]


def summary_table(summary: dict) -> "tables.Table":
    """results_table's rows as a tables.Table (--format markdown, latex, csv): accuracy in percent, macro-F1
    and kappa as fractions, as in the text table."""
    table = tables.Table(f"{summary['dataset']}, protocol {summary['protocol']} ({summary['protocol_note']})",
                         caption=f"{summary['dataset']}, protocol {summary['protocol']}: test accuracy (%) as mean "
                                 f"± std over {summary['n_runs']} runs (subject-sessions), macro-F1 and kappa as means",
                         columns=[tables.Column("", "row"), tables.Column("accuracy %", "accuracy_percent", kind="pm"),
                                  tables.Column("macro-F1", "macro_f1", 3), tables.Column("kappa", "kappa", 3),
                                  tables.Column("runs", "runs")], notes=_table_notes(summary))
    table.rows += [["chance level", (summary["chance_accuracy"], None), None, 0.0, None],
                   ["majority class", (summary["majority_accuracy"], None), summary["majority_macro_f1"],
                    summary["majority_kappa"], None]]
    table.rows += [[name, (paper["mean"], paper["std"]), None, None, 45] for name, paper in _paper_rows(summary)]
    table.rows.append([model_label(summary), (summary["mean_accuracy"], summary["std_accuracy"]),
                       summary["mean_macro_f1"], summary["mean_kappa"], summary["n_runs"]])
    return table
