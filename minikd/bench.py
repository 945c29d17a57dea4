"""``minikd bench``: timings measured in one run, minikd beside PyTorch when PyTorch is installed.

PyTorch is never a dependency: it is imported here only if present, as a reference.
"""

import json
import statistics
import time
import tracemalloc

from minikd import backend
from minikd import functional as F
from minikd.autograd import Tensor


def _timed(step, repeat):
    """Median and best wall time of ``step()`` over ``repeat`` runs, after one warm-up run."""
    step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        backend.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def _peak_extra_bytes(step):
    """Peak memory allocated during ``step()`` beyond what was held before it."""
    if backend.name() == "cupy":
        pool = backend.xp().get_default_memory_pool()
        pool.free_all_blocks()
        before = pool.used_bytes()
        step()
        backend.synchronize()
        return pool.total_bytes() - before
    tracemalloc.start()  # NumPy reports its array buffers to tracemalloc
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _torch_kd_loss(z, v, y, lam, T, device):
    """The usual PyTorch composition: cross_entropy + kl_div(log_softmax(z/T), log_softmax(v/T))·T²."""
    import torch
    import torch.nn.functional as tf

    zt = torch.as_tensor(z, device=device).requires_grad_(True)
    vt, yt = torch.as_tensor(v, device=device), torch.as_tensor(y, device=device)

    def step():
        zt.grad = None
        kd = tf.kl_div(tf.log_softmax(zt / T, dim=-1), tf.log_softmax(vt / T, dim=-1),
                       reduction="batchmean", log_target=True)
        loss = (1 - lam) * tf.cross_entropy(zt, yt) + lam * T * T * kd
        loss.backward()
        if device != "cpu":
            torch.cuda.synchronize()
        return loss

    return zt, step


def kd_loss(N=2048, V=32000, T=2.0, lam=0.5, dtype="float32", repeat=5, seed=0, out=print):
    """Time forward + backward of ``distillation_loss`` on [N, V] logits; returns the result table."""
    rng = backend.rng(seed)
    z = rng.standard_normal((N, V)).astype(dtype) * 3
    v = rng.standard_normal((N, V)).astype(dtype) * 3
    y = rng.integers(0, V, size=N)
    buffer_bytes = z.nbytes
    state = {}

    def step():
        state["z"] = Tensor(z, requires_grad=True)
        state["loss"] = F.distillation_loss(state["z"], v, y, lam=lam, T=T)
        state["loss"].backward()

    median, best = _timed(step, repeat)
    state.clear()
    peak = _peak_extra_bytes(step)
    result = {
        "benchmark": "kd-loss", "backend": backend.name(), "N": N, "V": V, "T": T, "lam": lam, "dtype": dtype,
        "repeat": repeat,
        "minikd": {"median_s": median, "best_s": best, "peak_extra_bytes": peak,
                   "peak_extra_logit_buffers": peak / buffer_bytes, "loss": state["loss"].item()},
    }
    try:
        import torch
    except ImportError:
        result["torch"] = None
    else:
        device = "cuda" if backend.name() == "cupy" else "cpu"
        zt, torch_step = _torch_kd_loss(backend.to_numpy(z), backend.to_numpy(v), backend.to_numpy(y), lam, T, device)
        t_median, t_best = _timed(torch_step, repeat)
        t_loss = torch_step().item()
        grad_ours = backend.to_numpy(state["z"].grad)
        grad_torch = zt.grad.cpu().numpy()
        scale = float(abs(grad_torch).max())
        result["torch"] = {
            "version": torch.__version__, "device": device, "threads": torch.get_num_threads(),
            "median_s": t_median, "best_s": t_best, "loss": t_loss,
            "loss_rel_diff": abs(t_loss - result["minikd"]["loss"]) / abs(t_loss),
            "grad_max_abs_diff_over_max_grad": float(abs(grad_ours - grad_torch).max()) / scale,
        }
        result["torch"]["agrees"] = (result["torch"]["loss_rel_diff"] < 1e-5
                                     and result["torch"]["grad_max_abs_diff_over_max_grad"] < 1e-4)
        result["speedup_vs_torch"] = t_median / median
    _print_kd_loss(result, out)
    return result


def _print_kd_loss(r, out):
    m, t = r["minikd"], r["torch"]
    out(f"kd-loss: forward+backward of distillation_loss on [{r['N']}, {r['V']}] {r['dtype']} logits, "
        f"T={r['T']}, lam={r['lam']}, backend {r['backend']}, median of {r['repeat']}")
    out(f"  {'implementation':<34s} {'median':>9s} {'best':>9s}")
    out(f"  {'minikd (fused)':<34s} {m['median_s'] * 1e3:7.1f}ms {m['best_s'] * 1e3:7.1f}ms")
    if t is None:
        out("  PyTorch is not installed: no reference timing (pip install torch to compare)")
    else:
        label = f"torch {t['version']} ({t['device']}, {t['threads']} threads)"
        out(f"  {label:<34s} {t['median_s'] * 1e3:7.1f}ms {t['best_s'] * 1e3:7.1f}ms")
        out(f"  speed-up over PyTorch: {r['speedup_vs_torch']:.2f}x")
        verdict = "agree" if t["agrees"] else "DISAGREE (tolerances 1e-5 on the loss, 1e-4 on the gradient)"
        out(f"  agreement: loss rel diff {t['loss_rel_diff']:.1e}, "
            f"grad max abs diff / max |grad| {t['grad_max_abs_diff_over_max_grad']:.1e}: {verdict}")
    out(f"  minikd peak extra memory: {m['peak_extra_bytes'] / 2**20:.1f} MiB "
        f"= {m['peak_extra_logit_buffers']:.2f} logit-sized buffers")


def write_json(result, path):
    """Write a benchmark's result table as JSON."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
