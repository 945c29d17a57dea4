"""The README's numbers against each other: each table's mean ± sd is the mean and sample standard
deviation of its per-seed columns, each PGR is (student − weak)/(ceiling − weak) of its row's
accuracies, and each sentence that interprets a table follows from the table's own numbers.

The runs behind the tables take minutes to an hour each (the README names the command for each);
CI does not rerun them. What it checks here is that no number, sum or comparison the README prints
disagrees with the per-seed results it prints beside it. The tutorials' numbers are rerun and
asserted by their check mode (tests/test_tutorials.py).
"""

import re
from pathlib import Path

import pytest

from minikd.recipes.weak_to_strong import pgr
from minikd.tools.tutorial import clearly_below, mean_spread

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
NUMBER = r"[−-]?\d+(?:\.\d+)?"


def number(text):
    return float(text.replace("−", "-"))


def decimals(text):
    return len(text.split(".")[1]) if "." in text else 0


def table(header):
    """The rows (lists of cells) of the README table whose header row starts with ``header``."""
    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| " + header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def row(rows, name):
    """The cells after the first of the row whose first cell starts with ``name``."""
    return next(r[1:] for r in rows if r[0].startswith(name))


def seeds(cell):
    """``"43.7 / 54.2 / 44.5 %"`` -> [43.7, 54.2, 44.5] (and the texts, for their precision)."""
    texts = re.findall(NUMBER, cell)
    assert len(texts) >= 3 and "/" in cell, cell
    return [number(t) for t in texts], texts


def mean_sd(cell):
    """``"47.5 ± 5.8 %"`` -> (47.5, 5.8, the number of decimals printed)."""
    match = re.match(rf"({NUMBER}) ± ({NUMBER})", cell)
    assert match, cell
    return number(match[1]), number(match[2]), decimals(match[2])


def assert_mean_sd(per_seed_cell, summary_cell):
    values, texts = seeds(per_seed_cell)
    mean, sd, places = mean_sd(summary_cell)
    true_mean, true_sd = mean_spread(values)
    # rounding: of each per-seed value (half a unit of its last digit) and of the summary itself
    tolerance = 0.5 * 10 ** -places + 0.5 * 10 ** -min(decimals(t) for t in texts) + 1e-9
    assert abs(mean - true_mean) <= tolerance and abs(sd - true_sd) <= 2 * tolerance, \
        (per_seed_cell, summary_cell, true_mean, true_sd)


def in_readme(sentence):
    """The README still says ``sentence`` (whitespace aside): the check below is about these words."""
    assert " ".join(sentence.split()) in " ".join(README.split()), sentence
