"""sst/training/sharding.py: which runs a process trains (--subjects, --sessions, repeats, --shard I/N and auto)."""

import pytest

from conftest import write_ini
from sst import config, errors
from sst.training import runspec, sharding

SLURM_ARRAYS = {"0-8": (range(0, 9), (0, 8, 1, 9)), "5-13 (an offset)": (range(5, 14), (5, 13, 1, 9)),
                "1-17:4 (a step)": (range(1, 18, 4), (1, 17, 4, 5)), "3 (one task)": ([3], (3, 3, 1, 1)),
                "1,3,5,7 (an even list)": ([1, 3, 5, 7], (1, 7, 2, 4))}


def test_shards_partition_the_runs():
    available = [(s, k) for s in range(1, 16) for k in (1, 2, 3)]
    shards = [sharding.plan_runs(available, None, None, (i, 4)) for i in range(4)]
    names = [r.name for shard in shards for r in shard]
    assert len(names) == 45 and len(set(names)) == 45
    picked = sharding.plan_runs(available, {2, 10}, {3}, None)
    assert [r.name for r in picked] == ["sub02_ses3", "sub10_ses3"]


def test_shard_auto_reads_the_slurm_array(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "12")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "10")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    assert sharding.parse_shard("auto") == (2, 4)
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT")
    with pytest.raises(errors.UserError, match="--shard auto: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not set"):
        sharding.parse_shard("auto")


@pytest.mark.parametrize("array", SLURM_ARRAYS)
def test_shard_auto_gives_each_task_of_an_evenly_spaced_array_its_own_shard(array):
    ids, (low, high, step, count) = SLURM_ARRAYS[array]
    env = {"SLURM_ARRAY_TASK_MIN": str(low), "SLURM_ARRAY_TASK_MAX": str(high), "SLURM_ARRAY_TASK_STEP": str(step),
           "SLURM_ARRAY_TASK_COUNT": str(count)}
    shards = [sharding.slurm_array_index({**env, "SLURM_ARRAY_TASK_ID": str(i)}) for i in ids]
    assert shards == [(k, count) for k in range(count)]


@pytest.mark.parametrize("env", [{"ID": 5, "MIN": 1, "MAX": 7, "STEP": 1, "COUNT": 3},     # --array=1,5,7
                                 {"ID": 1, "MIN": 1, "MAX": 7, "STEP": 1, "COUNT": 3},     # its first task too
                                 {"ID": 10, "MIN": 0, "MAX": 10, "STEP": 1, "COUNT": 5},   # --array=0-3,10
                                 {"ID": 3, "MIN": 1, "MAX": 7, "COUNT": 3},                # 1,3,7: no STEP
                                 {"ID": 1, "MIN": 1, "MAX": 7, "COUNT": 3},                # its other tasks decide
                                 {"ID": 7, "MIN": 1, "MAX": 7, "COUNT": 3}])               # alike (1,4,7 too)
def test_shard_auto_in_an_array_of_listed_ids_takes_runs_nobody_has_taken(env):
    """No task of a list can compute its position: each takes the runs no other has (run.claim_runs)."""
    assert sharding.slurm_array_index({f"SLURM_ARRAY_TASK_{k}": str(v) for k, v in env.items()}) == sharding.CLAIM


@pytest.mark.parametrize("env", [{"ID": 9, "MIN": 0, "COUNT": 4},                           # beyond the array
                                 {"ID": 0, "MIN": 1, "MAX": 7, "COUNT": 3},                 # below it
                                 {"ID": 1, "MIN": 1, "MAX": 7, "COUNT": 0},                 # no task
                                 {"ID": 2, "MIN": 1, "MAX": 17, "STEP": 4, "COUNT": 5}])    # off 1-17:4's step
def test_shard_auto_refuses_a_task_that_is_not_one_of_its_array(env):
    with pytest.raises(errors.UserError, match=r"--shard auto: this task is not one of the array's .*give --shard I/N"):
        sharding.slurm_array_index({f"SLURM_ARRAY_TASK_{k}": str(v) for k, v in env.items()})


def test_runs_repeat_with_consecutive_seeds(tmp_path):
    available = [(1, 1), (2, 1)]
    specs = sharding.plan_runs(available, None, None, None, repeats=3)
    assert [s.name for s in specs] == ["sub01_ses1", "sub02_ses1", "sub01_ses1_rep1", "sub02_ses1_rep1",
                                       "sub01_ses1_rep2", "sub02_ses1_rep2"]
    assert all(runspec.RunSpec.parse(s.name) == s for s in specs)
    assert [s.name for s in sharding.plan_runs(available, None, None, None)] == ["sub01_ses1", "sub02_ses1"]
    cfg = config.load_config(write_ini(tmp_path / "a.ini", training={"seed": 2**32 - 1}))
    assert [runspec.run_seed(cfg, s) for s in specs[::2]] == [2**32 - 1, 0, 1]      # NumPy's 32-bit seeds wrap


# --array=...: every task id of the array, and (MIN, MAX, STEP, COUNT) as SLURM sets them
