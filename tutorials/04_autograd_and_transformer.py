# %% [markdown]
# # 4. Autograd and a transformer-lite from scratch
#
# **What you will learn.** How minikd's autograd turns forward code into gradients (reverse mode,
# one backward function per op); how a transformer block's backward is written out and checked; and
# how a teacher trained on the grammar task compares with the best any model can do, the entropy floor.
#
# **Prerequisites.** Tutorials 1 to 3; the chain rule for vectors; what a transformer block is (attention
# and an MLP with residual connections) at the level of a lecture.
#
# ## Reverse-mode autograd in one example
# Every op records its inputs and a `backward` that maps the gradient of its output to gradients of
# its inputs. `loss.backward()` visits the graph from the loss back to the leaves (in a topological
# order found without recursion) and *adds* each contribution, so a tensor used twice gets both.
#
# For $f(a, b) = \sum (a \odot b + a)$: $\partial f/\partial a = b + 1$ and $\partial f/\partial b = a$.

# %%
from minikd import backend
from minikd.tasks import data
from minikd.tools import plots, tutorial
from minikd import functional as F
from minikd.engine.autograd import Tensor
from minikd.engine.gradcheck import directional_gradcheck, gradcheck
from minikd.nn.layers import gelu, layer_norm
from minikd.nn.modules import Block

xp = backend.xp()
rng = backend.rng(0)
a = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
b = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
f = (a * b + a).sum()
f.backward()
host = backend.to_numpy  # compare on the host
assert backend.host_xp().allclose(host(a.grad), host(b.data + 1)) and backend.host_xp().allclose(host(b.grad), host(a.data))
print("∂f/∂a = b + 1 and ∂f/∂b = a, as derived")

# %% [markdown]
# ## The layers' backward passes, checked
# Each layer of `minikd/layers.py` is a `Function` with a hand-derived backward beside its forward.
# For example, LayerNorm: with $\hat x = (x - \mu)/\sigma$ and $y = \gamma\hat x + \beta$,
#
# $$\frac{\partial L}{\partial x} = \frac{1}{\sigma}\Big(g - \overline{g} - \hat x\,\overline{g\,\hat x}\Big),\qquad g = \gamma \odot \frac{\partial L}{\partial y},$$
#
# where the bars are means over the feature axis. `gradcheck` compares every element with central
# differences:

# %%
x = Tensor(rng.standard_normal((2, 4, 8)), requires_grad=True)
gamma = Tensor(1 + 0.1 * rng.standard_normal(8), requires_grad=True)
beta = Tensor(0.1 * rng.standard_normal(8), requires_grad=True)
print("layer_norm:", gradcheck(layer_norm, x, gamma, beta))
print("gelu:      ", gradcheck(gelu, Tensor(rng.standard_normal((3, 5)), requires_grad=True)))

# %% [markdown]
# A whole pre-LN block, $x + \mathrm{attn}(\mathrm{LN}(x))$ then $x + \mathrm{MLP}(\mathrm{LN}(x))$,
# has a dozen parameter tensors. `directional_gradcheck` moves all of them at once along a random
# direction d and compares $\langle\nabla L, d\rangle$ with $(L(\theta + \varepsilon d) - L(\theta - \varepsilon d))/2\varepsilon$.

# %%
block = Block(16, 2, backend.host_rng(0), "float64", proj_std=0.02, dropout_p=0.0, seed=0, layer=1)
x = Tensor(rng.standard_normal((2, 5, 16)))
target = rng.standard_normal((2, 5, 16))


def block_loss():
    out = block(x)
    return ((out - Tensor(target)) * (out - Tensor(target))).mean()


block_loss().backward()
print("block:     ", directional_gradcheck(block_loss, block.parameters(), eps=1e-5, rtol=1e-5))

# %% [markdown]
# ## A teacher on the grammar task
# The grammar task is a toy language with synonym classes (`cat dog bird fox` are interchangeable
# with unequal probabilities). It is a finite automaton, so the exact next-token distribution P is
# known for every prefix. No model can have an expected loss below the *entropy floor*, the mean of
# H(P) over positions; the gap above it is exactly the model's KL to the truth:
#
# $$\mathbb E[\mathrm{CE}] = H(P) + \mathrm{KL}(P\,\|\,q).$$
#
# The `teacher` preset (3 blocks, 4 heads, width 96) trained with cross-entropy:

