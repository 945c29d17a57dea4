"""Every tutorial runs top to bottom in fast mode and writes the figures it promises; plots and
``minikd figures`` on small inputs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minikd.tools import plots
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


def test_there_are_nine_tutorials_in_reading_order():
    assert [os.path.basename(p)[:2] for p in PATHS] == [f"{k:02d}" for k in range(1, 10)]


@pytest.mark.parametrize("path", PATHS, ids=[os.path.basename(p) for p in PATHS])
def test_tutorial_runs_in_fast_mode(path, tmp_path):
    source = Path(path).read_text()
    assert source.startswith("# %% [markdown]\n# # "), "a tutorial opens with its title, in prose"
    assert "**What you will learn.**" in source.split("# %%\n")[0], "and says what the reader will learn"
    env = {**os.environ, "MINIKD_FAST": "1", "MINIKD_FIGURES": str(tmp_path / "figures"),
           "MINIKD_RUNS": str(tmp_path / "runs"), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, path], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    promised = promised_figures(path)
    assert promised, "every tutorial saves at least one figure"
    for name in promised:
        assert_png(tmp_path / "figures" / name)


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


def test_plotting_functions_on_small_inputs(tmp_path):
    x = [1, 2, 3]
    figures = {
        "line": plots.line_plot(x, {"a": [1, 2, 3], "b": [3, 2, 1]}, "t", "x (unit)", "y (unit)", logx=True,
                                reference=(2.0, "ref")),
        "bars": plots.grouped_bars(["p", "q"], {"a": [0.1, 0.2], "b": [0.3, 0.1]}, "t", "x", "y"),
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
