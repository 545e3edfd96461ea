"""Which runs this process trains: --subjects, --sessions, repeats and --shard (run.py's planning).

    --shard I/N     every N-th run starting at I (0-based, round-robin)
    --shard auto    a SLURM array task: its id's position in an evenly spaced array (--array=0-8, 5-13,
                    1-17:4, 1,3,5,7), or, where the ids are not evenly spaced (--array=1,5,7 or 0-3,10),
                    SLURM does not tell a task its position: then each task takes the runs that no other
                    process of the configuration has taken, one run at a time (CLAIM; run.claim_runs).
"""
from __future__ import annotations

import os

from sst.errors import UserError, printable
from sst.training.runspec import RunSpec

CLAIM = "claim"     # parse_shard's answer for a SLURM array whose task ids are not evenly spaced


def parse_shard(text: str) -> tuple[int, int] | str:
    """--shard I/N -> (I, N); auto -> this SLURM array task's (index, count) (slurm_array_index), or
    CLAIM where its ids are not evenly spaced."""
    if text == "auto":
        index = slurm_array_index(os.environ)
        if index == CLAIM:
            return CLAIM
        text = "/".join(map(str, index))
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard: expected I/N such as 0/4, or auto, got {printable(repr(text))}") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard: expected 0 <= I < N, got {printable(repr(text))}")
    return index, count


def slurm_array_index(env) -> tuple[int, int] | str:
    """(index, count) of this task in a SLURM array of evenly spaced task ids: a range with an offset and a
    step (--array=0-8, 5-13, 1-17:4, also throttled: 0-8%2). The index is the task id's position,
    (SLURM_ARRAY_TASK_ID - MIN) / STEP, where MIN, MAX, STEP and COUNT describe one range:
    MAX = MIN + STEP * (COUNT - 1).

    The ids of a list (--array=1,5,7 or 0-3,10) are not in the environment, so no task can compute its
    position from them: CLAIM (the task takes runs no other process has taken). The choice is the array's,
    made from MIN, MAX, STEP and COUNT only, so every task of one array makes the same one; without STEP,
    only a contiguous range (MAX - MIN = COUNT - 1) is known to be evenly spaced (1,4,7 and 1,3,7 look
    alike). A task id outside MIN..MAX or off the range's step, or a count below 1, is an environment that
    is not one array: refused, naming --shard I/N."""
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")
    if any(name not in env for name in names):
        raise UserError("--shard auto: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not set (not a SLURM "
                        "array job); give --shard I/N")
    values = {name: env[name] for name in (*names, "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
                                             "SLURM_ARRAY_TASK_STEP") if name in env}
    try:
        task, count = int(values["SLURM_ARRAY_TASK_ID"]), int(values["SLURM_ARRAY_TASK_COUNT"])
        low = int(values.get("SLURM_ARRAY_TASK_MIN", 0))
        step = int(values.get("SLURM_ARRAY_TASK_STEP", 1))
        high = int(values.get("SLURM_ARRAY_TASK_MAX", low + step * (count - 1)))
    except ValueError:
        shown = ", ".join(f"{k}={printable(repr(v), 20)}" for k, v in values.items())
        raise UserError(f"--shard auto: {shown}: expected integers") from None
    shown = ", ".join(f"{k.removeprefix('SLURM_ARRAY_TASK_')}={printable(v, 12)}" for k, v in values.items())
    if count < 1 or not low <= task <= high:
        raise UserError(f"--shard auto: this task is not one of the array's ({shown}); give --shard I/N")
    if count > 1:       # MIN, MAX and COUNT fix the step of a range; a given STEP must agree, none means 1
        derived, rest = divmod(high - low, count - 1)
        if rest or derived != step:
            return CLAIM
    offset = task - low
    if step < 1 or offset % step:
        raise UserError(f"--shard auto: this task is not one of the array's ({shown}); give --shard I/N")
    return offset // step, count


def plan_runs(available: list[tuple[int, int]], subjects, sessions, shard, repeats: int = 1) -> list[RunSpec]:
    """The runs of this invocation: all preprocessed (subject, session) pairs, filtered, each `repeats` times
    (every run of the first seed, then of the second, ...: a killed job leaves whole seeds), then sharded
    (CLAIM: all of them, each taken when no other process has)."""
    runs = [RunSpec(s, k, r) for r in range(repeats) for s, k in available
            if (subjects is None or s in subjects) and (sessions is None or k in sessions)]
    if shard not in (None, CLAIM):
        index, count = shard
        runs = runs[index::count]  # round-robin: shards get similar amounts of work
    return runs
