"""Loss landscapes, linear paths, sharpness and ``minikd landscape`` on tiny models.

Sharpness is checked against Hessians known in closed form: a quadratic ½‖Bw‖² (H = BᵀB) and a
linear softmax regression (H = (1/N) Σ_n (diag p_n − p_n p_nᵀ) ⊗ x_n x_nᵀ).
"""

import json
import os
from dataclasses import replace

import numpy as np
import pytest
from reference import arr

from minikd import backend
from minikd import functional as F
from minikd.engine.autograd import Tensor, no_grad
from minikd.losses.divergences import DIVERGENCES
from minikd.losses.functional import FORMS
from minikd.nn import layers
from minikd.nn.model import TransformerLM, preset
from minikd.nn.modules import Module
from minikd.recipes import checkpoint
from minikd.tasks.data import GrammarTask
from minikd.tools import landscape, landscape_command as command, objective_maps, sharpness
from minikd.tools.cli import main as cli_main

TASK = GrammarTask(block_size=8, train_tokens=2_000, val_tokens=2_000, seed=0)
host = backend.to_numpy


def tiny(seed=0, **overrides):
    model = TransformerLM(preset("tiny", TASK.tokenizer.vocab_size, TASK.block_size, **overrides), seed=seed)
    rng = np.random.default_rng(seed + 100)  # weights away from their initial scale, so rows differ
    for p in model.parameters():
        p.data = p.data + backend.xp().astype(arr(rng.standard_normal(p.shape)), p.dtype) * 0.3
    return model.eval()


def windows(n=6):
    return TASK.eval_set("val", n)


def snapshot(model):
    return {name: (p, p.data, host(p.data).copy()) for name, p in model.named_parameters()}


def assert_restored(model, before):
    for name, p in model.named_parameters():
        tensor, array, copy = before[name]
        assert p is tensor and p.data is array, name  # the very same arrays are back
        assert np.array_equal(host(p.data), copy), name  # and they were never written to


def test_filter_normalisation_rows_have_their_weights_norms_and_vectors_get_zero():
    model = tiny()
    direction = landscape.filter_normalized_direction(model, seed=3)
    for name, p in model.named_parameters():
        assert direction[name].shape == p.shape and direction[name].dtype == p.dtype
        d, weights = host(direction[name]), host(p.data)
        if p.ndim < 2:
            assert np.all(d == 0), name
        else:
            np.testing.assert_allclose(np.linalg.norm(d, axis=-1), np.linalg.norm(weights, axis=-1), rtol=1e-5)
            assert not np.allclose(d, weights)  # a random direction, not the weights


def test_same_seed_same_directions_for_every_model_of_an_architecture_and_different_seed_differs():
    a, b = tiny(0), tiny(1)
    da, da_again, da_other, db = ({n: host(d) for n, d in landscape.filter_normalized_direction(m, s).items()}
                                  for m, s in ((a, 5), (a, 5), (a, 6), (b, 5)))
    name = "blocks.0.mlp.fc.weight"
    for n in da:
        assert np.array_equal(da[n], da_again[n])
    assert not np.allclose(da[name], da_other[name])
    # the same draw, rescaled to each model's rows: d / ‖θ_row‖ agrees between the two models
    rows = lambda d, m: d / np.linalg.norm(host(dict(m.named_parameters())[name].data), axis=-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(rows(da[name], a), rows(db[name], b), rtol=1e-5)
    x, y = windows()
    loss, axis = landscape.WindowLoss(x, y), np.linspace(-0.5, 0.5, 3)
    grids = [landscape.loss_grid(a, loss, landscape.directions(a, seed, 2), [axis, axis]) for seed in (5, 5, 6)]
    assert np.array_equal(grids[0], grids[1]) and not np.allclose(grids[0], grids[2])


def test_centre_of_every_slice_and_ends_of_a_path_equal_direct_losses_and_weights_come_back():
    a, b = tiny(0), tiny(1)
    x, y = windows()
    loss = landscape.WindowLoss(x, y, batch_size=4)  # two batches of unequal size
    with no_grad():
        direct = [F.cross_entropy(m(x), y).item() for m in (a, b)]
    assert loss(a)[0] == pytest.approx(direct[0], rel=1e-6)
    before = snapshot(a)
    axis = np.linspace(-1.0, 1.0, 5)
    plane = landscape.loss_grid(a, loss, landscape.directions(a, 0, 2), [axis, axis])
    line = landscape.loss_grid(a, loss, landscape.directions(a, 0, 1), [axis])
    assert plane.shape == (5, 5, 1) and line.shape == (5, 1)
    assert plane[2, 2, 0] == loss(a)[0] and line[2, 0] == loss(a)[0]  # θ + 0·d is θ, bit for bit
    assert_restored(a, before)
    ends = landscape.linear_path(a, b, loss, [0.0, 1.0])
    assert ends[0, 0] == loss(a)[0] and ends[1, 0] == loss(b)[0]
    beyond = landscape.linear_path(a, b, loss, [-0.5, 1.5])
    assert np.all(np.isfinite(beyond)) and not np.allclose(beyond[:, 0], ends[:, 0])
    assert_restored(a, before)


class Interrupting:
    """A loss that raises on its third evaluation (``error`` may be KeyboardInterrupt)."""

    def __init__(self, loss, error):
        self.loss, self.error, self.calls, self.names = loss, error, 0, loss.names

    def __call__(self, model):
        self.calls += 1
        if self.calls == 3:
            raise self.error
        return self.loss(model)


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()], ids=["raises", "interrupted"])
def test_weights_restored_bit_for_bit_when_the_loss_raises(error):
    model = tiny().train()
    x, y = windows()
    before = snapshot(model)
    with pytest.raises(type(error)):
        landscape.loss_grid(model, Interrupting(landscape.WindowLoss(x, y), error),
                            landscape.directions(model, 0, 1), [np.linspace(-1, 1, 5)])
    assert_restored(model, before)
    assert model.training  # the mode is restored too
    with pytest.raises(type(error)):
        sharpness.top_eigenvalue(model, RaisingParts(landscape.WindowLoss(x, y, batch_size=2), error), iterations=5)
    assert_restored(model, before)


