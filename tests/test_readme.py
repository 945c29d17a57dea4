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


WEAK_TO_STRONG = "model | exact match, seeds 0 / 1 / 2 | mean ± sd |"
LONGER_WEAK = "model | exact match, seeds 0 / 1 / 2 | PGR, seeds 0 / 1 / 2 | PGR mean ± sd |"


def weak_to_strong_rows(header):
    rows = table(header)
    return {name: row(rows, name) for name in ("weak teacher", "student", "+ confidence", "ceiling")}


@pytest.mark.parametrize("header", [WEAK_TO_STRONG, LONGER_WEAK])
def test_weak_to_strong_tables_pgr_is_recomputed_from_their_accuracies(header):
    rows = weak_to_strong_rows(header)
    weak, ceiling = seeds(rows["weak teacher"][0])[0], seeds(rows["ceiling"][0])[0]
    pgr_column = 2 if header == WEAK_TO_STRONG else 1
    for name in ("student", "+ confidence"):
        accuracy = seeds(rows[name][0])[0]
        printed = seeds(rows[name][pgr_column])[0]
        for w, s, c, p in zip(weak, accuracy, ceiling, printed):
            # accuracies are printed to 0.1 %: PGR can move by 0.001·(1 + |PGR|)·2/(c − w) through rounding
            assert abs(pgr(w, s, c) - p) <= 0.001 * (1 + abs(p)) / ((c - w) / 100) + 5e-4, (name, w, s, c, p)
        assert_mean_sd(rows[name][pgr_column], rows[name][pgr_column + 1])
    if header == WEAK_TO_STRONG:
        for name in rows:
            assert_mean_sd(rows[name][0], rows[name][1])


def test_weak_to_strong_sentences_follow_from_the_table():
    rows = weak_to_strong_rows(WEAK_TO_STRONG)
    student, confident = seeds(rows["student"][2])[0], seeds(rows["+ confidence"][2])[0]
    in_readme("in every seed the student recovers between 0.378 and 0.507 of the gap")
    assert (min(student), max(student)) == (0.378, 0.507)
    in_readme("The confidence loss does **not** help here: its mean PGR is lower, and its spread (0.29) is "
              "larger than the difference; in seed 0 it cost most of the gain.")
    (m_student, _), (m_confident, sd_confident) = mean_spread(student), mean_spread(confident)
    assert m_confident < m_student and round(sd_confident, 2) == 0.29 and sd_confident > m_student - m_confident
    assert confident[0] < student[0] / 2  # seed 0: most of the gain gone
    assert not clearly_below(confident, student) and not clearly_below(student, confident)


def test_longer_weak_teacher_sentences_follow_from_the_table():
    rows = weak_to_strong_rows(LONGER_WEAK)
    weak = seeds(rows["weak teacher"][0])[0]
    student, confident = seeds(rows["student"][1])[0], seeds(rows["+ confidence"][1])[0]
    in_readme("the seed decides whether it gets 8 % or 87 % right")
    assert round(min(weak)) == 8 and round(max(weak)) == 87
    in_readme("With the 87 % teacher (seed 0) the student fell below it (PGR −0.99).")
    assert student[0] < 0 and round(student[0], 2) == -0.99
    in_readme("The confidence loss gave a higher PGR in all three seeds, but by 0.88, 0.26 and 0.04")
    differences = [c - s for c, s in zip(confident, student)]
    assert all(d > 0 for d in differences) and [round(d, 2) for d in differences] == [0.88, 0.26, 0.04]
    in_readme("the differences vary more than their mean (0.39 ± 0.43)")
    mean, sd = mean_spread(differences)
    assert (round(mean, 2), round(sd, 2)) == (0.39, 0.43) and sd > mean


SEQUENCE = "training data | token-level KD | exact match at step 1500, seeds 0 / 1 / 2 | mean ± sd |"


