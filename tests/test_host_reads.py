"""Transfers and synchronisations of a training step and a distillation step are few and do not grow.

Counted on the strict backend, which sees every scalar read of a device array (on CuPy each one
waits for the GPU) and every ``to_numpy``: the loop of ``recipes.train.train`` itself is measured,
as the difference between runs of 1 and 3 steps with the same evaluations.
"""

import pytest

from minikd import backend
from minikd.nn.model import ModelConfig, TransformerLM
from minikd.recipes.distill import DistillConfig, Distiller
from minikd.recipes.train import TrainConfig, train
from minikd.tasks.data import GrammarTask

PER_STEP_BOUND = 8  # host reads per step, whatever the depth or the number of steps


def reads_of_training(steps, n_layer, distill=False):
    """Host reads of ``train`` over ``steps`` steps (evaluations at step 0 and at the end only)."""
    with backend.using("strict"):
        task = GrammarTask(block_size=8, train_tokens=2_000, val_tokens=400, seed=0)
        config = ModelConfig(vocab_size=task.tokenizer.vocab_size, block_size=8, n_layer=n_layer, n_head=2, n_embd=16)
        model = TransformerLM(config, seed=0)
        loss_fn = None
        if distill:
            teacher = TransformerLM(ModelConfig(**{**config.__dict__, "n_layer": n_layer + 1}), seed=1)
            loss_fn = Distiller(teacher, DistillConfig(lam=0.5, T=2.0), steps)
        train_config = TrainConfig(steps=steps, batch_size=4, eval_every=100, eval_windows=4, warmup=0)
        with backend.count_host_reads() as counts:
            train(model, task, train_config, progress=False, **({"loss_fn": loss_fn} if distill else {}))
    return counts


def per_step(n_layer, distill=False):
    one, three = reads_of_training(1, n_layer, distill), reads_of_training(3, n_layer, distill)
    return {key: (three[key] - one[key]) / 2 for key in one}


@pytest.mark.parametrize("distill", [False, True], ids=["training step", "distillation step"])
def test_host_reads_per_step_are_bounded_and_do_not_grow_with_depth(distill):
    shallow, deep = per_step(1, distill), per_step(3, distill)
    assert shallow == deep, f"host reads grow with the number of layers: {shallow} vs {deep}"
    assert shallow["transfers"] == 0, "a step copies nothing to the host"
    assert 0 < shallow["syncs"] <= PER_STEP_BOUND, shallow


def test_a_leaky_loop_is_counted():
    """The counter would catch a float() per step: here a loop that reads its loss every step."""
    with backend.using("strict") as xp, backend.count_host_reads() as counts:
        total = 0.0
        for step in range(5):
            total += float(xp.sum(backend.from_numpy(backend.host_xp().ones(3))))
    assert counts == {"transfers": 0, "syncs": 5}
