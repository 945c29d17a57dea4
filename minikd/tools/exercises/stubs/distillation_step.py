"""# The order of a distillation training step

Write `distillation_step(student, teacher, optimizer, x, y, lam, T)`: one training step of the
student on the batch (x, y), distilling the teacher.

- `student`, `teacher`: models; `model(x)` returns logits, a Tensor (B, S, V). Only the student learns.
- `optimizer`: a `minikd.nn.optim` optimizer over the student's parameters (`zero_grad()`, `step()`).
- `x`: token ids (B, S); `y`: targets (B, S); `lam`, `T`: floats.
- Return the loss of this step (a float, or a one-element Tensor), computed before the update.

The maths: L = (1 − λ)·CE(student(x), y) + λ·T²·KL(teacher(x)_T ‖ student(x)_T), which is
`F.distillation_loss(student_logits, teacher_logits, y, lam=lam, T=T)`.

Hint: the teacher is a constant target: run it inside `with no_grad():`, so no graph is kept for it.
Gradients accumulate in `.grad`: clear them (`optimizer.zero_grad()`) before `loss.backward()`,
and call `optimizer.step()` after it.
"""

from minikd.engine.autograd import no_grad
from minikd.losses import functional as F


def distillation_step(student, teacher, optimizer, x, y, lam, T):
    raise NotImplementedError("distillation_step(...): one step, in the right order; return the loss")
