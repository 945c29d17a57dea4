"""minikd: knowledge distillation for language models in NumPy/CuPy, written to be read and checked.

The pieces: ``backend`` (NumPy or CuPy), ``Tensor`` and ``no_grad`` (autograd),
``functional`` (softmax with temperature, NLL, KL, JSD, the distillation loss), ``gradcheck``.
"""

from minikd import backend, functional
from minikd.autograd import Tensor, no_grad
from minikd.gradcheck import GradcheckError, GradcheckReport, gradcheck

__all__ = ["GradcheckError", "GradcheckReport", "Tensor", "backend", "functional", "gradcheck", "no_grad"]
__version__ = "0.1.0"
