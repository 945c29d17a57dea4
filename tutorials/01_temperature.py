# %% [markdown]
# # 1. Softmax with temperature and dark knowledge
#
# **What you will learn.** What the temperature T does to a softmax distribution; what a teacher's
# *soft labels* carry that a one-hot label does not; and which pairs of distributions the two terms of
# the distillation objective compare. That last point is often got wrong.
#
# **Prerequisites.** Python and NumPy; what a softmax and a logarithm are. No earlier tutorial.
#
# A model ends in logits z ∈ ℝ^V, one per token of the vocabulary. Softmax with temperature turns
# them into probabilities:
#
# $$\mathrm{softmax}(z/T)_i = \frac{e^{z_i/T}}{\sum_j e^{z_j/T}}.$$
#
# Dividing by T > 1 shrinks the gaps between logits, so the distribution flattens; T < 1 sharpens it.
# The order of the tokens never changes. What changes, and how, is exact: a *difference* of
# log-probabilities is a difference of logits divided by T,
#
# $$\log p_i - \log p_j = (z_i - z_j)/T,$$
#
# so every such difference shrinks by the same factor 1/T, and a *ratio of two differences*,
# $(\log p_i - \log p_j)/(\log p_k - \log p_l)$, does not depend on T at all. The probability ratios
# themselves do change: $p_i/p_j = e^{(z_i - z_j)/T}$ moves toward 1 as T grows. (Neither do the
# log-probabilities themselves scale by 1/T: the normaliser $\log\sum_j e^{z_j/T}$ changes with T too.)

# %%
from minikd import backend
from minikd.tools import plots, tutorial
from minikd import functional as F

xp = backend.xp()
np = backend.host_xp()  # small host arrays for printing and plotting

# %% [markdown]
# Take the next-word logits of a teacher after "the": the grammar of these tutorials has a class of
# synonyms, `cat dog bird fox`, which the truth uses with probabilities 0.32, 0.28, 0.22, 0.18.
# A good teacher gives those four most of its mass and a little to the rest.

# %%
words = ["cat", "dog", "bird", "fox", "cats", "runs", "the", "."]
logits = backend.asarray([4.0, 3.9, 3.6, 3.4, 0.5, -1.0, -2.0, -3.0])  # on the backend's device
temperatures = [0.5, 1.0, 2.0, 5.0]
probs = {f"T = {T:g}": backend.to_numpy(F.softmax(logits, T=T).data) for T in temperatures}
for label, p in probs.items():
    print(f"{label:8s}", " ".join(f"{w}={x:.3f}" for w, x in zip(words, p)))

# %% [markdown]
# Entropy rises with T. At the limits, T → 0 gives the one-hot argmax and T → ∞ the uniform
# distribution. minikd computes softmax(z/T) stably for any T from 1e-3 to 1e3.

# %%
def entropy(p):
    return float(-(p * np.log(np.where(p > 0, p, 1.0))).sum())


entropies = [entropy(backend.to_numpy(F.softmax(logits, T=T).data)) for T in (0.5, 1.0, 2.0, 5.0, 50.0)]
print("entropy (nats) at T = 0.5, 1, 2, 5, 50:", [round(h, 3) for h in entropies])
assert all(a < b for a, b in zip(entropies, entropies[1:]))  # strictly increasing in T
# The exact statements above, measured: differences of log-probabilities scale by 1/T, their ratios
# stay, and the probability ratio p(cat)/p(fox) falls toward 1.
z = backend.to_numpy(logits)
ratios = []
for T in temperatures:
    log_p = backend.to_numpy(F.log_softmax(logits, T=T).data)
    assert np.isclose(log_p[0] - log_p[3], (z[0] - z[3]) / T)  # a difference: scaled by 1/T
    assert np.isclose((log_p[0] - log_p[3]) / (log_p[4] - log_p[7]), (z[0] - z[3]) / (z[4] - z[7]))  # a ratio of differences: unchanged
    ratios.append(float(np.exp(log_p[0] - log_p[3])))
print("p(cat)/p(fox) at T = 0.5, 1, 2, 5:", [round(r, 3) for r in ratios])
assert all(a > b > 1 for a, b in zip(ratios, ratios[1:]))  # a probability ratio changes: toward 1
cold = backend.to_numpy(F.softmax(logits, T=1e-3).data)
hot = backend.to_numpy(F.softmax(logits, T=1e3).data)
assert cold[0] > 0.999999 and np.allclose(hot, 1 / len(words), atol=1e-3)

fig = plots.grouped_bars(words, probs, "The teacher's next-word distribution at four temperatures",
                         "next word", "probability")
print(tutorial.save_figure(fig, "01_temperature.png"))

# %% [markdown]
# ## Dark knowledge
#
# A one-hot label for this position says "cat", and nothing else. The teacher's soft label says more:
# dog, bird and fox are nearly as good, and `cats` (wrong number) or `runs` are far worse. Hinton et
# al. (2015) called this the *dark knowledge* in the small probabilities. At T = 1 those small
# probabilities are tiny and their gradients are tiny too. Raising T lifts them so the student can
# learn from them. Measured in information: the one-hot label has entropy 0; the soft label at T = 2
# spreads over the synonym class.

