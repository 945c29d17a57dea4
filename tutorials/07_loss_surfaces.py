# %% [markdown]
# # 7. Loss surfaces and sharpness
#
# **What you will learn.** How to draw a slice of a network's loss landscape (Li et al., 2018): the
# loss along one or two random directions through the trained weights, *filter-normalised* so that
# slices of different models are comparable; the straight line between two trained models
# (Goodfellow, Vinyals & Saxe, 2015); how to measure *sharpness*, the largest Hessian eigenvalue and
# the Hessian's trace (as PyHessian does); and whether distillation finds flatter minima than
# cross-entropy alone here, measured over three seeds. Last, the combined objective over (λ, T), and
# which of its values may be compared.
#
# **Prerequisites.** Tutorial 3 (the combined objective) and tutorial 5 (distilling the grammar
# teacher). Everything here is also one command away: `minikd landscape RUN_DIR ...` (see the
# README's "Loss surfaces" section); the command and this tutorial call the same functions.
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
import os
from dataclasses import replace

from minikd import backend
from minikd.nn.model import TransformerLM, preset
from minikd.recipes import checkpoint
from minikd.recipes.distill import DistillConfig, Distiller
from minikd.recipes.train import TrainConfig, train
from minikd.tasks import data
from minikd.tools import landscape, objective_maps, plots, sharpness, tutorial

np = backend.host_xp()
SEEDS = (0, 1, 2)
teacher, _ = tutorial.grammar_teacher()  # the teacher of tutorial 4
task = data.GrammarTask(train_tokens=tutorial.pick(8_000, 2_000), seed=0)
config = TrainConfig(steps=tutorial.pick(300, 4), eval_every=tutorial.pick(300, 4), eval_windows=16)
KD = DistillConfig(lam=0.5, T=2.0)


def student(method, seed):
    """A 'small' student trained with cross-entropy ("ce") or KD on the same data and steps, kept as a
    run folder (so that `minikd landscape` can read it) and loaded from there on a second run."""
    folder = tutorial.runs_dir(f"07-{method}-{seed}-{config.steps}")
    if not os.path.exists(os.path.join(folder, "checkpoint.npz")):
        model = TransformerLM(preset("small", task.tokenizer.vocab_size, task.block_size), seed=seed)
        loss_fn = {"loss_fn": Distiller(teacher, KD, config.steps, seed=seed)} if method == "kd" else {}
        train(model, task, replace(config, seed=seed), out=folder, progress=False, **loss_fn)
    return checkpoint.load_model(os.path.join(folder, "checkpoint.npz"))


students = {(name, seed): student(method, seed) for seed in SEEDS for name, method in (("CE-only", "ce"), ("KD", "kd"))}
print("runs in", tutorial.runs_dir())

# %% [markdown]
# The loss we slice is the held-out cross-entropy on a fixed set of validation windows, the same for
# every student: `landscape.WindowLoss` evaluates it in batches, without a graph. First a check of
# the normalisation: every row of a direction has its weights' row norm, and vectors get zero.

# %%
x_val, y_val = task.eval_set("val", tutorial.pick(128, 8))
held_out = landscape.WindowLoss(x_val, y_val)
model = students["CE-only", 0]
d = landscape.filter_normalized_direction(model, seed=0)
weight = dict(model.named_parameters())["blocks.0.mlp.fc.weight"].data
row_norms = np.linalg.norm(backend.to_numpy(d["blocks.0.mlp.fc.weight"]), axis=-1)  # on the host: a check
assert np.allclose(row_norms, np.linalg.norm(backend.to_numpy(weight), axis=-1), rtol=1e-5)
assert np.all(backend.to_numpy(d["ln_f.gamma"]) == 0.0)

# %% [markdown]
# ## 1-D slices
# The same seed gives the same random draws for every model of one architecture, so the two
# students' slices go through "the same" direction, each rescaled to its own weights.

