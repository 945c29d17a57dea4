"""``minikd bench``: timings measured in one run, minikd beside PyTorch when PyTorch is installed.

PyTorch is never a dependency: it is imported here only if present, as a reference.
"""

import json
import os
import statistics
import time
import tracemalloc

from minikd.engine import backend
from minikd.losses import functional as F
from minikd.engine.autograd import Tensor


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
        pool = backend.array_module().get_default_memory_pool()
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
    z = backend.xp().astype(rng.standard_normal((N, V)), backend.dtype(dtype)) * 3
    v = backend.xp().astype(rng.standard_normal((N, V)), backend.dtype(dtype)) * 3
    y = rng.integers(0, V, size=N)
    buffer_bytes = z.size * backend.host_xp().dtype(dtype).itemsize
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


# ---- train-step: one training step of the transformer-lite, beside the same model in PyTorch ---------
def _step_flops(config, B, S):
    """Matrix-product flops of one training step (forward 2·m·n·k per product; backward twice that)."""
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    per_token = L * 12 * C * C + V * C  # qkv 3C², proj C², MLP 8C², head V·C multiply-adds per token
    attention = L * 2 * B * S * S * C  # q kᵀ and A v: S·S·C multiply-adds each, per sequence
    return 3 * 2 * (B * S * per_token + attention)


def _matmul_rate(dtype, n=1024, repeat=5):
    """The machine's measured rate of one large square matrix product, in flop/s."""
    a = backend.xp().astype(backend.rng(0).standard_normal((n, n)), dtype)
    median, _ = _timed(lambda: a @ a, repeat)
    return 2 * n ** 3 / median


def _torch_train_step(model, idx, targets, config):
    """The same architecture in PyTorch, with minikd's weights, built here: (params, step, loss_fn)."""
    import torch
    import torch.nn.functional as tf

    c = model.config
    device = "cuda" if backend.name() == "cupy" else "cpu"
    params = {name: torch.tensor(p.numpy(), device=device, requires_grad=True) for name, p in model.named_parameters()}
    idx_t = torch.as_tensor(backend.to_numpy(idx), device=device)
    y_t = torch.as_tensor(backend.to_numpy(targets), device=device)
    B, S = idx_t.shape
    H, D = c.n_head, c.n_embd // c.n_head

    def loss_fn():
        x = params["wte.weight"][idx_t] + params["wpe.weight"][:S]  # (B, S, C)
        for i in range(c.n_layer):
            p = {k[len(f"blocks.{i}."):]: v for k, v in params.items() if k.startswith(f"blocks.{i}.")}
            h = tf.layer_norm(x, (c.n_embd,), p["ln1.gamma"], p["ln1.beta"], 1e-5)
            q, k, v = tf.linear(h, p["attn.qkv.weight"], p["attn.qkv.bias"]).view(B, S, 3, H, D).permute(2, 0, 3, 1, 4)
            y = tf.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, S, c.n_embd)
            x = x + tf.linear(y, p["attn.proj.weight"], p["attn.proj.bias"])
            h = tf.layer_norm(x, (c.n_embd,), p["ln2.gamma"], p["ln2.beta"], 1e-5)
            h = tf.gelu(tf.linear(h, p["mlp.fc.weight"], p["mlp.fc.bias"]), approximate="tanh")
            x = x + tf.linear(h, p["mlp.proj.weight"], p["mlp.proj.bias"])
        x = tf.layer_norm(x, (c.n_embd,), params["ln_f.gamma"], params["ln_f.beta"], 1e-5)
        head = params["wte.weight"] if c.tie_weights else params["lm_head.weight"]
        return tf.cross_entropy(tf.linear(x, head).reshape(B * S, -1), y_t.reshape(-1))

    groups = [{"params": [p for p in params.values() if p.ndim >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params.values() if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), eps=1e-8)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), config.grad_clip)
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss

    return params, step, loss_fn


def _minikd_train_step(model, idx, targets, config):
    """One step as ``minikd.recipes.train`` takes it: zero_grad, forward, cross-entropy, backward, clip, AdamW."""
    from minikd.nn import optim

    optimizer = config.make_optimizer(model)

    def step():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(idx), targets)
        loss.backward()
        optim.clip_grad_norm(optimizer.params, config.grad_clip)
        optimizer.step()

    return step


