"""The 62 electrodes of SEED and SEED-IV (the same ESI NeuroScan cap for both): their file order, the paper's
9x9 grid, the raw EEG's sampling rate and the five DE bands. The datasets' own facts are sst.data.datasets'.

    CHANNELS[25]            # "C3": row 25 of every (62, ...) array
    GRID_POSITIONS[25]      # (4, 2): its (row, col) on the 9x9 grid, nose up, left hemisphere on the left
"""
from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------- facts

CHANNELS = (
    "FP1", "FPZ", "FP2", "AF3", "AF4", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8",
    "FT7", "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8",
    "T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8",
    "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8",
    "P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8",
    "PO7", "PO5", "PO3", "POZ", "PO4", "PO6", "PO8", "CB1", "O1", "OZ", "O2", "CB2",
)  # file order of the 62 electrodes (rows of every (62, ...) array), same for SEED-IV

GRID_SIZE = 9
_GRID = """
    -    -    -    FP1  FPZ  FP2  -    -    -
    -    -    -    AF3  -    AF4  -    -    -
    F7   F5   F3   F1   FZ   F2   F4   F6   F8
    FT7  FC5  FC3  FC1  FCZ  FC2  FC4  FC6  FT8
    T7   C5   C3   C1   CZ   C2   C4   C6   T8
    TP7  CP5  CP3  CP1  CPZ  CP2  CP4  CP6  TP8
    P7   P5   P3   P1   PZ   P2   P4   P6   P8
    -    PO7  PO5  PO3  POZ  PO4  PO6  PO8  -
    -    -    CB1  O1   OZ   O2   CB2  -    -
"""  # the paper's 9x9 map, nose up; '-' cells hold zero


def _grid_positions() -> np.ndarray:
    cells = {name: (r, c) for r, line in enumerate(_GRID.split("\n")[1:-1]) for c, name in enumerate(line.split())}
    positions = np.array([cells[name] for name in CHANNELS], dtype=np.int64)
    positions.flags.writeable = False
    return positions


GRID_POSITIONS = _grid_positions()  # (62, 2) int64: (row, col) of each electrode on the 9x9 grid

SAMPLING_RATE = 200  # Hz, raw EEG of both datasets (the lab's 200 Hz downsampled release)
BANDS = ("delta", "theta", "alpha", "beta", "gamma")  # last axis of every DE array