# %%
soft = probs["T = 2"]
print(f"soft label at T=2: {soft[:4].sum():.1%} on the four synonyms, entropy {entropy(soft):.3f} nats")
assert soft[:4].sum() > 0.9 and entropy(soft) > 1.0

# %% [markdown]
# ## Which pairs the losses compare
#
# The distillation objective has two terms, and each compares a different pair:
#
# $$L = (1-\lambda)\,\underbrace{\mathrm{CE}\big(\mathrm{softmax}(z),\ y\big)}_{\text{student at } T=1 \text{ vs the ground truth}}
#   + \lambda\,T^2\,\underbrace{\mathrm{KL}\big(\mathrm{softmax}(v/T)\ \|\ \mathrm{softmax}(z/T)\big)}_{\text{teacher soft vs student soft, both at } T}$$
#
# - the **student loss** compares the student's *hard* predictions (T = 1) with the one-hot labels y;
# - the **distillation loss** compares the teacher's *soft labels* with the student's *soft
#   predictions*, both at the same T.
#
# A common mistake is to apply T to only one side, or to the student loss as well. Below,
# `distillation_loss` is checked against the two terms written out from those pairs.

# %%
rng = backend.rng(0)
z = rng.standard_normal((5, 8))  # student logits: 5 positions, 8 classes
v = rng.standard_normal((5, 8)) * 2  # teacher logits
y = backend.asarray([0, 3, 1, 7, 2])
lam, T = 0.3, 2.0

student_hard = F.log_softmax(z, T=1.0).data  # student at T = 1
student_soft = F.log_softmax(z, T=T).data  # student at T
teacher_soft = F.softmax(v, T=T).data  # teacher at T
student_loss = -xp.mean(xp.take_along_axis(student_hard, y[:, None], axis=-1))  # −log q[r, y_r]
distill = xp.mean(xp.sum(teacher_soft * (xp.log(teacher_soft) - student_soft), axis=-1))
by_hand = (1 - lam) * student_loss + lam * T**2 * distill
fused = F.distillation_loss(z, v, y, lam=lam, T=T).item()
print(f"by hand {float(by_hand):.10f}   distillation_loss {fused:.10f}")
assert abs(float(by_hand) - fused) < 1e-10

# %% [markdown]
# And the mistake, to see that it matters: using the student's *soft* predictions in the student loss
# gives a different number.

# %%
wrong = (1 - lam) * -xp.mean(xp.take_along_axis(student_soft, y[:, None], axis=-1)) + lam * T**2 * distill
print(f"student loss at T instead of 1: {float(wrong):.4f} (not {fused:.4f})")
assert abs(float(wrong) - fused) > 1e-3

# %% [markdown]
# **Summary.** T flattens a distribution without reordering it: log-probability differences shrink
# by 1/T, their ratios stay, probability ratios move toward 1. Soft labels carry the teacher's view
# of which wrong answers are nearly right. The student loss uses T = 1 and the ground truth; the
# distillation loss uses the same T on both sides. Next: the gradients of these losses, by hand.
#
# **You should see** (these numbers are exact arithmetic, so yours match to the printed digits):
# entropies 1.291, 1.420, 1.659, 1.961, 2.078 nats at T = 0.5, 1, 2, 5, 50; p(cat)/p(fox) = 3.32,
# 1.82, 1.35, 1.13 at T = 0.5, 1, 2, 5; 91.3 % of the soft label at T = 2 on the four synonyms; the
# by-hand and fused losses equal to 10 digits (2.1200594128), and 2.0261 with the mistake.

# %%
assert np.allclose(entropies, [1.291, 1.420, 1.659, 1.961, 2.078], atol=1e-3)
assert np.allclose(ratios, [3.32, 1.82, 1.35, 1.13], atol=5e-3)
assert abs(soft[:4].sum() - 0.913) < 1e-3 and abs(fused - 2.1200594128) < 1e-9 and abs(float(wrong) - 2.0261) < 1e-4

# %% [markdown]
# **Exercises.**
# 1. Show on paper that T → ∞ gives the uniform distribution and T → 0 the one-hot argmax; then find
#    the smallest T at which `cats` gets more than 5 % of the mass.
# 2. Add a constant to every logit. Which of the printed numbers change? Prove your answer from the
#    formula for softmax(z/T).
# 3. Apply T to the student loss as well (the mistake above) and compute its gradient for one
#    position by hand: how does it differ from (q − onehot(y))?

# %% [markdown]
# **Graded exercises.** `softmax_temperature` (softmax with T) and `log_softmax` (a numerically stable
# log-softmax). Start one with `minikd exercise show softmax_temperature --stub
# softmax_temperature.py` (or `--notebook`), grade it with `minikd exercise check
# softmax_temperature softmax_temperature.py`; `minikd exercise list` shows them all.