def _host_reads_per_step(name, batch_size, block_size, vocab_size, seed, config):
    """{"transfers", "syncs"} of one step, counted on the strict backend (it sees every scalar read
    of a device array, each a wait for the GPU under CuPy); None without array-api-strict."""
    from minikd.nn.model import TransformerLM, preset

    if not backend.available("strict"):
        return None
    with backend.using("strict"):
        model = TransformerLM(preset(name, vocab_size, block_size), seed=seed)
        rng = backend.rng(seed)
        idx = rng.integers(0, vocab_size, (batch_size, block_size))
        step = _minikd_train_step(model, idx, rng.integers(0, vocab_size, (batch_size, block_size)), config)
        step()  # the first step creates the optimizer's moments
        with backend.count_host_reads() as counts:
            step()
    return counts


def train_step(presets=("tiny", "small", "teacher"), batch_size=32, block_size=32, vocab_size=60, repeat=10,
               seed=0, profile=False, malloc_tuned=False, out=print):
    """Tokens per second of one AdamW training step at each preset, minikd beside PyTorch."""
    from minikd.nn.model import TransformerLM, preset
    from minikd.recipes.train import TrainConfig

    config = TrainConfig()
    rate = _matmul_rate(backend.default_dtype())
    rows = []
    for name in presets:
        model = TransformerLM(preset(name, vocab_size, block_size), seed=seed)
        rng = backend.rng(seed)
        idx = rng.integers(0, vocab_size, (batch_size, block_size))
        targets = rng.integers(0, vocab_size, (batch_size, block_size))
        torch_parts = _torch_reference(model, idx, targets, config)  # before any minikd step changes weights
        step = _minikd_train_step(model, idx, targets, config)
        median, _ = _timed(step, repeat)
        tokens = batch_size * block_size
        row = {"preset": name, "params": model.num_params(), "tokens": tokens, "minikd_median_s": median,
               "minikd_tokens_per_s": tokens / median, "flops": _step_flops(model.config, batch_size, block_size),
               "minikd_matmul_fraction": _step_flops(model.config, batch_size, block_size) / median / rate,
               "host_reads_per_step": _host_reads_per_step(name, batch_size, block_size, vocab_size, seed, config)}
        if torch_parts is not None:
            _, torch_step, agreement = torch_parts
            t_median, _ = _timed(torch_step, repeat)
            row.update(torch_median_s=t_median, torch_tokens_per_s=tokens / t_median, ratio=t_median / median,
                       **agreement)
        rows.append(row)
        if profile:
            _profile(step, out)
    result = {"benchmark": "train-step", "backend": backend.name(), "batch_size": batch_size,
              "block_size": block_size, "vocab_size": vocab_size, "repeat": repeat,
              "matmul_flops_per_s": rate, "malloc_tuned": malloc_tuned, "rows": rows}
    _print_train_step(result, out)
    return result


def _torch_reference(model, idx, targets, config):
    """PyTorch's step and its step-0 agreement with minikd (loss, gradients); None without PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    params, torch_step, loss_fn = _torch_train_step(model, idx, targets, config)
    loss_t = loss_fn()
    loss_t.backward()
    model.zero_grad()
    loss = F.cross_entropy(model(idx), targets)
    loss.backward()
    worst = 0.0
    for name, p in model.named_parameters():
        ours, theirs = backend.to_numpy(p.grad), params[name].grad.cpu().numpy()
        worst = max(worst, float(abs(ours - theirs).max() / max(abs(theirs).max(), 1e-30)))
    model.zero_grad()
    loss_diff = abs(loss.item() - loss_t.item()) / abs(loss_t.item())
    agreement = {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
                 "loss_rel_diff": loss_diff, "grad_rel_diff": worst,
                 "agrees": loss_diff < 1e-5 and worst < 1e-4}
    return params, torch_step, agreement


def _profile(step, out, top=12):
    """Where a step's time goes: the functions with the most own time (cProfile), over 5 steps."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(5):
        step()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    out(text.getvalue().strip())


