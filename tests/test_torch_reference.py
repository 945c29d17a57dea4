"""minikd's losses against PyTorch's, when PyTorch is installed (it is never a dependency)."""

import numpy as np
import pytest
from hypothesis import given
from strategies import lams, logit_pairs, temperatures

from minikd import Tensor, backend
from minikd import functional as F

torch = pytest.importorskip("torch")
tf = torch.nn.functional


@given(pair=logit_pairs(), lam=lams, T=temperatures)
def test_distillation_loss_matches_the_pytorch_composition(pair, lam, T):
    z, v, y, _ = pair
    V = z.shape[-1]
    zt = torch.tensor(z.reshape(-1, V), requires_grad=True)
    vt, yt = torch.tensor(v.reshape(-1, V)), torch.tensor(y.reshape(-1))
    kept = yt != -100
    ce = tf.cross_entropy(zt, yt, ignore_index=-100)
    kd = tf.kl_div(tf.log_softmax(zt[kept] / T, -1), tf.log_softmax(vt[kept] / T, -1),
                   reduction="batchmean", log_target=True)
    expected = (1 - lam) * ce + lam * T * T * kd
    expected.backward()
    x = Tensor(backend.from_numpy(z), requires_grad=True)
    ours = F.distillation_loss(x, backend.from_numpy(v), backend.from_numpy(y), lam=lam, T=T)
    ours.backward()
    assert np.isclose(ours.item(), expected.item(), rtol=1e-9, atol=1e-12)
    assert np.allclose(backend.to_numpy(x.grad).reshape(-1, V), zt.grad.numpy(), rtol=1e-7, atol=1e-12)
