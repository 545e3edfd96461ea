"""Every command in the code blocks of README.md and docs/*.md is run by a test as written, or the ledger below
says which test runs its flags on other data, and why not as written.

    python -m pytest tests/test_docs.py -q                    # the ledger: every command has its line, every test exists
    SST_TEST_DOCS=1 python -m pytest tests/test_docs.py -q    # + every command marked DOCS, as written (8.5 min)

The commands marked DOCS run, exactly as written, in a copy of the repository's scripts, INI files and package:
the Quickstart demo, the "Try it" data and every Experiments command on it, and the SEED.ini commands on a
small synthetic SEED in the real layout where the INI file expects it (data/SEED: one subject, one session,
2% of each trial, so that `python run.py -c SEED.ini` trains one run of 50 epochs, not 45). Together they
take longer than the suite's 10-minute budget on two cores, so CI runs the ledger and the tests it names
(the Try-it commands, the plugin example, the trained-model lines, among others), and this file's own run
when asked. Inline `code` in the prose is not a command block and is not collected.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, keras_layers, randomised, write_keras_h5

DOCS = "tests/test_docs.py::test_the_documented_commands_run_as_written"
TRY_IT = "tests/test_run.py::test_readme_try_it_commands_run_as_written"
CI = ".ci/run (CI runs it as written)"
# command (as written, its comment and a leading "$ " dropped) -> the test that runs it (as written where DOCS
# or TRY_IT; otherwise its flags on other data, and why)
LEDGER = {
    "pip install -r requirements.txt && python run.py --demo": DOCS,
    "pip install -r requirements.txt && python -m pytest": CI,
    "python -m sst.data.synthetic --dataset SEED-IV --out data/SEED_IV --subjects 1,2 --trial-fraction 0.2": TRY_IT,
    "python Preprocess.py -c SEED_IV.ini --no-maps": TRY_IT,
    "python run.py -c SEED_IV.ini --set training.nbEpoch=3": TRY_IT,
    "python run.py -c SEED_IV.ini --set training.nbEpoch=3 --predict sub01_ses1 --subjects 1 --sessions 2": TRY_IT,
    "python run.py -c SEED_IV.ini --set model.name=linear_svm": DOCS,
    "python run.py -c SEED_IV.ini --set model.name=dgcnn": DOCS,
    "python run.py --compare results/SEED_IV/training.nbEpoch=3 results/SEED_IV/model.name=linear_svm": DOCS,
    "python run.py -c SEED_IV.ini --set training.nbEpoch=3 --ablation": DOCS,
    "python run.py -c SEED_IV.ini --set training.nbEpoch=3 --ablation --sessions 1": DOCS,
    "python run.py -c SEED_IV.ini --set training.nbEpoch=3 --paper-table": DOCS,
    "python run.py -c SEED_IV.ini --set training.nbEpoch=3 --protocol-price": DOCS,
    "python run.py -c SEED_IV.ini --set training.nbEpoch=3 --set training.repeats=3": DOCS,
    "python run.py -c SEED_IV.ini --set training.nbEpoch=3 --summarize --format latex": DOCS,
    "python Preprocess.py -c SEED.ini": DOCS,
    "python Preprocess.py -c SEED.ini --no-maps": DOCS,
    "python run.py -c SEED.ini": DOCS,
    "python run.py -c SEED.ini --explain sub01_ses1": DOCS,
    "python run.py -c SEED.ini --shard auto": DOCS,
    "python run.py -c SEED.ini --subjects 1 --sessions 1": DOCS,
    "python run.py -c SEED.ini --result-path results/SEED_my_attention": DOCS,
    "python run.py -c SEED.ini --set model.plugins=my_variants.py --set model.attention_block=gate": (
        "tests/test_plugins.py::test_the_docs_plugin_example_works_under_model_py_and_run_py (docs/model.md's "
        "my_variants.py verbatim; on a tiny SEED, one epoch, subject 2: 50 epochs of the full network are DOCS' "
        "python run.py -c SEED.ini already)"),
    "python run.py -c SEED.ini --set model.plugins=my_variants.py --set model.streams=spectral,temporal,means": (
        "tests/test_plugins.py::test_the_docs_plugin_example_works_under_model_py_and_run_py (as above)"),
    "python model.py -c SEED.ini --set model.plugins=my_variants.py --set model.attention_block=gate": (
        "tests/test_plugins.py::test_the_docs_plugin_example_works_under_model_py_and_run_py (as written, on its "
        "tiny SEED.ini)"),
    "python model.py -c SEED.ini --keras-weights best_model.h5 --save sst_official.pt": DOCS,
}


def documented_commands() -> dict[str, list[str]]:
    """{command: ["file:line", ...]} of every command line in the fenced code blocks of README.md and docs/*.md
    (a line starting with python, pip, bash or `$ `; its trailing comment dropped)."""
    found: dict[str, list[str]] = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        inside = False
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.lstrip().startswith("```"):
                inside = not inside
                continue
            text = line.strip().removeprefix("$ ")
            if inside and re.match(r"(python|pip|bash|sbatch) ", text):
                command = " ".join(re.split(r"\s+#", text)[0].split())
                found.setdefault(command, []).append(f"{path.relative_to(ROOT)}:{number}")
    return found


def test_every_documented_command_has_a_test_in_the_ledger():
    found = documented_commands()
    missing = {c: where for c, where in found.items() if c not in LEDGER}
    assert not missing, f"commands without a line in LEDGER (a test that runs them): {missing}"
    assert not set(LEDGER) - set(found), f"LEDGER lines no document has any more: {set(LEDGER) - set(found)}"
    for how in set(LEDGER.values()) - {CI}:
        file, _, name = how.partition(" ")[0].partition("::")
        assert re.search(rf"^def {name}\(", (ROOT / file).read_text(), re.M), how
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()


def test_the_ledger_parser_finds_a_new_command(tmp_path, monkeypatch):
    """A command added to a document's code block is collected (and then needs a ledger line)."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("text `python inline.py`\n```bash\npython new.py --x 1   # what\n```\n"
                                        "```\n$ python shown.py\noutput python no\n```\n")
    assert documented_commands() == {"python new.py --x 1": ["README.md:3"], "python shown.py": ["README.md:6"]}


def readme_output(command: str) -> list[str]:
    """The lines README.md shows under `$ command` in its example output, up to the next `$ ` or the block's end."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(f"$ {command}") + 1
    end = next(k for k in range(start, len(lines)) if lines[k].startswith(("$ ", "```")))
    return lines[start:end]


def test_the_readme_example_outputs_are_found():
    shown = readme_output("python run.py -c SEED_IV.ini --set training.nbEpoch=3 --paper-table")
    assert shown[0].startswith("SEED-IV, protocol trial: the paper's table 1") and len(shown) == 5


def as_written(command: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=1200,
                       env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1", **(env or {})})
    assert p.returncode == 0 and "Traceback" not in p.stderr, f"{command}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    return p


def keras_file(tree: Path, path: Path) -> None:
    """An .h5 as the authors' Keras code saves SEED.ini's network in the official order, where docs/model.md's
    command reads it."""
    import torch

    import model
    from sst import config

    cfg = config.load_config(tree / "SEED.ini").replace(model={"block_order": "official"})
    torch.manual_seed(0)
    write_keras_h5(path, keras_layers(randomised(model.build_model(cfg))), full_model=True)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SST_TEST_DOCS") != "1", reason="8.5 min on 2 cores, over the suite's budget "
                    "(SST_TEST_DOCS=1 runs it)")
def test_the_documented_commands_run_as_written(tmp_path):
    tree = tmp_path / "repo"
    tree.mkdir()
    for path in [*ROOT.glob("*.py"), *ROOT.glob("*.ini"), ROOT / "requirements.txt"]:
        shutil.copy(path, tree / path.name)
    shutil.copytree(ROOT / "sst", tree / "sst", ignore=shutil.ignore_patterns("__pycache__"))
    run = {c for c, how in LEDGER.items() if how in (DOCS, TRY_IT)}
    done = []

    def do(command: str, env: dict | None = None) -> subprocess.CompletedProcess:
        assert command in run, command
        done.append(command)
        return as_written(command, tree, env)

    # Quickstart
    p = do("pip install -r requirements.txt && python run.py --demo")
    assert "SST-EmotionNet, ours" in p.stdout and (tree / ".cache" / "demo" / "results" / "summary.json").is_file()
    # Try it, then every Experiments command on its data, in the order docs/experiments.md gives them
    for command in [c for c in LEDGER if LEDGER[c] == TRY_IT and "--predict" not in c]:
        do(command)
    for command in ("python run.py -c SEED_IV.ini --set model.name=linear_svm",
                    "python run.py -c SEED_IV.ini --set model.name=dgcnn"):
        do(command)
    p = do("python run.py --compare results/SEED_IV/training.nbEpoch=3 results/SEED_IV/model.name=linear_svm")
    assert "paired by subject and session" in p.stdout
    p = do("python run.py -c SEED_IV.ini --set training.nbEpoch=3 --ablation")
    assert (tree / "results" / "SEED_IV" / "training.nbEpoch=3" / "ablation.png").is_file() or "ablation" in p.stdout
    do("python run.py -c SEED_IV.ini --set training.nbEpoch=3 --ablation --sessions 1")
    for command in ("python run.py -c SEED_IV.ini --set training.nbEpoch=3 --paper-table",
                    "python run.py -c SEED_IV.ini --set training.nbEpoch=3 --protocol-price"):
        shown = readme_output(command)      # the README's example: its title, header and row names as printed
        printed = do(command).stdout.splitlines()
        start = printed.index(shown[0])
        assert printed[start + 1] == shown[1] and [r.split()[0] for r in printed[start + 2:start + len(shown)]] == [
            r.split()[0] for r in shown[2:]], (command, printed[start:start + len(shown)])
    do("python run.py -c SEED_IV.ini --set training.nbEpoch=3 --set training.repeats=3")
    p = do("python run.py -c SEED_IV.ini --set training.nbEpoch=3 --summarize --format latex")
    assert p.stdout.startswith("% needs \\usepackage{booktabs}") and p.stdout.rstrip().endswith("\\end{table}")
    do("python run.py -c SEED_IV.ini --set training.nbEpoch=3 --predict sub01_ses1 --subjects 1 --sessions 2")

    # SEED.ini's commands on a small synthetic SEED where the INI file expects the dataset
    from sst.data import synthetic

    synthetic.write_seed(tree / "data" / "SEED", subjects=(1,), sessions=(1,), trial_fraction=0.02, seed=0)
    do("python Preprocess.py -c SEED.ini")
    do("python Preprocess.py -c SEED.ini --no-maps")
    p = do("python run.py -c SEED.ini")
    record = json.loads((tree / "results" / "SEED" / "runs" / "sub01_ses1.json").read_text())
    assert record["epochs_run"] >= 21 and "SST-EmotionNet, ours" in p.stdout    # patience 20 of nbEpoch 50
    do("python run.py -c SEED.ini --explain sub01_ses1")
    assert any((tree / "results" / "SEED" / "figures").rglob("attention_spatial.png"))
    # docs/outputs.md's SLURM script (#SBATCH --array=0-8): its first task, in the environment SLURM gives it
    slurm = {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "8",
             "SLURM_ARRAY_TASK_COUNT": "9", "SLURM_ARRAY_TASK_STEP": "1"}
    p = do("python run.py -c SEED.ini --shard auto", slurm)
    assert "shard auto done" in p.stdout and "accuracy" not in p.stdout       # its one run is finished
    p = do("python run.py -c SEED.ini --subjects 1 --sessions 1")
    assert "already finished" in p.stdout
    do("python run.py -c SEED.ini --result-path results/SEED_my_attention")
    assert (tree / "results" / "SEED_my_attention" / "runs" / "sub01_ses1.json").is_file()
    keras_file(tree, tree / "best_model.h5")
    p = do("python model.py -c SEED.ini --keras-weights best_model.h5 --save sst_official.pt")
    assert "tensors loaded from" in p.stdout and (tree / "sst_official.pt").is_file()
    assert set(done) == run, f"marked DOCS or TRY_IT, not run here: {run - set(done)}"
