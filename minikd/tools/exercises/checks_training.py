"""The checks of the training exercises (tutorials 5 and 6): the order of a distillation step, and PGR.

The step is run on a tiny two-matrix language model with SGD and momentum, beside the reference
step on an identical copy; PGR is checked for its values, limits, invariances and undefined case.
"""

from minikd.engine import backend
from minikd.engine.autograd import Tensor, is_grad_enabled
from minikd.losses import functional as F
from minikd.nn import layers, optim
from minikd.tools.exercises.grading import Check, Failed, expect, expect_raises, host, integers, normal
from minikd.tools.exercises.solutions import distillation_step, pgr

VOCAB, CHANNELS, LAM, T = 6, 4, 0.4, 2.0


# ---- the order of a distillation step --------------------------------------------------------------------------
class TinyLM:
    """logits = embedding(x) Wᵀ: (B, S) ids → (B, S, V). Records whether gradients were on at each call."""

    def __init__(self, seed):
        self.embed = Tensor(normal((VOCAB, CHANNELS), seed), requires_grad=True)
        self.head = Tensor(normal((VOCAB, CHANNELS), seed + 1), requires_grad=True)
        self.grad_enabled = []

    def __call__(self, x):
        self.grad_enabled.append(is_grad_enabled())
        return layers.linear(layers.embedding(x, self.embed), self.head)  # (B, S, V)

    def parameters(self):
        return [self.embed, self.head]

    def flat(self):
        xp = backend.xp()
        return xp.concat([xp.reshape(p.data, (-1,)) for p in self.parameters()])


def _setup():
    student, teacher = TinyLM(400), TinyLM(410)
    return student, teacher, optim.SGD(student.parameters(), lr=0.5, momentum=0.5)


def _batch(step):
    return integers(VOCAB, (2, 3), 420 + 2 * step), integers(VOCAB, (2, 3), 421 + 2 * step)


def _wrong_runs(steps):
    """The student's parameters after ``steps`` steps when the gradients are never cleared."""
    student, teacher, optimizer = _setup()
    for step in range(steps):
        x, y = _batch(step)
        loss = F.distillation_loss(student(x), teacher(x).data, y, lam=LAM, T=T)
        loss.backward()
        optimizer.step()
    return student.flat()


NOT_MOVED = ("the parameters did not move: call optimizer.zero_grad(), then loss.backward(), then optimizer.step() "
             "(zero_grad between backward and step wipes the gradient)")


def _run_steps(student_step, steps):
    student, teacher, optimizer = _setup()
    losses = [student_step(student, teacher, optimizer, *_batch(step), LAM, T) for step in range(steps)]
    return student, teacher, losses


def _first_loss_variants():
    """The loss of step 1 for the objectives a student may write by mistake, with what each mistake is."""
    student, teacher, _ = _setup()
    x, y = _batch(0)
    z, v = student(x), teacher(x).data

    def loss(**options):
        return F.distillation_loss(z, v, y, **{"lam": LAM, "T": T, **options}).item()

    return [(loss(lam=1 - LAM), "λ on the wrong term: lam=lam weighs the teacher"),
            (loss(scale_T2=False), "the soft term's T² is missing (scale_T2=False)"),
            (loss(T=1.0), "T is not passed on: F.distillation_loss(..., lam=lam, T=T)"),
            (F.cross_entropy(z, y).item(), "this is the cross-entropy alone: the teacher is missing")]


