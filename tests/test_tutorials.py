"""Every tutorial runs top to bottom as a script in fast mode and writes the figures it promises, and as a
notebook that shows each figure inline: in check mode, with its claims asserted, where it has claims,
else in fast mode; plots and ``minikd figures`` on small inputs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minikd.tools import plots, tutorial
from minikd.tools.cli import main
from minikd.tools.figures import TUTORIALS, tutorial_paths

PNG = b"\x89PNG\r\n\x1a\n"
PATHS = tutorial_paths()


def promised_figures(path):
    """The PNG file names a tutorial names (it saves each with ``tutorial.save_figure``)."""
    return re.findall(r'"(\d\d_[\w-]+\.png)"', Path(path).read_text())


def assert_png(path, min_bytes=5_000):
    with open(path, "rb") as f:
        assert f.read(8) == PNG, path
    assert os.path.getsize(path) > min_bytes, path


def name_of(path):
    return os.path.basename(path)


def test_tutorials_are_numbered_in_reading_order():
    numbers = [int(name_of(p)[:2]) for p in PATHS]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 9


def run_tutorial(path, folder, mode, runs=None):
    """Run a tutorial as a script with ``mode`` (``"MINIKD_FAST"`` or ``"MINIKD_CHECK"``) set."""
    env = {**os.environ, mode: "1", "MINIKD_FIGURES": str(folder / "figures"),
           "MINIKD_RUNS": str(runs or folder / "runs"), "MPLBACKEND": "Agg"}
    env.pop("MINIKD_FAST" if mode == "MINIKD_CHECK" else "MINIKD_CHECK", None)
    done = subprocess.run([sys.executable, path], env=env, cwd=folder, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("path", PATHS, ids=[name_of(p) for p in PATHS])
def test_tutorial_opens_with_its_title_and_promises_figures(path):
    source = Path(path).read_text()
    assert source.startswith("# %% [markdown]\n# # "), "a tutorial opens with its title, in prose"
    opening = source.split("# %%\n")[0]
    assert "**What you will learn.**" in opening, "and says what the reader will learn"
    assert promised_figures(path), "every tutorial saves at least one figure"


# The tutorials that assert claims (``tutorial.CLAIMS``) run them in check mode; they share one runs
# folder, so the grammar teacher is trained once for all of them, also when pytest-xdist runs them in
# several worker processes (the folder is beside the workers' own; ``tutorial.trained_model`` locks).
CHECKED = [p for p in PATHS if "tutorial.CLAIMS" in Path(p).read_text()]
UNCHECKED = [p for p in PATHS if p not in CHECKED]


@pytest.fixture(scope="session")
def check_runs(tmp_path_factory):
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the one folder all workers of this test session have in common
    folder = shared / "check-runs"
    folder.mkdir(exist_ok=True)
    return folder


# Fast mode: the tutorials with claims as scripts (their notebooks run in check mode), the others as
# notebooks below (the same code in the same mode, with the inline figures checked too).
@pytest.mark.parametrize("path", CHECKED, ids=[name_of(p) for p in CHECKED])
def test_tutorial_runs_as_a_script_in_fast_mode(path, tmp_path):
    run_tutorial(path, tmp_path, "MINIKD_FAST")
    for name in promised_figures(path):
        assert_png(tmp_path / "figures" / name)


def run_notebook(path, folder, mode, runs, monkeypatch):
    """Execute a tutorial as a notebook (jupytext, then nbclient on a Jupyter kernel) with ``mode`` set;
    each code cell must show as many inline images as figures it saves, and each figure is written."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.delenv("MINIKD_FAST" if mode == "MINIKD_CHECK" else "MINIKD_CHECK", raising=False)
    for key, value in {mode: "1", "MINIKD_FIGURES": str(folder / "figures"), "MINIKD_RUNS": str(runs),
                       "MPLBACKEND": "Agg"}.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this environment
    notebook = jupytext.read(path)
    nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}}).execute()
    promised = promised_figures(path)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        saved = [name for name in promised if f'"{name}"' in cell.source]
        images = [out for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
        assert len(images) == len(saved), (cell.source[:200], len(images), saved)
    for name in promised:
        assert_png(folder / "figures" / name)


@pytest.mark.parametrize("path", UNCHECKED, ids=[name_of(p) for p in UNCHECKED])
def test_tutorial_runs_as_a_notebook_in_fast_mode_with_its_figures_inline(path, tmp_path, monkeypatch):
    run_notebook(path, tmp_path, "MINIKD_FAST", tmp_path / "runs", monkeypatch)


@pytest.mark.parametrize("path", CHECKED, ids=[name_of(p) for p in CHECKED])
def test_tutorial_claims_hold_in_check_mode_as_a_notebook_with_its_figures_inline(path, tmp_path, check_runs,
                                                                                    monkeypatch):
    """The claims' assertions run in the kernel: a failed one fails the cell, and so the test."""
    run_notebook(path, tmp_path, "MINIKD_CHECK", check_runs, monkeypatch)


def test_tutorials_4_to_8_assert_their_claims_in_check_mode():
    mine = {name_of(p)[:2] for p in CHECKED}
    assert {"04", "05", "06", "07", "08"} <= mine


def test_every_committed_figure_is_listed_and_made_by_a_tutorial():
    made = {name for path in PATHS for name in promised_figures(path)}
    folder = Path(TUTORIALS).parent / "figures"
    committed = {p.name for p in folder.glob("*.png")}
    listed = set(re.findall(r"([\w.-]+\.png)", (folder / "README.md").read_text()))
    assert committed == made, "figures/ holds exactly the tutorials' figures"
    assert listed == made, "figures/README.md lists each of them"


def test_figures_command_runs_one_tutorial(tmp_path, capsys):
    assert main(["figures", "--fast", "--only", "01", "--out", str(tmp_path / "f"), "--runs", str(tmp_path)]) == 0
    assert "01_temperature.py" in capsys.readouterr().out
    assert_png(tmp_path / "f" / "01_temperature.png")
    assert main(["figures", "--only", "99", "--out", str(tmp_path / "g")]) == 2
    assert "no tutorial" in capsys.readouterr().err


def test_mean_sd_plot_draws_the_mean_over_seeds_with_one_sample_sd_as_error_bars():
    runs = {"a": [[1.0, 2.0, 6.0], [4.0]], "b": [[0.0, 0.0], [1.0, 3.0]]}
    ax = tutorial.mean_sd_plot([1, 2], runs, "t", "x", "y", logy=True).axes[0]
    assert ax.get_yscale() == "log"  # options reach line_plot
    for container, (mean, sd) in zip(ax.containers, [((3.0, 4.0), (np.sqrt(7.0), 0.0)), ((0.0, 2.0), (0.0, np.sqrt(2.0)))]):
        line, _, (bars,) = container
        np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), mean)
        half_heights = [(segment[1, 1] - segment[0, 1]) / 2 for segment in bars.get_segments()]
        np.testing.assert_allclose(half_heights, sd)


