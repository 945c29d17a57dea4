"""# PGR: the performance gap recovered

Write `pgr(weak, student, ceiling)`: how much of the gap between a weak teacher and the ceiling a
weak-to-strong student recovers (Burns et al., 2023).

- `weak`, `student`, `ceiling`: floats, one metric measured on the same held-out data (an accuracy,
  or a loss: the formula does not care which way is better).
- Return a float; raise `ValueError` when the gap is zero (ceiling == weak): PGR is undefined there.

The maths: PGR = (student − weak) / (ceiling − weak). PGR = 0: no better than the weak teacher;
PGR = 1: as good as the ceiling; it may be negative (worse than the teacher) or above 1.

Hint: PGR does not change when all three numbers are scaled or shifted together (a different
unit, or a loss instead of an accuracy). Check the undefined case first.
"""


def pgr(weak, student, ceiling):
    raise NotImplementedError("pgr(weak, student, ceiling): return (student − weak) / (ceiling − weak)")
