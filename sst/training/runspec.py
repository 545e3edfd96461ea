"""Runs: what one model trains and tests (a subject-session, a held-out subject, a held-out session), its name
on disk (sub01_ses1, sub01_ses1_rep2 for a repeat) and its seed.

    spec = RunSpec(subject=1, session=1, repeat=2); spec.name     # "sub01_ses1_rep2"
    run_named("sub01_ses1", "--predict")                         # a name from the command line, checked
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sst.errors import UserError, printable

# The names of runs: sub01_ses1, and sub01_ses1_rep2 for the third seed of [training] repeats.
RUN_NAME = re.compile(r"sub(\d+)_ses(\d+)(?:_rep([1-9]\d*))?")


@dataclass(frozen=True)
class RunSpec:
    """One unit of work: a model trained and tested. For loso, `subject` is the held-out subject;
    `repeat` r > 0 is the same run with seed [training] seed + r."""
    subject: int
    session: int
    repeat: int = 0

    @property
    def name(self) -> str:
        return f"sub{self.subject:02d}_ses{self.session}" + (f"_rep{self.repeat}" if self.repeat else "")

    @property
    def base(self) -> "RunSpec":
        """The same subject-session's first seed (repeat 0): what repeats are pooled under."""
        return RunSpec(self.subject, self.session)

    @classmethod
    def parse(cls, name: str) -> "RunSpec | None":
        """The RunSpec a run name stands for (RUN_NAME), or None for anything else."""
        match = RUN_NAME.fullmatch(name) if isinstance(name, str) and len(name) <= 64 else None   # int() of 4300+ digits fails
        return cls(int(match[1]), int(match[2]), int(match[3] or 0)) if match else None


def run_seed(cfg, spec: RunSpec) -> int:
    """The seed of one run: [training] seed + its repeat (wrapping at 2**32, NumPy's limit). Every run of a
    repeat shares it, so results do not depend on run order or sharding; the random protocol's split
    keeps the base seed, so repeats differ in training only (initial weights, shuffling, dropout)."""
    return (cfg.training.seed + spec.repeat) % 2**32


def run_named(text: str, where: str) -> RunSpec:
    """The RunSpec of a run name given on the command line (--predict, --explain, figures.py --run): exactly as
    run.py names runs (training.RUN_NAME: sub01_ses1, sub01_ses1_rep2); anything else, a path above all, is
    one UserError, so that no name becomes a path outside the result folder."""
    spec = RunSpec.parse(text)
    if spec is None or spec.name != text:
        hint = f"; did you mean {spec.name}?" if spec is not None else ""
        raise UserError(f"{where} {printable(repr(text), 120)}: not a run name (expected subNN_sesK, e.g. "
                              f"sub01_ses1, or subNN_sesK_repR, as the files under runs/ are named){hint}")
    return spec
