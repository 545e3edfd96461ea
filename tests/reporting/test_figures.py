"""figures.py: every figure type renders from tiny synthetic inputs into a real, non-blank PNG."""
import subprocess
import sys
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pytest

from conftest import ROOT, TINY_MODEL, copy_of, dropped_root, fake_run, fake_summary, run_cli, write_ini
from sst.reporting import figures


def assert_png(path: Path, min_px: int = 200) -> None:
    """A readable PNG of reasonable size that is not a blank canvas."""
    assert path.is_file(), path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    img = matplotlib.image.imread(path)
    h, w = img.shape[:2]
    assert min(h, w) >= min_px and max(h, w) <= 2600, (path, img.shape)
    assert path.stat().st_size < 400_000, (path, path.stat().st_size)
    gray = img[..., :3].mean(-1)
    assert gray.std() > 0.05, (path, gray.std())  # drawn, not an empty white page
    assert (gray < 0.5).mean() > 0.003, path      # some dark ink: text, lines


# ----------------------------------------------------------------------------- run figures


@pytest.mark.parametrize("case", ["one_run_no_val", "45_runs", "loso_seed_iv"])
def test_run_figures(tmp_path, case):
    if case == "one_run_no_val":
        results = [fake_run(1, 1, val=False)]
    elif case == "45_runs":
        results = [fake_run(s, k, epochs=20) for s in range(1, 16) for k in (1, 2, 3)]
    else:
        results = [fake_run(s, 1, protocol="loso", n_class=4) for s in range(1, 5)]
    rc_before = dict(matplotlib.rcParams)
    paths = figures.run_figures(results, fake_summary(results), tmp_path / "figs")
    assert [p.name for p in paths] == ["curves.png", "confusion.png", "per_subject.png"]
    for p in paths:
        assert p.parent == tmp_path / "figs"
        assert_png(p)
    assert dict(matplotlib.rcParams) == rc_before  # the figures' style does not leak


# ----------------------------------------------------------------------------- a tiny pipeline


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Synthetic SEED (1 subject, 1 session, short trials) preprocessed at 16x16, and a checkpoint of a
    freshly built tiny network in run.py's format (statistics of the session as normalisation)."""
    import torch

    import model
    import Preprocess
    from sst import config, runtime
    from sst.data import session_store, synthetic
    from sst.models import kinds

    root = tmp_path_factory.mktemp("tiny")
    ini = write_ini(root / "tiny.ini", path={"dataset_root": root / "SEED", "preprocessed_root": root / "pre",
                                             "result_path": root / "results"},
                    data={"input_width": 16}, model=TINY_MODEL)
    cfg = config.load_config(ini)
    synthetic.write_seed(root / "SEED", subjects=(1,), sessions=(1,), trial_fraction=0.05, seed=0)
    Preprocess.preprocess(cfg)
    sessions = session_store.load_preprocessed(cfg)
    de, eeg = np.asarray(sessions[0].de), np.asarray(sessions[0].eeg)
    runtime.set_seed(0)
    net = model.build_model(cfg)
    checkpoint = cfg.path.result_path / "checkpoints" / "sub01_ses1.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"model": net.state_dict(), "config": cfg.to_dict(), "run": "sub01_ses1", "subject": 1, "session": 1, "epoch": 1,
                "code": kinds.of(cfg).code(cfg, net),
                "normalization": {k: torch.from_numpy(v) for k, v in {   # tensors, as run.py stores them
                    "de_mean": de.mean(0, keepdims=True), "de_std": de.std(0, keepdims=True),
                    "eeg_mean": eeg.mean((0, 2), keepdims=True), "eeg_std": eeg.std((0, 2), keepdims=True)}.items()}},
               checkpoint)
    return {"cfg": cfg, "ini": ini, "sessions": sessions, "checkpoint": checkpoint, "root": root}


def test_electrode_pixels_follow_the_interpolation_geometry():
    from sst.data import inputs

    # width 17: every grid cell falls on a pixel, where the interpolated map equals the electrode's value
    width = 17
    values = np.random.default_rng(0).normal(size=(1, 62, 1)).astype(np.float32)
    maps = inputs.electrodes_to_maps(values, inputs.interpolation_matrix(width), width)[0, ..., 0]
    rc = figures.electrode_pixels(width)
    assert np.allclose(rc, np.round(rc))
    assert np.allclose(maps[rc[:, 0].astype(int), rc[:, 1].astype(int)], values[0, :, 0], atol=1e-5)
    assert np.allclose(figures.electrode_pixels(32)[[0, 5]], [[0, 3 * 31 / 8], [2 * 31 / 8, 0]])  # FP1, F7


