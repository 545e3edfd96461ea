"""Experiments a researcher can publish: --compare, --ablation, the classical baselines, repeats, --format."""
import csv
import json
import math
import re

import numpy as np
import pytest
from scipy import stats

import run
from conftest import TINY_MODEL, record, run_in_process, tiny_seed_tree, write_folder, write_ini
from sst import config, errors, fileio
from sst.reporting import experiments

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
    # every row over the runs all folders hold: not the first folder's unpaired sub09 (issue 34)
    assert float(rows["net"]["accuracy_percent_mean"]) == pytest.approx(acc_a.mean()) and rows["net"]["n_paired"] == "8"
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


def test_compare_rows_name_the_variant_count_seeds_honestly_and_take_labels(tmp_path, capsys):
    """The model column said sst_emotionnet for a plugin variant, the seeds column the most any run had; now
    the [model] keys that differ from the first folder's (its summary.json), seeds as a range with a note,
    and --label names the rows."""
    a, b = tmp_path / "full", tmp_path / "model.attention_block=gate,model.plugins=my_variants.py"
    write_folder(a, [record(f"sub0{s}_ses1", 60 + s) for s in (1, 2, 3)])
    write_folder(b, [record(f"sub0{s}_ses1", 62 + s) for s in (1, 2, 3)] + [record("sub01_ses1_rep1", 70)])
    model = {"name": "sst_emotionnet", "attention_block": "a3db", "plugins": []}
    for folder, changes in ((a, {}), (b, {"attention_block": "gate", "plugins": ["/x/my_variants.py"]})):
        fileio.write_json(folder / "summary.json", {"config_key": "k" * 16, "config": {"model": {**model, **changes}}})
    assert run.main(["--compare", str(a), str(b), "--label", "A3DB", "--label", "Gate", "--format", "csv",
                     "--out", str(tmp_path / "cmp")]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [(r["folder"], r["model"], r["seeds"]) for r in rows] == [
        ("A3DB", "sst_emotionnet", "1"), ("Gate", "sst_emotionnet: attention_block gate; plugins my_variants.py", "1-2")]
    notes = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "Gate: 1 of 3 runs 2 seeds, 2 of 3 runs 1 seed" in notes and "the same 3 subject-sessions" in notes
    with pytest.raises(errors.UserError, match="--label: 3 labels for 2 folders"):
        run.main(["--compare", str(a), str(b), "--label", "x", "--label", "y", "--label", "z"])


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


# ----------------------------------------------------------------------------- baselines


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
