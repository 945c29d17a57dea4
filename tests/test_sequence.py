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
from minikd.recipes.sequence import ON_POLICY_STREAM, OnPolicyDistiller, complete, teacher_completions
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


def test_complete_is_greedy_by_default_and_samples_each_chunk_with_its_own_key(task, teacher):
    """complete() defaults to greedy decoding and seed 0; chunk k of the prompts samples with keys (k,),
    so identical prompts in different chunks get their own draws."""
    prompts = task.examples["train"][:6, : task.prompt_length]
    n = task.digits + 1
    greedy = backend.to_numpy(teacher.generate(backend.from_numpy(prompts), n, temperature=0))
    np.testing.assert_array_equal(complete(teacher, prompts, n), greedy)
    np.testing.assert_array_equal(complete(teacher, prompts, n, temperature=1.0),
                                  complete(teacher, prompts, n, temperature=1.0, seed=0))
    same = np.repeat(prompts[:1], 6, axis=0)
    chunked = complete(teacher, same, n, temperature=5.0, seed=2, batch_size=2)
    for k in range(3):
        expected = teacher.generate(backend.from_numpy(same[2 * k: 2 * k + 2]), n, temperature=5.0, seed=2, keys=(k,))
        np.testing.assert_array_equal(chunked[2 * k: 2 * k + 2], backend.to_numpy(expected))
    assert len({tuple(row) for row in chunked}) > 1


def test_teacher_completions_sample_at_the_given_temperature_and_default_seed(task, teacher):
    prompts = task.examples["train"][:, : task.prompt_length]
    sampled = teacher_completions(teacher, task, temperature=1.0).examples["train"]
    np.testing.assert_array_equal(sampled, complete(teacher, prompts, task.digits + 1, temperature=1.0, seed=0))
    assert (sampled != teacher_completions(teacher, task).examples["train"]).any()


def test_on_policy_defaults_off_policy_step_description_and_errors(task, teacher):
    """Defaults T = 1 and sampling temperature as given (0: greedy); the off-policy loss receives the
    step; describe(step) reports whether the step is on-policy; p outside [0, 1] and non-prompt
    tasks are refused with the workflow's name."""
    distiller = OnPolicyDistiller(teacher, task, 1.0, cross_entropy_loss, temperature=0.0)
    model = student(task)
    x, y = task.batch("train", 8, seed=0, step=0)
    greedy = model.generate(x[:, : task.prompt_length], task.digits + 1, temperature=0.0)
    xs, ys = task.pairs(greedy)
    expected = F.kl_div(model(xs), teacher_logits(teacher, xs), T=1.0, mask=ys != data.IGNORE_INDEX).item()
    assert distiller(model, x, y, 3).item() == pytest.approx(expected, rel=1e-6)
    steps = []

    def recorded_off_policy(model, x, y, step):
        steps.append(step)
        return cross_entropy_loss(model, x, y, step)

    OnPolicyDistiller(teacher, task, 0.0, recorded_off_policy)(model, x, y, 7)
    assert steps == [7]
    half = OnPolicyDistiller(teacher, task, 0.5, cross_entropy_loss, seed=1)
    assert [half.describe(step) for step in range(20)] == [{"on_policy": half.on_policy(step)} for step in range(20)]
    assert {half.on_policy(step) for step in range(20)} == {True, False}
    with pytest.raises(ValueError, match=r"^on-policy probability p must be in \[0, 1\], got 1\.5$"):
        OnPolicyDistiller(teacher, task, 1.5, cross_entropy_loss)
    grammar = data.GrammarTask(block_size=8, train_tokens=2_000, val_tokens=1_000)
    for make, what in ((lambda: teacher_completions(teacher, grammar), "sequence-level distillation"),
                       (lambda: OnPolicyDistiller(teacher, grammar, 0.5, cross_entropy_loss), "on-policy distillation")):
        with pytest.raises(ValueError, match=rf"^{what} needs a task of prompts and completions \(addition\), "
                                             rf"got task 'grammar'$"):
            make()
