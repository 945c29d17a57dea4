# %% [markdown]
# # 9. Running on a GPU with CuPy
#
# **What you will learn.** How minikd switches between NumPy (CPU) and CuPy (CUDA GPU) at one point;
# what stays the same and what changes; and what to measure before you believe a GPU is faster.
# This tutorial runs on any machine: without a GPU it shows the CPU side and says what the GPU side
# would add.
#
# ## One switch point
# Only `minikd/backend.py` imports NumPy or CuPy. Every other module asks it for the active array
# module, `backend.xp()`, and calls `xp.exp`, `xp.einsum`, ... on it. CuPy copies NumPy's interface,
# so the same code runs on both. Select the GPU with `backend.use("cupy")`, with the environment
# variable `MINIKD_BACKEND=cupy`, or with `minikd --backend cupy ...`; install CuPy with
# `pip install -e ".[cuda12]"` (or `.[cuda13]`, matching your CUDA driver).

# %%
from minikd import backend
from minikd.tools import bench, plots, tutorial
from minikd.nn.model import TransformerLM, preset

print(f"active backend: {backend.name()}")
try:
    backend.use("cupy")
    gpu = True
except RuntimeError as err:  # no CuPy, or no usable CUDA device: the message says what to install
    print(f"no GPU here: {err}")
    gpu = False
finally:
    backend.use("numpy")

# %% [markdown]
# ## What stays the same
# - **Initial weights.** A model's weights are drawn from a NumPy generator on the host and then
#   copied to the device, so `TransformerLM(config, seed=0)` is the same model on both backends.
# - **The data.** The built-in corpora are generated on the host from the seed.
# - **The mathematics.** The forward and backward passes are the same code.
#
# ## What changes
# - **Random draws made on the device** (dropout masks, sampling in `generate`) come from CuPy's
#   generator: same seed, different numbers than NumPy. Each is still reproducible on its own backend.
# - **Floating-point sums** run in a different order, so results agree to rounding, not bit for bit.
# - **Host round-trips.** `float(x)`, `x.item()`, `print(x)` or `if x > 0:` on a device array copy it
#   to the host and wait for the GPU to finish. In a training loop that stalls the GPU every step,
#   so minikd's loop adds the loss up on the device and reads it only at evaluations.
# - **Timing.** GPU calls return before the work is done; time with `backend.synchronize()` before
#   reading the clock (`minikd bench` does).

# %%
config = preset("tiny", 60, 16)
cpu_model = TransformerLM(config, seed=0)
idx = backend.host_rng(0).integers(0, 60, (2, 16))
cpu_logits = backend.to_numpy(cpu_model(backend.from_numpy(idx)).data)
if gpu:
    backend.use("cupy")
    gpu_logits = backend.to_numpy(TransformerLM(config, seed=0)(backend.from_numpy(idx)).data)
    backend.use("numpy")
    difference = abs(gpu_logits - cpu_logits).max()
    print(f"same weights on both backends; logits differ by at most {difference:.1e} (rounding)")
    assert difference < 1e-4
else:
    print("with a GPU, this cell would build the same model on it and compare the logits")

# %% [markdown]
# ## What to measure
# A GPU pays off when each op has enough work to fill it. The fused distillation loss on large
# logits (positions × vocabulary) is such a case; a tiny model's training step, with its many small
# ops, may not be. `minikd bench kd-loss` times forward + backward of `distillation_loss` (beside
# PyTorch when it is installed); below, on each backend this machine has.

# %%
N, V = tutorial.pick((2048, 32000), (256, 2000))
timings = {}
for name in ["numpy"] + (["cupy"] if gpu else []):
    backend.use(name)
    result = bench.kd_loss(N=N, V=V, repeat=tutorial.pick(3, 1))
    timings[f"minikd ({name})"] = result["minikd"]["median_s"] * 1e3
    if result["torch"] is not None:
        timings[f"PyTorch ({result['torch']['device']})"] = result["torch"]["median_s"] * 1e3
backend.use("numpy")
fig = plots.grouped_bars(list(timings), {"median of the timed runs": list(timings.values())},
                         f"distillation_loss forward + backward on [{N}, {V}] float32 logits", "implementation",
                         "time per call (ms)")
print(tutorial.save_figure(fig, "09_kd_loss_timing.png"))

# %% [markdown]
# These numbers are from one run on this machine: measure on yours. For whole training steps, run
# `minikd bench train-step` (and `MINIKD_BACKEND=cupy minikd bench train-step` on a GPU): it reports
# tokens per second for each model preset and the fraction of the machine's matrix-product rate
# reached.
#
# **Summary.** One module decides where arrays live; the rest of minikd is the same code on CPU and
# GPU. Weights and data are identical across backends; device-side random draws and rounding are not.
# Avoid host round-trips in loops, synchronise before timing, and measure before you conclude.

# %% [markdown]
# **Exercises.** none of its own; the reference solutions' array code is written with the array
# module's functions (`xp = backend.xp()`), the style this tutorial asks for, so read them as
# examples. Start one with `minikd exercise show softmax_temperature --stub softmax_temperature.py`
# (or `--notebook`), grade it with `minikd exercise check softmax_temperature
# softmax_temperature.py`; `minikd exercise list` shows them all.