class RaisingParts:
    """A loss whose gradient pass raises on its second batch."""

    def __init__(self, loss, error):
        self.loss, self.error, self.names = loss, error, loss.names

    def parts(self, model):
        for k, part in enumerate(self.loss.parts(model)):
            if k == 1:
                raise self.error
            yield part


def test_batched_evaluation_equals_one_pass_and_the_terms_add_up_for_every_divergence_and_form():
    student, teacher = tiny(0), tiny(1)
    x, y = windows(7)
    whole = landscape.WindowLoss(x, y, batch_size=100)(student)
    assert landscape.WindowLoss(x, y, batch_size=3)(student)[0] == pytest.approx(whole[0], rel=1e-6)
    with no_grad():
        z, v = student(x).data, teacher(x).data
    for divergence in DIVERGENCES:
        for form in FORMS:
            options = dict(teacher=teacher, lam=0.4, T=3.0, divergence=divergence, form=form, batch_size=3)
            objective = landscape.WindowLoss(x, y, "objective", **options)(student)[0]
            hard, soft = landscape.WindowLoss(x, y, "terms", **options)(student)
            direct = F.distillation_loss(z, v, y, lam=0.4, T=3.0, divergence=divergence, form=form).item()
            assert objective == pytest.approx(direct, rel=1e-5), (divergence, form)
            assert hard + soft == pytest.approx(objective, rel=1e-5), (divergence, form)
            assert soft > 0 and hard > 0
    with pytest.raises(ValueError, match="needs a teacher"):
        landscape.WindowLoss(x, y, "objective")


class Weights(Module):
    """A model that is one weight matrix (K, D)."""

    def __init__(self, values):
        self.weight = Tensor(values, requires_grad=True)


class ToyLoss:
    """The loss protocol (names, parts, __call__) around one function of the model."""

    names = ("loss",)

    def __init__(self, fn):
        self.fn = fn

    def parts(self, model):
        yield 1.0, {"loss": self.fn(model)}

    def __call__(self, model):
        with no_grad():
            return np.array([self.fn(model).item()])


def hutchinson_tolerance(H, samples):
    """4 standard errors of the Rademacher estimator: Var(zᵀHz) = 2·Σ_{i≠j} H_ij²."""
    off = H - np.diag(np.diag(H))
    return 4 * np.sqrt(2 * (off ** 2).sum() / samples)


