"""Argument checks shared by every layer: each names the argument and its value.

One rule throughout minikd: a TypeError when the argument is the wrong kind of thing (a string
where a number belongs, a float where an integer belongs), a ValueError when it is the right kind
with a bad value (T = 0, λ = 1.5, a negative size).

Checks that must read device data (targets in range, finite logits) cost one small device-to-host
transfer each; they run once per loss call, never per element.
"""

import math
import numbers

from minikd.engine import backend


def check_real(name, value):
    """``value`` must be a real number (a Python or NumPy scalar; a bool is not one), else a TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return value


def check_integer(name, value):
    """``value`` must be an integer (a Python or NumPy integer; a bool is not one), else a TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    return value


def check_temperature(T, name="T"):
    """T must be a finite number > 0 (a Python or NumPy scalar); returned as a Python float.
    ``name`` is the argument's name in the error (e.g. ``T_end``)."""
    check_real(name, T)
    if not math.isfinite(T) or T <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {name}={T!r}")
    return float(T)


def check_lam(lam, form, name="lam"):
    """lam in [0, 1] for the interpolated form, lam >= 0 for the additive form; ``name`` as above."""
    check_real(name, lam)
    if not math.isfinite(lam):
        raise ValueError(f"{name} must be a finite number, got {name}={lam!r}")
    if form == "interpolate" and not 0.0 <= lam <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] for form='interpolate', got {name}={lam!r}")
    if form == "additive" and lam < 0.0:
        raise ValueError(f"{name} must be >= 0 for form='additive', got {name}={lam!r}")
    return float(lam)


def check_beta(beta):
    """beta strictly inside (0, 1): at 0 or 1 the Jensen-Shannon mixture degenerates."""
    check_real("beta", beta)
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be a number in (0, 1), got beta={beta!r}")
    return float(beta)


def check_positive_int(name, value):
    """``value`` must be an integer >= 1 (a Python or NumPy integer; a bool is not one here); returned as an int."""
    check_integer(name, value)
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_choice(name, value, choices):
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {name}={value!r}")
    return value


def check_float_logits(name, x):
    """Logits must be a float array with at least one axis (the class axis)."""
    if not backend.is_float_dtype(x.dtype):
        raise TypeError(f"{name} must be a float array, got dtype {backend.dtype_name(x.dtype)}")
    if x.ndim == 0:
        raise ValueError(f"{name} must have a class axis, got a 0-d array")


def check_same_shape(student, teacher):
    """Student and teacher logits must have one shape; name the vocabulary when only it differs."""
    if student.shape == teacher.shape:
        return
    if student.shape[:-1] == teacher.shape[:-1]:
        raise ValueError(
            f"vocabulary size differs: student_logits has {student.shape[-1]} classes, "
            f"teacher_logits has {teacher.shape[-1]} (shapes {student.shape} and {teacher.shape})"
        )
    raise ValueError(f"student_logits shape {student.shape} differs from teacher_logits shape {teacher.shape}")


def check_finite(name, x):
    """Raise a ValueError naming the first NaN or inf in ``x`` (one host transfer of a flag)."""
    xp = backend.xp()
    finite = xp.isfinite(x)
    if bool(xp.all(finite)):
        return
    first = _first_true(~finite)
    value = backend.to_numpy(xp.reshape(x, (-1,))[first])  # only the offending element leaves the device
    raise ValueError(f"{name} must be finite, got {value} at index {backend.unravel_index(first, x.shape)}")


def _first_true(flags):
    """The flat position of the first true entry of a boolean array (a host int: one synchronisation)."""
    xp = backend.xp()
    return int(xp.argmax(xp.astype(xp.reshape(flags, (-1,)), xp.int8)))


def check_targets(targets, leading_shape, num_classes, ignore_index):
    """Targets: integers of the logits' leading shape, each in [0, V) or equal to ``ignore_index``."""
    if not backend.is_int_dtype(targets.dtype):
        raise TypeError(f"targets must be integers, got dtype {backend.dtype_name(targets.dtype)}")
    if targets.shape != tuple(leading_shape):
        raise ValueError(f"targets must have the logits' leading shape {tuple(leading_shape)}, got {targets.shape}")
    xp = backend.xp()
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= num_classes))
    if bool(xp.any(bad)):
        first = _first_true(bad)
        value = int(xp.reshape(targets, (-1,))[first])
        raise ValueError(
            f"targets must be in [0, {num_classes}) or equal ignore_index={ignore_index}, "
            f"got {value} at flat position {first}"
        )


def check_mask(mask, leading_shape):
    """A mask is boolean (or 0/1) with the logits' leading shape; returns it as booleans."""
    if mask.shape != tuple(leading_shape):
        raise ValueError(f"mask must have the logits' leading shape {tuple(leading_shape)}, got {mask.shape}")
    if not backend.is_bool_dtype(mask.dtype):
        if not bool(backend.xp().all((mask == 0) | (mask == 1))):
            raise ValueError("mask must be boolean or hold only 0 and 1")
        mask = mask != 0
    return mask
