"""sst/models/baselines.py: the classical baselines, C chosen on validation, through every command."""
import csv
import json
import re

import numpy as np
import pytest

from conftest import run_in_process, tiny_seed_tree, write_ini
from sst import config
from sst.models import baselines
from sst.training import protocols, runspec


def test_baseline_chooses_C_on_validation_accuracy(tmp_path):
    cfg = config.load_config(write_ini(tmp_path / "a.ini", model={"name": "logistic_regression"}))
    rng = np.random.default_rng(0)
    label = np.repeat([0, 1, 2], 40)
    x = rng.normal(size=(120, 310))
    x[:, :3] += 4 * np.eye(3)[label]                     # nearly separable: several C tie on validation
    split = protocols.Split(np.arange(0, 120, 2), np.arange(1, 120, 4), np.arange(3, 120, 4))
    clf, C, grid, problems = baselines.fit(cfg, runspec.RunSpec(1, 1), x, label, split,
                                           baselines.logistic_regression)
    assert [row["C"] for row in grid] == list(baselines.C_GRID)
    best = max(row["val_accuracy"] for row in grid)
    assert C == min(row["C"] for row in grid if row["val_accuracy"] == best)      # ties: the smaller C
    net = baselines.LinearDE.from_classifier(clf)
    import torch

    probabilities = torch.softmax(net(torch.from_numpy(x)), 1).numpy()
    assert np.allclose(probabilities, clf.predict_proba(x), atol=1e-10)        # the checkpoint is the classifier
    no_validation = protocols.Split(split.train, split.val[:0], split.test)
    _, C, grid, _ = baselines.fit(cfg, runspec.RunSpec(1, 1), x, label, no_validation, baselines.logistic_regression)
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
