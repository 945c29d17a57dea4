# %% [markdown]
# # 3. The combined objective: λ, its limits, two forms, and where the optimum moves
#
# **What you will learn.** How λ trades the ground truth against the teacher; the limits λ → 0 (pure
# language modelling) and λ → 1 (pure imitation); why the textbook's additive form `CE + λ·KD` and
# minikd's interpolated form are one family; and, on a 3-class toy drawn over the probability
# simplex, where the best student distribution sits for several λ and T.
#
# $$L_\lambda = (1-\lambda)\,\mathrm{CE}(q, y) + \lambda\,T^2\,\mathrm{KL}(p_T\,\|\,q_T)\qquad
#   L'_{\lambda'} = \mathrm{CE}(q, y) + \lambda'\,T^2\,\mathrm{KL}(p_T\,\|\,q_T)$$
#
# Dividing the additive form by 1 + λ′ gives the interpolated form with λ = λ′/(1 + λ′): the same
# minimiser, and gradients that differ by the positive factor 1 + λ′. What that factor does to
# *training* depends on the optimizer, and is measured below: with plain SGD it is exactly a learning
# rate 1 + λ′ times larger; AdamW divides each step by a running gradient scale, so the factor all
# but cancels (up to its ε) and the two forms train the same at the *same* learning rate; gradient
# clipping removes the factor whenever it is active; and a λ schedule in the additive form makes the
# factor 1 + λ′(t) change during training.
#
# **Prerequisites.** Tutorials 1 and 2 (the two terms, their gradients, T²).

# %%
from minikd import backend
from minikd.tools import plots, tutorial
from minikd import functional as F

xp = backend.xp()
np = backend.host_xp()
rng = backend.rng(1)
z = rng.standard_normal((6, 5))
v = rng.standard_normal((6, 5)) * 2
y = backend.asarray([0, 1, 2, 3, 4, 0])  # on the backend's device
T = 2.0

# %% [markdown]
# ## The limits
# At λ = 0 the objective is the cross-entropy, at λ = 1 it is T²·KL; in between it is linear in λ.

# %%
ce = F.cross_entropy(z, y).item()
kd = T**2 * F.kl_div(z, v, T=T).item()
for lam in (0.0, 0.25, 1.0):
    value = F.distillation_loss(z, v, y, lam=lam, T=T).item()
    print(f"λ = {lam:4}: L = {value:.6f}   (1−λ)·CE + λ·T²·KL = {(1 - lam) * ce + lam * kd:.6f}")
    assert abs(value - ((1 - lam) * ce + lam * kd)) < 1e-10
assert F.distillation_loss(z, v, y, lam=0.0, T=T).item() == ce  # exactly the language-modelling loss

# %% [markdown]
# ## The two forms are one family

# %%
for lam_additive in (0.5, 1.0, 3.0):
    lam = lam_additive / (1 + lam_additive)
    additive = F.distillation_loss(z, v, y, lam=lam_additive, T=T, form="additive").item()
    interpolated = F.distillation_loss(z, v, y, lam=lam, T=T).item()
    print(f"λ' = {lam_additive}: additive {additive:.6f} = (1 + λ') × interpolated at λ = {lam:.3f}: "
          f"{(1 + lam_additive) * interpolated:.6f}")
    assert abs(additive - (1 + lam_additive) * interpolated) < 1e-9

# %% [markdown]
# Same objective up to a factor, but not always the same training. Train the logits z themselves for
# 100 steps with the additive form at λ′ = 3 and the interpolated form at λ = 3/4, under three
# optimizers, and compare where they end:

# %%
from minikd import optim
from minikd.engine.autograd import Tensor


def train_logits(form, lam, optimizer, lr, clip=None, steps=100):
    logits = Tensor(xp.asarray(z, copy=True), requires_grad=True)
    opt = optimizer([logits], lr)
    for _ in range(steps):
        opt.zero_grad()
        F.distillation_loss(logits, v, y, lam=lam, T=T, form=form).backward()
        if clip is not None:
            optim.clip_grad_norm([logits], clip)
        opt.step()
    return logits.data


