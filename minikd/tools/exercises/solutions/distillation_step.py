"""Reference solution: one training step of distillation, in the right order."""

from minikd.engine.autograd import no_grad
from minikd.losses import functional as F


def distillation_step(student, teacher, optimizer, x, y, lam, T):
    """Teacher forward without a graph; student forward; loss; zero_grad → backward → step. Returns the loss."""
    with no_grad():
        teacher_logits = teacher(x)  # (B, S, V): a constant target, no graph kept
    student_logits = student(x)  # (B, S, V)
    loss = F.distillation_loss(student_logits, teacher_logits, y, lam=lam, T=T)
    optimizer.zero_grad()  # gradients accumulate: clear the last step's first
    loss.backward()
    optimizer.step()
    return loss.item()
