"""``minikd eval RUN_DIR``: a trained run's held-out loss, perplexity, accuracy and KL to the truth."""

import json

from minikd.recipes.teacher import open_run
from minikd.recipes.train import evaluate
from minikd.tasks.data import TASKS


def evaluate_run(run_dir, n_windows=1024, split="val", task_name=None, data=None):
    """``evaluate`` on the run's own task (or ``task_name`` / a text file ``data``): a dict of metrics."""
    _, model, task = open_run(run_dir, task_name, data)
    if task.tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(f"the data's vocabulary has {task.tokenizer.vocab_size} symbols but the model's has "
                         f"{model.config.vocab_size}: evaluate on text written in the run's own symbols")
    scored = task.eval_set(split, n_windows)[0].shape[0]  # at most the whole split
    return {"task": task.name, "split": split, "windows": scored, **evaluate(model, task, n_windows, split=split)}


def add_commands(commands):
    """``minikd eval``."""
    parser = commands.add_parser("eval", help="held-out loss, perplexity, accuracy and KL to the truth of a run")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (with checkpoint.npz) or a checkpoint file")
    parser.add_argument("--windows", type=int, default=1024, help="validation windows (or problems) to score")
    parser.add_argument("--split", choices=("val", "train"), default="val", help="which split to score")
    parser.add_argument("--task", choices=TASKS, default=None, help="default: the run's own task")
    parser.add_argument("--data", metavar="FILE", help="score a UTF-8 text file instead (task 'text')")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.set_defaults(run=_command)


def _command(args):
    if args.windows < 1:
        raise ValueError(f"--windows must be a positive integer, got {args.windows}")
    metrics = evaluate_run(args.run_dir, args.windows, args.split, args.task, args.data)
    if args.json:
        print(json.dumps(metrics))
        return 0
    labels = {"val_loss": "loss (nats/token)", "val_ppl": "perplexity", "accuracy": "exact-match accuracy",
              "kl_to_true": "KL to the true distribution", "entropy_floor": "entropy floor"}
    print(f"{args.run_dir}: task {metrics['task']}, split {metrics['split']}, {metrics['windows']} windows")
    for key, label in labels.items():
        if key in metrics:
            print(f"  {label:<30s} {metrics[key]:.4f}")
    return 0
