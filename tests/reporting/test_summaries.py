"""sst/reporting/summaries.py: summary.json, results.csv and the table (repeats pooled per run, every format)."""
import csv
import dataclasses
import json
import math
import re

import numpy as np
import pytest

import run
from conftest import record, run_cli, run_in_process, write_folder, write_ini
from sst import config
from sst.data import datasets
from sst.reporting import summaries
from sst.results import provenance, store
from sst.training import runspec


def test_summary_of_failed_runs_only_prints_them(tmp_path, capsys):
    cfg = config.load_config(write_ini(tmp_path / "a.ini", path={"result_path": tmp_path / "res"}))
    out = store.ResultDir(cfg)
    out.record_failure(runspec.RunSpec(2, 1), "sub02_ses1 (subject 2, session 1), epoch 3: training loss became nan")
    assert summaries.summarize(cfg, out) is None and not (tmp_path / "res" / "summary.json").exists()
    assert capsys.readouterr().out.splitlines() == [
        f"no finished runs under {tmp_path}/res/runs",
        "failed: sub02_ses1: sub02_ses1 (subject 2, session 1), epoch 3: training loss became nan"]


def test_summary_pools_repeats_and_prints_each_format(tmp_path, capsys):
    cfg = config.load_config(write_ini(tmp_path / "a.ini", path={"result_path": tmp_path / "res"}))
    key = provenance.result_key(cfg)
    correct = {"sub01_ses1": 60, "sub01_ses1_rep1": 70, "sub02_ses1": 80, "sub02_ses1_rep1": 84, "sub03_ses1": 50}
    write_folder(tmp_path / "res", [record(name, k, key=key) for name, k in correct.items()])
    out = store.ResultDir(cfg)
    summary = summaries.summarize(cfg, out, fmt="text")
    text = capsys.readouterr().out
    runs = [65, 82, 50]                                          # percent, seeds averaged per run
    assert summary["n_runs"] == 3 and summary["n_trainings"] == 5 and summary["repeats"] == 2
    assert summary["mean_accuracy"] == pytest.approx(np.mean(runs)) and summary["std_accuracy"] == pytest.approx(np.std(runs))
    # the pooled within-run sample std: sqrt(mean(var([60, 70]), var([80, 84])))
    assert summary["seed_std_accuracy"] == pytest.approx(math.sqrt((50 + 8) / 2))
    assert summary["per_subject"] == pytest.approx({"1": 65, "2": 82, "3": 50}) and summary["model"] == "sst_emotionnet"
    assert re.search(r"^SST-EmotionNet, ours +65\.67 \+- 13\.07 +[\d.]+ +[\d.]+  3 \(none of this invocation\)$", text, re.M)
    assert "seeds per run: 2 of 3 runs 2 seeds, 1 of 3 runs 1 seed (seeds 42 to 43), averaged per run: std between " \
           "runs 13.07, between seeds 5.39 points (5 trainings)" in text         # not "2 seeds per run" (issue 34)
    assert summary["seeds_per_run"] == {"2": 2, "1": 1}
    for ext in ("csv", "md", "tex"):        # for a paper, beside summary.json
        assert (tmp_path / "res" / f"summary.{ext}").read_text().rstrip("\n") == \
            summaries.summary_table(summary).render({"md": "markdown", "tex": "latex"}.get(ext, ext))
    tex = (tmp_path / "res" / "summary.tex").read_text()
    assert tex.startswith("% needs \\usepackage{booktabs}") and "seeds per run" not in tex.split("\\end{tabular}")[0]
    rows = list(csv.DictReader(open(tmp_path / "res" / "results.csv")))
    assert [r["run"] for r in rows] == list(correct)
    assert [(float(r["accuracy"]), float(r["accuracy_percent"]), r["repeat"], r["seed"]) for r in rows][:2] == [
        (0.6, 60.0, "0", "42"), (0.7, 70.0, "1", "43")]
    saved = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert saved["mean_accuracy"] == pytest.approx(float(text.split("SST-EmotionNet, ours")[1].split()[0]), abs=0.005)

    # --format csv / latex print results.summary_table (summarize itself: test_summarize_format_on_the_command_line)
    lines = summaries.summary_table(summary).render("csv").splitlines()
    assert lines[0] == "row,accuracy_percent_mean,accuracy_percent_std,macro_f1,kappa,runs"
    assert lines[-1].startswith(f'"SST-EmotionNet, ours",{summary["mean_accuracy"]!r},{summary["std_accuracy"]!r},')
    assert "SST-EmotionNet, ours & 65.67 $\\pm$ 13.07" in summaries.summary_table(summary).render("latex")


