"""Hidden-state distillation: the MSE op's gradient, the layer map, the projections, the whole objective."""

import re

import numpy as np
import pytest
from hypothesis import given
from reference import arr, assert_same_params, tensor
from strategies import array_shapes, normal, seeds

from minikd import backend, gradcheck
from minikd.recipes import checkpoint
from minikd.tasks import data
from minikd.recipes.distill import DistillConfig, Distiller
from minikd.engine.gradcheck import directional_gradcheck
from minikd.recipes.hidden import HiddenDistiller, check_layer_map, default_layer_map, mse, parse_layer_map
from minikd.nn.model import TransformerLM, preset
from minikd.recipes.teacher import teacher_logits
from minikd.recipes.train import TrainConfig, train


@given(shape=array_shapes(), seed=seeds)
def test_mse_gradient_is_checked_and_closed_form(shape, seed):
    x, target = normal(shape, seed), normal(shape, seed + 1)
    gradcheck(lambda a: mse(a, arr(target)), tensor(x, grad=True))
    t = tensor(x, grad=True)
    loss = mse(t, arr(target))
    loss.backward()
    np.testing.assert_allclose(loss.item(), ((x - target) ** 2).mean(), rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(t.grad), 2 * (x - target) / x.size, rtol=1e-12)


def test_mse_is_zero_at_the_target_and_refuses_other_shapes():
    x = normal((2, 3), 0)
    assert mse(tensor(x), arr(x)).item() == 0.0
    with pytest.raises(ValueError, match=r"x has shape \(2, 3\), target has shape \(3, 2\)"):
        mse(tensor(x), arr(x.T))


def test_layer_maps():
    assert default_layer_map(2, 4) == ((1, 2), (2, 4))  # block i <-> block 2i
    assert default_layer_map(2, 3) == ((1, 1), (2, 3))  # the last block always meets the last block
    assert parse_layer_map("0:0, 1:3") == ((0, 0), (1, 3))
    with pytest.raises(ValueError, match="teacher stream 4: the teacher has streams 0..3"):
        check_layer_map(((1, 4),), 2, 3)
    with pytest.raises(ValueError, match="student stream 3"):
        check_layer_map(((3, 1),), 2, 3)
    with pytest.raises(ValueError, match="empty"):
        check_layer_map((), 2, 3)
    with pytest.raises(ValueError, match="STUDENT:TEACHER"):
        parse_layer_map("1-2")


@pytest.fixture(scope="module")
def task():
    return data.GrammarTask(block_size=8, train_tokens=5_000, val_tokens=2_000, seed=0)


def models(task, dtype="float32"):
    V, S = task.tokenizer.vocab_size, task.block_size
    teacher = TransformerLM(preset("small", V, S, dtype=dtype), seed=5).eval()  # 2 blocks, width 48
    student = TransformerLM(preset("tiny", V, S, dtype=dtype), seed=1)  # 1 block, width 32
    return teacher, student


def test_the_whole_objective_is_gradient_checked(task):
    """Student parameters and projections together, in float64, against central differences."""
    teacher, student = models(task, "float64")
    hd = HiddenDistiller(teacher, student, DistillConfig(lam=0.3, T=2.0), steps=1, mu=0.7, layer_map=((0, 0), (1, 2)))
    x, y = task.batch("train", 3, seed=0, step=0)
    params = student.parameters() + hd.projections.parameters()
    assert len(hd.projections.parameters()) == 4  # widths differ: one (W, b) per pair
    loss = hd(student, x, y, 0)
    loss.backward()
    directional_gradcheck(lambda: hd(student, x, y, 0), params, eps=1e-5, rtol=1e-5)
    directional_gradcheck(lambda: hd(student, x, y, 0), params, eps=1e-5, rtol=1e-5, seed=1)


def test_mu_zero_is_prediction_layer_distillation(task):
    teacher, a = models(task)
    _, b = models(task)
    config, steps = DistillConfig(), TrainConfig(steps=4, batch_size=4, eval_every=4, eval_windows=4, warmup=1)
    train(a, task, steps, loss_fn=Distiller(teacher, config, 4), progress=False)
    hd = HiddenDistiller(teacher, b, config, 4, mu=0.0)
    train(b, task, steps, loss_fn=hd, extra=hd.projections, progress=False)
    assert_same_params(a, b)


