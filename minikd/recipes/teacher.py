"""The frozen teacher: its logits without a graph, and the checkpoint, task and student that go with it.

Shared by every distillation recipe (token-level, hidden-state, sequence-level, on-policy, weak-to-strong).
"""

from minikd.engine import backend
from minikd.engine.autograd import no_grad
from minikd.nn.model import TransformerLM, preset
from minikd.recipes import checkpoint
from minikd.tasks import data as tasks


def teacher_logits(teacher, x, bias=(), return_hidden=False):
    """The frozen teacher's logits for x as a raw array (no graph); with ``return_hidden``, also its
    residual streams (a list of arrays). With ``bias = (c, w, b)``, logit w gets +b wherever the
    current input token is c: a teacher that errs the same way every time."""
    with no_grad():
        result = teacher(x, return_hidden=return_hidden)
    logits, hiddens = result if return_hidden else (result, [])
    logits = logits.data  # (B, S, V)
    if bias:
        context, wrong, bonus = bias
        xp = backend.xp()
        logits = xp.asarray(logits, copy=True)
        logits[..., wrong] += bonus * xp.astype(x == context, logits.dtype)
    return (logits, [h.data for h in hiddens]) if return_hidden else logits


class TeacherCache:
    """The frozen teacher's logits of each step's batch, kept for the next student trained on the same
    batches: a sweep's students all see the batches of (seed, step), so the teacher's forward pass is
    done once per step, not once per student (offline distillation).

    ``logits(x, step)`` is ``teacher_logits(teacher, x, bias)`` bit for bit: the batch kept for ``step``
    is compared with x (one scalar read), and a different batch is computed afresh and kept instead.
    At most ``max_bytes`` of batches and logits are kept; past that, new steps are computed every time.
    """

    def __init__(self, teacher, bias=(), max_bytes=256 * 2**20):
        self.teacher, self.bias, self.max_bytes = teacher.eval(), bias, max_bytes
        self.kept, self.kept_bytes, self.hits = {}, 0, 0  # {step: (x, logits)}

    def logits(self, x, step):
        xp = backend.xp()
        if step in self.kept:
            kept_x, kept_v = self.kept[step]
            if kept_x.shape == x.shape and bool(xp.all(kept_x == x)):
                self.hits += 1
                return kept_v
            self.kept_bytes -= backend.nbytes(kept_x) + backend.nbytes(kept_v)
            del self.kept[step]
        v = teacher_logits(self.teacher, x, self.bias)
        size = backend.nbytes(x) + backend.nbytes(v)
        if self.kept_bytes + size <= self.max_bytes:
            self.kept[step] = (xp.asarray(x, copy=True), v)  # a copy: the caller may reuse its batch array
            self.kept_bytes += size
        return v


def check_pair(teacher, student):
    """The teacher and student must share a vocabulary (and the student may not read longer sequences)."""
    teacher_config, student_config = teacher.config, student.config
    if teacher_config.vocab_size != student_config.vocab_size:
        raise ValueError(f"teacher and student vocabularies differ: teacher vocab_size={teacher_config.vocab_size}, "
                         f"student vocab_size={student_config.vocab_size}")
    if student_config.block_size > teacher_config.block_size:
        raise ValueError(f"the student reads {student_config.block_size} tokens but the teacher only "
                         f"{teacher_config.block_size}")


def load_setting(teacher_dir, seed=None, task_name=None, data=None, train_tokens=None):
    """(checkpoint path, frozen teacher, task): the teacher's own task unless ``task_name`` says otherwise.

    ``seed`` (the task's data) defaults to the seed the run was trained with; ``teacher_dir`` is a run
    folder or a checkpoint file. Works for any run, a teacher's or a student's.
    """
    path = checkpoint.path_of(teacher_dir)
    ckpt = checkpoint.load(path)  # read once: the weights and the task it was trained on
    teacher = ckpt.model()
    if seed is None:
        seed = ckpt.meta.get("train_config", {}).get("seed", 0)
    name = task_name or ckpt.meta.get("task", "grammar")
    sizes = {"block_size": teacher.config.block_size} if name in ("grammar", "text") else {}
    if train_tokens and name == "grammar":
        sizes["train_tokens"] = train_tokens
    task = tasks.load_task(name, seed=seed, data=data, **sizes)
    check_symbols(path, ckpt.symbols, task)
    return path, teacher, task


def open_run(run_dir, task_name=None, data=None):
    """``load_setting`` for the commands that read a run (generate, eval, landscape): a text file
    ``data`` means the text task, and contradicts any other ``task_name``."""
    if data is not None and (task_name or "text") != "text":
        raise ValueError(f"--data is read only with --task text, got --task {task_name}")
    return load_setting(run_dir, task_name="text" if data and task_name is None else task_name, data=data)


def check_symbols(path, symbols, task):
    """The checkpoint's vocabulary must be the task's, symbol for symbol (checkpoints that predate the
    stored symbols are checked by their size alone, in ``check_pair``)."""
    if symbols is None or list(symbols) == list(task.tokenizer.symbols):
        return
    theirs = task.tokenizer.symbols
    if len(symbols) != len(theirs):
        raise ValueError(f"the model in {path!r} was trained on {len(symbols)} symbols, task {task.name!r} has "
                         f"{len(theirs)}: teacher and student vocabularies differ")
    first = next(i for i, (a, b) in enumerate(zip(symbols, theirs)) if a != b)
    raise ValueError(f"the model in {path!r} was trained on other symbols than task {task.name!r} has "
                     f"(symbol {first} is {symbols[first]!r} there, {theirs[first]!r} here): a model only "
                     f"reads the vocabulary it was trained on")


def new_student(student_preset, task, teacher, seed):
    student = TransformerLM(preset(student_preset, task.tokenizer.vocab_size, task.block_size), seed=seed)
    check_pair(teacher, student)
    return student
