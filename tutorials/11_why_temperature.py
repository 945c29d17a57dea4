# %% [markdown]
# # 11. Why T > 1: a confident teacher, and a word the student never sees
#
# **What you will learn.** When the temperature matters, measured: a *peaked* teacher, confident
# enough that at T = 1 its soft labels are almost one-hot, hides its dark knowledge until T > 1
# softens it. And Hinton et al.'s (2015) omitted-class experiment, on the grammar: a word removed
# from everything the student is trained to predict is still learned from the teacher's soft labels
# on the other words.
#
# **Prerequisites.** Tutorial 1 (temperature, dark knowledge), tutorial 5 (distilling the grammar
# teacher, KL to the truth), tutorial 10 (a loss function written out).
#
# **The setting.** The teacher is the grammar teacher of tutorial 4, made over-confident by multiplying
# its logits by k = 4: at T = 1 its soft labels are those of the real teacher at T = 1/4, and at T = 4
# they are exactly the real teacher's. The student's transfer data omit the word "fox": every position
# whose target is "fox" is dropped from both terms (its target is set to `IGNORE_INDEX`), so the
# student is never asked to predict "fox". "fox" is the least likely of the synonyms `cat dog bird fox`
# (the truth gives it 0.18 of the class), so a confident teacher all but hides it. We measure, on
# validation positions where the truth gives "fox" at least 0.05, the student's mean probability of
# "fox" divided by the truth's: 1 is a perfectly learned word, 0 a word never predicted.

# %%
from minikd import backend, no_grad
from minikd import functional as F
from minikd.tasks import data
from minikd.tools import plots, tutorial
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.teacher import TeacherCache
from minikd.recipes.train import TrainConfig, train

xp = backend.xp()
teacher, _ = tutorial.grammar_teacher()
SHARPEN = 4.0
seeds = tutorial.pick([0, 1, 2], [0])
steps = tutorial.pick(120, 4)
fox = data.GrammarTask(train_tokens=2_000, seed=0).tokenizer.ids["fox"]


def omitting_fox(lam, T, cache):
    """A ``train`` loss: (1 − λ)·CE + λ·T²·KL against the sharpened teacher, on every position but fox's;
    ``cache`` (a TeacherCache) holds the teacher's logits of each step, shared by a seed's students."""
    def loss(student, x, y, step):
        teacher_logits = cache.logits(x, step) * SHARPEN  # (B, S, V): the over-confident teacher
        kept = xp.where(xp.asarray(y) == fox, data.IGNORE_INDEX, xp.asarray(y))  # fox is never a target
        return F.distillation_loss(student(x), teacher_logits, kept, lam=lam, T=T, ignore_index=data.IGNORE_INDEX)
    return loss


def fox_recovered(predict, task):
    """Mean q(fox) / mean P(fox) over validation positions where the truth gives fox at least 0.05;
    ``predict(x)`` gives the logits (a student, or the sharpened teacher)."""
    x, _ = task.eval_set("val", tutorial.pick(128, 16))
    truth = task.true_probs(x)[..., fox]  # (B, S), host
    with no_grad():
        q = backend.to_numpy(F.softmax(predict(x)).data)[..., fox]
    where = truth >= 0.05
    return float(q[where].mean() / truth[where].mean())


def measure(lam, T, seed, cache):
    task = data.GrammarTask(train_tokens=tutorial.pick(8_000, 2_000), seed=seed)
    config = TrainConfig(steps=steps, eval_every=steps, eval_windows=tutorial.pick(128, 16), seed=seed)
    student = TransformerLM(preset("small", task.tokenizer.vocab_size, task.block_size), seed=seed)
    history = train(student, task, config, loss_fn=omitting_fox(lam, T, cache), progress=False)
    return fox_recovered(student, task), history[-1]["kl_to_true"]


# %% [markdown]
# First, the sharpened teacher's soft label on the four synonyms after ". the big", at each
# temperature (the T = 4 row is the real teacher's distribution):

# %%
task = data.GrammarTask(train_tokens=2_000, seed=0)
prefix = xp.asarray([task.tokenizer.encode(". the big")], device=backend.device())
with no_grad():
    sharp = teacher(prefix).data[0, -1, :] * SHARPEN
nouns = [task.tokenizer.ids[w] for w in ("cat", "dog", "bird", "fox")]
soft_labels = {}
for T in (1.0, 2.0, 4.0):
    p = backend.to_numpy(F.softmax(sharp, T=T).data)
    soft_labels[T] = p
    print(f"T = {T:g}: cat {p[nouns[0]]:.3f}  dog {p[nouns[1]]:.3f}  bird {p[nouns[2]]:.3f}  fox {p[nouns[3]]:.4f}")
assert soft_labels[1.0][fox] < 0.5 * soft_labels[4.0][fox]  # at T = 1 the confident teacher hides fox

# %% [markdown]
# Now the students, over three seeds: CE only (λ = 0), and λ = 1 at T = 1, 2, 4.

# %%
settings = {"CE only (λ = 0)": (0.0, 1.0), "KD λ = 1, T = 1": (1.0, 1.0), "KD λ = 1, T = 2": (1.0, 2.0),
            "KD λ = 1, T = 4": (1.0, 4.0)}
