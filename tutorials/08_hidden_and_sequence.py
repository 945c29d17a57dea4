# %% [markdown]
# # 8. Hidden-state and sequence-level distillation
#
# **What you will learn.** Two ways to give the student more than the teacher's output distribution
# at each position: matching the teacher's *hidden states* (through a learned projection, since the
# widths differ), and training on the teacher's *generated completions* (sequence-level KD), with its
# on-policy variant, where the student learns on its own samples.
#
# **Prerequisites.** Tutorials 3 to 6 (the objective, the grammar teacher, a distillation run, the
# addition task and exact match).
#
# ## Hidden-state distillation
# The student has 2 blocks of width 48, the teacher 3 blocks of width 96. A layer map pairs student
# residual stream i with teacher stream j (0 is the embeddings); the default pairs the last blocks
# and spaces the rest evenly. For each pair k a learned linear map P_k: ℝ⁴⁸ → ℝ⁹⁶ is trained with
# the student, and the objective gains
#
# $$\mu\cdot\frac{1}{|M|}\sum_{(i,j)\in M} \mathrm{MSE}\big(P_k(h^{s}_i),\ h^{t}_j\big),\qquad
#   \frac{\partial\,\mathrm{MSE}(x, t)}{\partial x} = \frac{2}{N}(x - t).$$

# %%
from minikd import backend, gradcheck
from minikd.tasks import data
from minikd.tools import plots, tutorial
from minikd.engine.autograd import Tensor
from minikd.recipes.distill import DistillConfig, Distiller
from minikd.recipes.hidden import HiddenDistiller, mse
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.sequence import OnPolicyDistiller, teacher_completions
from minikd.recipes.train import TrainConfig, cross_entropy_loss, train

rng = backend.rng(0)
target = rng.standard_normal((3, 4))
print("MSE backward:", gradcheck(lambda x: mse(x, target), Tensor(rng.standard_normal((3, 4)), requires_grad=True)))

teacher, _ = tutorial.grammar_teacher()
grammar = data.GrammarTask(train_tokens=tutorial.pick(8_000, 2_000), seed=0)
config = TrainConfig(steps=tutorial.pick(120, 4), eval_every=tutorial.pick(20, 2), eval_windows=tutorial.pick(128, 16))
curves = {}
for mu in (0.0, 0.1, 1.0):
    student = TransformerLM(preset("small", grammar.tokenizer.vocab_size, grammar.block_size), seed=0)
    hidden = HiddenDistiller(teacher, student, DistillConfig(lam=0.5, T=2.0), config.steps, mu=mu)
    curves[f"prediction layer + hidden states (μ = {mu:g})" if mu else "prediction layer only"] = train(
        student, grammar, config, loss_fn=hidden, extra=hidden.projections, progress=False)
print("layer map (student stream, teacher stream):", hidden.pairs)
assert hidden.pairs[-1] == (student.config.n_layer, teacher.config.n_layer)  # the last blocks are paired
for label, history in curves.items():
    print(f"{label:42s} KL to the truth {history[-1]['kl_to_true']:.4f}")
fig = plots.training_curves(curves, "kl_to_true", title="Hidden-state distillation on the grammar task", logy=True,
                            ylabel="KL(true ‖ student) (nats/token, log scale)")
print(tutorial.save_figure(fig, "08_hidden_states.png"))

# %% [markdown]
# One run each, one seed: an illustration of the mechanics, not a comparison, so this tutorial makes
# no claim about whether the hidden-state term helps. Compare your own numbers over seeds and try
# other layer maps (`layer_map=((1, 1), (2, 3))`) and weights μ.
#
# ## Sequence-level distillation
# Kim and Rush (2016): instead of matching the teacher position by position on the training data,
# let the teacher *write* the training data. On the addition task, the teacher completes every
# training prompt (greedily here) and the student learns from those completions with the ordinary
# NLL; token-level KD can be added on the same sequences. The student is then scored on the true
# answers of the validation problems.
#
# Exact match on addition has a sharp transition: for hundreds of steps a student gets almost no
# answer fully right, then within a few hundred steps most of them, and *when* that happens depends
# on the seed. A comparison at one step count and one seed measures mostly where that seed's
# transition fell. So we train three seeds per setting and plot exact match against steps.
# (This part took 3.4 CPU-minutes at full size with its teacher already trained, 8.6 minutes on a
# shared 2-core machine; the check mode runs it at the fast size and asserts nothing about it.)