def test_summarize_format_on_the_command_line(tmp_path, capsys):
    """run.py --summarize --format prints the same numbers as each format's table; results.csv and
    summary.json are written whatever the format."""
    ini = write_ini(tmp_path / "a.ini", path={"result_path": tmp_path / "res"})
    key = provenance.result_key(config.load_config(ini))
    write_folder(tmp_path / "res", [record(f"sub0{s}_ses1", 60 + 10 * s, key=key) for s in (1, 2)])   # 70, 80
    expected = {"text": re.compile(r"^SST-EmotionNet, ours +75\.00 \+- 5\.00 ", re.M),
                "markdown": re.compile(r"^\| SST-EmotionNet, ours \| 75\.00 ± 5\.00 \|", re.M),
                "latex": re.compile(r"^SST-EmotionNet, ours & 75\.00 \$\\pm\$ 5\.00 &", re.M),
                "csv": re.compile(r'^"SST-EmotionNet, ours",75\.0,5\.0,', re.M)}
    for fmt, pattern in expected.items():
        assert run.main(["-c", str(ini), "--summarize", "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert pattern.search(out), f"{fmt}:\n{out}"
        assert json.loads((tmp_path / "res" / "summary.json").read_text())["mean_accuracy"] == pytest.approx(75)
    with pytest.raises(SystemExit):
        run.main(["-c", str(ini), "--summarize", "--format", "html"])


def test_summarize_format_latex_writes_only_the_table_to_standard_output(tmp_path, capsys):
    """`--summarize --format latex > t.tex` gave a file starting with "overrides: ..." (issue 34): now the
    table alone, the same as summary.tex; every other line on standard error."""
    ini = write_ini(tmp_path / "a.ini", path={"result_path": tmp_path / "res"})
    key = provenance.result_key(config.load_config(ini, overrides=["training.lr=0.002"]))
    write_folder(tmp_path / "res" / "training.lr=0.002", [record(f"sub0{s}_ses1", 60 + 10 * s, key=key) for s in (1, 2)])
    for fmt, ext in (("latex", "tex"), ("markdown", "md"), ("csv", "csv")):    # the command line once, then in-process
        args = ("run.py", "-c", str(ini), "--set", "training.lr=0.002", "--summarize", "--format", fmt)
        p = run_cli(*args) if fmt == "latex" else run_in_process(capsys, *args)
        assert p.returncode == 0, p.stderr
        assert p.stdout == (tmp_path / "res" / "training.lr=0.002" / f"summary.{ext}").read_text(), p.stdout
        assert p.stderr.startswith("overrides: training.lr=0.002; results under ")
    assert p.stdout.startswith("row,accuracy_percent_mean")


def test_summary_of_single_seed_runs_is_unchanged(tmp_path, capsys):
    cfg = config.load_config(write_ini(tmp_path / "a.ini", path={"result_path": tmp_path / "res"}))
    write_folder(tmp_path / "res", [record(f"sub0{s}_ses1", 60 + s, key=provenance.result_key(cfg)) for s in (1, 2)])
    summary = summaries.summarize(cfg, store.ResultDir(cfg))
    text = capsys.readouterr().out
    assert summary["repeats"] == 1 and summary["seed_std_accuracy"] is None and summary["n_runs"] == 2
    assert "seeds per run" not in text
    header = (tmp_path / "res" / "results.csv").read_text().splitlines()[0]
    assert header.startswith("run,subject,session,accuracy,macro_f1,kappa,test_loss,best_epoch,epochs_run,n_train,"
                             "n_val,n_test,seconds,")      # the old columns first, in their order


def test_a_dataset_without_the_papers_numbers_summarizes_without_them(tmp_path, monkeypatch, capsys):
    """An entry whose `paper` is empty (a dataset the paper did not report): no paper row, no crash; the
    paper's row is the dataset entry's, not a constant."""
    cfg = config.load_config(write_ini(tmp_path / "a.ini", path={"result_path": tmp_path / "res"}))
    write_folder(tmp_path / "res", [record(f"sub0{s}_ses1", 60 + s, key=provenance.result_key(cfg)) for s in (1, 2)])
    monkeypatch.setitem(datasets.DATASETS, "SEED", dataclasses.replace(datasets.SEED, paper={}))
    summary = summaries.summarize(cfg, store.ResultDir(cfg))
    text = capsys.readouterr().out
    assert summary["paper_accuracy"] is None and "paper" not in text.split("majority class")[1].split("ours")[0]
    assert summary["n_runs"] == 2 and "SST-EmotionNet, ours" in text
    monkeypatch.setitem(datasets.DATASETS, "SEED", dataclasses.replace(datasets.SEED, paper={"SST-EmotionNet": (1.5, 0.5)}))
    summaries.summarize(cfg, store.ResultDir(cfg))
    assert re.search(r"SST-EmotionNet, paper +1\.50 \+- 0\.50 ", capsys.readouterr().out)
