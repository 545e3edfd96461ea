"""sst/reporting/predictions.py: --predict's CSV and what each window was to the run (its protocol's roles)."""
from __future__ import annotations

import run
from conftest import (
    copy_of_results,
)


def test_predictions_mark_the_windows_the_run_trained_on(finished, tmp_path, capsys):
    """--predict on the run's own session: a warning with the test-only accuracy, and the CSV's split column
    (the trial protocol: trials 1-9 train or validation, 10-15 test); on another subject's session: unseen."""
    from sst.data import datasets

    args = copy_of_results(finished, tmp_path)
    assert run.main([*args, "--predict", "sub01_ses1", "--subjects", "1", "--sessions", "1"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: sub01_ses1 trained on this session (protocol trial): ") and "test windows only" in err
    rows = [line.split(",") for line in (tmp_path / "res" / "predictions" / "sub01_ses1_on_sub01_ses1.csv").read_text().splitlines()]
    assert rows[0][-1] == "split" and rows[0][:4] == ["trial", "window", "true_label", "predicted_label"]
    trained = {row[-1] for row in rows[1:] if int(row[0]) <= datasets.get("SEED").n_train_trials}
    assert trained == {"train", "validation"} and {row[-1] for row in rows[1:] if int(row[0]) > 9} == {"test"}
    assert run.main([*args, "--predict", "sub01_ses1", "--subjects", "2", "--sessions", "1"]) == 0
    assert capsys.readouterr().err == ""
    rows = (tmp_path / "res" / "predictions" / "sub01_ses1_on_sub02_ses1.csv").read_text().splitlines()
    assert {line.rsplit(",", 1)[1] for line in rows[1:]} == {"unseen"}