sgd = optim.SGD
adamw = lambda params, lr: optim.AdamW(params, lr, weight_decay=0.0)  # noqa: E731
additive_sgd = train_logits("additive", 3.0, sgd, 0.1)
gaps = {
    "SGD, interpolated at lr × (1 + λ′)": train_logits("interpolate", 0.75, sgd, 0.4) - additive_sgd,
    "SGD, interpolated at the same lr": train_logits("interpolate", 0.75, sgd, 0.1) - additive_sgd,
    "AdamW, interpolated at the same lr": (train_logits("interpolate", 0.75, adamw, 0.05)
                                           - train_logits("additive", 3.0, adamw, 0.05)),
    "AdamW, interpolated at lr × (1 + λ′)": (train_logits("interpolate", 0.75, adamw, 0.2)
                                              - train_logits("additive", 3.0, adamw, 0.05)),
    "SGD + clipping at 0.05, same lr": (train_logits("interpolate", 0.75, sgd, 0.1, clip=0.05)
                                        - train_logits("additive", 3.0, sgd, 0.1, clip=0.05)),
}
gaps = {name: float(xp.max(xp.abs(gap))) for name, gap in gaps.items()}
for name, gap in gaps.items():
    print(f"{name:40s} largest difference of the final logits {gap:.1e}")
assert gaps["SGD, interpolated at lr × (1 + λ′)"] < 1e-12 < 0.1 < gaps["SGD, interpolated at the same lr"]
assert gaps["AdamW, interpolated at the same lr"] < 1e-5 < 0.1 < gaps["AdamW, interpolated at lr × (1 + λ′)"]
assert gaps["SGD + clipping at 0.05, same lr"] < 1e-5  # every step clipped: the factor is gone

# %% [markdown]
# ## Where the optimum moves: a 3-class toy on the simplex
# One position with three classes; the label is class 0 and the teacher's logits are (1, 2, 0): the
# teacher prefers class 1. The student's distribution q = softmax(z) ranges over the simplex, and
# q_T = softmax(z/T) ∝ q^{1/T} is determined by q. So the loss is a function on the triangle, drawn
# below for several λ at T = 2 and for several T at λ = 0.5. The star marks the minimiser on the grid.
#
# At λ = 0 the loss −log q_0 falls toward the corner of class 0 (the minimum is at the corner itself,
# where the grid stops). At λ = 1 the minimum is the teacher's own distribution, at *every* T:
# q_T = p_T means z/T and v/T differ by a constant, so z and v do too, and q = p. In between, the
# minimum lies on the way from the label's corner toward the teacher. There T matters: a higher T
# gives the teacher's small probabilities more weight, so the best student puts more mass on class 2,
# the class the teacher thinks least likely. That is dark knowledge, seen on three classes.

# %%
teacher = xp.asarray([1.0, 2.0, 0.0], device=backend.device())
label = backend.asarray([0])
steps = tutorial.pick(120, 40)
grid = [(i / steps, j / steps, 1 - (i + j) / steps) for i in range(1, steps) for j in range(1, steps - i)]
q = xp.asarray(grid, device=backend.device())  # (n, 3) interior points of the simplex
log_q = xp.log(q)  # logits whose softmax is q (any constant shift is the same distribution)


def objective(lam, T):
    """The loss of every grid point at once (each point is one student): (1 − λ)·(−log q_0) + λ·T²·KL."""
    p_T = F.softmax(teacher, T=T).data  # (3,)
    kl = xp.sum(p_T * (xp.log(p_T) - F.log_softmax(log_q, T=T).data), axis=-1)  # (n,)
    return (1 - lam) * -log_q[:, 0] + lam * T * T * kl


