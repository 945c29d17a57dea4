# %% [markdown]
# # 9. Running on a GPU with CuPy, and proving it on a CPU
#
# **What you will learn.** How minikd switches between NumPy (CPU) and CuPy (CUDA GPU) at one point;
# how the third backend, `strict`, catches on a laptop the lines that would break or stall a GPU;
# what stays the same across backends and what changes; and what to measure before you believe a
# GPU is faster. This tutorial runs on any machine.
#
# ## One switch point
# Only `minikd/engine/backend.py` imports NumPy, CuPy or the array-API packages. Every other module
# asks it for the active array namespace, `backend.xp()`, and writes its array code to the
# [Python array API standard](https://data-apis.org/array-api/latest/): functions of the namespace
# (`xp.sum(x, axis=-1)`, `xp.astype(x, dtype)`, `xp.permute_dims`), not NumPy-only methods
# (`x.sum()`, `x.astype`) or keywords (`out=`). NumPy and CuPy both implement the standard, with
# `array-api-compat` smoothing the last differences, so the same lines run on both. Select a backend
# with `backend.use("cupy")`, the environment variable `MINIKD_BACKEND=cupy`, or
# `minikd --backend cupy ...`; install CuPy with `pip install -e ".[cuda12]"` (or `.[cuda13]`).

# %%
from minikd import backend
from minikd import functional as F
from minikd.tools import bench, plots, tutorial
from minikd.nn.model import TransformerLM, preset

np = backend.host_xp()  # NumPy, for host arrays
print(f"active backend: {backend.name()}")
gpu = backend.available("cupy")  # CuPy installed and a CUDA device answering
print("a GPU is here" if gpu else "no GPU here: the GPU cells below say what they would show")

# %% [markdown]
# ## The strict backend: a GPU's rules on a CPU
# Most ways NumPy code breaks on a GPU can be caught without one. `backend.use("strict")` runs
# minikd on [array-api-strict](https://data-apis.org/array-api-strict/)'s virtual device `device1`:
# an array there refuses to become a NumPy array behind your back, refuses arithmetic with NumPy
# arrays, and offers only the standard's functions. The whole test suite runs a second time on it
# (`MINIKD_BACKEND=strict pytest`), which is how minikd knows its lines are GPU-ready.
#
# A leaky line first: `np.asarray` of a device array. NumPy accepts it silently; on CuPy it is an
# error or a hidden copy. The strict backend stops it, and the fixed line asks for the transfer:

# %%
strict = backend.available("strict")  # array-api-strict comes with the test extra, pip install -e ".[dev]"
if strict:
    with backend.using("strict"):
        logits = backend.from_numpy(np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]))  # on device1
        try:
            np.asarray(F.softmax(logits).data)  # leaky: an implicit device-to-host copy
            raise AssertionError("the strict backend should have refused np.asarray")
        except RuntimeError as err:
            print(f"leaky line refused: {err}")
        probs = backend.to_numpy(F.softmax(logits).data)  # fixed: the explicit, counted transfer
        print("fixed line:", probs.round(3).tolist())
        assert np.allclose(probs.sum(axis=1), 1.0)
        try:
            logits + np.ones(3)  # leaky: a host array in device arithmetic
            raise AssertionError("the strict backend should have refused a NumPy operand")
        except TypeError as err:
            print(f"host/device mix refused: {err}")
        print("fixed line:", backend.to_numpy(logits + backend.from_numpy(np.ones(3))).tolist())
else:
    print("array-api-strict is not installed: pip install -e \".[dev]\" to run this cell")

# %% [markdown]
# The second leak is slower, not wrong: a `float()` (or `.item()`, or `if x > 0:`) of a device
# array inside a loop. Each one makes the CPU wait for the GPU to finish everything queued, so a
# loop that reads its loss every step runs at the speed of the round trip. The strict backend
# counts these synchronisations (`backend.count_host_reads`); here are a leaky training-style loop
# and its fix, which adds the losses up on the device and reads once at the end:

# %%
if strict:
    with backend.using("strict") as xp:
        rng = backend.rng(0)
        batches = [rng.standard_normal((4, 10)) for _ in range(20)]  # 20 steps' logits, on device1
        targets = backend.asarray([1, 2, 3, 4])
        with backend.count_host_reads() as leaky:
            total = 0.0
            for z in batches:
                total += F.cross_entropy(z, targets).item()  # leaky: waits for the device every step
        with backend.count_host_reads() as fixed:
            running = xp.zeros((), dtype=xp.float64, device=backend.device())
            for z in batches:
                running = running + F.cross_entropy(z, targets).data  # fixed: stays on the device
            total_fixed = float(running)  # one read, at the end
    print(f"leaky loop: {leaky['syncs']} synchronisations; fixed loop: {fixed['syncs']} "
          f"(both sum to {total:.6f})")
    extra = leaky["syncs"] - fixed["syncs"]
    assert extra == len(batches) - 1 and abs(total - total_fixed) < 1e-9
    print(f"the leaky line reads the loss {len(batches)} times instead of once: {extra} extra waits")

# %% [markdown]
# The fixed loop still synchronises a few times per loss: the argument checks (finite logits,
# targets in range) read one flag each, a small constant per call, never per element. minikd's
# training loop is written the fixed way; `minikd bench train-step` prints the transfers and
# synchronisations of one step, and a test bounds them by a constant that does not grow with the
# number of layers or steps.

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
idx = backend.host_rng(0).integers(0, 60, (2, 16))
with backend.using("numpy"):
    cpu_logits = backend.to_numpy(TransformerLM(config, seed=0)(backend.from_numpy(idx)).data)
if gpu:
    with backend.using("cupy"):
        gpu_logits = backend.to_numpy(TransformerLM(config, seed=0)(backend.from_numpy(idx)).data)
    difference = abs(gpu_logits - cpu_logits).max()
    print(f"same weights on both backends; logits differ by at most {difference:.1e} (rounding)")
    assert difference < 1e-4
else:
    print("with a GPU, this cell would build the same model on it and compare the logits")
if strict:
    with backend.using("strict"):
        strict_logits = backend.to_numpy(TransformerLM(config, seed=0)(backend.from_numpy(idx)).data)
    difference = abs(strict_logits - cpu_logits).max()
    print(f"on the strict backend the logits differ from NumPy's by at most {difference:.1e}")
    assert difference < 1e-5

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
    with backend.using(name):
        result = bench.kd_loss(N=N, V=V, repeat=tutorial.pick(3, 1))
    timings[f"minikd ({name})"] = result["minikd"]["median_s"] * 1e3
    if result["torch"] is not None:
        timings[f"PyTorch ({result['torch']['device']})"] = result["torch"]["median_s"] * 1e3
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
# **Summary.** One module decides where arrays live; the rest of minikd is the same code, written to
# the array API standard, on CPU and GPU. The strict backend proves on a CPU that no line converts a
# device array implicitly, mixes host and device arrays, or uses a NumPy-only function, and it
# counts the waits a GPU would make. Weights and data are identical across backends; device-side
# random draws and rounding are not. Avoid host round-trips in loops, synchronise before timing,
# and measure before you conclude.

# %% [markdown]
# **Graded exercises.** none of its own; the reference solutions' array code is written with the array
# module's functions (`xp = backend.xp()`), the style this tutorial asks for, so read them as
# examples. Start one with `minikd exercise show softmax_temperature --stub softmax_temperature.py`
# (or `--notebook`), grade it with `minikd exercise check softmax_temperature
# softmax_temperature.py`; `minikd exercise list` shows them all.