recovered, kl = {name: [] for name in settings}, {name: [] for name in settings}
for seed in seeds:
    cache = TeacherCache(teacher)  # the four students of a seed see the same batches
    for name, (lam, T) in settings.items():
        fox_ratio, kl_true = measure(lam, T, seed, cache)
        recovered[name].append(fox_ratio)
        kl[name].append(kl_true)
for name in settings:
    print(f"{name:18s} fox recovered {tutorial.describe(recovered[name], '{:.3f}')}   "
          f"KL to the truth {tutorial.describe(kl[name])}")
mean = lambda values: tutorial.mean_spread(values)[0]  # noqa: E731
spread = lambda values: tutorial.mean_spread(values)[1]  # noqa: E731
names = list(settings)
with no_grad():
    teacher_recovered = fox_recovered(lambda x: teacher(x).data * SHARPEN, task)
print(f"the sharpened teacher itself: fox recovered {teacher_recovered:.3f}")
fig = plots.line_plot([1, 2, 4], {"KD, λ = 1": [mean(recovered[n]) for n in names[1:]]},
                      f"The omitted word 'fox' (mean ± sd of {len(seeds)} seeds)",
                      "temperature T", "q(fox) / P_true(fox)", logx=True,
                      errors={"KD, λ = 1": [spread(recovered[n]) for n in names[1:]]},
                      reference=[(1.0, "learned exactly"), (teacher_recovered, "the sharpened teacher"),
                                 (mean(recovered[names[0]]), "CE only")])
fig.axes[0].minorticks_off()
fig.axes[0].set_xticks([1, 2, 4], ["1", "2", "4"])
print(tutorial.save_figure(fig, "11_omitted_class.png"))
if tutorial.CLAIMS:
    assert mean(recovered["CE only (λ = 0)"]) < 0.05  # never a target: (almost) never predicted
    assert tutorial.clearly_below(recovered["CE only (λ = 0)"], recovered["KD λ = 1, T = 1"])  # learned from soft labels
    assert tutorial.clearly_below(recovered["KD λ = 1, T = 1"], recovered["KD λ = 1, T = 4"])  # faster at T > 1
    assert abs(mean(recovered["KD λ = 1, T = 4"]) - teacher_recovered) < 0.1  # ... up to the teacher's own level
    assert tutorial.clearly_below(kl["KD λ = 1, T = 4"], kl["KD λ = 1, T = 1"])
    assert all(tutorial.clearly_below(kl["CE only (λ = 0)"], kl[name]) for name in names[1:])  # over-confidence copied

# %% [markdown]
# **What the numbers say.** The CE-only student all but never predicts "fox" (0.04 of the truth):
# it was never a target. Every distilled student predicts it, having seen it only in the teacher's
# soft labels on *other* targets: Hinton et al.'s omitted class, on a language model. How much it
# learns depends on T: at T = 1 the confident teacher's small probabilities are tiny, and so are
# their gradients, and after 120 steps the student holds about two thirds of the teacher's own
# level (the sharpened teacher gives fox 0.34 of the truth); at T = 4 it reaches that level. That is
# where T > 1 matters: a teacher whose small probabilities are too small to teach quickly at T = 1.
#
# What T does *not* change is the target. At λ = 1 the best student is the teacher's own
# distribution at every T (tutorial 3), and this teacher is over-confident, so every distilled
# student ends *farther* from the truth than the CE-only one (KL 0.47 to 0.67 against 0.09): it
# copies the over-confidence along with the dark knowledge. T = 4 is the least bad of the three.
#
# **You should see** (seeds 0, 1, 2, 120 steps; the check mode runs exactly these and asserts them):
# fox recovered 0.036 ± 0.02 for CE only, 0.23 ± 0.03 at T = 1 and 0.35 ± 0.08 at T = 4 (the sharpened
# teacher: 0.34); KL to the truth 0.090 ± 0.005 for CE only, 0.62 ± 0.02 at T = 1, 0.47 ± 0.03 at T = 4.

# %%
if tutorial.CLAIMS:
    for quoted, tolerance, values in ((0.036, 0.02, recovered["CE only (λ = 0)"]), (0.23, 0.03, recovered["KD λ = 1, T = 1"]),
                                      (0.35, 0.08, recovered["KD λ = 1, T = 4"]), (0.090, 0.005, kl["CE only (λ = 0)"]),
                                      (0.62, 0.02, kl["KD λ = 1, T = 1"]), (0.47, 0.03, kl["KD λ = 1, T = 4"])):
        assert abs(mean(values) - quoted) < tolerance, (quoted, values)
    assert abs(teacher_recovered - 0.34) < 0.01

# %% [markdown]
# **Exercises.**
# 1. Set `SHARPEN = 1` (the calibrated teacher). Does T still matter for the omitted word, and is the
#    KD student now closer to the truth than the CE-only one?
# 2. Omit a whole class instead (all four synonyms but "cat"): how much of the class does the student
#    recover, and at which T?
# 3. Hinton et al. also raised the bias of the omitted class afterwards. Add a constant to the
#    CE-only student's "fox" logit chosen on held-out data: how close does it get to the KD student?

# %% [markdown]
# **Graded exercises.** `softmax_temperature` and `t_squared`. Start one with `minikd exercise show softmax_temperature --stub
# softmax_temperature.py` (or `--notebook`), grade it with `minikd exercise check softmax_temperature softmax_temperature.py`;
# `minikd exercise list` shows them all.