def test_sequence_level_table_and_its_reading():
    rows = table(SEQUENCE)
    true, completions, token_kd = rows[0][2:4], rows[1][2:4], rows[2][2:4]
    for per_seed, summary in (true, completions, token_kd):
        assert_mean_sd(per_seed, summary)
    true, completions, token_kd = (seeds(cells[0])[0] for cells in (true, completions, token_kd))
    in_readme("Training on the teacher's completions and training on the true answers are not different "
              "beyond the seed spread.")
    assert not clearly_below(true, completions) and not clearly_below(completions, true)
    in_readme("Token-level KD at λ = 0.5, T = 2 stalled in two seeds of three; its mean is below the true "
              "answers' by slightly more than the two spreads together")
    assert sum(value < 20 for value in token_kd) == 2 and clearly_below(token_kd, true)
    (m_kd, sd_kd), (m_true, sd_true) = mean_spread(token_kd), mean_spread(true)
    assert m_true - m_kd < 1.1 * (sd_kd + sd_true)  # "slightly": within 10 % of the two spreads


DEMO = "metric | CE-only, seeds 0 / 1 / 2 | mean ± sd | KD, seeds 0 / 1 / 2 | mean ± sd |"


def test_demo_table_and_its_reading():
    rows = table(DEMO)
    for cells in rows:
        assert_mean_sd(cells[1], cells[2])
        assert_mean_sd(cells[3], cells[4])
    final, best = row(rows, "KL to the true distribution, at step 1200"), row(rows, "KL to the true distribution, lowest")
    ce, kd = seeds(final[0])[0], seeds(final[2])[0]
    assert clearly_below(kd, ce)  # "by far more than the spread"
    ratios = [c / k for c, k in zip(ce, kd)]
    low, high = re.search(rf"({NUMBER}) to ({NUMBER}) times closer at step 1200", README).groups()
    assert (round(min(ratios), 1), round(max(ratios), 1)) == (number(low), number(high)), ratios
    ce_best, kd_best = seeds(best[0])[0], seeds(best[2])[0]
    best_ratios = [c / k for c, k in zip(ce_best, kd_best)]
    low, high = re.search(rf"still ({NUMBER}) to ({NUMBER}) times closer", README).groups()
    assert (round(min(best_ratios), 1), round(max(best_ratios), 1)) == (number(low), number(high)), best_ratios
    assert all(b < f for b, f in zip(ce_best + kd_best, ce + kd))  # lowest during the run, then it rose


def test_demo_seed_0_printout_is_the_tables_seed_0():
    rows = table(DEMO)
    for printed, name in (("validation CE (nats/token)", "validation CE"),
                          ("KL to the true distribution", "KL to the true distribution, at step 1200"),
                          ("top-1 agreement with the teacher", "top-1 agreement")):
        ce, kd = re.search(rf"^  {re.escape(printed)}\s+({NUMBER})\s+({NUMBER})$", README, re.MULTILINE).groups()
        cells = row(rows, name)
        assert (number(ce), number(kd)) == (seeds(cells[0])[0][0], seeds(cells[2])[0][0]), name


def test_weak_to_strong_seed_0_printout_is_the_tables_seed_0():
    rows = weak_to_strong_rows(WEAK_TO_STRONG)
    for printed, name in (("weak teacher ('small', 700 steps)", "weak teacher"),
                          ("student, weak labels + 500 verified (λ=0.5)", "student"),
                          ("  + confidence loss (α_max=0.5)", "+ confidence"),
                          ("ceiling ('teacher', all ground truth)", "ceiling")):
        match = re.search(rf"^  {re.escape(printed)}\s+({NUMBER})%(?:\s+({NUMBER})$)?", README, re.MULTILINE)
        assert match, printed
        assert number(match[1]) == seeds(rows[name][0])[0][0], name
        if match[2] is not None:
            assert number(match[2]) == seeds(rows[name][2])[0][0], name