# %%
teacher, history = tutorial.grammar_teacher()  # 400 steps, trained once and kept in runs/tutorials
final = history[-1]
print(f"{teacher.num_params():,} parameters, {final['step']} steps: validation CE {final['val_loss']:.4f}, "
      f"entropy floor {final['entropy_floor']:.4f}, KL to the truth {final['kl_to_true']:.4f}")
assert final["kl_to_true"] < history[0]["kl_to_true"]  # training moved it toward the truth
if tutorial.CLAIMS:
    assert final["kl_to_true"] < 0.01  # within a hundredth of a nat per token of the best possible model

# The loss falls from log V ≈ 4.1 to near the floor, and the gap to the floor (the KL) spans decades:
# a log axis shows how the last thousandths are won.
curves = {"teacher: validation CE": history}
fig = plots.training_curves(curves, "val_loss", floor=final["entropy_floor"], logy=True,
                            title="A teacher on the grammar task", ylabel="cross-entropy (nats/token, log scale)")
print(tutorial.save_figure(fig, "04_teacher_curve.png"))
fig = plots.training_curves({"teacher: KL(true ‖ teacher)": history}, "kl_to_true", logy=True,
                            title="The teacher's distance to the true distribution",
                            ylabel="KL to the truth (nats/token, log scale)")
print(tutorial.save_figure(fig, "04_teacher_kl.png"))

# %% [markdown]
# What did it learn? After "the", its distribution over the next word, beside the truth:

# %%
task = data.GrammarTask(train_tokens=5_000, seed=0)
prefix = backend.asarray([task.tokenizer.encode(". the")])  # on the backend's device
truth = task.true_probs(prefix)[0, -1]
model = backend.to_numpy(F.softmax(teacher(prefix)).data[0, -1, :])
top = sorted(range(len(truth)), key=lambda i: -truth[i])[:6]
for i in top:
    print(f"{task.tokenizer.symbols[i]:>8s}  truth {truth[i]:.3f}  teacher {model[i]:.3f}")

assert abs(sum(truth) - 1) < 1e-9  # the truth is a distribution
if tutorial.CLAIMS:  # on the six likeliest words, the teacher is within two hundredths of the truth
    assert max(abs(truth[i] - model[i]) for i in top) < 0.02

# %% [markdown]
# **Summary.** Autograd is the chain rule applied backward through recorded ops, with each op's
# local derivative written by hand and checked against finite differences. A 344k-parameter teacher
# gets, in 400 steps, within a few thousandths of a nat per token of the entropy floor. Next: distilling it into a student.
#
# **You should see.** Every gradient check passes (errors near 1e-9 or below). After 400 steps the
# teacher ends with a KL to the truth of 0.006 ± 0.002 nats/token above an entropy floor of 1.58;
# after "the" (where an adjective or a noun
# comes next) its probabilities for the six likeliest words are within 0.02 of the truth's.

# %%
if tutorial.CLAIMS:
    assert abs(final["kl_to_true"] - 0.006) < 0.002
    assert abs(final["entropy_floor"] - 1.58) < 0.01

# %% [markdown]
# **Exercises.**
# 1. Use a tensor twice, `f = (a * a).sum()`, and check that `a.grad` is 2a. What would a backward
#    that *assigned* instead of *adding* gradients give?
# 2. Train the teacher for 1000 steps instead (`tutorial.grammar_teacher(1000)`): how far above the
#    floor does it end? Plot the KL against steps on a log axis.
# 3. Derive the backward of GELU's tanh approximation and compare it with `minikd/nn/layers.py`.

# %% [markdown]
# **Graded exercises.** `autograd_function` (a sigmoid Function, forward and backward),
# `layer_norm_backward`, `attention_backward` and `adamw_step`. Start one with `minikd exercise show
# attention_backward --stub attention_backward.py` (or `--notebook`), grade it with `minikd exercise
# check attention_backward attention_backward.py`; `minikd exercise list` shows them all.
