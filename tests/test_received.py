"""The fourth wave: result folders received from someone else (a tarball, a shared disk) are data, never
directions. Each case makes a hostile folder in a temporary copy of a finished one (a symbolic link where a
part of the folder belongs, a FIFO or a device among the records, a lock folder holding other files) and
checks: one `error:` or `warning:` line naming the file, nothing outside the folder read, written or deleted,
no hang (every command has a deadline), no traceback.

    python -m pytest tests/test_received.py -q

The cases of received checkpoints, `.mat` files and preprocessed folders are in tests/results/test_checkpoints.py,
tests/data/test_readers.py and tests/data/test_session_store.py; output that could act on its reader (CSV
formulas, escape sequences), numbers that could mislead and bounds of keys are below.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import copy_of, copy_of_results, run_cli, run_in_process
from sst import config, fileio
from sst.results import store


def outside(tmp_path: Path) -> Path:
    """A folder outside the result folder, holding files a link could lead to: they must stay as they are."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    for name in ("keep.json", "sub01_ses1.json", "notes.txt"):
        (target / name).write_text('{"mine": true}\n')
    return target


def unchanged(target: Path) -> bool:
    return sorted(p.name for p in target.iterdir()) == ["keep.json", "notes.txt", "sub01_ses1.json"] \
        and all(p.read_text() == '{"mine": true}\n' for p in target.iterdir())


def one_error(p, fragment: str) -> None:
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], p.stderr


@pytest.mark.parametrize("part", ["runs", "checkpoints", "failed", ".lock"])
@pytest.mark.parametrize("command", [[], ["--summarize"]])
def test_a_part_of_the_folder_that_is_a_link_is_refused(finished, tmp_path, capsys, part, command):
    """A `.lock` link made --summarize delete every *.json of its target; a `runs` link made a rerun write there."""
    args = copy_of_results(finished, tmp_path)
    res, target = tmp_path / "res", outside(tmp_path)
    if (res / part).exists():
        shutil.rmtree(res / part)
    (res / part).symlink_to(target, target_is_directory=True)
    p = run_in_process(capsys, "run.py", *args, *command)
    one_error(p, f"{res / part} is a symbolic link, not a folder")
    assert unchanged(target)


def test_the_lock_removes_only_its_own_holder_files(tmp_path):
    """Whatever else a received .lock/ holds (JSON nobody locks, links to files outside) is left alone;
    only a dead holder's own file (named as FolderLock names them) is removed."""
    target = outside(tmp_path)
    lock = tmp_path / "res" / ".lock"
    lock.mkdir(parents=True)
    (lock / "notes.json").write_text("{}")
    (lock / "host-1-0123abcd.json").symlink_to(target / "keep.json")
    (lock / "host-999999999-89abcdef.json").write_text("{}")     # a dead holder's file
    with fileio.FolderLock(tmp_path / "res").acquire({"keys": []}, lambda h: None):
        pass
    assert sorted(p.name for p in lock.iterdir()) == ["guard", "host-1-0123abcd.json", "notes.json"]
    assert unchanged(target)


@pytest.mark.parametrize("kind", ["link-out", "fifo", "dev-zero", "huge"])
def test_a_record_that_is_not_a_regular_file_is_set_aside_by_name(finished, tmp_path, capsys, kind):
    """Training and --summarize set it aside (the link itself is renamed, its target untouched); --compare,
    which changes nothing on disk, leaves it out with a warning; nothing blocks on a FIFO or reads a device."""
    root, ini = copy_of(finished, tmp_path)
    target, record = outside(tmp_path), root / "res" / "runs" / "sub01_ses1.json"
    record.unlink()
    if kind == "link-out":
        record.symlink_to(target / "sub01_ses1.json")
    elif kind == "fifo":
        os.mkfifo(record)
    elif kind == "dev-zero":
        record.symlink_to("/dev/zero")
    else:
        record.write_bytes(b" " * (fileio.JSON_LIMIT + 1))
    args = ("run.py", "-c", str(ini), "--compare", str(root / "res"), str(root / "res"))
    p = run_cli(*args, timeout=120) if kind == "fifo" else run_in_process(capsys, *args)   # a FIFO: with a deadline
    assert "Traceback" not in p.stderr and f"warning: {record}: not readable" in p.stderr, p.stderr
    assert os.path.lexists(record)                      # --compare reads only
    cfg = config.load_config(ini)
    out = store.ResultDir(cfg)
    done = out.finished()
    out.tidy([], done)
    assert sorted(done) == ["sub02_ses1"] and not os.path.lexists(record)
    err = capsys.readouterr().err
    assert f"warning: {record}: damaged (" in err and "set aside as sub01_ses1.json.damaged" in err, err
    assert unchanged(target)


@pytest.mark.parametrize("summary", ['[1, 2]', '{"overrides": "x"}', '{"overrides": ["a=1; rm -rf ~"]}', "{cut"])
def test_predicts_search_reads_a_sibling_summary_as_data(tmp_path, summary):
    """--predict looks for the run in the other result folders under the INI's result_path, and reads each
    one's summary.json for the --set values to suggest: one that is not an object is no traceback, and
    what it says reaches the suggested command quoted."""
    from types import SimpleNamespace

    from sst.errors import UserError
    from sst.reporting import experiments

    other = tmp_path / "res" / "model.name=x"
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints" / "sub01_ses1.pt").write_bytes(b"")
    (other / "summary.json").write_text(summary)
    cfg = SimpleNamespace(path=SimpleNamespace(result_path=tmp_path / "res" / "mine"))
    with pytest.raises(UserError) as e:
        experiments.checkpoint_path(cfg, "sub01_ses1", tmp_path / "res")
    assert f"sub01_ses1 is in {other}" in str(e.value)
    assert "rm -rf" not in str(e.value) or "--set 'a=1; rm -rf ~'" in str(e.value)


