"""Sizes checked against the machine's memory before anything is allocated.

An absurd size (``--batch-size 10**9``, a crafted checkpoint's vocabulary) gets a ValueError that
names it and the memory it would need, instead of a ``MemoryError`` half-way through a run.
"""

import os

FLOAT_BYTES = 8  # float64 at most: an upper estimate for either dtype


def available_memory():
    """Bytes this process could still allocate: ``MemAvailable`` on Linux, else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def _human(n_bytes):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024


def check_memory(what, n_bytes):
    """ValueError when ``what`` (e.g. ``"batch_size=10**9"``) would need more than the available memory."""
    available = available_memory()
    if n_bytes > available:
        raise ValueError(f"{what} would need about {_human(n_bytes)} of memory, but only {_human(available)} "
                         f"is available; choose a smaller size")


def model_parameters(config):
    """The parameter count of a TransformerLM with ``config``, from the sizes alone (nothing allocated)."""
    V, S, L, C = config.vocab_size, config.block_size, config.n_layer, config.n_embd
    per_block = 12 * C * C + 13 * C  # attention (4·C² + 4·C), MLP (8·C² + 5·C), two LayerNorms (4·C)
    return V * C + S * C + L * per_block + 2 * C + (0 if config.tie_weights else V * C)


def training_bytes(config, batch_size):
    """A rough estimate of one training step's memory, 8 bytes a number: weights, gradients and AdamW's
    two moments, and the activations ((B, S, V) logits, softmax and gradient; (B, S, C) streams per layer)."""
    B, S = batch_size, config.block_size
    activations = B * S * (3 * config.vocab_size + 16 * config.n_layer * config.n_embd)
    return FLOAT_BYTES * (4 * model_parameters(config) + activations)
