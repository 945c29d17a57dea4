# %% [markdown]
# # 10. The training step, in order, and how to read its diagnostics
#
# **What you will learn.** What one distillation step does, written out as a loop you can read and
# change: teacher forward without gradients, student forward, the hard term, the soft term, the
# combination with λ and T², backward, clipping, the optimizer step, zeroing the gradients. Then
# which diagnostics to print at every step (each term's loss and gradient norm), three deliberately
# broken runs those diagnostics expose, and how to recognise a plateau and which knob to turn.
#
# **Prerequisites.** Tutorials 1 to 5 (the objective, its gradients, T², the grammar teacher, a
# distillation run through `train`). `minikd.recipes.train.train` runs the same step inside; here it
# is unrolled so that every line can be inspected.
#
# The objective is the one of tutorial 3, written with explicit weights so that the broken runs
# below can change them:
#
# $$L = w_\text{hard}\,\mathrm{CE}(\mathrm{softmax}(z), y) + w_\text{soft}\,\mathrm{KL}(p_T\,\|\,q_T),\qquad
#   w_\text{hard} = 1-\lambda,\quad w_\text{soft} = \lambda\,T^2.$$

# %%
from minikd import backend, no_grad, optim
from minikd import functional as F
from minikd.tasks import data
from minikd.tools import plots, tutorial
from minikd.nn.model import TransformerLM, preset

xp = backend.xp()
teacher, _ = tutorial.grammar_teacher()  # the teacher of tutorial 4
task = data.GrammarTask(train_tokens=tutorial.pick(8_000, 2_000), seed=0)
steps = tutorial.pick(150, 6)


def global_norm(arrays):
    """‖g‖ over all the arrays together (the norm gradient clipping uses)."""
    return float(xp.sqrt(sum(xp.sum(g * g) for g in arrays)))


def run(w_hard, w_soft, T, lr, steps=steps, seed=0, clip=1.0):
    """Distil the teacher into a `tiny` student for ``steps`` steps; one record of diagnostics per step."""
    student = TransformerLM(preset("tiny", task.tokenizer.vocab_size, task.block_size), seed=seed)
    params = student.parameters()
    optimizer = optim.AdamW(params, lr, betas=(0.9, 0.95), weight_decay=0.1)
    records = []
    for step in range(steps):
        x, y = task.batch("train", 32, seed, step)  # (B, S) token ids and next-token targets
        with no_grad():  # 1. the teacher: forward only, no graph, never a gradient
            teacher_logits = teacher(x)  # (B, S, V)
        logits = student(x)  # 2. the student's forward pass, (B, S, V)
        hard = F.cross_entropy(logits, y)  # 3. the hard term: student at T = 1 against the labels
        soft = F.kl_div(logits, teacher_logits, T=T)  # 4. the soft term: KL(p_T ‖ q_T), both at T
        # 5-6. combine and backward. backward() *adds* into .grad, so the two terms can go back one
        # after the other: after the first, .grad holds the hard term's gradient (copied for the
        # diagnostics); after the second, the sum, which is the gradient of L.
        (hard * w_hard).backward()
        hard_grads = [xp.asarray(p.grad, copy=True) for p in params]
        (soft * w_soft).backward()
        soft_norm = global_norm([p.grad - g for p, g in zip(params, hard_grads)])
        total_norm = float(optim.clip_grad_norm(params, clip))  # 7. clip (returns the norm before)
        optimizer.step()  # 8. the AdamW update
        optimizer.zero_grad()  # 9. forget this step's gradients before the next
        records.append({"step": step, "hard": hard.item(), "soft": soft.item(), "loss": w_hard * hard.item() + w_soft * soft.item(),
                        "hard_grad": global_norm(hard_grads), "soft_grad": soft_norm, "grad": total_norm})
    return records