def test_plotting_functions_on_small_inputs(tmp_path):
    x = [1, 2, 3]
    figures = {
        "line": plots.line_plot(x, {"a": [1, 2, 3], "b": [3, 2, 1]}, "t", "x (unit)", "y (unit)", logx=True,
                                reference=(2.0, "ref")),
        "bars": plots.grouped_bars(["p", "q"], {"a": [0.1, 0.2], "b": [0.3, 0.1]}, "t", "x", "y",
                                   reference=[(0.0, "zero"), (1.0, "one")]),
        "heat": plots.heatmap([[1.0, 2.0], [3.0, 4.0]], [1, 2], [0.5, 1.0], "t", "T", "λ", "loss"),
        "contours": plots.contour_panels(
            {"a": (*np.meshgrid([0, 1, 2], [0, 1]), np.arange(6.0).reshape(2, 3), (1.0, 0.5))}, "t", "α", "β", "z"),
        "simplex": plots.simplex_panels(
            {"a": ([(0.2, 0.3, 0.5), (0.6, 0.2, 0.2), (0.1, 0.8, 0.1), (0.3, 0.3, 0.4)], [1.0, 2.0, 3.0, 1.5],
                   {"mark": (0.3, 0.3, 0.4)})}, "t"),
        "curves": plots.training_curves({"run": [{"step": 0, "val_loss": 2.0}, {"step": 10, "val_loss": 1.0}]},
                                        floor=0.5),
    }
    for name, fig in figures.items():
        ax = fig.axes[0]
        assert ax.get_title() or fig._suptitle is not None, name  # every figure has a title
        plots.save(fig, str(tmp_path / f"{name}.png"))
        assert_png(tmp_path / f"{name}.png", min_bytes=2_000)
    line = figures["line"].axes[0]
    assert line.get_xlabel() == "x (unit)" and line.get_xscale() == "log"
    assert [t.get_text() for t in line.get_legend().get_texts()] == ["a", "b", "ref"]
    bars = figures["bars"].axes[0]
    assert sorted(t.get_text() for t in bars.get_legend().get_texts()) == ["a", "b", "one", "zero"]
    assert sorted(line.get_ydata()[0] for line in bars.get_lines()) == [0.0, 1.0]
