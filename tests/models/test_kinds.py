"""sst/models/kinds.py: the model-kind registry. Every kind answers what the rest of the code asks; an unknown
[model] name is one error naming where it was set; a new kind is one entry, and it trains, summarizes and
predicts through run.py unchanged."""
import json

import numpy as np
import pytest
import torch

import run
from conftest import ROOT, TINY_MODEL, run_in_process, tiny_seed_tree, write_ini
from sst import config, errors
from sst.models import kinds


@pytest.fixture
def cfg():
    return config.load_config(ROOT / "SEED.ini").replace(data={"input_width": 16, "temInput_length": 9},
                                                         model={k: int(v) for k, v in TINY_MODEL.items()})


def test_the_registered_kinds_and_what_they_read(cfg):
    assert list(kinds.KINDS) == ["sst_emotionnet", "dgcnn", "linear_svm", "logistic_regression"]
    assert kinds.of(cfg) is kinds.NETWORK and kinds.NETWORK.sources(cfg) == {"spectral": "de", "temporal": "eeg"}
    svm = cfg.replace(model={"name": "linear_svm"})
    assert kinds.of(svm).sources(svm) == {"de": "de"}
    assert [k.paper_row for k in kinds.KINDS.values()] == ["SST-EmotionNet", "DGCNN", "SVM", "SVM"]
    assert kinds.NETWORK.has_attention and kinds.NETWORK.ablatable
    assert not any(k.has_attention or k.ablatable for k in kinds.KINDS.values() if k is not kinds.NETWORK)


def test_an_unknown_model_name_is_one_error_naming_where_it_was_set(tmp_path):
    ini = write_ini(tmp_path / "a.ini", model={"name": "svm"})
    with pytest.raises(errors.ConfigError, match=r"a.ini: \[model\] name: expected one of sst_emotionnet, dgcnn, "
                                                 r"linear_svm, logistic_regression, got 'svm'"):
        kinds.of(config.load_config(ini))
    cfg = config.load_config(ROOT / "SEED.ini", ["model.name=svm"])
    with pytest.raises(errors.ConfigError, match=r"--set model.name=svm: \[model\] name: expected one of"):
        kinds.of(cfg)


def test_precision_is_the_kinds(cfg):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert kinds.NETWORK.precision(cuda, cfg) == "bf16" and kinds.NETWORK.precision(cpu, cfg) == "float32"
    assert kinds.get("linear_svm").precision(cuda, cfg) == "float32"       # scikit-learn, on the CPU


def test_result_lines_are_the_kinds():
    record = {"run": "sub01_ses1", "accuracy": 0.5, "macro_f1": 0.4, "kappa": 0.2, "wall_seconds": 3.0,
              "best_epoch": 2, "epochs_run": 5, "model": "linear_svm", "C": 0.1}
    assert "best epoch 2/5" in run.result_line({**record, "model": "sst_emotionnet"})
    assert "linear_svm C 0.1" in run.result_line(record)
    assert "best epoch 2/5" in run.result_line({k: v for k, v in record.items() if k != "model"})   # earlier records


@pytest.mark.slow
def test_a_new_kind_is_one_entry_and_reaches_every_command(tmp_path, monkeypatch, capsys):
    """A nearest-centroid classifier (scikit-learn's, as a linear map) registered as one entry: run.py trains
    it under the protocol's split, summarizes it, names it in its table and predicts with its checkpoint."""
    from sklearn.neighbors import NearestCentroid

    class Centroids(NearestCentroid):
        """Nearest centroid as the linear map baselines save: argmax of x . c - |c|^2 / 2 per class."""

        def __init__(self, C=1.0, random_state=None):
            super().__init__()
            self.C, self.random_state = C, random_state

        def fit(self, x, y):
            super().fit(x, y)
            self.coef_ = self.centroids_
            self.intercept_ = -0.5 * (self.centroids_ ** 2).sum(1)
            return self

        def decision_function(self, x):
            return x @ self.coef_.T + self.intercept_

    monkeypatch.setitem(kinds.KINDS, "nearest_centroid",
                        kinds.LinearBaseline("nearest_centroid", lambda C, seed: Centroids(C, seed)))
    root, ini = tiny_seed_tree(tmp_path)
    args = ["-c", str(ini), "--set", "model.name=nearest_centroid", "--result-path", str(tmp_path / "res")]
    p = run_in_process(capsys, "run.py", *args)
    assert p.returncode == 0, p.stderr
    assert "nearest_centroid, ours" in p.stdout
    record = json.loads((tmp_path / "res" / "runs" / "sub01_ses1.json").read_text())
    assert record["model"] == "nearest_centroid" and "sst.models.baselines.fit" in record["code"]
    assert not any(name.startswith("model.") for name in record["code"])
    p = run_in_process(capsys, "run.py", *args, "--predict", "sub01_ses1", "--subjects", "1", "--sessions", "1")
    assert p.returncode == 0, p.stderr
    rows = (tmp_path / "res" / "predictions" / "sub01_ses1_on_sub01_ses1.csv").read_text().splitlines()[1:]
    test = [r.split(",") for r in rows if r.endswith(",test")]
    assert test and np.isclose(np.mean([r[2] == r[3] for r in test]), record["accuracy"])