def _step_values(student_step):
    initial = _setup()[0].flat()
    _, _, (first,) = _run_steps(student_step, 1)
    _, _, (expected,) = _run_steps(distillation_step.distillation_step, 1)
    xp = backend.xp()
    expect("the loss returned at step 1", xp.asarray(expected, device=backend.device()), host(first, "loss"),
           hints=[(xp.asarray(value, device=backend.device()), message) for value, message in _first_loss_variants()])
    for steps in (1, 3):
        mine, _, my_losses = _run_steps(student_step, steps)
        ref, _, ref_losses = _run_steps(distillation_step.distillation_step, steps)
        label = f"the student's parameters after {steps} step{'s' * (steps > 1)}"
        expect(label, ref.flat(), mine.flat(), hints=[
            (initial, NOT_MOVED),
            (_wrong_runs(steps), "gradients accumulate across steps: call optimizer.zero_grad() before loss.backward()")])
        for step, (e, o) in enumerate(zip(ref_losses, my_losses)):
            expect(f"the loss returned at step {step + 1} (before its update)", e, host(o, "loss"))


def _teacher_untouched(student_step):
    student, teacher, _ = _run_steps(student_step, 2)
    fresh = TinyLM(410)
    expect("the teacher's parameters after 2 steps (the teacher must not change)", fresh.flat(), teacher.flat())
    if any(p.grad is not None for p in teacher.parameters()):
        raise Failed("the teacher received a gradient: its logits are a constant target; run it under no_grad()")
    if any(teacher.grad_enabled):
        raise Failed("the teacher ran with gradients on: compute its logits inside `with no_grad():` "
                     "(no graph is kept for a constant target)")
    if not all(student.grad_enabled):
        raise Failed("the student ran under no_grad: its logits need a graph for backward()")


def distillation_step_checks():
    return [Check("parameters and loss against the reference after 1 and 3 steps (SGD with momentum)", _step_values),
            Check("the teacher runs under no_grad and is never updated; the student runs with gradients", _teacher_untouched)]


# ---- PGR ------------------------------------------------------------------------------------------------------
TRIPLES = ((0.5, 0.7, 0.9), (0.2, 0.9, 0.6), (0.6, 0.5, 0.8), (2.1, 1.8, 1.2))  # (weak, student, ceiling)


def _pgr_wrong(weak, student, ceiling):
    return [((student - weak) / (ceiling - student), "the denominator is ceiling − weak, the whole gap"),
            ((ceiling - student) / (ceiling - weak), "that is the gap left, 1 − PGR: PGR is (student − weak)/(ceiling − weak)"),
            (student / ceiling, "PGR compares gaps: (student − weak)/(ceiling − weak), not student/ceiling")]


def _value(student, *triple):
    return host(student(*triple), f"pgr{triple}").reshape(())


def _pgr_values(student):
    xp = backend.xp()
    for triple in TRIPLES:
        expect(f"pgr{triple}", xp.asarray(pgr.pgr(*triple), device=backend.device()), _value(student, *triple),
               hints=[(xp.asarray(w, device=backend.device()), m) for w, m in _pgr_wrong(*triple)])


def _pgr_limits(student):
    xp = backend.xp()
    expect("student = weak gives 0", xp.asarray(0.0, device=backend.device()), _value(student, 0.4, 0.4, 0.9))
    expect("student = ceiling gives 1", xp.asarray(1.0, device=backend.device()), _value(student, 0.4, 0.9, 0.9))
    base = _value(student, 0.3, 0.5, 0.8)
    for a, b in ((3.0, -1.0), (-2.0, 5.0)):
        expect(f"invariance: the same after x → {a:g}·x + {b:g} (a unit, or a loss for an accuracy)", base,
               _value(student, a * 0.3 + b, a * 0.5 + b, a * 0.8 + b))


def _pgr_undefined(student):
    expect_raises("ceiling == weak", ValueError, lambda: student(0.7, 0.8, 0.7),
                  hint="PGR is undefined there: raise ValueError with a message, not a ZeroDivisionError, inf or nan")


def pgr_checks():
    return [Check("values against the reference (student below, between and above; accuracies and losses)", _pgr_values),
            Check("PGR = 0 at the weak teacher, 1 at the ceiling; invariant to x → a·x + b", _pgr_limits),
            Check("ceiling == weak raises ValueError", _pgr_undefined)]