def test_attention_figures(tiny):
    paths = figures.attention_figures(tiny["checkpoint"], tiny["sessions"], tiny["root"] / "att")
    assert [p.name for p in paths] == ["attention_spatial.png", "attention_depth.png"]
    for p in paths:
        assert_png(p)


def test_attention_weights_cover_every_block_and_class(tiny):
    cfg, label, weights = figures.attention_weights(tiny["checkpoint"], tiny["sessions"], per_class=5)
    assert sorted(np.unique(label).tolist()) == [0, 1, 2] and len(label) == 15
    # paper order: an attention block before each of the 2 dense blocks, in both streams
    assert sorted(weights) == ["spectral.attention1", "spectral.attention2", "temporal.attention1", "temporal.attention2"]
    assert weights["spectral.attention1"]["spatial"].shape == (15, 16, 16)
    assert weights["spectral.attention1"]["spectral_temporal"].shape == (15, 5)
    assert all(((w >= 0) & (w <= 1)).all() for d in weights.values() for w in d.values())  # sigmoid


def test_input_figures(tiny):
    paths = figures.input_figures(tiny["sessions"][0], tiny["cfg"], tiny["root"] / "inputs")
    assert [p.name for p in paths] == ["inputs_spectral.png", "inputs_temporal.png"]
    for p in paths:
        assert_png(p)


def test_architecture_stages_add_up_to_the_model(tiny):
    import model

    for order in ("paper", "official"):
        cfg = tiny["cfg"].replace(model={"block_order": order})
        stages = figures.model_stages(cfg)
        net = model.build_model(cfg)
        counted = sum(p for rows in stages["streams"].values() for _, _, p in rows) + sum(p for _, _, p in stages["head"])
        assert counted == stages["total"] == sum(p.numel() for p in net.parameters() if p.requires_grad)
        spectral = dict((name, shape) for name, shape, _ in stages["streams"]["spectral"])
        assert spectral["input"] == "16x16x5" and spectral["stem"] == "16x16x5x8"  # first filters 2k = 8
        assert spectral["transition1"] == "8x8x2x6"   # (8 + 1 layer * k 4) channels, compression 0.5


def test_architecture_figure_of_the_seed_config(tmp_path):
    from sst import config

    stages = figures.model_stages(config.load_config(ROOT / "SEED.ini"))
    assert stages["total"] == 1_573_185  # docs/reference.md: the paper order's trainable parameters
    path = figures.architecture_figure(config.load_config(ROOT / "SEED.ini"), tmp_path / "arch.png")
    assert_png(path, min_px=600)


@pytest.mark.slow
def test_cli_architecture_and_explain(tiny):
    out = tiny["root"] / "arch.png"
    proc = run_cli("-m", "sst.reporting.figures", "architecture", "-c", str(tiny["ini"]), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert_png(out)
    proc = run_cli("-m", "sst.reporting.figures", "explain", "-c", str(tiny["ini"]), "--run", "sub01_ses1")
    assert proc.returncode == 0, proc.stderr
    folder = tiny["cfg"].path.result_path / "figures" / "sub01_ses1"
    assert sorted(p.name for p in folder.glob("*.png")) == [
        "attention_depth.png", "attention_spatial.png", "inputs_spectral.png", "inputs_temporal.png"]


def test_cli_demo_without_results_says_what_to_run(tmp_path):
    proc = run_cli("-m", "sst.reporting.figures", "demo", "--demo-dir", str(tmp_path / "nothing"), "--out-dir", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "python run.py --demo" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_demo_figures_from_a_demo_folder(tiny, tmp_path):
    """The demo command's path on a folder laid out like `python run.py --demo`'s."""
    import shutil

    demo = tmp_path / "demo"
    shutil.copytree(tiny["cfg"].path.preprocessed_root, demo / "SEED_preprocessed")
    (demo / "results" / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny["checkpoint"], demo / "results" / "checkpoints" / "sub01_ses1.pt")
    results = [fake_run(1, 1)]
    from sst import fileio

    fileio.write_json(demo / "results" / "runs" / "sub01_ses1.json", results[0])
    fileio.write_json(demo / "results" / "summary.json", fake_summary(results))
    paths = figures.demo_figures(demo, tmp_path / "figure")
    assert sorted(p.name for p in paths) == sorted(f"demo_{n}.png" for n in (
        "curves", "confusion", "per_subject", "attention_spatial", "attention_depth", "inputs_spectral", "inputs_temporal"))
    for p in paths:
        assert_png(p)
    assert sorted(p.name for p in (tmp_path / "figure").iterdir()) == sorted(p.name for p in paths)  # no leftovers
    committed = {p: p.stat().st_mtime_ns for p in (ROOT / "figure").iterdir()}
    proc = run_cli("-m", "sst.reporting.figures", "demo", "--demo-dir", str(demo))       # by default into the demo's result folder
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (demo / "results" / "figures" / "demo").iterdir()) == sorted(p.name for p in paths)
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "figure").iterdir()} == committed


