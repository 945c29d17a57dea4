"""Sequence-level and on-policy distillation on the addition task."""

import numpy as np
import pytest
from reference import assert_same_params

from minikd import backend
from minikd.recipes import checkpoint
from minikd.tasks import data
from minikd import functional as F
from minikd.tools.cli import main
from minikd.recipes.distill import DistillConfig, Distiller
from minikd.recipes.teacher import teacher_logits
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.sequence import ON_POLICY_STREAM, OnPolicyDistiller, teacher_completions
from minikd.recipes.train import TrainConfig, cross_entropy_loss, train


@pytest.fixture(scope="module")
def task():
    return data.AdditionTask(digits=3, train_examples=300, val_examples=40, seed=0)


@pytest.fixture(scope="module")
def teacher(task):
    model = TransformerLM(preset("tiny", task.tokenizer.vocab_size, task.block_size), seed=3)
    train(model, task, TrainConfig(steps=30, batch_size=16, eval_every=30, eval_windows=8), progress=False)
    return model.eval()


CONFIG = TrainConfig(steps=6, batch_size=8, eval_every=3, eval_windows=16, warmup=1, seed=2)


def student(task):
    return TransformerLM(preset("tiny", task.tokenizer.vocab_size, task.block_size), seed=1)


def test_teacher_completions_replace_the_training_answers_only(task, teacher):
    relabelled = teacher_completions(teacher, task)
    train_examples, P = task.examples["train"], task.prompt_length
    completed = relabelled.examples["train"]
    np.testing.assert_array_equal(completed[:, :P], train_examples[:, :P])  # the same prompts
    greedy = backend.to_numpy(teacher.generate(backend.from_numpy(train_examples[:5, :P]), task.digits + 1,
                                               temperature=0))
    np.testing.assert_array_equal(completed[:5], greedy)
    assert relabelled.examples["val"] is task.examples["val"]  # still scored against the truth
    assert task.examples["train"] is train_examples  # the original task is untouched


def test_sampled_completions_are_seeded(task, teacher):
    a = teacher_completions(teacher, task, temperature=1.0, seed=4).examples["train"]
    b = teacher_completions(teacher, task, temperature=1.0, seed=4).examples["train"]
    c = teacher_completions(teacher, task, temperature=1.0, seed=5).examples["train"]
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_sequence_level_kd_trains_on_the_teachers_tokens(task, teacher):
    """λ = 0 on teacher completions is cross-entropy on them: the same student as training on a task
    whose answers are the teacher's."""
    relabelled = teacher_completions(teacher, task)
    a, b = student(task), student(task)
    train(a, relabelled, CONFIG, loss_fn=Distiller(teacher, DistillConfig(lam=0.0), CONFIG.steps), progress=False)
    train(b, task.with_train_examples(relabelled.examples["train"].copy()), CONFIG, progress=False)
    assert_same_params(a, b)


def test_on_policy_with_p_zero_is_off_policy(task, teacher):
    a, b = student(task), student(task)
    train(a, task, CONFIG, progress=False)
    train(b, task, CONFIG, loss_fn=OnPolicyDistiller(teacher, task, 0.0, cross_entropy_loss), progress=False)
    assert_same_params(a, b)


def test_on_policy_loss_is_the_teachers_kl_on_the_students_samples(task, teacher):
    distiller = OnPolicyDistiller(teacher, task, 1.0, cross_entropy_loss, T=2.0, seed=3)
    model = student(task)
    x, y = task.batch("train", 8, seed=0, step=0)
    loss = distiller(model, x, y, 5).item()
    sampled = model.generate(x[:, : task.prompt_length], task.digits + 1, temperature=1.0, seed=3,
                             keys=(ON_POLICY_STREAM, 5))
    xs, ys = task.pairs(sampled)
    assert (backend.to_numpy(xs[:, : task.prompt_length]) == backend.to_numpy(x[:, : task.prompt_length])).all()
    expected = 4.0 * F.kl_div(model(xs), teacher_logits(teacher, xs), T=2.0, mask=ys != data.IGNORE_INDEX).item()
    assert loss == pytest.approx(expected, rel=1e-6)


def test_on_policy_steps_are_drawn_at_rate_p(task, teacher):
    distiller = OnPolicyDistiller(teacher, task, 0.3, cross_entropy_loss, seed=0)
    drawn = [distiller.on_policy(step) for step in range(2000)]
    assert drawn == [distiller.on_policy(step) for step in range(2000)]  # the same every time
    assert 0.27 < np.mean(drawn) < 0.33


def test_cli_sequence_level_and_on_policy(tmp_path, capsys, task, teacher):
    teacher_dir = tmp_path / "teacher"
    checkpoint.save(str(teacher_dir / "checkpoint.npz"), teacher, step=30, task="addition")
    out = tmp_path / "student"
    args = ["distill", "--teacher", str(teacher_dir), "--student-preset", "tiny", "--steps", "4", "--eval-every", "2",
            "--batch-size", "4", "--quiet"]
    assert main([*args, "--completions", "sampled", "--on-policy", "0.5", "--out", str(out)]) == 0
    assert "exact match" in capsys.readouterr().out
    for bad, message in ((["--on-policy", "1.5"], "p must be in [0, 1]"), (["--completions", "beam"], None)):
        fresh = tmp_path / "never"
        code = None
        try:
            code = main([*args, *bad, "--out", str(fresh)])
        except SystemExit as exit_:  # argparse refuses an unknown choice itself
            code = exit_.code
        assert code == 2
        if message:
            assert message in capsys.readouterr().err
        assert not fresh.exists()


def test_prompt_tasks_only():
    grammar = data.GrammarTask(block_size=8, train_tokens=2_000, val_tokens=1_000)
    model = TransformerLM(preset("tiny", grammar.tokenizer.vocab_size, 8))
    with pytest.raises(ValueError, match="needs a task of prompts and completions"):
        teacher_completions(model, grammar)
    with pytest.raises(ValueError, match="needs a task of prompts and completions"):
        OnPolicyDistiller(model, grammar, 0.5, cross_entropy_loss)


def test_with_train_examples_checks_the_width(task):
    with pytest.raises(ValueError, match="examples must have shape"):
        task.with_train_examples(task.examples["train"][:, 1:])
