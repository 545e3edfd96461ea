"""sst/data/datasets.py: each dataset entry's facts, pinned against the datasets' documentation (SEED_FORMAT.md)."""


from sst.data import datasets, electrodes


def test_dataset_tables():
    assert sum(datasets.get("SEED").trial_windows[1]) == 3394
    assert [sum(datasets.get("SEED-IV").trial_windows[s]) for s in datasets.SEED.sessions] == [851, 832, 822]
    assert datasets.get("SEED").trial_labels[1][:3] == (2, 1, 0)  # label.mat 1, 0, -1
    for dataset in datasets.DATASETS:
        n_trials = len(datasets.get(dataset).trial_labels[1])
        assert n_trials == {"SEED": 15, "SEED-IV": 24}[dataset]
        assert datasets.get(dataset).n_train_trials < n_trials
        assert datasets.get(dataset).n_classes == {"SEED": 3, "SEED-IV": 4}[dataset]
        for s in datasets.SEED.sessions:
            assert len(datasets.get(dataset).trial_labels[s]) == len(datasets.get(dataset).trial_windows[s]) == n_trials
            assert set(datasets.get(dataset).trial_labels[s]) == set(range(datasets.get(dataset).n_classes))
        assert sorted(datasets.get(dataset).subjects) == list(range(1, 16))
        for prefix, dates in datasets.get(dataset).subjects.values():
            assert len(dates) == 3 and list(dates) == sorted(dates, key=int)
        assert len(datasets.get(dataset).bands_hz) == len(electrodes.BANDS)