def show(name, records):
    first, last = records[0], records[-1]
    print(f"{name:34s} hard CE {first['hard']:.3f} → {last['hard']:.3f}   KL {first['soft']:.4f} → {last['soft']:.4f}   "
          f"‖g_hard‖ {last['hard_grad']:.3f}  ‖g_soft‖ {last['soft_grad']:.3f}  ‖g‖ {last['grad']:.3f}")


# %% [markdown]
# ## A healthy run
# λ = 0.5, T = 4, learning rate 3e-3 (the defaults of `TrainConfig`, without the warm-up). Printed:
# each term at the first and the last step, and each term's gradient norm at the last.

# %%
lam, T = 0.5, 4.0
good = run(1 - lam, lam * T * T, T, lr=3e-3)
show("healthy: λ = 0.5, T = 4, T²", good)
ratio = sum(r["soft_grad"] / r["hard_grad"] for r in good[-20:]) / len(good[-20:])
print(f"soft/hard gradient ratio, mean over the last 20 steps: {ratio:.2f}")
if tutorial.CLAIMS:
    assert good[-1]["hard"] < good[0]["hard"] - 1.0 and good[-1]["soft"] < 0.5 * good[0]["soft"]  # both terms fall
    assert 0.1 < ratio < 10  # both terms steer the student

# %% [markdown]
# ## Three broken runs, and what gives each away
# 1. **T² forgotten** (w_soft = λ instead of λ·T², at T = 4): the soft term's gradient is about 1/T² of
#    what it should be (tutorial 2). Its loss barely moves, and its gradient norm is a small fraction
#    of the hard term's.
# 2. **T² applied twice** (w_soft = λ·T⁴, a bug that hides easily when one function scales and its
#    caller scales again): the soft term's gradient dwarfs the hard term's, clipping scales the sum
#    down, and the labels' share of the step shrinks to a few percent. With this teacher, which is
#    close to the truth, that costs little in the losses; the gradient ratio is what gives it away.
# 3. **A learning rate that diverges** (0.3 instead of 3e-3): the losses rise instead of falling, and
#    the gradient norm before clipping stays large.

# %%
forgot = run(1 - lam, lam, T, lr=3e-3)
twice = run(1 - lam, lam * T**4, T, lr=3e-3)
diverged = run(1 - lam, lam * T * T, T, lr=0.3)
for name, records in (("T² forgotten", forgot), ("T² applied twice", twice), ("learning rate 0.3", diverged)):
    show(name, records)
mean_ratio = lambda records: sum(r["soft_grad"] / r["hard_grad"] for r in records[-20:]) / len(records[-20:])  # noqa: E731
print(f"soft/hard gradient ratio: healthy {mean_ratio(good):.2f}, T² forgotten {mean_ratio(forgot):.3f}, "
      f"T² twice {mean_ratio(twice):.1f}")
