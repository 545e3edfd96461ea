"""The datasets: one entry per dataset, holding every fact this project knows about it.

    from sst.data import datasets
    seed = datasets.get("SEED")            # the entry of [data] dataset = SEED
    seed.class_names, seed.n_classes       # ("negative", "neutral", "positive"), 3
    seed.n_train_trials                    # 9: the standard split, trials 1-9 train, 10-15 test
    seed.trial_labels[1]                   # session 1: 0-based class of each trial
    seed.paper.get("SST-EmotionNet")       # (96.02, 2.17): the paper's table 1, mean and std %; absent: {}

An entry knows its subjects (with the raw files' key prefixes and the session dates), sessions, trials,
labels, trial lengths, split sizes, band edges, folder and file layout, and the paper's numbers where
published. The electrodes and their grid are shared by both (sst.data.electrodes); the files are read by
sst.data.readers, which asks the entry how they are laid out. config.py takes [data] dataset's choices
from DATASETS; a new dataset is one entry here (and its tests, tests/data/test_datasets.py).

Folder layout (the real one, which sst.data.synthetic also writes):
    SEED/ExtractedFeatures/ (or ExtractedFeatures_1s/)   <subject>_<YYYYMMDD>.mat, label.mat
    SEED/Preprocessed_EEG/                                <subject>_<YYYYMMDD>.mat, label.mat
    SEED_IV/eeg_feature_smooth/<session>/                 <subject>_<YYYYMMDD>.mat
    SEED_IV/eeg_raw_data/<session>/                       <subject>_<YYYYMMDD>.mat
    SEED_IV/ReadMe.txt                                    sessionK_label = [...];
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sst.errors import ConfigError


@dataclass(frozen=True, eq=False)
class Dataset:
    """Everything about one dataset as the BCMI lab distributes it. Tuples are indexed by trial - 1."""

    name: str                                  # [data] dataset
    class_names: tuple[str, ...]               # 0-based class -> name
    window_s: int                              # seconds per DE window = per sample; never mix two datasets
    bands_hz: tuple[tuple[int, int], ...]      # the five DE bands' edges (delta .. gamma)
    n_train_trials: int                        # the standard split: the first trials train, the rest test
    subjects: dict[int, tuple[str, tuple[str, ...]]]   # subject -> (raw files' key prefix, session dates)
    sessions: tuple[int, ...]
    trial_labels: dict[int, tuple[int, ...]]   # session -> 0-based class per trial
    trial_windows: dict[int, tuple[int, ...]]  # session -> DE windows per trial
    feature_folders: tuple[str, ...]           # the first that exists is used (releases differ)
    raw_folder: str
    feature_families: tuple[str, ...]          # <family>_<smoothing><trial> keys of a feature file, in order
    # How the files are laid out: sessions in one folder per session (SEED-IV), or told apart by the
    # file's date (SEED); labels in a label.mat beside the files (SEED) or ReadMe.txt lines (SEED-IV).
    session_folders: bool
    label_file: str                            # "label.mat" or "ReadMe.txt"
    label_values: tuple[int, ...] = ()         # label.mat's values per trial (SEED: -1/0/1), if it has one
    raw_slack: int = 0                         # raw EEG runs 1 to 1 + raw_slack samples past its last DE window
    subject_names: dict[str, int] = field(default_factory=dict)   # file names by subject name, if any copy uses them
    # The paper's table 1 (subject-dependent, mean and std accuracy %), by model row; {}: none published.
    paper: dict[str, tuple[float, float]] = field(default_factory=dict)
    # The paper's ablation (its bar charts, read off to about +-0.3): configuration -> accuracy %; {}: none.
    paper_ablation: dict[str, float | tuple[float, float]] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_trials(self) -> int:
        return len(self.trial_labels[self.sessions[0]])

    def training_facts(self) -> dict:
        """The facts a run's training reads (its split and its classes): part of a result's code identity
        (sst.results.provenance), so that a changed split never counts as "already finished"."""
        return {"name": self.name, "class_names": list(self.class_names), "n_train_trials": self.n_train_trials,
                "window_s": self.window_s}


SMOOTHINGS = ("movingAve", "LDS")   # of the feature files' keys: de_movingAve1, de_LDS1, ...

_SEED_LABEL_VALUES = (1, 0, -1, -1, 0, 1, -1, 0, 1, 1, 0, -1, 0, 1, -1)  # label.mat: 1 pos, 0 neu, -1 neg
_SEED_WINDOWS = (235, 233, 206, 238, 185, 195, 237, 216, 265, 237, 235, 233, 235, 238, 206)

SEED = Dataset(
    name="SEED",
    class_names=("negative", "neutral", "positive"),   # label.mat's -1 / 0 / 1, shifted by +1
    window_s=1,
    bands_hz=((1, 3), (4, 7), (8, 13), (14, 30), (31, 50)),
    n_train_trials=9,
    subjects={
        1: ("djc", ("20131027", "20131030", "20131107")),
        2: ("jl", ("20140404", "20140413", "20140419")),
        3: ("jj", ("20140603", "20140611", "20140629")),
        4: ("lqj", ("20140621", "20140702", "20140705")),
        5: ("ly", ("20140411", "20140418", "20140506")),
        6: ("mhw", ("20130712", "20131016", "20131113")),
        7: ("phl", ("20131027", "20131030", "20131106")),
        8: ("sxy", ("20140511", "20140514", "20140521")),
        9: ("wk", ("20140620", "20140627", "20140704")),
        10: ("ww", ("20131130", "20131204", "20131211")),
        11: ("wsf", ("20140618", "20140625", "20140630")),
        12: ("wyw", ("20131127", "20131201", "20131207")),
        13: ("xyl", ("20140527", "20140603", "20140610")),
        14: ("ys", ("20140601", "20140615", "20140627")),
        15: ("zjy", ("20130709", "20131016", "20131105")),
    },
    sessions=(1, 2, 3),
    trial_labels={s: tuple(v + 1 for v in _SEED_LABEL_VALUES) for s in (1, 2, 3)},
    # SEED: T 1-s windows a trial, raw N = 200*T + 1 samples
    trial_windows={s: _SEED_WINDOWS for s in (1, 2, 3)},
    # SEED's newer release calls the 1-s features ExtractedFeatures_1s
    feature_folders=("ExtractedFeatures", "ExtractedFeatures_1s"),
    raw_folder="Preprocessed_EEG",
    # rows: de/psd 62 electrodes, dasm/rasm 27 left-right pairs, asm 54, dcau 23 front-back pairs
    feature_families=("de", "psd", "dasm", "rasm", "asm", "dcau"),
    session_folders=False,
    label_file="label.mat",
    label_values=_SEED_LABEL_VALUES,
    # Some copies in circulation name the files after the subject (dujingcheng_20131027.mat, as public
    # loaders of SEED do) instead of numbering them (SEED_FORMAT.md). The names in alphabetical order are
    # subjects 1-15, and their initials are the key prefixes above: a file found by name must hold its
    # subject's prefix (readers.find_recordings sets Recording.prefix, read_raw checks it).
    subject_names={name: subject for subject, name in enumerate((
        "dujingcheng", "jianglin", "jingjing", "liuqiujun", "liuye", "mahaiwei", "penghuiling", "sunxiangyu",
        "wangkui", "weiwei", "wusifan", "wuyangwei", "xiayulu", "yansheng", "zhujiayi"), start=1)},
    paper={"SST-EmotionNet": (96.02, 2.17), "SVM": (83.99, 9.72), "DGCNN": (90.40, 8.49), "BiHDM": (93.12, 6.06),
           "RGNN": (94.24, 5.95)},
    # the full model is 96.0 in the streams chart, 95.4 in the attention chart
    paper_ablation={"full model": (96.0, 95.4), "spectral stream only": 92.8, "temporal stream only": 87.7,
                    "spectral/temporal attention only": 94.0, "spatial attention only": 92.6, "no attention": 88.3},
)

SEED_IV = Dataset(
    name="SEED-IV",
    class_names=("neutral", "sad", "fear", "happy"),
    window_s=4,
    bands_hz=((1, 4), (4, 8), (8, 14), (14, 31), (31, 50)),
    n_train_trials=16,
    subjects={
        1: ("cz", ("20160518", "20161125", "20161126")),
        2: ("ha", ("20150915", "20150920", "20151012")),
        3: ("hql", ("20150919", "20151018", "20151101")),
        4: ("ldy", ("20151111", "20151118", "20151123")),
        5: ("ly", ("20160406", "20160413", "20160420")),
        6: ("mhw", ("20150507", "20150511", "20150512")),
        7: ("mz", ("20150715", "20150717", "20150721")),
        8: ("qyt", ("20151103", "20151110", "20151117")),
        9: ("rx", ("20151028", "20151119", "20151209")),
        10: ("tyc", ("20151014", "20151021", "20151023")),
        11: ("whh", ("20150916", "20150921", "20151011")),
        12: ("wll", ("20150725", "20150804", "20150807")),
        13: ("wq", ("20151115", "20151125", "20161130")),
        14: ("zjd", ("20151205", "20151208", "20151215")),
        15: ("zjy", ("20150508", "20150514", "20150527")),
    },
    sessions=(1, 2, 3),
    trial_labels={
        1: (1, 2, 3, 0, 2, 0, 0, 1, 0, 1, 2, 1, 1, 1, 2, 3, 2, 2, 3, 3, 0, 3, 0, 3),
        2: (2, 1, 3, 0, 0, 2, 0, 2, 3, 3, 2, 3, 2, 0, 1, 1, 2, 1, 0, 3, 0, 1, 3, 1),
        3: (1, 2, 2, 1, 3, 3, 3, 1, 1, 2, 1, 0, 2, 3, 3, 0, 2, 3, 0, 0, 2, 0, 1, 0),
    },
    # W 4-s windows a trial, raw N about 800*W + 1 samples
    trial_windows={
        1: (42, 23, 49, 32, 22, 40, 38, 52, 36, 42, 12, 27, 54, 42, 64, 35, 17, 44, 35, 12, 28, 28, 43, 34),
        2: (55, 25, 34, 36, 53, 27, 34, 46, 34, 20, 60, 12, 36, 27, 44, 15, 46, 49, 45, 10, 37, 44, 24, 19),
        3: (42, 32, 23, 45, 48, 26, 64, 23, 26, 16, 51, 41, 39, 19, 28, 44, 14, 17, 45, 22, 39, 38, 41, 39),
    },
    feature_folders=("eeg_feature_smooth",),
    raw_folder="eeg_raw_data",
    feature_families=("de", "psd"),
    session_folders=True,
    label_file="ReadMe.txt",
    raw_slack=199,
    paper={"SST-EmotionNet": (84.92, 6.66), "SVM": (56.61, 20.05), "DGCNN": (69.88, 16.29), "BiHDM": (74.35, 14.09),
           "RGNN": (79.37, 10.54)},
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (SEED, SEED_IV)}


def get(name: str) -> Dataset:
    """The entry of a dataset name ([data] dataset); ConfigError naming the known ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"[data] dataset: expected one of {', '.join(DATASETS)}, got {name!r}") from None
