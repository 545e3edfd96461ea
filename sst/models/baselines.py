"""Classical baselines in the network's protocol: a linear SVM or logistic regression on flattened DE features.

    python run.py -c SEED.ini --set model.name=linear_svm            # results/SEED/model.name=linear_svm/
    python run.py -c SEED.ini --set model.name=logistic_regression
    python run.py --compare results/SEED results/SEED/model.name=linear_svm    # the network beside it

The paper's table 1 opens with an SVM on DE features (83.99% SEED), and the first question a reviewer asks
of a network is whether it beats a linear model on the same split. What is the same as the network's:
  * the runs (subject-sessions, loso folds, cross_session sessions), the split (the protocol's entry, so
    the same training, validation and test windows under every protocol) and the seeds (runspec.run_seed);
  * the inputs' normalisation: each window's DE features (Session.de, (N, 62, bands), unnormalised) z-scored
    per electrode and band with the training windows' statistics (inputs.normalise_run; [training]
    normalization = none skips it), then flattened electrode-major to (N, 62 * bands) = (N, 310);
  * the validation rule: the regularisation constant C is chosen from C_GRID by accuracy on the protocol's
    validation windows (the network chooses its checkpoint by it), ties to the smaller C (the simpler
    model). Under protocol `paper` those are the TEST windows, as for the network: optimistic, as the
    authors. Without validation windows (val_trials_per_class = 0) C is sklearn's default, 1. The model
    kept is the one fitted on the training windows: it never sees the validation windows, as the network.
  * the files: runs/<run>.json with the network's fields (accuracy, macro-F1, kappa, per_class, confusion,
    warnings, ...), so --summarize, --compare and --predict work unchanged.
What differs, and why:
  * no epochs: history is [], epochs_run and best_epoch 0 (the solvers run to convergence); the record's
    "selection" lists the grid's C with training and validation accuracy, "C" the one chosen;
  * test_loss is the cross-entropy of the probabilities --predict writes: logistic regression's own
    (predict_proba), the SVM's softmax of its decision values (scores, not calibrated probabilities);
  * the checkpoint holds the linear map as tensors (weight (n_class, 310), bias; float64), the config and
    the normalisation statistics: no pickled scikit-learn object, so it loads with weights_only.
Why scikit-learn: LinearSVC (liblinear; squared hinge, L2, one-vs-rest) and LogisticRegression (lbfgs,
multinomial, L2) are the solvers the EEG literature's SVM baselines run (LibEER's included), exact and known
to a reviewer; on 2 CPU cores a full SEED protocol (45 runs of about 3,400 windows x 310 features, 7 values
of C each) takes a few minutes. It is imported only when a baseline is trained.
"""
from __future__ import annotations

import importlib
import math
import time
import warnings

import numpy as np
import torch

from sst.config import Config
from sst.data import inputs
from sst.errors import DataError, UserError
from sst.results import checkpoints, records, store
from sst.training import protocols, runspec

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)   # decades around sklearn's default 1
DEFAULT_C = 1.0   # without validation windows: sklearn's default


def _sklearn(name: str):
    """A scikit-learn class by its import path; UserError if scikit-learn is not installed."""
    module, _, cls = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError:
        raise UserError(f"{cls} needs scikit-learn: pip install -r requirements.txt") from None


def linear_svm(C: float, seed: int):
    """LinearSVC (liblinear; squared hinge, L2, one-vs-rest), primal: deterministic, and windows >> 310 features."""
    return _sklearn("sklearn.svm.LinearSVC")(C=C, dual=False, max_iter=10_000, random_state=seed)


def logistic_regression(C: float, seed: int):
    """LogisticRegression (lbfgs, multinomial, L2)."""
    return _sklearn("sklearn.linear_model.LogisticRegression")(C=C, max_iter=2_000, random_state=seed)


def features(cfg: Config, parts: list, split: protocols.Split) -> tuple[np.ndarray, dict]:
    """(N, 62 * bands) float64 flattened DE of the pooled sessions, z-scored with the training windows'
    statistics (as the network's inputs), and those statistics (saved in the checkpoint)."""
    de = np.concatenate([np.asarray(s.de, dtype=np.float32) for s in parts])
    stats = {}
    if cfg.training.normalization == "electrode":
        arrays, stats = inputs.normalise_run({"de": de}, split.train)
        de = arrays["de"]
    return de.reshape(len(de), -1).astype(np.float64), stats


