# %% [markdown]
# # 2. The losses by hand: NLL, KL, soft cross-entropy, and why T²
#
# **What you will learn.** The three losses of distillation and their gradients with respect to the
# student's logits, derived on paper and then checked numerically with `gradcheck`; why the soft
# term of the objective is multiplied by T².
#
# Notation: student logits z ∈ ℝ^V, q = softmax(z), teacher logits v, p_T = softmax(v/T),
# q_T = softmax(z/T), target class y.
#
# **NLL (cross-entropy with a one-hot label).** $L = -\log q_y = -z_y + \log\sum_j e^{z_j}$, so
#
# $$\frac{\partial L}{\partial z_i} = q_i - [i = y].$$
#
# **KL at temperature T.** $\mathrm{KL}(p_T\|q_T) = \sum_i p_{T,i}(\log p_{T,i} - \log q_{T,i})$. Only
# $\log q_{T,i} = z_i/T - \log\sum_j e^{z_j/T}$ depends on z, and $\sum_i p_{T,i} = 1$, so
#
# $$\frac{\partial\,\mathrm{KL}}{\partial z_i} = \frac{1}{T}\,(q_{T,i} - p_{T,i}).$$
#
# **Soft cross-entropy.** $H(p_T, q_T) = -\sum_i p_{T,i}\log q_{T,i} = \mathrm{KL}(p_T\|q_T) + H(p_T)$.
# The teacher's entropy H(p_T) does not depend on z, so soft cross-entropy and KL have the *same
# gradient*: minimising either is the same training.
#
# **Prerequisites.** Tutorial 1 (softmax with temperature, the two terms); the chain rule and the
# derivative of log-sum-exp.

# %%
from minikd import backend, gradcheck
from minikd.tools import plots, tutorial
from minikd import functional as F
from minikd.engine.autograd import Tensor

xp = backend.xp()
np = backend.host_xp()
rng = backend.rng(0)

z = rng.standard_normal((4, 6))  # 4 positions, 6 classes, float64
v = rng.standard_normal((4, 6)) * 2
y = backend.asarray([2, 0, 5, 1])  # on the backend's device
T = 3.0

# %% [markdown]
# ## The gradients, closed form against autograd
# The closed forms above, written with arrays, against minikd's backward passes:

# %%
student = Tensor(z, requires_grad=True)
F.cross_entropy(student, y).backward()
q = F.softmax(z).data
onehot = xp.take(xp.eye(6, device=backend.device()), y, axis=0)  # row y_r of the identity
assert np.allclose(backend.to_numpy(student.grad), backend.to_numpy((q - onehot) / 4))  # the mean over 4 positions divides by 4

student = Tensor(z, requires_grad=True)
F.kl_div(student, v, T=T).backward()
q_T, p_T = F.softmax(z, T=T).data, F.softmax(v, T=T).data
assert np.allclose(backend.to_numpy(student.grad), backend.to_numpy((q_T - p_T) / T / 4))
print("closed forms agree with autograd")

# %% [markdown]
# ## Checked by central differences
# `gradcheck(fn, x)` compares the autograd gradient of Σ w·fn(x) (w a random cotangent, so the check
# cannot pass by accident) with $(f(x+\varepsilon) - f(x-\varepsilon))/2\varepsilon$, element by element, in
# float64. Each report gives the largest disagreement.

# %%
checks = {
    "NLL (cross_entropy)": lambda s: F.cross_entropy(s, y),
    "KL(p_T ‖ q_T)": lambda s: F.kl_div(s, v, T=T),
    "reverse KL(q_T ‖ p_T)": lambda s: F.kl_div(s, v, T=T, direction="reverse"),
    "JSD": lambda s: F.jsd(s, v, T=T),
    "distillation_loss": lambda s: F.distillation_loss(s, v, y, lam=0.4, T=T),
}
for name, fn in checks.items():
    report = gradcheck(fn, Tensor(z, requires_grad=True))
    print(f"{name:24s} {report}")
    assert report.max_abs_error < 1e-8

# %% [markdown]
# ## Soft cross-entropy and KL share a gradient
# Build soft cross-entropy from primitive ops (autograd composes their backward passes) and compare
# its gradient with KL's fused one:

# %%
def soft_cross_entropy(s):
    log_q_T = F.log_softmax(s, T=T)
    return -(Tensor(p_T) * log_q_T).sum() / 4


a, b = Tensor(z, requires_grad=True), Tensor(z, requires_grad=True)
soft_cross_entropy(a).backward()
F.kl_div(b, v, T=T).backward()
entropy_p = float(-xp.sum(p_T * xp.log(p_T)) / 4)
print(f"soft CE {soft_cross_entropy(Tensor(z)).item():.6f} = KL {F.kl_div(z, v, T=T).item():.6f} "
      f"+ H(p_T) {entropy_p:.6f}")
assert np.allclose(backend.to_numpy(a.grad), backend.to_numpy(b.grad))

