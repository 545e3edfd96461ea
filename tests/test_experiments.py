"""Experiments a researcher can publish: --compare, --ablation, the classical baselines, repeats, --format."""
import csv
import json
import math
import re

import numpy as np
import pytest
from scipy import stats

import run
from conftest import TINY_MODEL, run_in_process, tiny_seed_tree, write_ini
from sst import config, errors, fileio
from sst.models import baselines, kinds
from sst.reporting import experiments, summaries, tables
from sst.results import provenance, store
from sst.training import loop, metrics, protocols, runspec, sharding


def record(run_name: str, correct: int, *, n_test: int = 100, dataset: str = "SEED", protocol: str = "trial",
           key: str = "k" * 16, model: str | None = None) -> dict:
    """A runs/<run>.json record that passes schemas.RUN_RECORD, `correct` of `n_test` test windows right."""
    spec = runspec.RunSpec.parse(run_name)
    n_class = 3 if dataset == "SEED" else 4
    cm = np.zeros((n_class, n_class), dtype=int)
    cm[0, 0], cm[0, 1] = correct, n_test - correct
    r = {"run": run_name, "subject": spec.subject, "session": spec.session, "protocol": protocol, "dataset": dataset,
         **metrics.scores(cm), "test_loss": 1.0, "confusion_matrix": cm.tolist(), "n_train": 200, "n_val": 20,
         "n_test": n_test, "best_epoch": 1, "epochs_run": 1, "seconds": 1.0, "config_key": key,
         "history": [{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "seconds": 1.0}]}
    if model:
        r["model"] = model
    return r


def write_folder(folder, records: list[dict]) -> None:
    for r in records:
        fileio.write_json(folder / "runs" / f"{r['run']}.json", r)


# ----------------------------------------------------------------------------- --compare


