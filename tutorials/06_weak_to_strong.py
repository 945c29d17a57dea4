# %% [markdown]
# # 6. Weak-to-strong generalization, noisy labels, and a teacher that errs
#
# **What you will learn.** What happens when the teacher is *weaker* than the student (Burns et al.,
# 2023): can a large student trained on a small model's labels do better than its teacher, and how
# much of the gap to a fully supervised model does it recover? Then two practical questions about λ:
# what to do when the ground-truth labels are noisy, and when the teacher errs systematically.
#
# ## The weak-to-strong setting
# On the addition task (`"123+045=0168"`), a weak teacher (the `small` preset, trained briefly) labels
# most training problems with its own answers; a small verified set keeps the true answers. The
# strong student (the `teacher` preset, about six times larger) learns from both:
#
# $$L = (1-\lambda)\,\mathrm{CE}(\text{verified}) + \lambda\,\big[(1-\alpha_t)\,T^2\,\mathrm{KL}(\text{weak}_T\,\|\,\text{student}_T) + \alpha_t\,\mathrm{CE}(\text{student},\ \arg\max\ \text{student})\big]$$
#
# The last term is the *auxiliary confidence loss*: the student's own hardened predictions as
# targets, with weight α_t warmed up from 0. It lets the student disagree with its teacher where it
# is confident. The *performance gap recovered* compares the student with the weak teacher and with
# the ceiling (the strong model trained on all the true answers, same budget):
#
# $$\mathrm{PGR} = \frac{\text{student} - \text{weak}}{\text{ceiling} - \text{weak}}.$$

# %%
from minikd.tasks import data
from minikd.tools import plots, tutorial
from minikd.recipes.distill import DistillConfig, Distiller
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.train import TrainConfig, train
from minikd.recipes.weak_to_strong import Experiment, WeakToStrongConfig

task = tutorial.pick(data.AdditionTask(seed=0), data.AdditionTask(digits=2, train_examples=400, val_examples=40))
config = WeakToStrongConfig(weak_steps=tutorial.pick(700, 3), steps=tutorial.pick(800, 3),
                            n_verified=tutorial.pick(500, 20), verified_batch=8)
experiment = Experiment(config, task, progress=False, evaluations=1)  # evaluated at the end only
experiment.weak()
experiment.ceiling()
print(f"weak teacher: {experiment.accuracy('weak'):.1%} exact match; its labels are right on "
      f"{experiment.weak_label_accuracy:.1%} of the problems it labels; ceiling {experiment.accuracy('ceiling'):.1%}")

# %% [markdown]
# Now the strong student at several λ. At λ = 0 it sees only the verified problems; at λ = 1 only the
# weak labels. Then once more at λ = 0.5 with the confidence loss.

# %%
lams = [0.0, 0.5, 1.0]
for lam in lams:
    experiment.student(f"λ={lam}", lam=lam)
experiment.student("λ=0.5 + confidence", lam=0.5, alpha_max=0.5)
for name in [f"λ={lam}" for lam in lams] + ["λ=0.5 + confidence"]:
    gap = experiment.pgr(name)
    print(f"{name:20s} exact match {experiment.accuracy(name):6.1%}   PGR "
          + ("undefined" if gap is None else f"{gap:.3f}"))

names = ["weak", *[f"λ={lam}" for lam in lams], "λ=0.5 + confidence", "ceiling"]
fig = plots.grouped_bars(names, {"exact match (validation)": [experiment.accuracy(n) for n in names]},
                         "Weak-to-strong on addition", "model", "exact-match accuracy (fraction)")
print(tutorial.save_figure(fig, "06_weak_to_strong.png"))
if not tutorial.FAST:  # the claims of this section, for these settings
    assert experiment.accuracy("λ=0.5") > experiment.accuracy("weak")  # the student beats its teacher
    assert experiment.accuracy("λ=0.5") > experiment.accuracy("λ=0.0")  # the weak labels help

# %% [markdown]
# Read the numbers above. In our run (800 steps, seed 0, a 2-core CPU) the student at λ = 0.5 reached
# 18 % exact match, twice its weak teacher's 9 %: it beats the teacher whose labels it learns from,
# because the larger model generalises from what is right in those labels faster than it fits their
# particular mistakes. The weak labels were needed: on the 500 verified problems alone (λ = 0) it
# reached 1 %. At λ = 1 it copied its teacher exactly (PGR 0). The confidence loss did *not* help at
# this budget (8 %); in the full-size run of `minikd weak-to-strong` (1500 steps) it raised the student
# from 41 % to 68 % (see the README). Results like these depend on the budget and the seed; report
# them as they come.
#
# ## Noisy labels: lean on the teacher
# Back to the grammar task and the teacher of tutorial 4. Corrupt half of the students' ground-truth
# labels (`label_noise=0.5`: each scored label replaced by a random word with probability 0.5). A
# CE-only student learns the noise; the teacher's soft labels do not contain it.

# %%
teacher, _ = tutorial.grammar_teacher(tutorial.pick(1000, 20), tokens=tutorial.pick(200_000, 5_000))
grammar = data.GrammarTask(train_tokens=tutorial.pick(8_000, 2_000), seed=0)
student_config = TrainConfig(steps=tutorial.pick(200, 4), eval_every=tutorial.pick(200, 4),
                             eval_windows=tutorial.pick(256, 16))


def kl_to_truth(kd):
    student = TransformerLM(preset("small", grammar.tokenizer.vocab_size, grammar.block_size), seed=0)
    history = train(student, grammar, student_config, loss_fn=Distiller(teacher, kd, student_config.steps),
                    progress=False)
    return history[-1]["kl_to_true"]


noisy = [kl_to_truth(DistillConfig(lam=lam, T=2.0, label_noise=0.5)) for lam in lams]

# %% [markdown]
# ## A teacher with a systematic error: lean on the ground truth
# Now clean labels but a teacher that errs the same way every time: after "the" it adds 4 to the logit
# of "cats" (`teacher_bias=("the", "cats", 4.0)`), so it says "cats" far more often than the language
# does. Imitating it more closely means learning the error.

# %%
ids = grammar.tokenizer.ids
biased = [kl_to_truth(DistillConfig(lam=lam, T=2.0, teacher_bias=(ids["the"], ids["cats"], 4.0))) for lam in lams]
for lam, a, b in zip(lams, noisy, biased):
    print(f"λ = {lam}: KL to the truth with noisy labels {a:.4f}; with the biased teacher {b:.4f}")
fig = plots.line_plot(lams, {"50 % noisy labels, good teacher": noisy, "clean labels, biased teacher": biased},
                      "What each problem asks of λ", "λ (weight of the teacher)", "KL(true ‖ student) (nats/token)")
print(tutorial.save_figure(fig, "06_noise_and_bias.png"))
if not tutorial.FAST:
    assert noisy[-1] < noisy[0]  # noisy labels: more teacher is better
    assert biased[-1] > biased[0]  # a systematically wrong teacher: more teacher is worse

# %% [markdown]
# **Summary.** A weak teacher's labels plus a few verified ones can train a student past the teacher,
# and the confidence loss helps it ignore the teacher's errors. When the labels are noisy, raise λ;
# when the teacher is wrong in a systematic way, lower it. In practice you rarely know which, so
# measure on held-out data with trusted labels.

# %% [markdown]
# **Graded exercises.** `pgr` (the performance gap recovered). Start one with `minikd exercise show pgr
# --stub pgr.py` (or `--notebook`), grade it with `minikd exercise check pgr pgr.py`; `minikd
# exercise list` shows them all.
