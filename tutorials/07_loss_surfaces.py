# %% [markdown]
# # 7. Loss surfaces
#
# **What you will learn.** How to draw a slice of a network's loss landscape (Li et al., 2018): the
# loss along one or two random directions through the trained weights, with the directions
# *filter-normalised* so that slices of different models are comparable; how the surface of a
# CE-only student and of a distilled one look side by side; and the shape of the combined objective
# itself as a function of λ and T.
#
# For trained weights θ and directions d₁, d₂ the slices are
#
# $$f(\alpha) = L(\theta + \alpha d_1),\qquad f(\alpha, \beta) = L(\theta + \alpha d_1 + \beta d_2).$$
#
# A random direction has no natural scale: a layer with large weights would barely notice it, one
# with small weights would be destroyed. Filter normalisation rescales each row of each weight
# matrix of d (one output unit, a "filter") to the norm of the same row of θ, and sets d to 0 on
# vectors (biases, LayerNorm gains). Then α = 1 means "move each filter by its own length".

# %%
from minikd import backend
from minikd.tasks import data
from minikd.tools import plots, tutorial
from minikd import functional as F
from minikd.recipes.distill import DistillConfig, Distiller
from minikd.tools.landscape import filter_normalized_direction, loss_grid
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.train import TrainConfig, train

backend.reuse_freed_memory()  # keep freed buffers for reuse: training runs faster (see the README)
xp = backend.xp()
np = backend.host_xp()
teacher, _ = tutorial.grammar_teacher(tutorial.pick(1000, 20), tokens=tutorial.pick(200_000, 5_000))
task = data.GrammarTask(train_tokens=tutorial.pick(8_000, 2_000), seed=0)
config = TrainConfig(steps=tutorial.pick(300, 4), eval_every=tutorial.pick(300, 4), eval_windows=16)
students = {}
for name, kd in (("CE-only", None), ("KD (λ = 0.5, T = 2)", DistillConfig(lam=0.5, T=2.0))):
    student = TransformerLM(preset("small", task.tokenizer.vocab_size, task.block_size), seed=0)
    train(student, task, config, progress=False, **({"loss_fn": Distiller(teacher, kd, config.steps)} if kd else {}))
    students[name] = student.eval()

# %% [markdown]
# The loss we slice is the validation cross-entropy on a fixed set of windows, the same for both.
# First a check of the normalisation: every row of a direction has its weights' row norm.

# %%
x_val, y_val = task.eval_set("val", tutorial.pick(128, 8))
directions = {name: [filter_normalized_direction(m, seed=k) for k in (1, 2)] for name, m in students.items()}
model = students["CE-only"]
weight = dict(model.named_parameters())["blocks.0.mlp.fc.weight"].data
d = directions["CE-only"][0]["blocks.0.mlp.fc.weight"]
assert np.allclose(backend.to_numpy(xp.linalg.vector_norm(d, axis=1)), backend.to_numpy(xp.linalg.vector_norm(weight, axis=1)))
assert float(xp.max(xp.abs(directions["CE-only"][0]["ln_f.gamma"]))) == 0.0


def validation_loss(m):
    return lambda: F.cross_entropy(m(x_val), y_val).item()


# %% [markdown]
# ## 1-D slices

# %%
alphas = np.linspace(-1.0, 1.0, tutorial.pick(41, 5))
slices = {name: loss_grid(m, validation_loss(m), directions[name][:1], [(a,) for a in alphas])
          for name, m in students.items()}
for name, losses in slices.items():
    centre = losses[len(alphas) // 2]
    assert abs(centre - validation_loss(students[name])()) < 1e-6  # α = 0 is the trained model itself
    print(f"{name:22s} loss at α=0: {centre:.4f}; at α=±0.5: {losses[len(alphas) // 4]:.4f}, "
          f"{losses[3 * len(alphas) // 4]:.4f}")
fig = plots.line_plot(alphas, slices, "The validation loss along one filter-normalised direction",
                      "α (step along d, in filter norms)", "cross-entropy (nats/token)")
print(tutorial.save_figure(fig, "07_slice_1d.png"))

# %% [markdown]
# ## 2-D surfaces

# %%
grid = np.linspace(-1.0, 1.0, tutorial.pick(21, 3))
panels = {}
for name, m in students.items():
    losses = loss_grid(m, validation_loss(m), directions[name], [(a, b) for b in grid for a in grid])
    A, B = np.meshgrid(grid, grid)
    panels[name] = (A, B, np.array(losses).reshape(len(grid), len(grid)), (0.0, 0.0))
fig = plots.contour_panels(panels, "Validation loss around the trained weights (star)", "α (direction 1)",
                           "β (direction 2)", "cross-entropy (nats/token)")
print(tutorial.save_figure(fig, "07_surface_2d.png"))

# %% [markdown]
# Compare the two panels: how fast the loss rises away from the star, and whether the basin is round
# or stretched. Such pictures are suggestive, not proof: they are two random directions out of tens
# of thousands, and sharpness depends on the parameterisation.
#
# ## The combined objective over (λ, T)
# For the CE-only student and the teacher on the same windows, the value of
# $(1-\lambda)\,\mathrm{CE} + \lambda T^2\,\mathrm{KL}(p_T\|q_T)$ over a grid of λ and T. Along λ it is a
# straight line for each T (the objective is linear in λ); along T only the soft term changes.

# %%
z = students["CE-only"](x_val).data
v = teacher(x_val).data
lams = np.linspace(0.0, 1.0, tutorial.pick(11, 3))
temperatures = np.geomspace(0.5, 8.0, tutorial.pick(9, 3))
surface = [[F.distillation_loss(z, v, y_val, lam=float(lam), T=float(T)).item() for T in temperatures] for lam in lams]
second_differences = np.diff(np.array(surface), n=2, axis=0)
assert np.abs(second_differences).max() < 1e-4  # linear in λ
fig = plots.heatmap(surface, temperatures, lams, "The combined objective of the CE-only student",
                    "temperature T", "λ", "loss (nats/token)")
print(tutorial.save_figure(fig, "07_objective_lambda_T.png"))

# %% [markdown]
# **Summary.** `minikd.tools.landscape` draws loss slices along filter-normalised directions for any model
# and any loss. The combined objective is linear in λ, and its soft term depends on T through both
# the softening and the T² factor.