def test_compare_pairs_runs_and_its_p_value_is_scipys(tmp_path, capsys):
    """Folders are paired by subject and session, repeats averaged first; the CI is the t interval of the
    paired differences; p is scipy's Wilcoxon signed-rank on the runs' own accuracies."""
    a_correct = {(s, 1): 60 + 2 * s for s in range(1, 9)}
    b_correct = {(s, 1): 60 + 2 * s + d for s, d in zip(range(1, 9), [5, 3, -1, 7, 0, 4, 9, 2])}
    a, b, c = tmp_path / "net", tmp_path / "svm", tmp_path / "none"
    write_folder(a, [record(f"sub{s:02d}_ses1", k) for (s, _), k in a_correct.items()]
                 + [record("sub09_ses1", 50)])                      # only in the first folder: not paired
    write_folder(b, [record(f"sub{s:02d}_ses1", k, model="linear_svm") for (s, _), k in b_correct.items()])
    # c: two seeds per run, averaged per run before pairing
    write_folder(c, [record(f"sub{s:02d}_ses1", k - 10) for (s, _), k in a_correct.items()]
                 + [record(f"sub{s:02d}_ses1_rep1", k - 6) for (s, _), k in a_correct.items()]
                 + [record("sub10_ses1", 0), record("sub10_ses1_rep1", 100)])   # not paired: not in its seed std
    assert run.main(["--compare", str(a), str(b), str(c), "--format", "csv"]) == 0
    out = tmp_path / "comparisons" / "net_vs_svm_vs_none"
    rows = {r["folder"]: r for r in csv.DictReader(open(out / "comparison.csv"))}
    assert capsys.readouterr().out.startswith("folder,model,n_paired,seeds,accuracy_percent_mean")

    acc_a = np.array([a_correct[k] for k in sorted(a_correct)], dtype=float)          # percent (of 100 windows)
    acc_b = np.array([b_correct[k] for k in sorted(b_correct)], dtype=float)
    svm = rows["svm"]
    assert svm["model"] == "linear_svm" and int(svm["n_paired"]) == 8 and svm["wins_ties_losses"] == "6/1/1"
    assert float(svm["wilcoxon_p"]) == pytest.approx(stats.wilcoxon(acc_b, acc_a).pvalue, rel=1e-12)
    d = acc_b - acc_a
    half = stats.t.ppf(0.975, 7) * d.std(ddof=1) / math.sqrt(8)
    assert float(svm["difference_points"]) == pytest.approx(d.mean())
    assert (float(svm["ci95_points_low"]), float(svm["ci95_points_high"])) == pytest.approx((d.mean() - half,
                                                                                              d.mean() + half))
    assert float(svm["accuracy_percent_mean"]) == pytest.approx(acc_b.mean())
    assert float(svm["accuracy_percent_std"]) == pytest.approx(acc_b.std())
    assert float(rows["net"]["accuracy_percent_mean"]) == pytest.approx(np.mean([*acc_a, 50]))   # all its runs
    none = rows["none"]
    assert int(none["seeds"]) == 2 and float(none["difference_points"]) == pytest.approx(-8)  # (-10 - 6) / 2
    assert float(none["seed_std_points"]) == pytest.approx(math.sqrt(8)) and svm["seed_std_points"] == ""  # 4 apart
    assert float(none["wilcoxon_p"]) == pytest.approx(stats.wilcoxon(acc_a - 8, acc_a).pvalue)
    assert none["wins_ties_losses"] == "0/0/8"

    paired = list(csv.reader(open(out / "paired_runs.csv")))
    assert paired[0] == ["subject", "session", "net accuracy %", "svm accuracy %", "none accuracy %"]
    assert paired[-1][:3] == ["9", "1", "50.0"] and paired[-1][3:] == ["", ""]
    markdown = (out / "comparison.md").read_text()
    assert "| svm | linear_svm | 8 | 1 |" in markdown and "zero_method='wilcox'" in markdown
    assert "\\begin{tabular}" in (out / "comparison.tex").read_text()
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_says_what_a_test_cannot_show(tmp_path, capsys):
    """Equal runs are ties (no test when every difference is 0); under 6 non-zero differences p >= 0.0625."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_folder(a, [record(f"sub0{s}_ses1", 70) for s in (1, 2, 3)])
    write_folder(b, [record(f"sub0{s}_ses1", 70) for s in (1, 2, 3)])
    write_folder(c, [record(f"sub0{s}_ses1", 70 + s) for s in (1, 2, 3)])
    assert run.main(["--compare", str(a), str(b), str(c), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^b +sst_emotionnet +3 +1 +70\.00 \+- 0\.00 +- +\+0\.00 +\[\+0\.00, \+0\.00\] +- +- +0/3/0$", text, re.M)
    assert "b: every paired difference is 0, no test" in text
    assert "c: fewer than 6 non-zero differences, so the two-sided Wilcoxon p cannot fall below 0.05" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "comparison.csv", "comparison.md", "comparison.png", "comparison.tex", "paired_runs.csv"]
    assert run.main(["--compare", str(a), str(c), "--subjects", "2,3", "--out", str(tmp_path / "part")]) == 0
    assert re.search(r"^c +sst_emotionnet +2 +1 +72\.50 \+- 0\.50 +- +\+2\.50 ", capsys.readouterr().out, re.M)


def test_compare_refuses_folders_that_do_not_pair(tmp_path):
    a, iv, loso, other, empty = (tmp_path / n for n in ("a", "iv", "loso", "other", "empty"))
    write_folder(a, [record("sub01_ses1", 70)])
    write_folder(iv, [record("sub01_ses1", 70, dataset="SEED-IV")])
    write_folder(loso, [record("sub01_ses1", 70, protocol="loso")])
    write_folder(other, [record("sub02_ses1", 70)])
    (empty / "runs").mkdir(parents=True)
    for folder, message in ((iv, f"{iv}: SEED-IV, protocol trial, but {a} is SEED, protocol trial: compare folders "
                                 f"of one dataset and protocol"),
                            (loso, f"{loso}: SEED, protocol loso, but {a} is SEED, protocol trial"),
                            (other, f"{other}: no run in common with {a} (runs are paired by subject and session)"),
                            (empty, f"{empty}/runs: no finished runs to compare"),
                            (tmp_path / "nothing", f"{tmp_path}/nothing: not a result folder (no runs/ in it)")):
        with pytest.raises(errors.UserError, match=re.escape(message)):
            run.main(["--compare", str(a), str(folder)])
    mixed = tmp_path / "mixed"
    write_folder(mixed, [record("sub01_ses1", 70), record("sub02_ses1", 70, key="x" * 16)])
    with pytest.raises(errors.UserError, match="runs of 2 configurations"):
        run.main(["--compare", str(a), str(mixed)])
    with pytest.raises(errors.UserError, match="--compare: give at least two result folders"):
        run.main(["--compare", str(a)])
    assert not (tmp_path / "comparisons").exists()


# ----------------------------------------------------------------------------- tables, summaries, repeats


def test_table_formats_hold_the_same_numbers():
    t = tables.Table("SEED_IV & co", [tables.Column("model"), tables.Column("accuracy %", "acc", kind="pm"),
                                       tables.Column("CI", "ci", kind="interval", signed=True),
                                       tables.Column("p", "p", 3)], notes=["a 50% note"])
    t.rows += [["linear_svm", (84.123, 9.7), (-1.5, 2.25), 0.0312], ["chance", (33.333, None), None, None]]
    assert t.render("text").splitlines() == [
        "SEED_IV & co",
        "model          accuracy %              CI      p",
        "linear_svm  84.12 +- 9.70  [-1.50, +2.25]  0.031",
        "chance              33.33               -      -",
        "a 50% note"]
    assert t.render("csv").splitlines() == ["model,acc_mean,acc_std,ci_low,ci_high,p",
                                            "linear_svm,84.123,9.7,-1.5,2.25,0.0312", "chance,33.333,,,,"]
    assert "| linear_svm | 84.12 ± 9.70 | [-1.50, +2.25] | 0.031 |" in t.render("markdown")
    latex = t.render("latex")
    assert "\\caption{SEED\\_IV \\& co. a 50\\% note.}" in latex
    assert "linear\\_svm & 84.12 $\\pm$ 9.70 & [-1.50, +2.25] & 0.031 \\\\" in latex


def test_runs_repeat_with_consecutive_seeds(tmp_path):
    available = [(1, 1), (2, 1)]
    specs = sharding.plan_runs(available, None, None, None, repeats=3)
    assert [s.name for s in specs] == ["sub01_ses1", "sub02_ses1", "sub01_ses1_rep1", "sub02_ses1_rep1",
                                       "sub01_ses1_rep2", "sub02_ses1_rep2"]
    assert all(runspec.RunSpec.parse(s.name) == s for s in specs)
    assert [s.name for s in sharding.plan_runs(available, None, None, None)] == ["sub01_ses1", "sub02_ses1"]
    cfg = config.load_config(write_ini(tmp_path / "a.ini", training={"seed": 2**32 - 1}))
    assert [runspec.run_seed(cfg, s) for s in specs[::2]] == [2**32 - 1, 0, 1]      # NumPy's 32-bit seeds wrap


def test_the_trainer_seeds_each_repeat(tmp_path):
    """Repeat r trains as the base run would with [training] seed + r: weights and shuffling."""
    import torch

    cfg = config.load_config(write_ini(tmp_path / "a.ini", data={"input_width": 16}, model=TINY_MODEL,
                                      training={"accelerator": "off"}))
    n = 12
    data = loop.RunData({"spectral": torch.zeros(n, 62, 5), "temporal": torch.zeros(n, 62, 25)},
                            torch.zeros(n, dtype=torch.long), protocols.Split(np.arange(8), np.arange(8, 10),
                                                                             np.arange(10, 12)), {}, [1])

    def start(c, repeat):
        t = loop.Trainer(c, runspec.RunSpec(1, 1, repeat), data, torch.device("cpu"))
        return t.net.state_dict(), torch.randperm(50, generator=t.shuffle)

    base, rep1, shifted = start(cfg, 0), start(cfg, 1), start(cfg.replace(training={"seed": 43}), 0)
    assert all(torch.equal(rep1[0][k], shifted[0][k]) for k in base[0]) and torch.equal(rep1[1], shifted[1])
    assert not all(torch.equal(rep1[0][k], base[0][k]) for k in base[0]) and not torch.equal(rep1[1], base[1])


def test_repeats_and_the_default_model_keep_result_keys(tmp_path):
    cfg = config.load_config(write_ini(tmp_path / "a.ini"))
    d = cfg.to_dict()
    del d["path"], d["model"]["plugins"], d["model"]["name"], d["model"]["attention_block"]
    for k in ("device", "num_threads", "accelerator", "repeats"):
        del d["training"][k]
    import hashlib

    assert provenance.result_key(cfg) == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    assert provenance.result_key(cfg.replace(training={"repeats": 5})) == provenance.result_key(cfg)
    assert provenance.result_key(cfg.replace(model={"name": "linear_svm"})) != provenance.result_key(cfg)
    assert run.override_folder(config.load_config(tmp_path / "a.ini", ["training.repeats=3"])) is None
    # a baseline's code is its own: editing the network does not make its results "other code", nor the reverse
    network, baseline = kinds.of(cfg).code(cfg), kinds.get("linear_svm").code(cfg.replace(model={"name": "linear_svm"}))
    assert "model.SSTEmotionNet" in network and "sst.models.baselines.fit" not in network
    assert "sst.models.baselines.fit" in baseline and not any(name.startswith("model.") for name in baseline)


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
    assert "2 seeds per run (seeds 42 to 43), averaged per run: std between runs 13.07, between seeds 5.39 points " \
           "(5 trainings)" in text
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


# ----------------------------------------------------------------------------- baselines


def test_baseline_chooses_C_on_validation_accuracy(tmp_path):
    cfg = config.load_config(write_ini(tmp_path / "a.ini", model={"name": "logistic_regression"}))
    rng = np.random.default_rng(0)
    label = np.repeat([0, 1, 2], 40)
    x = rng.normal(size=(120, 310))
    x[:, :3] += 4 * np.eye(3)[label]                     # nearly separable: several C tie on validation
    split = protocols.Split(np.arange(0, 120, 2), np.arange(1, 120, 4), np.arange(3, 120, 4))
    clf, C, grid, problems = baselines.fit(cfg, runspec.RunSpec(1, 1), x, label, split)
    assert [row["C"] for row in grid] == list(baselines.C_GRID)
    best = max(row["val_accuracy"] for row in grid)
    assert C == min(row["C"] for row in grid if row["val_accuracy"] == best)      # ties: the smaller C
    net = baselines.LinearDE.from_classifier(clf)
    import torch

    probabilities = torch.softmax(net(torch.from_numpy(x)), 1).numpy()
    assert np.allclose(probabilities, clf.predict_proba(x), atol=1e-10)        # the checkpoint is the classifier
    _, C, grid, _ = baselines.fit(cfg, runspec.RunSpec(1, 1), x, label, protocols.Split(split.train, split.val[:0],
                                                                                        split.test))
    assert C == baselines.DEFAULT_C and len(grid) == 1 and "val_accuracy" not in grid[0]


@pytest.mark.slow
def test_baseline_runs_repeat_summarize_predict_and_compare(tmp_path, capsys):
    """A baseline in the network's protocol: two seeds per run, records summarize and compare as the network's
    do, and --predict reproduces the run's test accuracy from its checkpoint."""
    root, ini = tiny_seed_tree(tmp_path)
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--set", "model.name=logistic_regression", "--set", "training.repeats=2")
    assert p.returncode == 0, p.stderr
    folder = root / "res" / "model.name=logistic_regression"         # repeats changes no folder, the model does
    assert re.search(r"^logistic_regression, ours +[\d.]+ \+- [\d.]+ +[\d.]+ +-?[\d.]+  2 \(all of this invocation\)$",
                     p.stdout, re.M)
    assert re.search(r"^SVM on DE, paper +83\.99 \+- 9\.72", p.stdout, re.M) and "2 seeds per run" in p.stdout
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["model"] == "logistic_regression" and summary["repeats"] == 2 and summary["n_trainings"] == 4
    assert sorted(q.name for q in (folder / "figures").iterdir()) == ["confusion.png", "per_subject.png", "selection.png"]
    r = json.loads((folder / "runs" / "sub01_ses1_rep1.json").read_text())
    assert r["model"] == "logistic_regression" and r["seed"] == 43 and r["history"] == [] and r["epochs_run"] == 0
    assert r["C"] in baselines.C_GRID and [row["C"] for row in r["selection"]] == list(baselines.C_GRID)
    assert r["n_val"] > 0 and r["warnings"] == []

    p = run_in_process(capsys, "run.py", "-c", str(ini), "--set", "model.name=logistic_regression", "--predict", "sub01_ses1",
                "--subjects", "1", "--sessions", "1")
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(open(folder / "predictions" / "sub01_ses1_on_sub01_ses1.csv")))
    test = [row for row in rows if int(row["trial"]) > 9]                      # SEED: trials 10-15 are tested
    record1 = json.loads((folder / "runs" / "sub01_ses1.json").read_text())
    assert len(test) == record1["n_test"]
    assert np.mean([row["true_label"] == row["predicted_label"] for row in test]) == pytest.approx(record1["accuracy"])

    assert run_in_process(capsys, "run.py", "-c", str(ini), "--set", "model.name=linear_svm").returncode == 0
    p = run_in_process(capsys, "run.py", "--compare", str(folder), str(root / "res" / "model.name=linear_svm"))
    assert p.returncode == 0, p.stderr
    assert re.search(r"^model\.name=linear_svm +linear_svm +2 +1 ", p.stdout, re.M)
    assert (root / "res" / "comparisons" / "model.name=logistic_regression_vs_model.name=linear_svm"
            / "comparison.png").is_file()