for k in (0, len(grid) // 2):  # the vectorised form agrees with distillation_loss at single points
    one = F.distillation_loss(log_q[k:k + 1, ...], teacher[None, ...], label, lam=0.3, T=2.0).item()
    assert abs(one - float(objective(0.3, 2.0)[k])) < 1e-10


def panel(lam, T):
    values = objective(lam, T)
    best = int(xp.argmin(values))
    marks = {"minimum on the grid": grid[best], "teacher p (T = 1)": backend.to_numpy(F.softmax(teacher).data)}
    return backend.to_numpy(q), backend.to_numpy(values), marks, grid[best]


by_lam = {f"λ = {lam}, T = 2": panel(lam, 2.0) for lam in (0.0, 0.25, 0.5, 0.75, 1.0)}
by_T = {f"λ = 0.5, T = {T:g}": panel(0.5, T) for T in (1.0, 5.0, 20.0)}
labels = ("class 0 (label)", "class 1", "class 2")
print(tutorial.save_figure(plots.simplex_panels({k: p[:3] for k, p in by_lam.items()},
                                                "The combined objective over the simplex", labels),
                           "03_simplex_lambda.png"))
print(tutorial.save_figure(plots.simplex_panels({k: p[:3] for k, p in by_T.items()},
                                                "λ = 0.5: temperature and the small probabilities", labels),
                           "03_simplex_temperature.png"))
for name, p in {**by_lam, **by_T}.items():
    print(f"{name:18s} minimiser q = ({p[3][0]:.2f}, {p[3][1]:.2f}, {p[3][2]:.2f})")

# %% [markdown]
# The checks: the weight on the label's class falls as λ grows; at λ = 1 the minimiser is the
# teacher's distribution for every T (to the grid's resolution); at λ = 0.5 the mass on class 2 grows
# with T.

# %%
weight_on_label = [by_lam[f"λ = {lam}, T = 2"][3][0] for lam in (0.0, 0.25, 0.5, 0.75, 1.0)]
assert all(a >= b for a, b in zip(weight_on_label, weight_on_label[1:])) and weight_on_label[0] > weight_on_label[-1]
for T in (1.0, 2.0, 5.0, 20.0):
    at_teacher = panel(1.0, T)[3]
    assert np.abs(np.array(at_teacher) - backend.to_numpy(F.softmax(teacher).data)).max() < 2.0 / steps
mass_on_class_2 = [by_T[f"λ = 0.5, T = {T:g}"][3][2] for T in (1.0, 5.0, 20.0)]
assert mass_on_class_2[0] < mass_on_class_2[-1]

# %% [markdown]
# ## The minimiser in closed form at T = 1
# At T = 1 the objective is a cross-entropy against a mixture. Since KL(p‖q) = −Σ p log q − H(p),
#
# $$L_\lambda(q) = -\sum_i \big[(1-\lambda)\,[i = y] + \lambda\,p_i\big]\log q_i + \text{const},$$
#
# and a cross-entropy −Σ r log q over the simplex is smallest at q = r (Gibbs' inequality). So
#
# $$q^* = (1-\lambda)\,\mathrm{onehot}(y) + \lambda\,p\qquad(T = 1,\ \text{forward KL}).$$
#
# The grid's star should sit there, to the grid's resolution. (For T ≠ 1 there is no such closed
# form: q_T ∝ q^{1/T} is not linear in q.)

# %%
p_1 = backend.to_numpy(F.softmax(teacher).data)
for lam in (0.25, 0.5, 0.75):
    closed_form = (1 - lam) * np.eye(3)[0] + lam * p_1
    star = np.array(panel(lam, 1.0)[3])
    print(f"λ = {lam}: q* = ({closed_form[0]:.3f}, {closed_form[1]:.3f}, {closed_form[2]:.3f}); "
          f"grid star ({star[0]:.3f}, {star[1]:.3f}, {star[2]:.3f})")
    assert np.abs(star - closed_form).max() <= 1.0 / steps + 1e-12  # within one grid step

# %% [markdown]
# **Summary.** λ interpolates linearly between the language-modelling loss and imitation; the
# additive form is the same objective up to the factor 1 + λ′ with λ = λ′/(1 + λ′), which is a
# rescaled learning rate under plain SGD, all but nothing under AdamW, and removed by active
# clipping. The best student distribution slides from the label's corner toward the teacher as λ
# grows; at T = 1 it is exactly (1 − λ)·onehot(y) + λ·p. At λ = 1 the target is the teacher's
# distribution whatever T is; for λ < 1, a higher T lets the teacher's small probabilities pull harder.
#
# **You should see** (exact arithmetic, so to the printed digits): L = 2.820018, 2.473273, 1.433038
# at λ = 0, 0.25, 1; a final-logit difference of 0 for SGD with the rescaled learning rate, below
# 1e-6 for AdamW at the same learning rate and for always-clipped SGD, and above 1 otherwise; the grid
# star within one grid step of q* (1/120; 1/40 in fast mode), e.g. q* = (0.622, 0.333, 0.045) at λ = 0.5.

# %%
assert abs(ce - 2.820018) < 1e-6 and abs(kd - 1.433038) < 1e-6
assert max(gaps["AdamW, interpolated at the same lr"], gaps["SGD + clipping at 0.05, same lr"]) < 1e-6
assert min(gaps["SGD, interpolated at the same lr"], gaps["AdamW, interpolated at lr × (1 + λ′)"]) > 1.0
assert np.allclose(0.5 * np.eye(3)[0] + 0.5 * p_1, [0.622, 0.333, 0.045], atol=5e-4)

# %% [markdown]
# **Exercises.**
# 1. Repeat the optimizer comparison with `optim.AdamW(..., eps=1.0)`. Why do the two forms now differ?
# 2. Clip at 10 instead of 0.05 (so clipping never acts). Which of the SGD comparisons now holds?
# 3. Derive q* for the *additive* form at T = 1: it is (1 + λ′)⁻¹·(onehot(y) + λ′·p). Check it on the grid.

# %% [markdown]
# **Graded exercises.** `combined_objective` (both forms and the gradient) and `jsd` (the generalised JSD).
# Start one with `minikd exercise show combined_objective --stub combined_objective.py` (or
# `--notebook`), grade it with `minikd exercise check combined_objective combined_objective.py`;
# `minikd exercise list` shows them all.
