"""sst/reporting/studies.py: --paper-table and --protocol-price train (or reuse) their configurations, then print
and write one paired table; from folders trained before they give the same numbers, and their p-values are
scipy's."""
import csv
import json

import numpy as np
import pytest
from scipy import stats

import run
from conftest import TINY_MODEL, fake_run, run_cli, run_in_process, write_ini
from sst import fileio
from sst.data import synthetic
from sst.models import kinds
from sst.reporting import studies
from sst.training import runspec


@pytest.fixture(scope="module")
def six_subjects(tmp_path_factory):
    """Six synthetic SEED subjects, one session, DE and raw segments preprocessed without maps."""
    root = tmp_path_factory.mktemp("six")
    synthetic.write_seed(root / "SEED", subjects=tuple(range(1, 7)), sessions=(1,), trial_fraction=0.03, seed=0)
    ini = write_ini(root / "six.ini", path={"dataset_root": root / "SEED", "preprocessed_root": root / "pre",
                                            "result_path": root / "res"},
                    data={"input_width": 16}, model=TINY_MODEL, training={"nbEpoch": 1, "num_threads": 1})
    p = run_cli("Preprocess.py", "-c", str(ini), "--no-maps")
    assert p.returncode == 0, p.stderr
    return root, ini


def finished_folders(ini, flag: str, rows, accuracy: dict[str, list[float]]) -> None:
    """Write, as finished runs, the records of every configuration a study would train (their own result
    folders, keys and code identities), with the given accuracy per subject (percent)."""
    args = run.parse_arguments(["-c", str(ini), flag])
    for name, override in rows:
        cfg = run.resolve_config(type(args)(**{**vars(args), "set": [override] if override else None}))
        out = kinds.result_dir(cfg, precision="float32")
        for subject, acc in enumerate(accuracy[name], start=1):
            correct = round(acc)
            record = {**fake_run(subject, 1, protocol=cfg.training.protocol), "accuracy": correct / 100,
                      "seconds": 1.0, "config_key": out.config_key, "code": out.code, "model": cfg.model.name}
            cm = np.zeros((3, 3), dtype=int)
            cm[0, 0], cm[0, 1] = correct, 100 - correct
            record.update(confusion_matrix=cm.tolist(), n_test=100)
            fileio.write_json(out.run_json(runspec.RunSpec(subject, 1)), record)