def fit(cfg: Config, spec: runspec.RunSpec, x: np.ndarray, label: np.ndarray, split: protocols.Split, estimator):
    """Fit one classifier per C of C_GRID on the training windows (`estimator(C, seed)`: an unfitted scikit-learn
    classifier with coef_ and intercept_ once fitted, the model kind's); keep the best on validation accuracy.

    Returns (the chosen fitted classifier, its C, the grid's rows {C, train_accuracy, val_accuracy,
    seconds}, warnings: a solver that did not converge at the chosen C)."""
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    seed = runspec.run_seed(cfg, spec)
    rows, fitted, unconverged = [], [], []
    for C in C_GRID if len(split.val) else (DEFAULT_C,):
        start = time.perf_counter()
        # (N, 310) products gain nothing from BLAS threads, and on a busy CPU they lose several times over
        with threadpool_limits(1), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                clf = estimator(C, seed).fit(x[split.train], label[split.train])
            except ValueError as e:      # e.g. a single class among the training windows
                raise DataError(f"{spec.name}: {cfg.model.name} cannot be fitted ({e})") from None
            row = {"C": C, "train_accuracy": float(clf.score(x[split.train], label[split.train]))}
            if len(split.val):
                row["val_accuracy"] = float(clf.score(x[split.val], label[split.val]))
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        fitted.append(clf)
        unconverged.append(any("converge" in str(w.message).lower() for w in caught))
    best = max(range(len(rows)), key=lambda i: (rows[i].get("val_accuracy", 0.0), -rows[i]["C"]))   # ties: smaller C
    problems = [f"{cfg.model.name} did not converge at the chosen C = {rows[best]['C']:g}"] if unconverged[best] else []
    return fitted[best], rows[best]["C"], rows, problems


def train_run(cfg: Config, spec: runspec.RunSpec, sessions: list, out, progress, estimator, k: int = 1,
              n: int = 1) -> dict:
    """Fit, select and test one baseline run (a kinds.LinearBaseline entry's train_run, `estimator` its
    estimator); write its checkpoint, then its record (last: it marks the run finished). Returns the record."""
    start = time.perf_counter()
    parts, label, split = protocols.run_split(cfg, spec, sessions)
    x, stats = features(cfg, parts, split)
    clf, C, grid, problems = fit(cfg, spec, x, label, split, estimator)
    net = LinearDE.from_classifier(clf)
    with torch.no_grad():
        logits = net(torch.from_numpy(x[split.test]))
    probabilities = torch.softmax(logits, dim=1).numpy()
    truth = label[split.test]
    predicted = probabilities.argmax(1)
    test_loss = float(-np.mean(np.log(np.clip(probabilities[np.arange(len(truth)), truth], 1e-300, None))))
    chosen = next(row for row in grid if row["C"] == C)
    val = f", validation {100 * chosen['val_accuracy']:.1f}%" if "val_accuracy" in chosen else ", no validation windows"
    print(f"[{k}/{n}] {spec.name} {cfg.model.name}: C {C:g} chosen of {len(grid)}{val}", flush=True)
    progress.run_ended(cfg.training.nbEpoch)        # no epochs: the ETA's planned epochs go back
    pools = {"subject_pool": protocols.subject_pool(parts), "session_pool": protocols.session_pool(parts)}
    # no optimizer steps to count (the solver runs to convergence): 100 keeps the step warning out
    record = records.run_record(cfg, spec, out, truth, predicted, test_loss, split, pools, steps=100,
                                seconds=sum(row["seconds"] for row in grid),
                                wall_seconds=time.perf_counter() - start, device="cpu", warnings=problems,
                                C=C, selection=grid)
    checkpoint = {"model": net.state_dict(), "config": cfg.to_dict(), "run": spec.name, "subject": spec.subject,
                  "session": spec.session, "epoch": 0, "C": C, "normalization": checkpoints.as_tensors(stats),
                  **pools, "code": out.code, "precision": out.precision}
    store.write_result(out, spec, checkpoint, record)
    return record


def result_line(r: dict) -> str:
    """run.py's line for a finished baseline run (the network's names its best epoch instead of C)."""
    return (f"{r['run']}: accuracy {100 * r['accuracy']:.2f}%  macro-F1 {r['macro_f1']:.3f}  kappa {r['kappa']:.3f}  "
            f"{r.get('model', 'baseline')} C {r.get('C', math.nan):g}  {r['wall_seconds']:.1f} s")


# ----------------------------------------------------------------------------- the fitted model


class LinearDE(torch.nn.Module):
    """A fitted baseline as a module: logits (B, n_class) = flattened z-scored DE (B, n_features) @ W.T + b.

    float64, as scikit-learn computes: --predict gives the predictions the run was scored with."""

    sources = {"de": "de"}     # the source array it reads (trained.TrainedModel.source_arrays)

    def __init__(self, n_features: int, n_class: int):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, n_class, dtype=torch.float64)

    def forward(self, de: torch.Tensor) -> torch.Tensor:
        return self.linear(de.flatten(1).to(torch.float64))

    @classmethod
    def from_classifier(cls, clf) -> "LinearDE":
        coef, intercept = np.atleast_2d(clf.coef_), np.atleast_1d(clf.intercept_)
        net = cls(coef.shape[1], coef.shape[0])
        net.linear.weight.data = torch.from_numpy(coef.astype(np.float64))
        net.linear.bias.data = torch.from_numpy(intercept.astype(np.float64))
        return net.requires_grad_(False).eval()
