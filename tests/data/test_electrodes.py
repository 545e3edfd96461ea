"""sst/data/electrodes.py: the 62 electrodes' file order and their places on the paper's 9x9 grid, pinned."""

import numpy as np

from sst.data import electrodes


def test_channels_and_grid():
    assert len(electrodes.CHANNELS) == 62 == len(set(electrodes.CHANNELS))
    assert electrodes.GRID_POSITIONS.shape == (62, 2) and electrodes.GRID_POSITIONS.dtype == np.int64
    assert len({tuple(p) for p in electrodes.GRID_POSITIONS.tolist()}) == 62  # one electrode per cell
    assert electrodes.GRID_POSITIONS.min() == 0 and electrodes.GRID_POSITIONS.max() == electrodes.GRID_SIZE - 1
    at = dict(zip(electrodes.CHANNELS, electrodes.GRID_POSITIONS.tolist()))
    assert at["FP1"] == [0, 3] and at["AF4"] == [1, 5] and at["F7"] == [2, 0] and at["CZ"] == [4, 4]
    assert at["TP8"] == [5, 8] and at["PO7"] == [7, 1] and at["CB1"] == [8, 2] and at["CB2"] == [8, 6]
    assert not electrodes.GRID_POSITIONS.flags.writeable


# SEED_FORMAT.md's table of the paper's grid, written out here by row (not read from the code under test):
# every electrode's (row, column), nose up, the left hemisphere on the left.
PAPER_GRID = {
    0: {3: "FP1", 4: "FPZ", 5: "FP2"},
    1: {3: "AF3", 5: "AF4"},
    2: dict(enumerate(["F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8"])),
    3: dict(enumerate(["FT7", "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8"])),
    4: dict(enumerate(["T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8"])),
    5: dict(enumerate(["TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8"])),
    6: dict(enumerate(["P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8"])),
    7: {1: "PO7", 2: "PO5", 3: "PO3", 4: "POZ", 5: "PO4", 6: "PO6", 7: "PO8"},
    8: {2: "CB1", 3: "O1", 4: "OZ", 5: "O2", 6: "CB2"},
}


def test_every_electrode_sits_where_the_papers_grid_puts_it():
    expected = {name: (row, col) for row, cells in PAPER_GRID.items() for col, name in cells.items()}
    assert len(expected) == 62
    at = {name: tuple(p) for name, p in zip(electrodes.CHANNELS, electrodes.GRID_POSITIONS.tolist())}
    assert at == expected


def test_odd_electrodes_sit_left_of_the_midline_even_ones_right_and_z_ones_on_it():
    """The 10-20 rule itself, which any swap of a left and a right electrode (C3 for C4) breaks."""
    midline = electrodes.GRID_SIZE // 2
    for name, (row, col) in zip(electrodes.CHANNELS, electrodes.GRID_POSITIONS.tolist()):
        digits = "".join(ch for ch in name if ch.isdigit())
        if name.endswith("Z"):
            assert col == midline, name
        elif int(digits) % 2:
            assert col < midline, name
        else:
            assert col > midline, name


def test_the_file_order_is_the_datasets():
    """SEED_FORMAT.md: the 62 rows of every (62, ...) array, in this order, for SEED and SEED-IV alike."""
    assert " ".join(electrodes.CHANNELS) == (
        "FP1 FPZ FP2 AF3 AF4 F7 F5 F3 F1 FZ F2 F4 F6 F8 FT7 FC5 FC3 FC1 FCZ FC2 FC4 FC6 FT8 "
        "T7 C5 C3 C1 CZ C2 C4 C6 T8 TP7 CP5 CP3 CP1 CPZ CP2 CP4 CP6 TP8 P7 P5 P3 P1 PZ P2 P4 P6 P8 "
        "PO7 PO5 PO3 POZ PO4 PO6 PO8 CB1 O1 OZ O2 CB2")
