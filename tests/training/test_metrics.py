"""sst/training/metrics.py: scores against hand computation, and the warnings a result carries."""

import numpy as np
import pytest

from conftest import ROOT
from sst import config
from sst.training import metrics


def test_scores_match_hand_computation():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    cm = metrics.confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = metrics.scores(cm)
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # p_observed 2/3, p_chance (2*2 + 2*3 + 2*1) / 36 = 1/3
    assert s["kappa"] == pytest.approx(0.5)


def test_a_collapsed_run_is_flagged():
    cfg = config.load_config(ROOT / "SEED.ini")
    assert metrics.result_warnings(cfg, np.array([2, 2, 2]), 500) == [
        "every test window predicted as class 2 (positive): the model collapsed to one class"]
    assert metrics.result_warnings(cfg, np.array([0, 2, 1]), 500) == []
