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
# ## Why T²
# The KL gradient carries a factor 1/T, and (q_T − p_T) shrinks as well when T grows: both
# distributions approach uniform. For large T, expanding the exponentials to first order gives
#
# $$\frac{\partial\,\mathrm{KL}}{\partial z_i} \approx \frac{1}{T^2 V}\big((z_i-\bar z) - (v_i-\bar v)\big),$$
#
# so the gradient falls like 1/T². Without the T² factor, raising T would quietly switch distillation
# off relative to the hard-label term. Multiplying by T² keeps the two terms in proportion for every
# T. It also shows what distillation becomes at high temperature: matching logits (up to their means).
# Measured below:

# %%
temperatures = np.geomspace(0.5, 50, tutorial.pick(25, 9))


def grad_norm(T, scale):
    s = Tensor(z, requires_grad=True)
    F.distillation_loss(s, v, y, lam=1.0, T=float(T), scale_T2=scale).backward()
    return float(xp.linalg.vector_norm(s.grad))


with_T2 = [grad_norm(T, True) for T in temperatures]
without = [grad_norm(T, False) for T in temperatures]
matching = xp.linalg.vector_norm(((z - xp.mean(z, axis=-1, keepdims=True)) - (v - xp.mean(v, axis=-1, keepdims=True))) / 6 / 4)
print(f"at T = 50: with T² {with_T2[-1]:.4f}, logit-matching limit {float(matching):.4f}; without T² {without[-1]:.2e}")
assert abs(with_T2[-1] - float(matching)) / float(matching) < 0.02
assert without[-1] < 1e-3 * with_T2[-1]

fig = plots.line_plot(temperatures, {"λ·T²·KL (minikd's default)": with_T2, "λ·KL (no T² factor)": without},
                      "Gradient size of the distillation term against temperature", "temperature T",
                      "‖∂L/∂z‖ (Frobenius norm)", logx=True, logy=True,
                      reference=(float(matching), "logit-matching limit"))
print(tutorial.save_figure(fig, "02_gradient_scale.png"))

# %% [markdown]
# **Summary.** ∂NLL/∂z = q − onehot(y); ∂KL(p_T‖q_T)/∂z = (q_T − p_T)/T; soft cross-entropy has KL's
# gradient. The T² factor cancels the 1/T² fall of that gradient, keeping the soft term's weight
# independent of T. Next: the two terms together, and what λ does.

# %% [markdown]
# **Graded exercises.** `nll` (NLL and its gradient), `kl` (KL(p_T‖q_T) and its gradient) and `t_squared`
# (the T² factor). Start one with `minikd exercise show kl --stub kl.py` (or `--notebook`), grade it
# with `minikd exercise check kl kl.py`; `minikd exercise list` shows them all.