# %%
sequence_size = tutorial.CLAIMS and not tutorial.CHECK  # full size only
addition = data.AdditionTask(seed=0) if sequence_size else data.AdditionTask(digits=2, train_examples=300, val_examples=40)
teacher_steps = 1500 if sequence_size else 10
add_teacher, add_history = tutorial.trained_model(addition, "teacher", teacher_steps,
                                                  tutorial.runs_dir(f"addition-teacher-{teacher_steps}"))
relabelled = teacher_completions(add_teacher, addition)
agree = float((relabelled.examples["train"] == addition.examples["train"]).all(axis=1).mean())
print(f"teacher: {add_history[-1]['accuracy']:.1%} exact match; its completions are right on {agree:.1%} of "
      "the training problems")
student_steps = 1500 if sequence_size else 4
student_seeds = [0, 1, 2] if sequence_size else [0]


def curve(task, seed, loss_fn=cross_entropy_loss):
    """Exact match of a `small` student every 300 steps (as [(step, accuracy)])."""
    config = TrainConfig(steps=student_steps, eval_every=max(1, student_steps // 5),
                         eval_windows=1000 if sequence_size else 16, seed=seed)
    student = TransformerLM(preset("small", addition.tokenizer.vocab_size, addition.block_size), seed=seed)
    return [(r["step"], r["accuracy"]) for r in train(student, task, config, loss_fn=loss_fn, progress=False)]


settings = {
    "true answers": lambda seed: curve(addition, seed),
    "teacher's completions": lambda seed: curve(relabelled, seed),
    "true answers + token KD (λ = 0.5, T = 2)": lambda seed: curve(
        addition, seed, Distiller(add_teacher, DistillConfig(lam=0.5, T=2.0), student_steps, seed=seed)),
}
curves = {name: [make(seed) for seed in student_seeds] for name, make in settings.items()}
evaluated = [step for step, _ in curves["true answers"][0]]
final = {name: [runs[-1][1] for runs in by_seed] for name, by_seed in curves.items()}
for name, values in final.items():
    print(f"{name:42s} exact match at step {evaluated[-1]}: {tutorial.describe(values, '{:.1%}')}")
mean = lambda values: tutorial.mean_spread(values)[0]  # noqa: E731
spread = lambda values: tutorial.mean_spread(values)[1]  # noqa: E731
at_steps = {name: [[run[k][1] for run in by_seed] for k in range(len(evaluated))] for name, by_seed in curves.items()}
fig = plots.line_plot(evaluated, {name: [mean(v) for v in values] for name, values in at_steps.items()},
                      f"Sequence-level KD on addition (mean ± sd of {len(student_seeds)} seeds)", "training step",
                      "exact match (validation, fraction)",
                      errors={name: [spread(v) for v in values] for name, values in at_steps.items()},
                      reference=[(add_history[-1]["accuracy"], "the teacher")])
print(tutorial.save_figure(fig, "08_sequence_level.png"))
if sequence_size:  # the claims below, at the size they were measured at
    assert agree > 0.98
    true, completions = final["true answers"], final["teacher's completions"]
    assert not tutorial.clearly_below(true, completions) and not tutorial.clearly_below(completions, true)
    assert all(runs[-1][1] > runs[-2][1] for by_seed in curves.values() for runs in by_seed)  # still rising
    assert tutorial.clearly_below(final["true answers + token KD (λ = 0.5, T = 2)"], true)
    quoted = {"true answers": (0.861, 0.082), "teacher's completions": (0.891, 0.021),
              "true answers + token KD (λ = 0.5, T = 2)": (0.350, 0.388)}
    for name, (quoted_mean, quoted_spread) in quoted.items():  # the table below, to a point
        assert abs(mean(final[name]) - quoted_mean) < 0.01 and abs(spread(final[name]) - quoted_spread) < 0.01

# %% [markdown]
# Read the curves before believing any story about them. At full size (1500 steps, seeds 0, 1, 2,
# 1,000 validation problems; the teacher is right on 99.2 % of the training problems) we measured,
# at step 1500:
#
# | the student's training data | exact match, seeds 0 / 1 / 2 | mean ± sd |
# |---|---|---|
# | true answers | 81.7 / 81.0 / 95.6 % | 86.1 ± 8.2 % |
# | teacher's greedy completions | 90.3 / 86.7 / 90.4 % | 89.1 ± 2.1 % |
# | true answers + token KD (λ = 0.5, T = 2) | 79.5 / 8.3 / 17.1 % | 35.0 ± 38.8 % |
#
# Every student is still climbing at the last evaluation: none has finished its transition (at step
# 600 the same runs stood between 1 % and 50 %). The students trained on the teacher's completions and
# those trained on the true answers are **not** different beyond the seed-to-seed spread. Token-level
# KD at T = 2 stalled in two seeds of three; its mean is below the true answers' by slightly more
# than the two spreads together, a weak result from three seeds. An earlier version of this tutorial
# compared single runs at 800 steps (67 % against 8 %) and explained the gap by the teacher's
# systematic carry errors; over seeds, a gap of that size at that budget is where each seed's
# transition fell, not the teacher. Nothing here shows a systematic teacher error hurting the
# student: to test that story, build a large one in on purpose (exercise 2).
#
# Sequence-level KD pays off when the teacher's outputs are easier to learn from than the data, for
# example when the data are noisy or have many valid answers; here the data are clean and have one
# answer each, and at this budget it neither helps nor hurts measurably.
#
# ## On-policy distillation
# `OnPolicyDistiller(teacher, task, p, off_policy)`: on a random fraction p of the steps the student
# samples its own answers to the batch's prompts and learns T²·KL(teacher_T ‖ student_T) on them.
# Trained only on someone else's sequences, a student never sees its own mistakes; on-policy steps
# show it the states it actually reaches, with the teacher saying what to do there. One short run
# (the mechanics, no comparison):

# %%
on_policy = curve(relabelled, 0, OnPolicyDistiller(add_teacher, addition, 0.5, cross_entropy_loss, T=1.0))
print(f"on-policy half the steps, seed 0: exact match {on_policy[-1][1]:.1%} at step {on_policy[-1][0]}")

# %% [markdown]
# **Summary.** Hidden-state distillation adds a per-layer MSE through learned projections; sequence-level
# KD replaces the training answers by the teacher's; on-policy distillation uses the student's own
# samples. On addition, with a teacher right on 99 % of its completions, training on those
# completions and on the true answers end within the seed spread of each other at 1500 steps; token
# KD at T = 2 on the true answers stalled in two seeds of three.
#
# **You should see** (full size only): the teacher right on 99.2 % of the
# training problems; every student still rising at step 1500; the table above to within a point
# (asserted above at full size; the check mode does not run this part).
#
# **Exercises.**
# 1. Train the three settings for 3000 steps, past the transition. Do they still agree?
# 2. Make the teacher's completions err systematically: copy `relabelled`, set the hundreds digit of
#    every answer whose tens digits sum to 9 one too low, and measure over three seeds whether the
#    student learns the rule or the error (compare with the same number of *random* corruptions).
# 3. Sample the completions (`teacher_completions(add_teacher, addition, temperature=1.0)`) instead of
#    greedy: how often are they right, and what does the student reach?

# %% [markdown]
# **Graded exercises.** none of its own; its on-policy loss is the soft term of exercises `kl` and
# `t_squared`, and its training loop the order of exercise `distillation_step`. Start one with
# `minikd exercise show distillation_step --stub distillation_step.py` (or `--notebook`), grade it
# with `minikd exercise check distillation_step distillation_step.py`; `minikd exercise list` shows
# them all.