# ----------------------------------------------------------------------------- --ablation


@pytest.mark.slow
def test_ablation_trains_the_six_configurations_in_their_set_folders(tmp_path, capsys):
    """--ablation --shard trains (no table), then --ablation trains the rest and prints the table: six rows,
    each folder the one its --set would use, the paper's values, paired differences from the full model."""
    root, ini = tiny_seed_tree(tmp_path)
    common = ["run.py", "-c", str(ini), "--ablation", "--set", "training.nbEpoch=1"]
    p = run_in_process(capsys, *common, "--shard", "0/2")
    assert p.returncode == 0, p.stderr
    assert "Ablation, SEED" not in p.stdout and "--ablation --set training.nbEpoch=1" in p.stdout.splitlines()[-1]
    p = run_in_process(capsys, *common)
    assert p.returncode == 0, p.stderr
    folders = {"full model": "training.nbEpoch=1"}
    for name, override, _ in experiments.ABLATIONS[1:]:
        folders[name] = config.folder_name([override, "training.nbEpoch=1"])    # exactly as --set names it
    accuracy = {}
    for name, folder in folders.items():
        runs = sorted((root / "res" / folder / "runs").glob("sub*_ses1.json"))
        assert [q.name for q in runs] == ["sub01_ses1.json", "sub02_ses1.json"], folder
        accuracy[name] = [100 * json.loads(q.read_text())["accuracy"] for q in runs]
    assert p.stdout.count("1 already finished") == 6          # the shard's runs were reused
    table = p.stdout[p.stdout.index("Ablation, SEED, protocol trial"):]
    # the paper's bars as SPEC.md reads them off (not the table under test)
    paper = ("96.0 / 95.4", "92.8", "87.7", "94.0", "92.6", "88.3")
    for (name, override, _), value, line in zip(experiments.ABLATIONS, paper, table.splitlines()[2:8]):
        assert line.startswith(name) and (override or "-") in line and value in line
    out = root / "res" / "comparisons" / "training.nbEpoch=1_ablation"
    rows = list(csv.DictReader(open(out / "ablation.csv")))
    assert [r["configuration"] for r in rows] == [a[0] for a in experiments.ABLATIONS]
    for r in rows[1:]:
        d = np.array(accuracy[r["configuration"]]) - np.array(accuracy["full model"])
        assert float(r["difference_points"]) == pytest.approx(d.mean(), abs=1e-6)
        if (np.round(d, 9) != 0).any():
            assert float(r["wilcoxon_p"]) == pytest.approx(stats.wilcoxon(d).pvalue)
    assert sorted(q.name for q in out.iterdir()) == ["ablation.csv", "ablation.md", "ablation.png", "ablation.tex",
                                                    "paired_runs.csv"]


