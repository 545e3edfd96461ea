"""The library behind the scripts at the repository root (run.py, Preprocess.py, model.py): one package in parts.

    sst/data/       the datasets (one entry each), their files, preprocessed sessions, the maps the network reads
    sst/models/     model kinds (the network, the classical baselines): how each is built, fitted, saved, loaded
    sst/training/   protocols (splits and model selection), runs, the training loop, metrics, sharding
    sst/results/    the result folder (records, locks, partial states), checkpoints, what made a result
    sst/reporting/  summaries, tables, figures, paired comparisons, predictions

Nothing in it imports a script, except that a model kind builds the network model.py defines.
docs/architecture.md follows one result from SEED.ini to the table.
"""