# %% [markdown]
# ## Why T², and what it does exactly
# The KL gradient carries a factor 1/T, and (q_T − p_T) shrinks as well when T grows: both
# distributions approach uniform. For large T, expanding the exponentials to first order gives
#
# $$\frac{\partial\,\mathrm{KL}}{\partial z_i} \approx \frac{1}{T^2 V}\big((z_i-\bar z) - (v_i-\bar v)\big),$$
#
# so the gradient falls like 1/T². Without the T² factor, raising T would quietly switch distillation
# off relative to the hard-label term, whose gradient q − onehot(y) does not depend on T at all.
#
# What the factor does, exactly: the soft term's gradient becomes $T\,(q_T - p_T)$. In the high-T
# limit that tends to $\frac1V\big((z-\bar z)-(v-\bar v)\big)$, which does not depend on T: there, and
# only there, T² keeps the soft term's weight against the hard term fixed (and distillation becomes
# matching logits up to their means). At moderate and small T the approximation fails: T·(q_T − p_T)
# still depends on T, and as T → 0 it goes to zero (both softmaxes become one-hot, and the factor T
# is left over). So "the same λ" means a different balance of the two terms at T = 1 than at T = 10.
# Measured below on the 4 × 6 example: the ratio of the soft term's gradient norm (λ = 1) to the hard
# term's (λ = 0), with and without T².

# %%
temperatures = np.geomspace(0.1, 50, tutorial.pick(31, 11))


def grad_norm(T, lam, scale=True):
    s = Tensor(z, requires_grad=True)
    F.distillation_loss(s, v, y, lam=lam, T=float(T), scale_T2=scale).backward()
    return float(xp.linalg.vector_norm(s.grad))


hard = grad_norm(1.0, 0.0)  # ‖∂CE/∂z‖: the same at every T
with_T2 = np.array([grad_norm(T, 1.0) for T in temperatures]) / hard
without = np.array([grad_norm(T, 1.0, scale=False) for T in temperatures]) / hard
centred = (z - xp.mean(z, axis=-1, keepdims=True)) - (v - xp.mean(v, axis=-1, keepdims=True))
matching = float(xp.linalg.vector_norm(centred / 6 / 4)) / hard
at = {T: grad_norm(T, 1.0) / hard for T in (0.1, 1.0, 5.0, 50.0)}
for T, ratio in at.items():
    print(f"T = {T:4g}: soft/hard gradient ratio with T² {ratio:.3f}, without {ratio / T**2:.2e}   (high-T limit {matching:.3f})")
assert abs(with_T2[-1] - matching) / matching < 0.02  # at T = 50 the limit holds to 2 %
assert without[-1] < 1e-3 * with_T2[-1]  # without T², the soft term has all but vanished
assert abs(at[5.0] - matching) / matching < 0.05  # from T ≈ 5 on, within 5 % of the limit
assert at[1.0] < 0.8 * matching and at[0.1] < 0.2 * matching  # at T = 1 and below, far from it
assert all(a < b for a, b in zip(with_T2, with_T2[1:]))  # with T², the ratio still grows with T throughout

fig = plots.line_plot(temperatures, {"with T² (minikd's default)": with_T2, "without T²": without},
                      "Soft term's gradient against the hard term's", "temperature T",
                      "‖∂(λ=1 term)/∂z‖ / ‖∂CE/∂z‖", logx=True, logy=True,
                      reference=(matching, "high-T limit (logit matching)"))
print(tutorial.save_figure(fig, "02_gradient_scale.png"))

# %% [markdown]
# **Summary.** ∂NLL/∂z = q − onehot(y); ∂KL(p_T‖q_T)/∂z = (q_T − p_T)/T; soft cross-entropy has KL's
# gradient. The T² factor makes the soft term's gradient T·(q_T − p_T), which is independent of T
# only in the high-T limit (within 5 % of it from T ≈ 5 here); at T = 1 and below the soft term is
# weaker than the limit, and at T → 0 its gradient vanishes. Next: the two terms together, and what
# λ does.
#
# **You should see** (exact arithmetic on seeded arrays): every `gradcheck` error below 1e-8; the
# soft/hard gradient ratio with T² about 0.16 at T = 0.1, 0.70 at T = 1, 0.89 at T = 5 and 0.93 at
# T = 50 (the limit is 0.928); without T², about 16 at T = 0.1 and 4e-4 at T = 50.

# %%
assert abs(at[0.1] - 0.16) < 0.01 and abs(at[1.0] - 0.70) < 0.01 and abs(at[5.0] - 0.89) < 0.01
assert abs(at[50.0] - 0.93) < 0.01 and abs(matching - 0.928) < 0.005

# %% [markdown]
# **Exercises.**
# 1. Derive the high-T expansion above: write $e^{z_i/T} \approx 1 + z_i/T$ and keep first-order terms.
# 2. Plot the ratio for a teacher whose logits are 10 times larger (`v * 10`). From which T on does the
#    limit hold now, and why does the scale of the logits set it?
# 3. Replace forward KL by `direction="reverse"` in `grad_norm`: does the same T² argument hold?

# %% [markdown]
# **Graded exercises.** `nll` (NLL and its gradient), `kl` (KL(p_T‖q_T) and its gradient) and `t_squared`
# (the T² factor). Start one with `minikd exercise show kl --stub kl.py` (or `--notebook`), grade it
# with `minikd exercise check kl kl.py`; `minikd exercise list` shows them all.