HOSTILE_NAME = "=HYPERLINK(\"http:x\") $\\frac{$ \x1b]0;pwned\x07\x1b[2J [a](http:x) _b_ 50% & $x$"


def test_names_from_received_folders_cannot_act_on_their_reader(tmp_path, capsys):
    """A folder's name and a record's model reach comparison.csv, paired_runs.csv, the terminal, Markdown and
    LaTeX: in CSV no text cell starts with a formula character (OWASP), nowhere does a control character
    arrive raw, Markdown makes no link of it, LaTeX no command."""
    from conftest import record, write_folder

    a, b = tmp_path / "ours", tmp_path / HOSTILE_NAME.replace("/", "_")
    write_folder(a, [record("sub01_ses1", 60), record("sub02_ses1", 70)])
    write_folder(b, [record("sub01_ses1", 65, model=HOSTILE_NAME), record("sub02_ses1", 72, model=HOSTILE_NAME)])
    out = tmp_path / "cmp"
    for fmt in ("text", "markdown", "latex", "csv"):
        p = run_in_process(capsys, "run.py", "--compare", str(a), str(b), "--out", str(out), "--format", fmt)
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        assert "\x1b" not in p.stdout + p.stderr and "\x07" not in p.stdout + p.stderr
    import csv
    for name in ("comparison.csv", "paired_runs.csv"):
        text = (out / name).read_text()
        assert "\x1b" not in text
        cells = [c for row in csv.reader(text.splitlines()) for c in row]
        assert all(not c.startswith(("=", "+", "@", "\t", "\r")) and not c.startswith("-") or _number(c) for c in cells)
        assert any(c.startswith("'=HYPERLINK") for c in cells)
    md, tex = (out / "comparison.md").read_text(), (out / "comparison.tex").read_text()
    assert " [a](http" not in md and "\\[a\\](http" in md and "\x1b" not in md
    assert "\\%" in tex and "\\&" in tex and "\\$x\\$" in tex and "\x1b" not in tex


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _digests(records: list[dict], digest) -> list[dict]:
    for r in records:
        if digest is not None:
            r["test_digest"] = digest(r)
    return records


@pytest.mark.parametrize("case", ["same", "other-split", "earlier-version"])
def test_compare_pairs_only_runs_tested_on_the_same_windows(tmp_path, capsys, case):
    """random_test_fraction 0.4 against 0.2 was paired and given a CI and p without a word."""
    from conftest import record, write_folder

    runs = [("sub01_ses1", 60, 65), ("sub02_ses1", 70, 72), ("sub03_ses1", 50, 58)]
    a, b = tmp_path / "a", tmp_path / "b"
    write_folder(a, _digests([record(n, x) for n, x, _ in runs], lambda r: f"{r['subject']:016x}"))
    other = {"same": lambda r: f"{r['subject']:016x}", "other-split": lambda r: f"{r['subject'] + 1:016x}",
             "earlier-version": None}[case]
    write_folder(b, _digests([record(n, y) for n, _, y in runs], other))
    p = run_in_process(capsys, "run.py", "--compare", str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert "Traceback" not in p.stderr, p.stderr
    if case == "other-split":
        one_error(p, f"{b}: 3 of the 3 runs paired with {a} were tested on other windows (sub01_ses1, sub02_ses1, "
                     f"sub03_ses1")
        assert not (tmp_path / "cmp").exists()
    else:
        assert p.returncode == 0, p.stderr
        unchecked = "b: 3 of its 3 pairs made by an earlier version, without a test digest" in p.stdout
        assert unchecked == (case == "earlier-version"), p.stdout


def test_a_record_whose_fields_disagree_with_its_name_is_set_aside(finished, tmp_path, capsys):
    """A record named sub01_ses1_rep1.json saying session 2 was merged into sub01_ses2 as an invented seed."""
    root, ini = copy_of(finished, tmp_path)
    runs = root / "res" / "runs"
    r = json.loads((runs / "sub01_ses1.json").read_text())
    (runs / "sub02_ses1_rep1.json").write_text(json.dumps({**r, "run": "sub02_ses1_rep1", "repeat": 1}))
    p = run_in_process(capsys, "run.py", "--compare", str(root / "res"), str(root / "res"), "--out", str(tmp_path / "cmp"))
    assert p.returncode == 0 and f"warning: {runs / 'sub02_ses1_rep1.json'}: damaged (subject 1, session 1: not " \
        f"those of its run sub02_ses1_rep1); left out" in p.stderr, p.stderr
    import csv
    rows = list(csv.DictReader((tmp_path / "cmp" / "comparison.csv").read_text().splitlines()))
    assert [row["seeds"] for row in rows] == ["1", "1"] and rows[0]["seed_std_points"] == ""   # no invented seed
    out = store.ResultDir(config.load_config(ini))
    done = out.finished()
    assert sorted(done) == ["sub01_ses1", "sub02_ses1"]
    out.tidy([], done)
    assert (runs / "sub02_ses1_rep1.json.damaged").is_file()