def test_sharpness_of_a_quadratic_is_its_top_eigenvalue_and_trace():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((6, 5))
    H = B.T @ B  # L(w) = ½‖B w‖², H = BᵀB
    model = Weights(arr(rng.standard_normal((1, 5))))
    loss = ToyLoss(lambda m: (layers.linear(m.weight, arr(B)) ** 2).sum() * 0.5)
    top = sharpness.top_eigenvalue(model, loss, seed=1, iterations=200, tol=1e-12)
    assert top["converged"] and top["eigenvalue"] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-6)
    trace, stderr = sharpness.hutchinson_trace(model, loss, samples=100, seed=2)
    assert abs(trace - np.trace(H)) < hutchinson_tolerance(H, 100) and stderr > 0
    alphas = np.linspace(-0.01, 0.01, 5)
    along, curvature = sharpness.eigen_slices(model, loss, {**top, "top_eigenvalue": top["eigenvalue"]}, 0, alphas)
    assert sharpness.slice_curvature(alphas, along["top eigenvector"]) == pytest.approx(top["eigenvalue"], rel=1e-6)
    assert curvature["top eigenvector"]["slice"] == pytest.approx(top["eigenvalue"], rel=1e-6)
    assert curvature["top eigenvector"]["hessian"] == pytest.approx(top["eigenvalue"], rel=1e-6)
    u = np.concatenate([host(v).reshape(-1) for v in sharpness.unit_random_direction(model, 0).values()])
    assert curvature["random direction"]["hessian"] == pytest.approx(u @ H @ u, rel=1e-6)  # uᵀHu, u of unit length


def test_sharpness_of_a_softmax_regression_matches_its_closed_form_hessian():
    rng = np.random.default_rng(1)
    N, D, K = 40, 4, 3
    X, y = rng.standard_normal((N, D)), rng.integers(0, K, N)
    W = rng.standard_normal((K, D)) * 0.5
    model = Weights(arr(W))
    loss = ToyLoss(lambda m: F.cross_entropy(layers.linear(arr(X), m.weight), arr(y)))
    logits = X @ W.T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    H = sum(np.kron(np.diag(p[n]) - np.outer(p[n], p[n]), np.outer(X[n], X[n])) for n in range(N)) / N
    top = sharpness.top_eigenvalue(model, loss, seed=0, iterations=300, tol=1e-10)
    assert top["eigenvalue"] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-5)
    trace, _ = sharpness.hutchinson_trace(model, loss, samples=200, seed=0)
    assert abs(trace - np.trace(H)) < hutchinson_tolerance(H, 200)
    alphas = np.linspace(-1e-3, 1e-3, 3)  # the slice's own curvature, from its loss values
    along, _ = sharpness.eigen_slices(model, loss, {**top, "top_eigenvalue": top["eigenvalue"]}, 0, alphas)
    assert sharpness.slice_curvature(alphas, along["top eigenvector"]) == pytest.approx(top["eigenvalue"], rel=1e-4)
    assert backend.dtype_name(model.weight.dtype) == "float64" and np.array_equal(host(model.weight.data), W)


