"""utils.py: what a notebook calls, gathered from the package (the same functions, not copies)."""
import utils
from sst import config, plugins, runtime
from sst.data import session_store
from sst.models import trained


def test_utils_gathers_the_packages_functions():
    assert set(utils.__all__) == {"load_config", "load_sessions", "import_plugins", "TrainedModel", "load_trained",
                                  "predict_probabilities", "keep_freed_memory", "resolve_device", "set_seed"}
    assert utils.load_config is config.load_config and utils.load_sessions is session_store.load_preprocessed
    assert utils.import_plugins is plugins.import_plugins and utils.set_seed is runtime.set_seed
    assert utils.load_trained is trained.load_trained and utils.TrainedModel is trained.TrainedModel
    assert all(callable(getattr(utils, name)) for name in utils.__all__)
