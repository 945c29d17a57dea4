"""Properties of the workflows around the losses: metrics equal their definitions, sampling follows
softmax(logits/T), frozen models stay frozen, clipping precedes the step, splits are disjoint.

Each test here was written against a bug that once passed the whole suite (a mutation run); the
docstring names the bug it catches. Expected values are computed independently, in float64 NumPy.
"""

import copy
import math

import numpy as np
import pytest
from reference import arr, assert_same_params, greedy_np, kl_np, log_softmax_np, logits_np, params, softmax_np, tensor

from minikd import backend
from minikd import functional as F
from minikd.nn.model import TransformerLM, preset
from minikd.recipes import checkpoint, launch
from minikd.recipes.distill import DistillConfig, Distiller, corrupt_labels
from minikd.recipes.hidden import HiddenDistiller
from minikd.recipes.sequence import ON_POLICY_STREAM, OnPolicyDistiller, teacher_completions
from minikd.recipes.teacher import new_student
from minikd.recipes.train import TrainConfig, cross_entropy_loss, evaluate, train
from minikd.recipes.weak_to_strong import WeakToStrongConfig, WeakToStrongLoss
from minikd.tasks import data, grammar

IGNORE = data.IGNORE_INDEX


def model_for(task, seed=1, name="tiny", **overrides):
    return TransformerLM(preset(name, task.tokenizer.vocab_size, task.block_size, **overrides), seed=seed)


def host(a):
    return backend.to_numpy(a)


# --- metrics equal their definitions -------------------------------------------------------------

def test_evaluation_metrics_equal_their_definitions_on_the_grammar(grammar_task, grammar_teacher):
    """val_loss = mean −log q(y); val_ppl = exp(val_loss); kl_to_teacher = mean KL(teacher ‖ model) (not
    the reverse); agreement = fraction of equal argmaxes; kl_to_true = mean KL(P_true ‖ q);
    entropy_floor = mean H(P_true). Catches kl_to_teacher measuring KL(model ‖ teacher)."""
    model = model_for(grammar_task, seed=1)
    metrics = evaluate(model, grammar_task, n_windows=40, teacher=grammar_teacher)
    x, y = grammar_task.eval_set("val", 40)
    z, v, y = logits_np(model, x), logits_np(grammar_teacher, x), host(y)  # every grammar position is scored
    log_q = log_softmax_np(z)
    ce = -np.take_along_axis(log_q, y[..., None], axis=-1).mean()
    forward, reverse = kl_np(v, z).mean(), kl_np(z, v).mean()
    assert abs(forward - reverse) > 0.05 * forward  # the two directions are far apart here: the test has power
    p_true = grammar.true_next_token_probs(grammar_task.grammar, host(x))
    log_p = np.log(np.where(p_true > 0, p_true, 1.0))
    assert metrics["val_loss"] == pytest.approx(ce, rel=1e-5)
    assert metrics["val_ppl"] == pytest.approx(math.exp(ce), rel=1e-5)
    assert metrics["kl_to_teacher"] == pytest.approx(forward, rel=1e-4)
    assert metrics["agreement"] == pytest.approx((z.argmax(-1) == v.argmax(-1)).mean())
    assert metrics["kl_to_true"] == pytest.approx((p_true * (log_p - log_q)).sum(-1).mean(), rel=1e-4)
    assert metrics["entropy_floor"] == pytest.approx(-(p_true * log_p).sum(-1).mean(), rel=1e-6)
    assert metrics["val_loss"] == pytest.approx(metrics["entropy_floor"] + metrics["kl_to_true"], abs=0.5)


