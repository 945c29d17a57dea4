"""The frozen teacher's setting: the task and seed a checkpoint brings, the commands that read a run,
and the pair check. (The teacher's logits and ``TeacherCache`` are tested with the distiller.)"""

import re

import numpy as np
import pytest

from minikd.nn.model import TransformerLM, preset
from minikd.recipes import checkpoint
from minikd.recipes.teacher import check_pair, load_setting, open_run
from minikd.tasks import data

ADDITION = data.AdditionTask(digits=3, train_examples=10, val_examples=10)


def addition_run(folder, **meta):
    """A run folder holding an untrained ``tiny`` model of three-digit addition, saved with ``meta``."""
    model = TransformerLM(preset("tiny", ADDITION.tokenizer.vocab_size, ADDITION.block_size), seed=0)
    checkpoint.save(str(folder / "checkpoint.npz"), model, **{"task": "addition", **meta})
    return str(folder)


def test_load_setting_rebuilds_the_runs_task_from_its_training_seed(tmp_path):
    run = addition_run(tmp_path / "a", train_config={"seed": 3})
    _, teacher, task = load_setting(run)
    assert task.name == "addition" and not teacher.training
    np.testing.assert_array_equal(task.examples["val"], data.AdditionTask(seed=3).examples["val"])
    np.testing.assert_array_equal(load_setting(run, seed=4)[2].examples["val"], data.AdditionTask(seed=4).examples["val"])
    unseeded = addition_run(tmp_path / "b")  # saved without training settings: seed 0
    np.testing.assert_array_equal(load_setting(unseeded)[2].examples["val"], data.AdditionTask(seed=0).examples["val"])
    grammar = TransformerLM(preset("tiny", data.GrammarTask(train_tokens=100, val_tokens=100).tokenizer.vocab_size, 8))
    checkpoint.save(str(tmp_path / "g" / "checkpoint.npz"), grammar)  # saved without its task: the grammar
    _, _, task = load_setting(str(tmp_path / "g"))
    assert task.name == "grammar" and task.block_size == 8  # the teacher's context


def test_open_run_reads_a_text_file_only_as_the_text_task(tmp_path):
    run = addition_run(tmp_path / "a", train_config={"seed": 0})
    text = tmp_path / "twelve.txt"
    text.write_text("abcdefghijk\n" * 30, encoding="utf-8")  # as many symbols as addition has
    assert open_run(run)[2].name == "addition"
    assert open_run(run, task_name="addition")[2].name == "addition"
    _, teacher, task = open_run(run, data=str(text))
    assert task.name == "text" and task.block_size == teacher.config.block_size  # a data file alone: the text task
    assert open_run(run, task_name="text", data=str(text))[2].name == "text"
    with pytest.raises(ValueError, match="^" + re.escape("--data is read only with --task text, got --task grammar")):
        open_run(run, task_name="grammar", data=str(text))


def test_a_run_is_read_only_with_the_symbols_it_was_trained_on(tmp_path):
    run = addition_run(tmp_path / "a", symbols=list(ADDITION.tokenizer.symbols))
    path = str(tmp_path / "a" / "checkpoint.npz")
    assert open_run(run)[2].tokenizer.symbols == ADDITION.tokenizer.symbols
    eleven, twelve = tmp_path / "eleven.txt", tmp_path / "twelve.txt"
    eleven.write_text("abcdefghij\n" * 30, encoding="utf-8")
    twelve.write_text("abcdefghijk\n" * 30, encoding="utf-8")
    with pytest.raises(ValueError, match="^" + re.escape(f"the model in {path!r} was trained on 12 symbols, task 'text' "
                                                         f"has 11: teacher and student vocabularies differ")):
        open_run(run, data=str(eleven))
    with pytest.raises(ValueError, match="^" + re.escape(f"the model in {path!r} was trained on other symbols than task "
                                                         f"'text' has (symbol 0 is '0' there, '\\n' here)")):
        open_run(run, data=str(twelve))


def test_check_pair_names_the_sizes_that_do_not_fit():
    teacher = TransformerLM(preset("tiny", 12, 8), seed=0)
    with pytest.raises(ValueError, match="^" + re.escape("teacher and student vocabularies differ: teacher "
                                                         "vocab_size=12, student vocab_size=13")):
        check_pair(teacher, TransformerLM(preset("tiny", 13, 8), seed=0))
    with pytest.raises(ValueError, match="^" + re.escape("the student reads 16 tokens but the teacher only 8")):
        check_pair(teacher, TransformerLM(preset("tiny", 12, 16), seed=0))
    check_pair(teacher, TransformerLM(preset("tiny", 12, 4), seed=0))  # a shorter context is fine
