"""Sequence-level and on-policy distillation, on tasks of prompt → completion (the addition task).

Sequence-level KD (Kim & Rush, 2016): the frozen teacher completes every training prompt and the
student learns from those completions instead of the ground truth (NLL on the teacher's tokens,
optionally with token-level KD on the same sequences). On-policy distillation: with probability p
a batch's completions are sampled from the student itself, and the target is the teacher's
distribution on those tokens, so the student learns on the states it actually visits.
"""

from minikd.engine import backend, validate
from minikd.losses import functional as F
from minikd.recipes.teacher import teacher_logits
from minikd.tasks.data import IGNORE_INDEX

ON_POLICY_STREAM = 2_000_003  # random keys apart from the batches' and the label noise's


def check_prompt_task(task, what):
    """Sequence-level and on-policy distillation need prompts to complete: the addition task."""
    if not hasattr(task, "prompt_length"):
        raise ValueError(f"{what} needs a task of prompts and completions (addition), got task {task.name!r}")


def complete(model, prompts, n_tokens, temperature=0.0, seed=0, batch_size=1024):
    """The model's completions of host ``prompts`` (n, P): a host array (n, P + n_tokens).

    Greedy at temperature 0; otherwise chunk k of the prompts samples with ``rng(seed, k, step)``.
    """
    np = backend.host_xp()
    chunks = []
    for k, start in enumerate(range(0, len(prompts), batch_size)):
        part = backend.from_numpy(prompts[start:start + batch_size])
        chunks.append(backend.to_numpy(model.generate(part, n_tokens, temperature=temperature, seed=seed, keys=(k,))))
    return np.concatenate(chunks)


def teacher_completions(teacher, task, temperature=0.0, seed=0):
    """``task`` with every training answer replaced by the teacher's completion of its prompt.

    Validation is untouched: the student is still scored against the ground truth.
    """
    check_prompt_task(task, "sequence-level distillation")
    prompts = task.examples["train"][:, : task.prompt_length]  # (n, P)
    return task.with_train_examples(complete(teacher, prompts, task.digits + 1, temperature, seed))


class OnPolicyDistiller:
    """A ``train`` loss function. At each step, with probability ``p`` (drawn from the step's seed):
    the student samples completions of the batch's prompts and the loss is
    T²·KL(teacher_T ‖ student_T) on the completion positions; otherwise ``off_policy(student, x, y, step)``.
    """

    def __init__(self, teacher, task, p, off_policy, T=1.0, temperature=1.0, seed=0):
        check_prompt_task(task, "on-policy distillation")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"on-policy probability p must be in [0, 1], got {p!r}")
        self.teacher, self.task, self.p, self.off_policy = teacher.eval(), task, p, off_policy
        self.T, self.temperature, self.seed = validate.check_temperature(T), temperature, seed

    def on_policy(self, step):
        """Whether step ``step`` learns from the student's own samples (the same answer every run)."""
        return self.p > 0 and backend.host_rng(self.seed, ON_POLICY_STREAM, step).random() < self.p

    def __call__(self, student, x, y, step):
        if not self.on_policy(step):
            return self.off_policy(student, x, y, step)
        prompts = x[:, : self.task.prompt_length]  # (B, P)
        sequences = student.generate(prompts, self.task.digits + 1, temperature=self.temperature, seed=self.seed,
                                     keys=(ON_POLICY_STREAM, step))  # (B, P + digits + 1), no graph
        x, y = self.task.pairs(sequences)
        v = teacher_logits(self.teacher, x)  # the teacher's view of the student's own answers
        return F.distillation_loss(student(x), v, y, lam=1.0, T=self.T, ignore_index=IGNORE_INDEX)  # T²·KL

    def describe(self, step):
        return {"on_policy": bool(self.on_policy(step))}