def rows_of(path) -> dict[str, dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {r[next(iter(r))]: r for r in rows}


ACCURACY = {"SST-EmotionNet": [80, 70, 90, 85, 75, 95], "SVM": [60, 72, 65, 80, 50, 70],
            "DGCNN": [78, 66, 91, 80, 70, 92]}


def test_the_paper_table_from_folders_trained_before(six_subjects, capsys):
    root, ini = six_subjects
    rows = [(kinds.KINDS[k].paper_row, None if k == "sst_emotionnet" else f"model.name={k}")
            for k in studies.PAPER_TABLE]
    finished_folders(ini, "--paper-table", rows, ACCURACY)
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--paper-table")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("6 already finished") == 3           # nothing trained: the folders are reused
    out = root / "comparisons" / "res_paper_table"
    assert sorted(q.name for q in out.iterdir()) == ["paired_runs.csv", "paper_table.csv", "paper_table.md",
                                                    "paper_table.png", "paper_table.tex"]
    table = rows_of(out / "paper_table.csv")
    assert list(table) == ["SST-EmotionNet", "SVM", "DGCNN"]
    assert float(table["SVM"]["paper_percent_mean"]) == 83.99 and float(table["DGCNN"]["paper_percent_mean"]) == 90.4
    for name in ("SVM", "DGCNN"):
        d = np.array(ACCURACY[name], float) - np.array(ACCURACY["SST-EmotionNet"], float)
        assert float(table[name]["difference_points"]) == pytest.approx(d.mean())
        assert float(table[name]["wilcoxon_p"]) == pytest.approx(stats.wilcoxon(d).pvalue)
    assert "compare it with protocol paper" in p.stdout and "protocol trial" in p.stdout
    again = run_in_process(capsys, "run.py", "-c", str(ini), "--paper-table")
    assert again.returncode == 0 and rows_of(out / "paper_table.csv") == table


def test_the_protocol_price_from_folders_trained_before(six_subjects, capsys):
    root, ini = six_subjects
    prices = {"trial": [60, 62, 58, 70, 65, 61], "paper": [64, 63, 62, 74, 66, 65], "random": [90, 92, 88, 95, 91, 93]}
    rows = [(name, None if name == "trial" else f"training.protocol={name}") for name in studies.PRICED]
    finished_folders(ini, "--protocol-price", rows, prices)
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--protocol-price", "--format", "markdown")
    assert p.returncode == 0, p.stderr
    table = rows_of(root / "comparisons" / "res_protocol_price" / "protocol_price.csv")
    assert list(table) == ["trial", "paper", "random"]
    assert [table[n]["note"] for n in table] == ["honest", "OPTIMISTIC", "LEAKY"]
    for name in ("paper", "random"):
        d = np.array(prices[name], float) - np.array(prices["trial"], float)
        assert float(table[name]["difference_points"]) == pytest.approx(d.mean())
        assert float(table[name]["wilcoxon_p"]) == pytest.approx(stats.wilcoxon(d).pvalue)
    assert "| random |" in p.stdout                                   # --format markdown on standard output


def test_a_study_refuses_what_it_sets_itself(six_subjects, capsys):
    _, ini = six_subjects
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--paper-table", "--set", "model.name=dgcnn")
    assert p.returncode == 1 and "--paper-table sets model.name itself" in p.stderr
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--protocol-price", "--result-path", "/tmp/x")
    assert p.returncode == 1 and "--protocol-price puts each configuration in the subfolder" in p.stderr
    p = run_in_process(capsys, "run.py", "-c", str(ini), "--protocol-price", "--ablation")
    assert p.returncode == 1 and "one at a time" in p.stderr


@pytest.mark.slow
def test_both_studies_train_what_is_missing_then_print_their_tables(tmp_path, capsys):
    """Fresh folders: each configuration trains (one epoch), then the table; a rerun trains nothing."""
    from conftest import tiny_seed_tree

    root, ini = tiny_seed_tree(tmp_path)
    for flag, stem, count in (("--paper-table", "paper_table", 3), ("--protocol-price", "protocol_price", 3)):
        p = run_in_process(capsys, "run.py", "-c", str(ini), flag, "--set", "training.nbEpoch=1")
        assert p.returncode == 0, p.stderr
        out = root / "res" / "comparisons" / f"training.nbEpoch=1_{stem}"
        first = (out / f"{stem}.csv").read_text()
        again = run_in_process(capsys, "run.py", "-c", str(ini), flag, "--set", "training.nbEpoch=1")
        assert again.stdout.count("2 already finished") == count and (out / f"{stem}.csv").read_text() == first
    summary = root / "res" / "model.name=dgcnn,training.nbEpoch=1" / "summary.json"
    assert json.loads(summary.read_text())["model"] == "dgcnn"
    digests = {}    # the three models of the paper table were tested on the same windows; random on others
    for folder in ("training.nbEpoch=1", "model.name=dgcnn,training.nbEpoch=1", "model.name=linear_svm,training.nbEpoch=1",
                   "training.nbEpoch=1,training.protocol=random"):
        for path in sorted((root / "res" / folder / "runs").glob("*.json")):
            digests.setdefault(folder, []).append(json.loads(path.read_text())["test_digest"])
    assert len({tuple(d) for f, d in digests.items() if "random" not in f}) == 1 and len(digests) == 4
    assert not set(digests["training.nbEpoch=1,training.protocol=random"]) & set(digests["training.nbEpoch=1"])