if tutorial.CLAIMS:
    assert mean_ratio(forgot) < 0.2 * mean_ratio(good)  # 1. the soft term pulls 5 times less
    assert forgot[-1]["soft"] > 2 * good[-1]["soft"]  # ... and the student is far from the teacher
    assert mean_ratio(twice) > 10 * mean_ratio(good)  # 2. the hard term is drowned
    assert abs(twice[-1]["hard"] - good[-1]["hard"]) < 0.05  # ... which the losses alone do not show
    assert diverged[-1]["hard"] > good[-1]["hard"] + 0.5  # 3. far worse at the end
    assert min(r["hard"] for r in diverged[steps // 2:]) > good[-1]["hard"]

fig = plots.line_plot(list(range(steps)), {"healthy": [r["soft"] for r in good],
                                            "T² forgotten": [r["soft"] for r in forgot],
                                            "T² applied twice": [r["soft"] for r in twice],
                                            "learning rate 0.3": [r["soft"] for r in diverged]},
                      "The soft term KL(p_T ‖ q_T) per step, T = 4", "step", "KL (nats/token, log scale)", logy=True)
print(tutorial.save_figure(fig, "10_broken_runs.png"))
fig = plots.line_plot(list(range(steps)), {"healthy": [r["soft_grad"] / r["hard_grad"] for r in good],
                                            "T² forgotten": [r["soft_grad"] / r["hard_grad"] for r in forgot],
                                            "T² applied twice": [r["soft_grad"] / r["hard_grad"] for r in twice]},
                      "Which term steers: ‖g_soft‖ / ‖g_hard‖ per step", "step", "gradient-norm ratio (log scale)",
                      logy=True, reference=(1.0, "equal pull"))
print(tutorial.save_figure(fig, "10_gradient_ratio.png"))

# %% [markdown]
# ## Recognising a plateau, and which knob to turn
# A plateau is a loss that stops falling: say, the mean over the last 20 steps is within 1 % of the
# mean over the 20 before. Before turning a knob, ask *where* it flattened:
#
# - far above where it could be, with small gradients: the steps are too small (raise the learning
#   rate, or check the warm-up);
# - with the soft term's gradient a small fraction of the hard term's: the teacher is switched off
#   (check T², raise λ);
# - at the teacher (KL near 0 with λ near 1): the student has learnt what the teacher knows; only the
#   labels (lower λ) or more data can take it further;
# - with the loss going *up* or jumping: the learning rate is too large (lower it, or clip harder).
#
# The healthy run above, continued, and the same run with a learning rate 100 times smaller:

# %%
def plateaued(values, window=20):
    window = min(window, len(values) // 2)  # (the fast mode has only a few steps)
    recent, before = values[-window:], values[-2 * window:-window]
    return abs(sum(recent) - sum(before)) / sum(before) < 0.01


slow = run(1 - lam, lam * T * T, T, lr=3e-5)
show("learning rate 3e-5", slow)
print(f"plateau? healthy {plateaued([r['loss'] for r in good])}, lr 3e-5 {plateaued([r['loss'] for r in slow])}")
if tutorial.CLAIMS:
    assert slow[-1]["loss"] > good[-1]["loss"] + 1.0  # still far above the healthy run
    assert slow[-1]["hard_grad"] > good[-1]["hard_grad"]  # with gradients that are not small: the steps are

# %% [markdown]
# **Summary.** One step: teacher forward (no graph), student forward, the two terms, their weighted
# sum backward, clip, step, zero. Print both terms and both gradient norms: a forgotten T² shows as a
# soft gradient a small fraction of the hard one, a doubled T² as the reverse, a diverging learning
# rate as losses that rise. A plateau means little until you know where it is.
#
# **You should see** (seed 0, 150 steps, exact for this code on a CPU): in the healthy run the hard
# CE falls by more than 1 nat and the KL to below half its start, with the two gradient norms within
# a factor 10 of each other (ratio about 0.9); T² forgotten: a gradient ratio below a fifth of the
# healthy one (about 0.13) and a KL
# more than twice the healthy run's; T² twice: a ratio above 10 times the healthy one (about 14), with
# a hard CE as low as the healthy run's; learning rate
# 0.3: a hard CE at least 0.5 above the healthy run's at the end; learning rate 3e-5: a loss still
# more than 1 above the healthy run's, with larger gradients. (All asserted above.)
#
# **Exercises.**
# 1. Move `optimizer.zero_grad()` from the end of the step to nowhere. Which diagnostic shows it
#    first, and why does AdamW hide it for a while?
# 2. Compute the gradient with respect to the logits in closed form, (1 − λ)(q − onehot)/N + λT(q_T − p_T)/N,
#    and check it against autograd's for one batch.
# 3. Turn clipping off (`clip=1e9`) in the run with T² applied twice. What changes in the diagnostics?

# %% [markdown]
# **Graded exercises.** `distillation_step` and `combined_objective`. Start one with `minikd exercise show distillation_step --stub
# distillation_step.py` (or `--notebook`), grade it with `minikd exercise check distillation_step distillation_step.py`;
# `minikd exercise list` shows them all.