def test_ablation_table_pairs_each_configuration_with_the_full_model(tmp_path, capsys):
    """The table from six result folders: ours (seeds averaged per run), the between-seed std, the paper's
    value, the paired difference from the full model and its p; a configuration without runs says so."""
    from types import SimpleNamespace

    cfgs = []
    for i, (name, *_) in enumerate(experiments.ABLATIONS):
        folder = tmp_path / f"c{i}"
        cfgs.append(SimpleNamespace(path=SimpleNamespace(result_path=folder)))
        if i == 5:
            continue        # no finished run
        runs = [record(f"sub0{s}_ses1", 80 - 2 * i + s) for s in range(1, 7)]
        if i == 1:          # a second seed, 4 points above the first in every run
            runs += [record(f"sub0{s}_ses1_rep1", 80 - 2 + s + 4) for s in range(1, 7)]
        write_folder(folder, runs)
    assert experiments.ablation_table(cfgs, tmp_path / "out", "csv") == 0
    rows = {r["configuration"]: r for r in csv.DictReader(open(tmp_path / "out" / "ablation.csv"))}
    full, spectral = rows["full model"], rows[experiments.ABLATIONS[1][0]]
    assert float(full["accuracy_percent_mean"]) == pytest.approx(83.5) and full["difference_points"] == ""
    assert float(spectral["accuracy_percent_mean"]) == pytest.approx(83.5) and float(spectral["paper_percent"]) == 92.8
    assert float(spectral["seed_std_points"]) == pytest.approx(math.sqrt(8)) and full["seed_std_points"] == ""
    assert float(spectral["difference_points"]) == pytest.approx(0)
    temporal = rows[experiments.ABLATIONS[2][0]]
    assert float(temporal["difference_points"]) == pytest.approx(-4)
    assert float(temporal["wilcoxon_p"]) == pytest.approx(stats.wilcoxon(np.full(6, -4.0)).pvalue)
    assert rows[experiments.ABLATIONS[5][0]]["n_runs"] == "0"
    assert "no finished runs" in (tmp_path / "out" / "ablation.md").read_text()
    assert (tmp_path / "out" / "ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_ablation_refuses_what_would_mix_its_configurations(tmp_path):
    ini = write_ini(tmp_path / "a.ini", data={"input_width": 16}, model=TINY_MODEL)
    with pytest.raises(errors.UserError, match="--ablation sets model.attention itself"):
        run.main(["-c", str(ini), "--ablation", "--set", "model.attention=none"])
    with pytest.raises(errors.UserError, match="--result-path would put all six in one folder"):
        run.main(["-c", str(ini), "--ablation", "--result-path", str(tmp_path / "x")])
    with pytest.raises(errors.UserError, match=r"\[path\] result_path: set by --set, it would hold all six"):
        run.main(["-c", str(ini), "--ablation", "--set", f"path.result_path={tmp_path / 'x'}"])
    with pytest.raises(errors.UserError, match="the ablation starts from the full model"):
        run.main(["-c", str(write_ini(tmp_path / "b.ini", model={**TINY_MODEL, "streams": "spectral"})), "--ablation"])
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- finding a run


def test_checkpoint_not_found_names_the_folders_that_hold_the_run(tmp_path):
    ini = write_ini(tmp_path / "a.ini", path={"result_path": tmp_path / "res"}, data={"input_width": 16},
                    model=TINY_MODEL)
    held = tmp_path / "res" / "training.nbEpoch=3"
    (held / "checkpoints").mkdir(parents=True)
    (held / "checkpoints" / "sub01_ses1.pt").write_bytes(b"")
    fileio.write_json(held / "summary.json", {"overrides": ["training.nbEpoch=3"]})
    with pytest.raises(errors.UserError, match=re.escape(
            f"{tmp_path}/res/checkpoints/sub01_ses1.pt: checkpoint not found; sub01_ses1 is in {held} (trained with "
            f"--set training.nbEpoch=3): repeat the --set values it was trained with, or give --result-path with its "
            f"folder")):
        run.main(["-c", str(ini), "--predict", "sub01_ses1", "--subjects", "1", "--sessions", "1"])
    with pytest.raises(errors.UserError, match=re.escape("sub02_ses1.pt: checkpoint not found")):   # nowhere
        run.main(["-c", str(ini), "--predict", "sub02_ses1", "--subjects", "1", "--sessions", "1"])
    with pytest.raises(errors.UserError, match=re.escape(f"{held} (trained with --set training.nbEpoch=3)")):
        run.main(["-c", str(ini), "--set", "training.lr=0.01", "--explain", "sub01_ses1"])