# ----------------------------------------------------------------------------- figures a reviewer accepts


@pytest.fixture
def drawn(monkeypatch):
    """The Figure objects figures.py saves, by file name (nothing is written)."""
    figs = {}

    def keep(fig, path):
        figs[Path(path).name] = fig
        return Path(path)

    monkeypatch.setattr(figures, "_save", keep)
    return figs


def test_no_electrode_name_is_printed_over_a_map(tiny, monkeypatch, drawn):
    """Attention and input maps mark electrodes with dots; names appear only on the key's empty square."""
    calls = []
    real = figures.draw_scalp

    def spy(ax, image, width, **kwargs):
        calls.append((bool(kwargs.get("names")), bool(np.isnan(image).all())))
        return real(ax, image, width, **kwargs)

    monkeypatch.setattr(figures, "draw_scalp", spy)
    figures.attention_figures(tiny["checkpoint"], tiny["sessions"], tiny["root"] / "att2", per_class=5)
    figures.input_figures(tiny["sessions"][0], tiny["cfg"], tiny["root"] / "inputs2")
    named = [empty for names, empty in calls if names]
    assert len(named) == 2 and all(named)           # one key in attention_spatial, one in inputs_spectral
    assert sum(not names for names, _ in calls) > 20


def test_attention_depth_bars_start_at_zero(tiny, drawn):
    figures.attention_figures(tiny["checkpoint"], tiny["sessions"], tiny["root"] / "att3", per_class=5)
    axes = [ax for ax in drawn["attention_depth.png"].axes if ax.get_visible() and ax.patches]
    assert len(axes) == 4 and all(ax.get_ylim()[0] <= 0 for ax in axes)
    assert all(ax.get_ylabel() == "weight" for ax in axes)


def test_per_subject_figure_says_the_papers_protocol(drawn, tmp_path):
    results = [fake_run(s, 1) for s in (1, 2)]
    figures.run_figures(results, fake_summary(results), tmp_path)
    legend = [t.get_text() for t in drawn["per_subject.png"].axes[0].get_legend().get_texts()]
    assert any("authors' protocol" in t and "96.02" in t for t in legend)


@pytest.mark.slow
def test_the_demo_says_where_its_results_and_figures_went(tiny, capsys):
    import run
    from sst.results import store
    from sst.training import runspec

    out = store.ResultDir(tiny["cfg"])
    run.demo_epilogue(out, tiny["cfg"], runspec.RunSpec(1, 1))
    text = capsys.readouterr().out
    assert text.startswith(f"results: {out.root} (runs/*.json") and "figures:" in text
    assert f"{out.root}/figures/sub01_ses1/attention_spatial.png" in text
    assert (out.root / "figures" / "sub01_ses1" / "attention_depth.png").is_file()


@pytest.mark.slow
def test_read_only_result_folder_for_explain(finished, tmp_path):
    root, ini = copy_of(finished, tmp_path)
    figures_dir = root / "res" / "figures"
    figures_dir.mkdir(exist_ok=True)
    figures_dir.chmod(0o555)
    try:
        p = subprocess.run(dropped_root([sys.executable, "run.py", "-c", str(ini), "--explain", "sub01_ses1"]),
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        figures_dir.chmod(0o755)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {figures_dir}/sub01_ses1") and "ermission denied" in lines[0]
