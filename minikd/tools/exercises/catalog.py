"""The exercises, in the tutorials' order: name, title, what the student writes, where its files are, its checks.

A stub's module docstring is the exercise's statement (one source: ``show``, the notebook and the
file the student edits all read it); the reference solution of the same name is what the checks
compare with.
"""

import ast
import inspect
import os
from dataclasses import dataclass

from minikd.tools.exercises import checks_layers, checks_losses, checks_training
from minikd.tools.exercises.grading import run_check

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Exercise:
    name: str
    title: str
    tutorial: str  # the tutorial it follows, e.g. "01_temperature"
    obj: str  # the function or class the student writes
    call: dict  # {"": argument names} for a function; {method: argument names} for a class
    checks: object  # () -> [Check]

    @property
    def stub_path(self):
        return os.path.join(HERE, "stubs", f"{self.name}.py")

    @property
    def solution_path(self):
        return os.path.join(HERE, "solutions", f"{self.name}.py")

    @property
    def is_class(self):
        return "" not in self.call

    def statement(self):
        with open(self.stub_path, encoding="utf-8") as f:
            return ast.get_docstring(ast.parse(f.read()))

    def signature(self):
        if self.is_class:
            return f"class {self.obj}(Function): " + "; ".join(
                f"{method}(self, {', '.join(args)})" for method, args in self.call.items())
        return f"{self.obj}({', '.join(self.call[''])})"

    def signature_error(self, obj):
        """None when ``obj`` can be called as the checks call it, else a one-line reason."""
        if self.is_class:
            if not isinstance(obj, type):
                return f"{self.obj} must be a class, got {type(obj).__name__}"
            targets = [(f"{self.obj}.{m}", getattr(obj, m, None), (None, *args)) for m, args in self.call.items()]
        else:
            if not callable(obj) or isinstance(obj, type):
                return f"{self.obj} must be a function, got {type(obj).__name__}"
            targets = [(self.obj, obj, self.call[""])]
        for label, fn, args in targets:
            if fn is None:
                return f"{label} is missing"
            try:
                inspect.signature(fn).bind(*args)
            except TypeError:
                shown = ", ".join(a for a in args if a) if args[0] is None else ", ".join(args)
                return f"wrong signature: {label}{inspect.signature(fn)} cannot be called as {label}({shown})"
            except ValueError:
                continue  # a builtin without a signature: let the checks find out
        return None


def _fn(*args):
    return {"": args}


EXERCISES = (
    Exercise("softmax_temperature", "Softmax with temperature", "01_temperature", "softmax", _fn("z", "T"),
             checks_losses.softmax_checks),
    Exercise("log_softmax", "A numerically stable log-softmax", "01_temperature", "log_softmax", _fn("z", "T"),
             checks_losses.log_softmax_checks),
    Exercise("nll", "NLL and its gradient", "02_losses_by_hand", "nll", _fn("z", "y"), checks_losses.nll_checks),
    Exercise("kl", "KL(p_T ‖ q_T) and its gradient", "02_losses_by_hand", "kl", _fn("z", "v", "T"),
             checks_losses.kl_checks),
    Exercise("t_squared", "The T² factor", "02_losses_by_hand", "soft_term", _fn("z", "v", "T"),
             checks_losses.t_squared_checks),
    Exercise("combined_objective", "The combined objective, both forms, and its gradient", "03_combined_objective",
             "distillation_loss", _fn("z", "v", "y", "lam", "T", "form"), checks_losses.combined_objective_checks),
    Exercise("jsd", "The generalised Jensen-Shannon divergence", "03_combined_objective", "jsd",
             _fn("p", "q", "beta"), checks_losses.jsd_checks),
    Exercise("autograd_function", "An autograd Function: the sigmoid", "04_autograd_and_transformer", "Sigmoid",
             {"forward": ("x",), "backward": ("g",)}, checks_layers.autograd_function_checks),
    Exercise("layer_norm_backward", "LayerNorm backward", "04_autograd_and_transformer", "layer_norm_backward",
             _fn("g", "x", "gamma", "eps"), checks_layers.layer_norm_backward_checks),
    Exercise("attention_backward", "Causal attention backward", "04_autograd_and_transformer", "attention_backward",
             _fn("q", "k", "v", "g"), checks_layers.attention_backward_checks),
    Exercise("adamw_step", "One AdamW step", "04_autograd_and_transformer", "adamw_step",
             _fn("theta", "grad", "m", "v", "t", "lr", "beta1", "beta2", "eps", "weight_decay"),
             checks_layers.adamw_step_checks),
    Exercise("distillation_step", "The order of a distillation training step", "05_distilling_a_teacher",
             "distillation_step", _fn("student", "teacher", "optimizer", "x", "y", "lam", "T"),
             checks_training.distillation_step_checks),
    Exercise("pgr", "PGR: the performance gap recovered", "06_weak_to_strong", "pgr",
             _fn("weak", "student", "ceiling"), checks_training.pgr_checks),
)
NAMES = tuple(e.name for e in EXERCISES)


def get(name):
    """The exercise called ``name``; a ValueError listing the names otherwise."""
    for exercise in EXERCISES:
        if exercise.name == name:
            return exercise
    raise ValueError(f"no exercise {name!r}; the exercises are: {', '.join(NAMES)}")


def grade(exercise, obj, time_limit=10.0, student_file=None):
    """Run every check of ``exercise`` on the student's ``obj`` in this process; a list of Results.

    Each check runs under the SIGALRM watchdog (main thread on Unix); for a hard guarantee run the
    student's file in a worker process (``isolation.grade_file``), as ``minikd exercise check`` does.
    """
    return [run_check(check, obj, time_limit, student_file) for check in exercise.checks()]


def notebook(exercise):
    """The exercise as a Jupytext percent notebook: the statement, the stub's code, a cell that grades it."""
    with open(exercise.stub_path, encoding="utf-8") as f:
        source = f.read()
    docstring = ast.parse(source).body[0]
    code = "\n".join(source.splitlines()[docstring.end_lineno:]).strip("\n")  # the stub after its statement
    markdown = "\n".join(f"# {line}".rstrip() for line in exercise.statement().splitlines())
    return (f"# %% [markdown]\n{markdown}\n#\n# Fill in the code cell below, then run the last cell: it grades"
            f" `{exercise.obj}` with the same checks as\n# `minikd exercise check {exercise.name} FILE`.\n\n"
            f"# %%\n{code}\n\n"
            f"# %%\nfrom minikd.tools.exercises import check_in_notebook\n\n"
            f"check_in_notebook({exercise.name!r}, {exercise.obj})\n")
