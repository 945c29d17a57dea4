"""minikd: knowledge distillation for language models in NumPy/CuPy, written to be read and checked.

The pieces: ``backend`` (NumPy or CuPy), ``Tensor`` and ``no_grad`` (autograd), ``functional``
(softmax with temperature, NLL, KL, JSD, the distillation loss), ``layers``/``nn``/``model`` (the
transformer-lite), ``optim``, ``data`` (built-in tasks), ``train``, ``checkpoint``, ``gradcheck``.
"""

from minikd import backend, functional, optim
from minikd.autograd import Tensor, no_grad
from minikd.gradcheck import GradcheckError, GradcheckReport, directional_gradcheck, gradcheck

__all__ = ["GradcheckError", "GradcheckReport", "Tensor", "backend", "directional_gradcheck", "functional",
           "gradcheck", "no_grad", "optim"]
__version__ = "0.1.0"