def _print_train_step(r, out):
    out(f"train-step: forward + backward + AdamW on ({r['batch_size']}, {r['block_size']}) tokens, "
        f"V={r['vocab_size']}, backend {r['backend']}, median of {r['repeat']}; "
        f"measured matmul rate {r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s; "
        f"freed buffers kept for reuse: {'yes' if r['malloc_tuned'] else 'no (--default-malloc or not glibc)'}")
    out(f"  {'preset':<8s} {'params':>9s} {'minikd tok/s':>13s} {'of matmul':>9s} {'torch tok/s':>12s} "
        f"{'minikd/torch':>12s}  agreement (loss, grad)")
    for row in r["rows"]:
        line = (f"  {row['preset']:<8s} {row['params']:>9,d} {row['minikd_tokens_per_s']:>13,.0f} "
                f"{row['minikd_matmul_fraction']:>9.1%}")
        if "torch_median_s" in row:
            verdict = "agree" if row["agrees"] else "DISAGREE"
            line += (f" {row['torch_tokens_per_s']:>12,.0f} {row['ratio']:>11.2f}x  "
                     f"{row['loss_rel_diff']:.1e}, {row['grad_rel_diff']:.1e} {verdict}")
        else:
            line += "  (PyTorch not installed)"
        out(line)
    out("  minikd/torch > 1 means minikd's step is faster (ratio of median step times)")
    reads = [(row["preset"], row["host_reads_per_step"]) for row in r["rows"]]
    if all(counts is not None for _, counts in reads):
        out("  host reads per step (counted on the strict backend): " + ", ".join(
            f"{name} {counts['transfers']} transfers + {counts['syncs']} synchronisations" for name, counts in reads))
    else:
        out("  host reads per step: not counted (install array-api-strict: pip install -e \".[dev]\")")


def add_commands(commands):
    """``minikd bench kd-loss`` and ``minikd bench train-step``."""
    parser = commands.add_parser("bench", help="timings, beside PyTorch when it is installed")
    kinds = parser.add_subparsers(dest="benchmark", required=True, parser_class=type(parser))
    kd = kinds.add_parser("kd-loss", help="forward+backward of distillation_loss on [N, V] logits")
    kd.add_argument("--N", type=int, default=2048, help="positions (rows)")
    kd.add_argument("--V", type=int, default=32000, help="vocabulary size (columns)")
    kd.add_argument("--T", type=float, default=2.0, help="temperature")
    kd.add_argument("--lam", type=float, default=0.5, help="weight of the distillation term")
    kd.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="logits' dtype")
    kd.add_argument("--repeat", type=int, default=5, help="timed runs after one warm-up")
    kd.add_argument("--seed", type=int, default=0, help="random logits")
    kd.add_argument("--json", metavar="FILE", help="also write the result table as JSON")
    kd.set_defaults(run=_command)
    ts = kinds.add_parser("train-step", help="tokens/s of one training step at each preset, beside PyTorch")
    ts.add_argument("--presets", default="tiny,small,teacher", help="comma-separated presets")
    ts.add_argument("--batch-size", type=int, default=32, help="windows per step")
    ts.add_argument("--block-size", type=int, default=32, help="tokens per window")
    ts.add_argument("--vocab-size", type=int, default=60, help="vocabulary size")
    ts.add_argument("--repeat", type=int, default=10, help="timed steps after one warm-up")
    ts.add_argument("--seed", type=int, default=0, help="initial weights and tokens")
    ts.add_argument("--profile", action="store_true", help="also print where minikd's step spends its time")
    ts.add_argument("--json", metavar="FILE", help="also write the result table as JSON")
    ts.set_defaults(run=_command)


def _command(args):
    counts = ("N", "V", "repeat") if args.benchmark == "kd-loss" else (
        "batch_size", "block_size", "vocab_size", "repeat")
    for name in counts:  # checked before the benchmark runs
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.json and os.path.isdir(args.json):
        raise ValueError(f"--json {args.json!r} is a folder; name the file to write")
    if args.benchmark == "kd-loss":
        result = kd_loss(N=args.N, V=args.V, T=args.T, lam=args.lam, dtype=args.dtype, repeat=args.repeat,
                         seed=args.seed)
    else:
        result = train_step(presets=tuple(args.presets.split(",")), batch_size=args.batch_size,
                            block_size=args.block_size, vocab_size=args.vocab_size, repeat=args.repeat,
                            seed=args.seed, profile=args.profile, malloc_tuned=args.malloc_tuned)
    if args.json:
        write_json(result, args.json)
    return 0