def test_evaluation_scores_only_answer_positions_and_accuracy_is_exact_match(addition_task, addition_teacher):
    """On addition, val_loss and kl_to_teacher average over the answer positions only, and accuracy is the
    fraction of validation problems whose greedy completion equals the answer in every digit: on a copy
    whose first half of answers are the model's own greedy completions, at least half are right."""
    model, task = addition_teacher, copy.copy(addition_task)
    P, n = task.prompt_length, len(task.examples["val"])
    own = greedy_np(model, task.examples["val"][:, :P], task.digits + 1)
    task.examples = {**task.examples, "val": np.concatenate([own[: n // 2], task.examples["val"][n // 2:]])}
    student = model_for(task, seed=2)
    metrics = evaluate(student, task, n_windows=n, teacher=model)
    x, y = task.eval_set("val", n)
    z, v, y = logits_np(student, x), logits_np(model, x), host(y)
    scored = y != IGNORE
    ce = -np.take_along_axis(log_softmax_np(z), np.where(scored, y, 0)[..., None], axis=-1)[..., 0][scored].mean()
    assert metrics["val_loss"] == pytest.approx(ce, rel=1e-5)
    assert metrics["kl_to_teacher"] == pytest.approx(kl_np(v, z)[scored].mean(), rel=1e-4)
    assert metrics["agreement"] == pytest.approx((z.argmax(-1) == v.argmax(-1))[scored].mean())
    right = (greedy_np(student, task.examples["val"][:, :P], task.digits + 1) == task.examples["val"]).all(axis=1)
    assert metrics["accuracy"] == pytest.approx(right.mean())
    assert evaluate(model, task, n_windows=n)["accuracy"] >= 0.5


def test_evaluation_in_batches_sums_every_window_once(grammar_task, grammar_teacher):
    """``batch_size`` only groups the windows: 40 windows in batches of 7 (the last one short) give the
    metrics of one batch of 40, so every window is counted exactly once."""
    model = model_for(grammar_task, seed=1)
    whole = evaluate(model, grammar_task, n_windows=40, teacher=grammar_teacher, batch_size=64)
    batched = evaluate(model, grammar_task, n_windows=40, teacher=grammar_teacher, batch_size=7)
    assert batched.keys() == whole.keys()
    for name, value in whole.items():
        assert batched[name] == pytest.approx(value, rel=1e-6), name


def test_accuracy_is_measured_on_the_evaluated_split_and_windows(addition_task, addition_teacher):
    """``accuracy`` scores the same problems as the loss: the first ``n_windows`` of ``split``. On a copy
    whose training answers and first 10 validation answers are the model's own completions, those score
    1, the whole validation set less."""
    model, task = addition_teacher, copy.copy(addition_task)
    P, n = task.prompt_length, len(task.examples["val"])
    own = {split: greedy_np(model, task.examples[split][:, :P], task.digits + 1) for split in ("train", "val")}
    task.examples = {"train": own["train"], "val": np.concatenate([own["val"][:10], task.examples["val"][10:]])}
    assert evaluate(model, task, n_windows=10)["accuracy"] == 1.0
    assert evaluate(model, task, n_windows=n)["accuracy"] < 1.0  # the test has power: not every answer is its own
    assert evaluate(model, task, n_windows=n, split="train")["accuracy"] == 1.0


def test_evaluation_is_deterministic_and_equals_eval_mode_evaluation(grammar_task):
    """A model with dropout 0.5, handed over in training mode, is evaluated as in evaluation mode: the
    numbers equal those of the same weights without dropout, twice; its mode is restored.
    Catches evaluation with dropout on."""
    with_dropout = model_for(grammar_task, seed=4, dropout=0.5).train()
    without = model_for(grammar_task, seed=4)
    first = evaluate(with_dropout, grammar_task, n_windows=16)
    assert first == evaluate(with_dropout, grammar_task, n_windows=16) == evaluate(without, grammar_task, n_windows=16)
    assert with_dropout.training


# --- label noise -------------------------------------------------------------------------------------

def test_label_noise_draws_every_token_uniformly():
    """At fraction 1 every scored label becomes a uniform draw from all V ids, the last included; each
    count is Binomial(N, 1/V), so it lies within 5 standard deviations of N/V (a fixed seed: the
    bound fails with probability < 1e-5 over seeds). Ignored positions stay ignored.
    Catches a draw from [0, V − 1)."""
    V, N = 5, 20_000
    y = np.zeros(N + 100, dtype=np.int64)
    y[N:] = IGNORE
    noisy = host(corrupt_labels(arr(y), 1.0, V, seed=0, step=0))
    assert (noisy[N:] == IGNORE).all()
    counts = np.bincount(noisy[:N], minlength=V)
    assert counts.shape == (V,)
    assert (np.abs(counts - N / V) < 5 * math.sqrt(N * (1 / V) * (1 - 1 / V))).all(), counts
    assert not np.array_equal(noisy[:N], host(corrupt_labels(arr(y), 1.0, V, seed=0, step=1))[:N])  # per step
    assert not np.array_equal(noisy[:N], host(corrupt_labels(arr(y), 1.0, V, seed=1, step=0))[:N])  # per run seed


def test_label_noise_is_independent_of_the_batch_of_its_step():
    """The batch of step t is drawn with ``host_rng(seed, t)``; the noise of step t must not be read from
    that stream too, or the corrupted labels would follow the windows picked. Over 400 steps, the first
    noisy label and the batch's first pick are uncorrelated (|r| < 0.2, about 4 standard errors; from
    one shared stream r ≈ 1)."""
    V, n_windows = 7, 1000
    noise = [int(host(corrupt_labels(arr(np.zeros((1, 1), dtype=np.int64)), 1.0, V, seed=0, step=t))[0, 0])
             for t in range(400)]
    picks = [int(backend.host_rng(0, t).integers(0, n_windows, 1)[0]) for t in range(400)]
    assert abs(np.corrcoef(noise, picks)[0, 1]) < 0.2


# --- frozen teachers stay in evaluation mode -----------------------------------------------------------

def dropout_teacher(task):
    """A teacher with dropout 0.5 handed over in training mode, and its twin without dropout."""
    return model_for(task, seed=5, dropout=0.5).train(), model_for(task, seed=5)


def test_token_and_hidden_distillation_use_the_teacher_in_evaluation_mode(grammar_task):
    """With λ = 1 the loss is T²·KL(teacher_T ‖ student_T) of the teacher without dropout, however the
    teacher was handed over. Catches a teacher left in training mode (dropout on) inside distillation."""
    x, y = grammar_task.batch("train", 4, seed=0, step=0)
    student = model_for(grammar_task, seed=1)
    z = student(x)
    for make in (lambda t: Distiller(t, DistillConfig(lam=1.0, T=2.0), 4),
                 lambda t: HiddenDistiller(t, student, DistillConfig(lam=1.0, T=2.0), 4, mu=0.0)):
        teacher, twin = dropout_teacher(grammar_task)
        expected = 4.0 * kl_np(logits_np(twin, x), host(z.data), T=2.0).mean()
        assert make(teacher)(student, x, y, 0).item() == pytest.approx(expected, rel=1e-4)


def test_on_policy_and_weak_to_strong_use_the_teacher_in_evaluation_mode(addition_task):
    """The on-policy loss at p = 1 and the weak-to-strong loss at λ = 1, α = 0 are T²·KL against the
    teacher without dropout. Catches a teacher left in training mode."""
    x, y = addition_task.batch("train", 6, seed=0, step=0)
    student = model_for(addition_task, seed=1)
    teacher, twin = dropout_teacher(addition_task)
    on_policy = OnPolicyDistiller(teacher, addition_task, 1.0, cross_entropy_loss, T=2.0)
    sequences = student.generate(x[:, : addition_task.prompt_length], addition_task.digits + 1,
                                 temperature=1.0, keys=(ON_POLICY_STREAM, 0))  # the student's samples at step 0
    xs, ys = addition_task.pairs(sequences)
    scored = host(ys) != IGNORE
    expected = 4.0 * kl_np(logits_np(twin, xs), logits_np(student, xs), T=2.0)[scored].mean()
    assert on_policy(student, x, y, 0).item() == pytest.approx(expected, rel=1e-4)
    teacher, twin = dropout_teacher(addition_task)
    loss = WeakToStrongLoss(teacher, addition_task, WeakToStrongConfig(lam=1.0, T=2.0), 10, alpha_max=0.0)
    scored = host(y) != IGNORE
    expected = 4.0 * kl_np(logits_np(twin, x), logits_np(student, x), T=2.0)[scored].mean()
    assert loss(student, x, y, 0).item() == pytest.approx(expected, rel=1e-4)


# --- sampling follows softmax(logits / T) --------------------------------------------------------------

@pytest.mark.parametrize("temperature, top_k", [(0.2, None), (3.0, None), (0.5, 3)])
def test_sampled_tokens_follow_softmax_of_logits_over_temperature(temperature, top_k):
    """N = 20 000 rows sample one token each from the same context: every count is Binomial(N, p_k)
    with p = softmax(logits/T) (restricted to the top k and renormalised), so |count − N·p_k| stays
    below 5·√(N·p_k·(1 − p_k)) + 1 (a fixed seed; over seeds that fails with probability < 1e-5). The
    same bound excludes p computed at T = 1. Catches ``generate`` ignoring its temperature (or top_k)."""
    config = preset("tiny", 7, 8)
    model = TransformerLM(config, seed=3)
    for p in model.parameters():  # larger weights: logits several nats apart, so T matters
        p.data *= 4.0
    N, prompt = 20_000, np.array([[1, 4, 2]])
    logits = logits_np(model, arr(prompt))[0, -1]
    kept = np.argsort(logits)[-top_k:] if top_k else np.arange(7)
    masked = np.where(np.isin(np.arange(7), kept), logits, -np.inf)
    expected, at_one = softmax_np(masked, temperature), softmax_np(masked, 1.0)
    bound = 5 * np.sqrt(N * expected * (1 - expected)) + 1
    assert (np.abs(N * at_one - N * expected) > bound).any()  # T = 1 would fail: the test has power
    drawn = host(model.generate(arr(np.repeat(prompt, N, axis=0)), 1, temperature=temperature, top_k=top_k,
                                seed=11))[:, -1]
    counts = np.bincount(drawn, minlength=7)
    assert (np.abs(counts - N * expected) < bound).all(), (counts, N * expected)


# --- the hidden-state loss is a mean over layer pairs ---------------------------------------------------

def test_hidden_state_loss_is_the_mean_mse_over_layer_pairs(grammar_task):
    """L = L_pred + μ·(1/|M|)·Σ_(i,j) mean((h_s,i − h_t,j)²) with equal widths (no projections), three pairs
    whose MSEs differ (streams of scales 1, 2, 3). Catches a sum over pairs instead of a mean, a pair
    counted twice, and μ applied to the wrong term."""
    student = model_for(grammar_task, seed=1, n_layer=2)
    teacher = model_for(grammar_task, seed=2, n_layer=3).eval()
    pairs, config = ((0, 0), (1, 2), (2, 3)), DistillConfig(lam=0.5, T=2.0)
    distiller = HiddenDistiller(teacher, student, config, 4, mu=0.7, layer_map=pairs)
    rng = np.random.default_rng(0)
    hs = [rng.standard_normal((2, 3, 32)) * scale for scale in (1.0, 2.0, 3.0)]
    ht = [rng.standard_normal((2, 3, 32)) for _ in range(4)]
    mse = np.mean([((hs[i] - ht[j]) ** 2).mean() for i, j in pairs])
    assert distiller.hidden_loss([tensor(h) for h in hs], [arr(h) for h in ht]).item() == pytest.approx(mse, rel=1e-9)
    x, y = grammar_task.batch("train", 4, seed=0, step=1)
    z, streams = student(x, return_hidden=True)
    v, teacher_streams = teacher(x, return_hidden=True)
    hidden = distiller.hidden_loss(streams, [h.data for h in teacher_streams]).item()
    prediction = Distiller(teacher, config, 4).loss(z, v.data, y, 1).item()
    assert distiller(student, x, y, 1).item() == pytest.approx(prediction + 0.7 * hidden, rel=1e-6)


# --- the weak-to-strong loss -----------------------------------------------------------------------------

def test_weak_to_strong_loss_weights_imitation_and_confidence_by_alpha(addition_task, addition_teacher):
    """At λ = 1 the loss is (1 − α)·T²·KL(weak_T ‖ student_T) + α·CE(student, argmax student) on the
    weak-labelled rows, with α = 0.4 here; and it is affine in λ: L(λ) = (1 − λ)·L(0) + λ·L(1).
    Catches α multiplying the wrong term (only λ = 0 was tested)."""
    student = model_for(addition_task, seed=1)
    x, y = addition_task.batch("train", 6, seed=0, step=2)
    weak = addition_teacher

    def loss(lam):
        config = WeakToStrongConfig(lam=lam, T=2.0, alpha_warmup=0.5, verified_batch=3)
        w2s = WeakToStrongLoss(weak, addition_task, config, steps=8, alpha_max=0.8)  # α(2) = 0.8·2/4
        assert w2s.describe(2) == {"alpha": pytest.approx(0.4)}
        return w2s(student, x, y, 2).item()

    z, scored = logits_np(student, x), host(y) != IGNORE
    imitation = 4.0 * kl_np(logits_np(weak, x), z, T=2.0)[scored].mean()
    confidence = -log_softmax_np(z).max(axis=-1)[scored].mean()  # −log q(argmax q)
    assert abs(imitation - confidence) > 0.1 * imitation  # swapping the weights would show
    assert loss(1.0) == pytest.approx(0.6 * imitation + 0.4 * confidence, rel=1e-4)
    assert loss(0.3) == pytest.approx(0.7 * loss(0.0) + 0.3 * loss(1.0), rel=1e-5)


# --- sequence-level KD: --completions changes the training answers, and only them -----------------------

@pytest.fixture(scope="module")
def addition_teacher_dir(tmp_path_factory, addition_teacher):
    folder = tmp_path_factory.mktemp("teacher")
    checkpoint.save(str(folder / "checkpoint.npz"), addition_teacher, step=40, task="addition")
    return str(folder)


@pytest.mark.parametrize("completions", [None, "greedy", "sampled"])
def test_completions_train_on_the_teachers_answers(tmp_path, monkeypatch, addition_teacher_dir, addition_teacher,
                                                   completions):
    """``minikd distill --completions`` (launch.run): the student equals one trained with the same
    objective on a task whose training answers are the teacher's completions (greedy, or sampled at
    T = 1 with the run's seed); without it, on the ground truth. Catches --completions being ignored.
    (The run's addition task is made small so that the teacher completes 400 prompts, not 20 000.)"""
    load_task = data.load_task
    monkeypatch.setattr(data, "load_task", lambda name, seed=0, **kw: load_task(
        name, seed=seed, **({"train_examples": 400, "val_examples": 40} if name == "addition" else kw)))
    config, train_config = DistillConfig(lam=0.3), TrainConfig(steps=2, batch_size=8, eval_every=2, eval_windows=4,
                                                              seed=1)
    student, _ = launch.run(addition_teacher_dir, config, train_config, str(tmp_path / "run"), student_preset="tiny",
                            completions=completions, progress=False, out_fn=lambda line: None)
    task = data.load_task("addition", seed=1)
    if completions:
        relabelled = teacher_completions(addition_teacher, task, temperature=1.0 if completions == "sampled" else 0.0,
                                         seed=1)
        assert (relabelled.examples["train"] != task.examples["train"]).any()  # the teacher errs: the test has power
        task = relabelled
    reference = new_student("tiny", task, addition_teacher, 1)
    train(reference, task, train_config, loss_fn=Distiller(addition_teacher, config, 2, seed=1), progress=False)
    assert_same_params(student, reference)


# --- gradient clipping happens before the step ------------------------------------------------------------

@pytest.mark.parametrize("grad_clip", [0.0, 0.05, 1e6])
def test_one_sgd_step_is_clip_then_step(grammar_task, grad_clip):
    """One SGD step of ``train`` (momentum's first step is plain): θ' = θ − lr·g·min(1, c/‖g‖), g the
    cross-entropy gradient of step 0's batch, ‖g‖ over all parameters; c = 0 turns clipping off.
    Catches clipping after the optimizer step (which then clips nothing)."""
    config = TrainConfig(steps=1, batch_size=8, lr=0.5, warmup=0, optimizer="sgd", grad_clip=grad_clip,
                         eval_every=1, eval_windows=2, seed=2)
    model, manual = model_for(grammar_task, seed=1), model_for(grammar_task, seed=1)
    x, y = grammar_task.batch("train", 8, seed=2, step=0)
    F.cross_entropy(manual(x), y, ignore_index=IGNORE).backward()
    grads = {name: host(p.grad).astype(np.float64) for name, p in manual.named_parameters()}
    norm = math.sqrt(sum((g * g).sum() for g in grads.values()))
    assert norm > 0.05 * 2  # the 0.05 case really clips
    scale = min(1.0, grad_clip / (norm + 1e-6)) if grad_clip else 1.0
    lr = config.lr_schedule()(0)
    before = params(model)
    train(model, grammar_task, config, progress=False)
    after = params(model)
    for name, g in grads.items():
        np.testing.assert_allclose(after[name], before[name] - lr * scale * g, rtol=1e-4, atol=1e-6, err_msg=name)


# --- train and validation splits are disjoint by construction ---------------------------------------------

def test_addition_splits_are_disjoint_even_when_they_use_every_problem():
    """One digit has 100 problems; 70 train and 30 validate, so two independent draws would share
    about 21 of them (and share none with probability < 1e-15). By construction they share none."""
    task = data.AdditionTask(digits=1, train_examples=70, val_examples=30, seed=0)
    train_rows = {tuple(r) for r in task.examples["train"]}
    val_rows = {tuple(r) for r in task.examples["val"]}
    assert len(train_rows) == 70 and len(val_rows) == 30 and not train_rows & val_rows


def windows_of(rows, width):
    """Every contiguous run of ``width`` tokens in the rows, as bytes."""
    return {row[i:i + width].tobytes() for row in rows for i in range(len(row) - width + 1)}


def test_text_task_validation_text_is_the_held_out_tail(tmp_path):
    """The train split is the first len − ⌊0.1·len⌋ characters, validation the rest, nothing shared:
    on random letters no 10-character validation window occurs in the training text (chance: about
    3000·300/26¹⁰ < 1e-8). Catches a train split that contains the validation text."""
    text = "".join(np.random.default_rng(0).choice(list("abcdefghijklmnopqrstuvwxyz"), 3000))
    path = tmp_path / "letters.txt"
    path.write_text(text, encoding="utf-8")
    task = data.load_task("text", data=str(path), block_size=9)
    train_text, val_text = (task.tokenizer.decode(task.splits[s]) for s in ("train", "val"))
    assert (len(train_text), len(val_text)) == (2700, 300) and train_text + val_text == text
    assert not windows_of(task.splits["val"], 10) & windows_of(task.splits["train"], 10)
    x, _ = task.eval_set("val", 1000)
    assert val_text.find(task.tokenizer.decode(host(x)[-1])) >= 0  # validation windows are cut from the tail


def test_grammar_validation_text_is_drawn_apart_from_the_training_text():
    """Train and validation corpora of equal size share no 40-token window (independent draws share
    one with astronomically small probability; drawn from one stream they would be equal), and the
    validation set does not depend on the size of the training corpus.
    Catches validation drawn from the training stream."""
    task = data.GrammarTask(block_size=8, train_tokens=8_000, val_tokens=8_000, seed=3)
    larger = data.GrammarTask(block_size=8, train_tokens=40_000, val_tokens=8_000, seed=3)
    val = windows_of(task.splits["val"], 40)
    assert not val & windows_of(task.splits["train"], 40) and not val & windows_of(larger.splits["train"], 40)
    np.testing.assert_array_equal(task.splits["val"], larger.splits["val"])
    np.testing.assert_array_equal(host(task.eval_set("val", 50)[0]), host(larger.eval_set("val", 50)[0]))
