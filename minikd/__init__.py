"""minikd: knowledge distillation for language models in NumPy/CuPy, written to be read and checked.

The folders are the layers, read bottom-up: ``engine`` (backend, Tensor, autograd, gradcheck) →
``losses`` (softmax with T, NLL, KL, JSD, the distillation objective) → ``nn`` (layers, modules, the
transformer-lite, optimizers, schedules) → ``tasks`` (grammar, addition, text) → ``recipes``
(training, checkpoints, distillation) → ``tools`` (CLI, demo, bench, plots, landscapes).
The names used most are here at the top: ``Tensor``, ``no_grad``, ``functional`` (as ``F``),
``gradcheck``, ``backend``, ``optim``.
"""

from importlib.metadata import version

from minikd.engine import backend, ops  # noqa: F401  (ops gives Tensor its operators)
from minikd.engine.autograd import Tensor, no_grad
from minikd.engine.gradcheck import GradcheckError, GradcheckReport, directional_gradcheck, gradcheck
from minikd.losses import functional
from minikd.nn import optim

__all__ = ["GradcheckError", "GradcheckReport", "Tensor", "backend", "directional_gradcheck", "functional",
           "gradcheck", "no_grad", "optim"]
__version__ = version("minikd")  # pyproject.toml is the one place it is written
