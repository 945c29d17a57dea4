"""The combined loss's fast path (NumPy only): ``plain.weighted_loss_and_grad`` in row chunks on threads.

Same sum, same closed-form gradient; the rows are cut into blocks of about ``CHUNK_ELEMENTS``
logits (a few fit in the CPU's L2 cache), each block's temporaries die young, its gradient is
written in place into one preallocated (N, V) array, and the blocks run on one thread per core
(NumPy releases the GIL). tests/test_fast_paths.py checks it equals the plain path.
"""

from minikd.engine import backend
from minikd.losses.divergences import softmax_of_shifted, softmax_parts

CHUNK_ELEMENTS = 1 << 15  # logits per block
MIN_ELEMENTS = 1 << 16  # below this (two blocks) the plain path is as fast


def weighted_loss_and_grad(z, v, y, a, b, T, divergence, beta, with_grad):
    """``plain.weighted_loss_and_grad`` for NumPy arrays, block by block; the blocks' sums are added in order."""
    np = backend.host_xp()
    grad = np.empty_like(z) if with_grad else None
    rows = max(1, CHUNK_ELEMENTS // z.shape[1])

    def block_loss(start):
        part = slice(start, start + rows)
        return _block(z[part], None if v is None else v[part], None if y is None else y[part],
                      None if a is None else a[part], None if b is None else b[part],
                      T, divergence, beta, None if grad is None else grad[part])

    return sum(backend.map_blocks(block_loss, range(0, z.shape[0], rows)), np.zeros((), dtype=z.dtype)), grad


def _block(z, v, y, a, b, T, divergence, beta, grad):
    """One block of rows: return Σ a·CE + b·D, and write its gradient into ``grad`` (if given)."""
    np = backend.host_xp()
    total = np.zeros((), dtype=z.dtype)
    shifted = z - z.max(axis=-1, keepdims=True)  # (c, V), every entry <= 0
    if y is not None:  # cross-entropy at T=1: CE = log Σ exp(z − m) − (z_y − m)
        rows = np.arange(z.shape[0])
        unnormalised = np.exp(shifted)
        norm = unnormalised.sum(axis=-1)
        total = total + (a * (np.log(norm) - shifted[rows, y])).sum()
        if grad is not None:  # a·(softmax(z) − onehot(y)), written in place
            np.multiply(unnormalised, (a / norm)[:, None], out=grad)
            grad[rows, y] -= a
    if v is not None:
        q, log_q = softmax_of_shifted(shifted, T)
        p, log_p = softmax_parts(v, T)
        values, dD_ds = divergence(p, log_p, q, log_q, beta, with_grad=grad is not None)
        total = total + (b * values).sum()
        if grad is not None:  # chain rule through s = z/T: dD/dz = dD/ds / T
            dD_ds *= (b / T)[:, None]
            if y is None:
                grad[...] = dD_ds
            else:
                grad += dD_ds
    return total