def test_simplex_objective_agrees_with_distillation_loss_and_its_minimiser_is_the_closed_form():
    teacher = [0.6, 0.3, 0.1]
    q, values, best = objective_maps.simplex_objective(teacher, 0, lam=0.3, T=1.0, steps=50)
    for k in (0, len(q) // 2, len(q) - 1):
        direct = F.distillation_loss(arr(np.log(q[k:k + 1])), arr(np.log([teacher])), arr([0]), lam=0.3, T=1.0).item()
        assert values[k] == pytest.approx(direct, rel=1e-9)
    expected = 0.7 * np.eye(3)[0] + 0.3 * np.array(teacher)  # forward KL, T = 1: q* = (1 − λ)·onehot + λ·p
    assert np.abs(best - expected).max() <= 1.5 / 50
    with pytest.raises(ValueError, match="sum to 1"):
        objective_maps.simplex_objective([0.5, 0.5, 0.5], 0, 0.3, 1.0)


def save_run(folder, model):
    checkpoint.save(os.path.join(folder, "checkpoint.npz"), model, step=1, task="text", train_config={"seed": 0})
    return str(folder)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three untrained runs on a small text file (a fast task): two of one architecture, one wider."""
    root = tmp_path_factory.mktemp("runs")
    text = root / "text.txt"
    text.write_text("the cat sat on the mat; a dog lay on the rug. " * 8)
    config = preset("tiny", len(set(text.read_text())), 16)
    made = {"data": str(text)}
    for name, seed in (("ce", 0), ("kd", 1)):
        made[name] = save_run(root / name, TransformerLM(config, seed=seed))
    made["wide"] = save_run(root / "wide", TransformerLM(replace(config, n_embd=48), seed=2))
    return made


def test_command_writes_pictures_grid_and_json(runs, tmp_path, capsys):
    out = tmp_path / "plane"
    data = ["--data", runs["data"], "--windows", "4", "--quiet"]
    args = [runs["ce"], runs["kd"], "--points", "3", "--out", str(out), *data]
    assert landscape_command([*args, "--sharpness", "--iterations", "3", "--samples", "2"]) == 0
    report = json.loads((out / "landscape.json").read_text())
    grid = np.load(out / "grid.npz", allow_pickle=False)
    assert grid["losses"].shape == (2, 3, 3, 1) and list(grid["runs"]) == ["ce", "kd"]
    model, x, y = command.load_run(runs["ce"], 4, runs["data"])
    centre = landscape.WindowLoss(x, y)(model)[0]
    assert report["results"]["ce"]["centre"]["held-out CE"] == pytest.approx(float(centre), rel=1e-6)
    assert grid["losses"][0, 1, 1, 0] == pytest.approx(float(centre), rel=1e-6)
    assert set(report["results"]["kd"]["sharpness"]) >= {"top_eigenvalue", "trace", "trace_stderr", "curvature"}
    assert len((out / "grid.csv").read_text().splitlines()) == 1 + 2 * 9
    for name in ("surface_2d.png", "surface_3d.png", "sharpness.png"):
        assert (out / name).stat().st_size > 5_000
    assert landscape_command(args) == 2  # results are never replaced unasked
    assert "--overwrite" in capsys.readouterr().err
    assert landscape_command([runs["ce"], "--teacher", runs["kd"], "--what", "terms", "--dims", "1", "--points", "5",
                              "--out", str(tmp_path / "terms"), *data]) == 0
    assert landscape_command([runs["ce"], "--dims", "1", "--points", "3", "--seed", "7", "--out", str(tmp_path / "seed"),
                              *data]) == 0
    axis = np.linspace(-1.0, 1.0, 3)  # the command's slice is the API's, along the directions of --seed
    for seed, same in ((7, True), (0, False)):
        expected = landscape.loss_grid(model, landscape.WindowLoss(x, y), landscape.directions(model, seed, 1), [axis])
        assert np.allclose(np.load(tmp_path / "seed" / "grid.npz")["losses"][0], expected, rtol=1e-6) == same
    terms = json.loads((tmp_path / "terms" / "landscape.json").read_text())["results"]["ce"]["centre"]
    assert set(terms) == {"hard term", "soft term"} and (tmp_path / "terms" / "slice_1d.png").exists()
    assert landscape_command(["--path", runs["ce"], runs["kd"], "--points", "5", "--out", str(tmp_path / "path"),
                              *data]) == 0
    path = json.loads((tmp_path / "path" / "landscape.json").read_text())["results"]["path"]
    other, _, _ = command.load_run(runs["kd"], 4, runs["data"])
    assert path["at_B"]["held-out CE"] == pytest.approx(float(landscape.WindowLoss(x, y)(other)[0]), rel=1e-6)
    assert landscape_command(["--simplex", "0.7,0.2,0.1", "--lam", "0.3", "--T", "1,2", "--student", "0.5,0.3,0.2",
                              "--out", str(tmp_path / "simplex")]) == 0
    for name in ("simplex.png", "simplex.csv", "objective_lambda_T.png"):
        assert (tmp_path / "simplex" / name).exists()
    simplex = json.loads((tmp_path / "simplex" / "landscape.json").read_text())["results"]["simplex"]
    best = simplex["panels"]["λ = 0.3, T = 1"]["minimiser"]  # forward KL at T = 1: q* = (1 − λ)·onehot + λ·p
    assert np.abs(np.array(best) - (0.7 * np.eye(3)[0] + 0.3 * np.array([0.7, 0.2, 0.1]))).max() <= 1.5 / 90
    direct = F.distillation_loss(arr(np.log([[0.5, 0.3, 0.2]])), arr(np.log([[0.7, 0.2, 0.1]])), arr([0]), lam=0.3,
                                 T=2.0)
    assert simplex["objective_lambda_T"][0][1] == pytest.approx(direct.item(), rel=1e-9)


def landscape_command(argv):
    return cli_main(["landscape", *argv])


@pytest.mark.parametrize("argv, message", [
    (["{tmp}/nothing"], "is not a run"),
    (["--path", "{ce}", "{wide}", "--data", "{data}"], "same architecture"),
    (["{ce}", "--points", "0"], "--points must be a positive integer"),
    (["{ce}", "--range", "1,1"], "--range must be LOW,HIGH with LOW < HIGH"),
    (["{ce}", "--what", "objective"], "needs --teacher"),
    (["--simplex", "0.7,0.7,0.1"], "--simplex must be three probabilities"),
])
def test_bad_input_is_one_clear_line_and_nothing_is_written(runs, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    argv = [a.format(tmp=tmp_path, **runs) for a in argv]
    assert landscape_command([*argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("minikd landscape: error:") and len(err.strip().splitlines()) == 1
    assert not out.exists()