# %%
pair = {"CE-only": students["CE-only", 0], "KD (λ = 0.5, T = 2)": students["KD", 0]}
alphas = np.linspace(-1.0, 1.0, tutorial.pick(41, 5, 9))  # check mode: fewer points
slices = {name: landscape.loss_grid(m, held_out, landscape.directions(m, 0, 1), [alphas])[:, 0]
          for name, m in pair.items()}
for name, losses in slices.items():
    centre = losses[len(alphas) // 2]
    assert centre == held_out(pair[name])[0]  # α = 0 is the trained model itself, bit for bit
    print(f"{name:22s} loss at α=0: {centre:.4f}; at α=±0.5: {losses[len(alphas) // 4]:.4f}, "
          f"{losses[3 * len(alphas) // 4]:.4f}")
fig = plots.line_plot(alphas, slices, "The validation loss along one filter-normalised direction",
                      "α (step along d, in filter norms)", "cross-entropy (nats/token)")
print(tutorial.save_figure(fig, "07_slice_1d.png"))

# %% [markdown]
# ## 2-D surfaces
# Both panels share one colour scale (the same level boundaries), so a colour is the same loss in
# each; the 3-D view shares its vertical axis too.

# %%
grid = np.linspace(-1.0, 1.0, tutorial.pick(21, 3, 7))
A, B = np.meshgrid(grid, grid)  # rows β, columns α
panels = {name: (A, B, landscape.loss_grid(m, held_out, landscape.directions(m, 0, 2), [grid, grid])[:, :, 0].T)
          for name, m in pair.items()}
fig = plots.shared_contours({k: (*p, (0.0, 0.0)) for k, p in panels.items()},
                            "Validation loss around the trained weights (star)", "α (direction 1)", "β (direction 2)",
                            "cross-entropy (nats/token)")
print(tutorial.save_figure(fig, "07_surface_2d.png"))
fig = plots.surface_panels(panels, "The same surfaces in 3-D", "α", "β", "cross-entropy (nats/token)")
print(tutorial.save_figure(fig, "07_surface_3d.png"))

# %% [markdown]
# Such pictures are suggestive, not proof: they are two random directions out of tens of thousands,
# and the eye is drawn to the colour scale. A number is better.
#
# ## Sharpness: does KD find flatter minima here?
# The *top Hessian eigenvalue* λ_max is the curvature along the sharpest direction; the *trace*
# tr H is the sum of all curvatures. `sharpness.sharpness` gets the first by power iteration and
# the second by Hutchinson's estimator, both from Hessian-vector products, which are central
# differences of float64 gradients (the module's docstring says why that is accurate enough).
# We measure both for the CE-only and the KD student of each of three seeds, on the same held-out
# cross-entropy, and compare the means with the seed-to-seed spread.

# %%
sharp_windows = landscape.WindowLoss(*task.eval_set("val", tutorial.pick(64, 4)))
iterations, samples = tutorial.pick(20, 3), tutorial.pick(10, 2)
measured = {key: sharpness.sharpness(m, sharp_windows, seed=0, iterations=iterations, samples=samples)
            for key, m in students.items()}
per_seed = {}  # (method, quantity) -> one value per seed
for method in ("CE-only", "KD"):
    for quantity, key in (("top", "top_eigenvalue"), ("trace", "trace")):
        per_seed[method, quantity] = [measured[method, s][key] for s in SEEDS]
    print(f"{method:8s} λ_max per seed: {tutorial.describe(per_seed[method, 'top'], '{:.2f}')}; "
          f"trace per seed: {tutorial.describe(per_seed[method, 'trace'], '{:.1f}')}; power iteration "
          f"converged for {sum(measured[method, s]['converged'] for s in SEEDS)} of {len(SEEDS)} seeds")


def verdict(quantity):
    """'flatter', 'sharper' or 'no difference': KD against CE-only, a difference counting only when
    the gap between the means exceeds the sum of the two seed-to-seed standard deviations."""
    ce, kd = per_seed["CE-only", quantity], per_seed["KD", quantity]
    if tutorial.clearly_below(kd, ce):
        return "flatter"
    if tutorial.clearly_below(ce, kd):
        return "sharper"
    return "no difference"


findings = {quantity: verdict(quantity) for quantity in ("top", "trace")}
print(f"KD against CE-only, over seeds {SEEDS}: λ_max {findings['top']}, trace {findings['trace']}")
if tutorial.CLAIMS:  # 4 training steps measure nothing: asserted at full size and in check mode
    assert findings == {"top": "sharper", "trace": "no difference"}, findings
    assert all(measured["KD", s]["top_eigenvalue"] > measured["CE-only", s]["top_eigenvalue"] for s in SEEDS)
    for key, (quoted_mean, quoted_spread) in {("CE-only", "top"): (8.9, 1.5), ("KD", "top"): (14.0, 1.8),
                                              ("CE-only", "trace"): (130, 14), ("KD", "trace"): (128, 19)}.items():
        m, sd = tutorial.mean_spread(per_seed[key])  # the "you should see" below
        assert abs(m - quoted_mean) < 0.05 * quoted_mean and abs(sd - quoted_spread) < 0.1 * quoted_spread, (key, m, sd)

# %% [markdown]
# **What we find, and what it does not say.** KD did *not* find flatter minima here. With λ = 0.5,
# T = 2 and 300 steps, the KD student's largest Hessian eigenvalue is higher than the CE-only
# student's in each of the three seeds, and the gap between the means is larger than the sum of the
# two spreads: along its sharpest direction the distilled minimum is *sharper*. The trace, the total
# curvature over all directions, shows no difference beyond the spread. (The numbers are printed
# above; the assertions check the verdict, the per-seed order and the means whenever the tutorial
# runs at full size or in the check mode the test suite runs; its fast mode checks only the
# machinery.) We have not tested why; the flatter-minima story one often hears is not what these
# students show. Two cautions hold either way: sharpness is not invariant to reparameterisation
# (Dinh et al., 2017), so it compares like with like only (same architecture, optimizer and steps,
# as here), and sharpness is not by itself a measure of generalisation (compare the held-out losses
# printed with the 1-D slices).
#
# The slices along the top eigenvector and along a random unit direction show what λ_max means:
# the same α axis, one curve rising fast and one barely. The curvature of the eigenvector slice at 0,
# measured from the slice's own losses by a second difference, is the eigenvalue itself; farther out
# the loss rises more slowly than the quadratic model.

# %%
result = measured["KD", 0]
alphas_eig = sharpness.slice_axis(result["top_eigenvalue"], tutorial.pick(41, 5, 21))
along, curvature = sharpness.eigen_slices(students["KD", 0], sharp_windows, result, 0, alphas_eig)
print(f"KD seed 0: λ_max {result['top_eigenvalue']:.2f}; second difference of the eigenvector slice at 0: "
      f"{curvature['top eigenvector']['slice']:.2f}; curvature along a random unit direction "
      f"{curvature['random direction']['hessian']:.3f}")
if tutorial.CLAIMS:  # the slice's own float32 losses confirm λ_max; a random direction is far flatter
    assert abs(curvature["top eigenvector"]["slice"] - result["top_eigenvalue"]) <= 0.05 * result["top_eigenvalue"]
    assert curvature["random direction"]["hessian"] < result["top_eigenvalue"] / 100
centre = along["top eigenvector"][len(alphas_eig) // 2]
along["quadratic model f(0) + ½·λ_max·α²"] = centre + 0.5 * result["top_eigenvalue"] * alphas_eig ** 2
fig = plots.line_plot(alphas_eig, along, "KD student: the loss along the top eigenvector and a random direction",
                      "α (step along a unit vector)", "cross-entropy (nats/token)")
print(tutorial.save_figure(fig, "07_sharpness.png"))

# %% [markdown]
# ## The straight line from the CE-only student to the KD student
# Both start from the same initial weights (seed 0), so the line (1 − t)·θ_CE + t·θ_KD is a
# meaningful path; t beyond [0, 1] extrapolates. Its ends are the two models' losses exactly.

# %%
ts = np.linspace(-0.5, 1.5, tutorial.pick(21, 5, 11))
line = landscape.linear_path(students["CE-only", 0], students["KD", 0], held_out, ts)[:, 0]
ends = landscape.linear_path(students["CE-only", 0], students["KD", 0], held_out, [0.0, 1.0])[:, 0]
assert ends[0] == held_out(students["CE-only", 0])[0] and ends[1] == held_out(students["KD", 0])[0]
between = line[(ts >= 0) & (ts <= 1)]
print(f"CE-only {ends[0]:.4f} (t = 0), KD {ends[1]:.4f} (t = 1); highest point between them {between.max():.4f}")
fig = plots.line_plot(ts, {"held-out CE": line}, "The line from the CE-only (t = 0) to the KD student (t = 1)",
                      "t: weights (1 − t)·θ_CE + t·θ_KD", "cross-entropy (nats/token)")
print(tutorial.save_figure(fig, "07_path.png"))

# %% [markdown]
# ## The combined objective over (λ, T): what may be compared
# For the CE-only student and the teacher on the same windows, the value of
# $(1-\lambda)\,\mathrm{CE} + \lambda T^2\,\mathrm{KL}(p_T\|q_T)$ over a grid of λ and T.
# Within one column (one T) the values are comparable: the objective is a straight line in λ from
# the CE (λ = 0) to T²·KL (λ = 1). Across columns only the λ = 0 row is the same quantity; the other
# rows mix in a divergence between two *differently softened* distributions, whose size changes with
# T even for a fixed student. So the heatmap colours each column on its own scale (0 = its lowest
# value, 1 = its highest) and prints the actual values in the cells.

# %%
z = students["CE-only", 0](x_val).data
v = teacher(x_val).data
lams = np.linspace(0.0, 1.0, tutorial.pick(11, 3))
temperatures = np.geomspace(0.5, 8.0, tutorial.pick(9, 3))
surface = objective_maps.objective_over_lam_T(z, v, y_val, lams, temperatures)
assert np.abs(np.diff(surface, n=2, axis=0)).max() < 1e-4  # linear in λ within each column
assert np.abs(surface[0] - surface[0, 0]).max() < 1e-6  # λ = 0: the same CE at every T
print("T²·KL(p_T ‖ q_T) at λ = 1, per T:", np.round(surface[-1], 4))
fig = plots.heatmap_by_column(surface, temperatures, lams, "The combined objective of the CE-only student",
                              "temperature T", "λ")
print(tutorial.save_figure(fig, "07_objective_lambda_T.png"))

# %% [markdown]
# **Summary.** `minikd.tools.landscape` slices any loss along filter-normalised directions and along
# the line between two models, restoring the weights afterwards; `minikd.tools.sharpness` measures
# λ_max and tr H. Here the distilled students are *sharper* than the CE-only ones along the top
# eigenvector (every seed) and no different in the trace; the combined objective is linear in λ, and
# its values at different T are not on one scale.
#
# **You should see** (full size and check mode, seeds 0, 1, 2, asserted to 5 % of each mean and 10 %
# of each spread): the centre of every slice equal to the model's loss; λ_max 8.9 ± 1.5 for CE-only
# and 14.0 ± 1.8 for KD, traces 130 ± 14 and 128 ± 19; the
# eigenvector slice's curvature within 5 % of λ_max, and a random unit direction's curvature more
# than a hundred times smaller.
#
# **Exercises.** (1) Repeat the sharpness comparison at T = 1 and at λ = 0.9: does the gap grow
# with the weight on the teacher? (2) Run `minikd landscape` on two of your own runs with
# `--teacher` and `--what terms`: which term makes the surface steep? (3) Draw the line from the
# initial weights to a trained student (`--path`): is it monotone?

# %% [markdown]
# **Graded exercises.** none of its own; the surface of λ and T above is the objective of exercise
# `combined_objective`. Start one with `minikd exercise show combined_objective --stub
# combined_objective.py` (or `--notebook`), grade it with `minikd exercise check combined_objective
# combined_objective.py`; `minikd exercise list` shows them all.
