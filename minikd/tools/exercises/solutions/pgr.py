"""Reference solution: the performance gap recovered."""


def pgr(weak, student, ceiling):
    """PGR = (student − weak) / (ceiling − weak): 0 = the weak teacher, 1 = the ceiling; undefined when equal."""
    if ceiling == weak:
        raise ValueError(f"PGR is undefined when ceiling == weak (both {weak!r})")
    return (student - weak) / (ceiling - weak)
