"""The project from Python (a notebook, a script of your own): the calls a researcher needs, in one place.

    import utils                                   # from the repository root, or with it on sys.path
    cfg = utils.load_config("SEED.ini", ["training.nbEpoch=5"])        # the INI file, as run.py reads it
    net, cfg, stats = utils.load_trained("results/SEED/checkpoints/sub01_ses1.pt")   # eval mode
    session, = utils.load_sessions(cfg, subjects=[1], sessions=[2])    # preprocessed, memory-mapped
    utils.predict_probabilities(net, cfg, stats, session)              # (N, nb_class)
    utils.TrainedModel.load(path)                  # the same, with attention weights and the checkpoint's fields
    utils.set_seed(0); utils.import_plugins(["my_variants.py"]); utils.resolve_device("auto")

Each name is defined in the package `sst/` (docs/architecture.md says where); this file only gathers the ones
a user calls, so that a notebook needs one import. The scripts (run.py, Preprocess.py, model.py) and the
package never import it.
"""
from sst.config import load_config
from sst.data.session_store import load_preprocessed as load_sessions
from sst.models.trained import TrainedModel, load_trained, predict_probabilities
from sst.plugins import import_plugins
from sst.runtime import keep_freed_memory, resolve_device, set_seed

__all__ = ["load_config", "load_sessions", "import_plugins", "TrainedModel", "load_trained", "predict_probabilities", "keep_freed_memory",
           "resolve_device", "set_seed"]