def test_projections_train_save_and_resume(task, tmp_path):
    """The projections move, are saved beside the student, and a run stopped at step 6 and resumed
    ends with the same projections as an uninterrupted one, bit for bit."""
    teacher, _ = models(task)
    config = TrainConfig(steps=8, batch_size=4, eval_every=4, eval_windows=4, warmup=1)

    def run(out, resume=False, crash_at=None):
        _, student = models(task)
        hd = HiddenDistiller(teacher, student, DistillConfig(), config.steps, mu=1.0)

        def loss_fn(model, x, y, step):
            if step == crash_at:
                raise KeyboardInterrupt
            return hd(model, x, y, step)

        train(student, task, config, out=str(out), loss_fn=loss_fn, extra=hd.projections, resume=resume,
              progress=False)
        return hd

    initial = HiddenDistiller(teacher, models(task)[1], DistillConfig(), config.steps).projections.state_dict()
    straight = run(tmp_path / "a").projections.state_dict()
    assert not np.array_equal(backend.to_numpy(initial["maps.0.weight"]), backend.to_numpy(straight["maps.0.weight"]))
    saved = checkpoint.load(str(tmp_path / "a" / "checkpoint.npz")).extra_state
    assert set(saved) == {"maps.0.weight", "maps.0.bias"}
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", crash_at=6)
    resumed = run(tmp_path / "b", resume=True).projections.state_dict()
    for name, value in straight.items():
        np.testing.assert_array_equal(backend.to_numpy(value), backend.to_numpy(resumed[name]), err_msg=name)


def test_bad_weight_and_equal_widths(task):
    teacher, student = models(task)
    with pytest.raises(ValueError, match="mu must be a finite number >= 0"):
        HiddenDistiller(teacher, student, DistillConfig(), 4, mu=-1.0)
    same = TransformerLM(preset("small", task.tokenizer.vocab_size, task.block_size), seed=2)
    assert HiddenDistiller(teacher, same, DistillConfig(), 4).projections.parameters() == []  # nothing to learn


def test_the_prediction_term_is_the_distillers_objective_and_mu_defaults_to_one(task):
    """HiddenDistiller = Distiller(teacher, config, steps, seed) (schedules over ``steps``, the label
    noise of ``seed``, the teacher's bias) + μ·hidden_loss, μ = 1 and seed 0 by default; describe adds μ."""
    teacher, student = models(task)
    config = DistillConfig(lam=0.9, lam_schedule="linear", lam_end=0.1, T=3.0, T_schedule="linear", T_end=1.0,
                           label_noise=0.5, teacher_bias=(1, 2, 4.0))
    x, y = task.batch("train", 4, seed=0, step=3)
    assert (backend.to_numpy(x) == 1).any()  # the bias's context token occurs: the bias changes v
    for seed, hd in ((3, HiddenDistiller(teacher, student, config, 10, mu=0.0, seed=3)),
                     (0, HiddenDistiller(teacher, student, config, 10, mu=0.0))):
        expected = Distiller(teacher, config, 10, seed)
        assert hd(student, x, y, 4).item() == expected(student, x, y, 4).item()
        assert hd.describe(4) == {**expected.describe(4), "mu": 0.0}
    hd = HiddenDistiller(teacher, student, config, 10, seed=3)
    _, student_streams = student(x, return_hidden=True)
    _, teacher_streams = teacher_logits(teacher, x, return_hidden=True)
    hidden = hd.hidden_loss(student_streams, teacher_streams).item()
    assert hd(student, x, y, 4).item() == pytest.approx(Distiller(teacher, config, 10, 3)(student, x, y, 4).item()
                                                        + hidden, rel=1e-5)


def test_projections_are_seeded_on_their_own_stream_scaled_and_of_the_students_dtype(task):
    """P_k's weights: N(0, 1/C_s) (the stream's scale kept), drawn from rng(seed, PROJECTION_STREAM)
    (another seed, other weights; not the numbers of rng(seed) itself), in the student's dtype."""
    teacher, student = models(task, "float64")
    weights = {seed: backend.to_numpy(HiddenDistiller(teacher, student, DistillConfig(), 4, seed=seed)
                                      .projections.maps[0].weight.data) for seed in (0, 1)}
    w = weights[0]
    assert w.dtype == np.float64 and not np.array_equal(w, weights[1])
    C_s = student.config.n_embd
    assert abs(w.std() * np.sqrt(C_s) - 1.0) < 0.1  # 48·32 draws: the estimate is within a few %
    assert not np.allclose(w * np.sqrt(C_s), backend.host_rng(0).standard_normal(w.shape))
    teacher, student = models(task, "float32")
    projection = HiddenDistiller(teacher, student, DistillConfig(), 4).projections.maps[0]
    assert projection.weight.dtype == projection.bias.dtype == student.parameters()[0].dtype


def test_layer_map_entries_and_mu_are_checked_by_name():
    for bad in ((1, 2, 3), (True, 1), (1.0, 2)):
        with pytest.raises(ValueError, match=rf"^layer_map entries must be pairs of integers, got {re.escape(repr(bad))}$"):
            check_layer_map((bad,), 2, 3)
    with pytest.raises(ValueError, match=r"^layer_map is empty: "):
        check_layer_map((), 2, 3)
    x = normal((2, 3), 0)
    assert mse(arr(x), arr(np.zeros((2, 3)))).item() == pytest.approx((x**2).mean(), rel=1e-12)  # a raw array


def test_mu_must_be_a_number(task):
    teacher, student = models(task)
    with pytest.raises(TypeError, match=r"^hidden-state weight mu must be a number"):
        HiddenDistiller(teacher, student, DistillConfig(), 4, mu="1")
