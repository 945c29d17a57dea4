"""The ``distill`` and ``sweep`` entry points: pick the kind of distillation, train, write the run folder.

The choice between token-level, hidden-state, sequence-level and on-policy distillation is made
here, by the caller; the recipes themselves never import each other's callers.
"""

import csv
import json
import os
import warnings
from dataclasses import asdict, replace

from minikd.engine import validate
from minikd.losses.divergences import DIVERGENCES
from minikd.losses.functional import FORMS
from minikd.nn import schedules
from minikd.nn.model import PRESETS
from minikd.recipes import run_folder, sequence, sizes
from minikd.recipes.distill import DistillConfig, Distiller, check_bias, resolve_bias
from minikd.recipes.hidden import HiddenDistiller, parse_layer_map
from minikd.recipes.teacher import TeacherCache, load_setting, new_student
from minikd.recipes.train import (TrainConfig, add_run_folder_arguments, add_training_arguments, check_training_memory,
                                  checkpoint_exists, train)
from minikd.tasks.data import TASKS

COMPLETIONS = ("greedy", "sampled")  # sequence-level KD: the teacher's completions, greedy or sampled at T = 1


def run(teacher_dir, config, train_config, out, task_name=None, data=None, student_preset="small",
        train_tokens=None, completions=None, on_policy=0.0, hidden_weight=0.0, layer_map=None, resume=False,
        overwrite=False, progress=True, out_fn=print):
    """``minikd distill``: load the frozen teacher, train a student with ``config``; returns (student, history).

    ``completions`` (``"greedy"`` or ``"sampled"``): sequence-level KD, training on the teacher's
    completions of the prompts instead of the ground truth. ``on_policy`` = p: that fraction of steps
    learns on the student's own samples. ``hidden_weight`` = μ > 0 (with an optional ``layer_map``)
    adds hidden-state distillation. ``out`` is the student's run folder (``run_folder.claim``: never
    the teacher's; ``resume`` continues it, ``overwrite`` replaces it). Everything is checked before
    anything is written.
    """
    check_train_tokens(train_tokens)
    if layer_map and not hidden_weight:
        raise ValueError("--layer-map needs --hidden-weight > 0: without it no hidden state is matched")
    path, teacher, task = load_setting(teacher_dir, train_config.seed, task_name, data, train_tokens)
    check_flags_for_task(task, data, train_tokens)
    config = replace(config, teacher_bias=resolve_bias(config.teacher_bias, task.tokenizer))
    validate.check_choice("completions", completions, (None, *COMPLETIONS))
    student = new_student(student_preset, task, teacher, train_config.seed)
    check_training_memory(student.config, train_config.batch_size)
    distiller, extra = Distiller(teacher, config, train_config.steps, seed=train_config.seed), None
    if hidden_weight:
        distiller = HiddenDistiller(teacher, student, config, train_config.steps, mu=hidden_weight,
                                    layer_map=layer_map, seed=train_config.seed)
        extra = distiller.projections
    loss_fn = distiller
    if on_policy:
        loss_fn = sequence.OnPolicyDistiller(teacher, task, on_policy, distiller, T=config.T, seed=train_config.seed)
    train_task = task
    if completions:
        train_task = sequence.teacher_completions(teacher, task, seed=train_config.seed,
                                                  temperature=0.0 if completions == "greedy" else 1.0)
    settings = {"teacher": run_folder.file_identity(path), "task": task.name,
                "data": None if data is None else run_folder.file_identity(data), "student_preset": student_preset,
                "train_tokens": train_tokens, "distill_config": config.to_dict(), "train_config": asdict(train_config),
                "completions": completions, "on_policy": on_policy, "hidden_weight": hidden_weight,
                "layer_map": getattr(distiller, "pairs", None)}
    with run_folder.claim(out, "distill", settings, resume=resume, overwrite=overwrite,
                          inputs={"--teacher": teacher_dir}):
        out_fn(f"distilling {path} ({teacher.num_params():,} parameters) into a '{student_preset}' student "
               f"({student.num_params():,}) on {task.name}: {config.divergence}, lam {config.lam} "
               f"({config.lam_schedule}), T {config.T} ({config.T_schedule})"
               + (f"; trained on the teacher's {completions} completions" if completions else "")
               + (f"; on-policy with p={on_policy}" if on_policy else "")
               + (f"; hidden states {distiller.pairs} with mu={hidden_weight}" if extra is not None else ""))
        with open(os.path.join(out, "distill_config.json"), "w") as f:
            json.dump({**config.to_dict(), "completions": completions, "on_policy": on_policy,
                       "hidden_weight": hidden_weight, "layer_map": getattr(distiller, "pairs", None)}, f, indent=2)
        with open(os.path.join(out, "schedule.jsonl"), "w") as f:  # the schedule of every step
            f.writelines(json.dumps({"step": t, **distiller.describe(t)}) + "\n" for t in range(train_config.steps))
        history = train(student, train_task, train_config, out=out, loss_fn=loss_fn, progress=progress,
                        teacher=teacher, describe=distiller.describe, extra=extra,
                        resume=resume and checkpoint_exists(out))
    out_fn(f"student: {_summary(history[-1])}")
    return student, history


def check_flags_for_task(task, data, train_tokens):
    """``--data`` means something for the text task only, ``--train-tokens`` for the grammar only."""
    if data is not None and task.name != "text":
        raise ValueError(f"--data is read only with task 'text', but this run's task is {task.name!r}")
    if train_tokens is not None and task.name != "grammar":
        raise ValueError(f"--train-tokens sizes the grammar corpus only, but this run's task is {task.name!r}")


def check_train_tokens(train_tokens):
    """``--train-tokens``: None (the task's default) or a positive count that fits in memory, at 32 bytes a
    token (the corpus as int64, sampled and cut: four copies)."""
    if train_tokens is None:
        return
    validate.check_positive_int("--train-tokens", train_tokens)
    sizes.check_memory(f"--train-tokens {train_tokens}", 4 * 8 * train_tokens)


def _summary(final):
    """One line of a student's final evaluation: CE, distance to the teacher, and task measures."""
    return (f"validation CE {final['val_loss']:.4f}, KL to the teacher {final['kl_to_teacher']:.4f}, "
            f"top-1 agreement {final['agreement']:.1%}"
            + (f", KL to the truth {final['kl_to_true']:.4f}" if "kl_to_true" in final else "")
            + (f", exact match {final['accuracy']:.1%}" if "accuracy" in final else ""))


def sweep(teacher_dir, lams, temperatures, base, train_config, out, student_preset="small", train_tokens=None,
          resume=False, overwrite=False, progress=True, out_fn=print):
    """``minikd sweep``: one student per (λ, T) on the same data, steps and seed, in the run folder ``out``.

    ``base`` (a DistillConfig) gives every other setting. Each row is appended to ``out/results.csv``
    (and flushed) as soon as its student is trained; with ``resume``, rows already there are kept
    and skipped. Returns the rows, in grid order.
    """
    check_train_tokens(train_tokens)
    for flag, values in (("--lam", lams), ("--T", temperatures)):
        if not values:
            raise ValueError(f"{flag} must list at least one value, got none")
    path, teacher, task = load_setting(teacher_dir, train_config.seed, train_tokens=train_tokens)
    check_flags_for_task(task, None, train_tokens)
    base = replace(base, teacher_bias=resolve_bias(base.teacher_bias, task.tokenizer))
    check_bias(base.teacher_bias, teacher.config.vocab_size)
    grid = [replace(base, lam=lam, T=T) for lam in lams for T in temperatures]  # all checked before training
    check_training_memory(new_student(student_preset, task, teacher, train_config.seed).config, train_config.batch_size)
    settings = {"teacher": run_folder.file_identity(path), "lams": list(lams), "temperatures": list(temperatures),
                "base": base.to_dict(), "train_config": asdict(train_config), "student_preset": student_preset,
                "train_tokens": train_tokens}
    with run_folder.claim(out, "sweep", settings, resume=resume, overwrite=overwrite,
                          inputs={"--teacher": teacher_dir}):
        results = os.path.join(out, "results.csv")
        done = {(row["lam"], row["T"]): row for row in read_rows(results)} if resume else {}
        rows = []
        cache = TeacherCache(teacher, base.teacher_bias)  # every row trains on the same batches
        for config in grid:
            if (config.lam, config.T) in done:
                rows.append(done[config.lam, config.T])
                out_fn(f"lam={config.lam:<5g} T={config.T:<5g} already in {results}")
                continue
            student = new_student(student_preset, task, teacher, train_config.seed)
            final = train(student, task, train_config, loss_fn=Distiller(teacher, config, train_config.steps,
                                                                          seed=train_config.seed, cache=cache),
                          progress=progress, teacher=teacher)[-1]
            row = {"lam": config.lam, "T": config.T, "divergence": config.divergence, "form": config.form,
                   "steps": train_config.steps, "seed": train_config.seed,
                   **{k: v for k, v in final.items() if k not in ("step", "lr", "elapsed_s")}}
            append_row(results, row)
            rows.append(row)
            out_fn(f"lam={config.lam:<5g} T={config.T:<5g} {_summary(final)}")
    out_fn(f"wrote {os.path.join(out, 'results.csv')} ({len(rows)} runs)")
    return rows


def append_row(path, row):
    """Append ``row`` to the CSV file ``path`` (its header first when the file is new) and flush it to disk."""
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def read_rows(path):
    """The complete rows of a results CSV, numbers as numbers; a last line cut short by a killed run is
    removed from the file."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        text = f.read()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        with open(path, "w", newline="") as f:
            f.write(text)
    return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(text.splitlines())]


def _number(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_numbers(flag, text):
    """``"0,0.5,1"`` -> [0.0, 0.5, 1.0]; a ValueError naming the flag otherwise."""
    try:
        numbers = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not numbers:
        raise ValueError(f"{flag} must list at least one number, got {text!r}")
    return numbers


def parse_bias(text):
    """``--teacher-bias CONTEXT,WRONG,BONUS`` -> (symbol, symbol, bonus), or () when not given."""
    if text is None:
        return ()
    parts = [part.strip() for part in text.split(",")]
    try:
        if len(parts) != 3:
            raise ValueError
        return (parts[0], parts[1], float(parts[2]))
    except ValueError:
        raise ValueError(f"--teacher-bias must be CONTEXT,WRONG,BONUS (two tokens and a number), got {text!r}") from None


def _add_objective_arguments(parser):
    """The flags of the objective that ``distill`` and ``sweep`` share, with DistillConfig's defaults."""
    parser.add_argument("--teacher", required=True, metavar="DIR", help="a folder with checkpoint.npz (minikd train --out)")
    parser.add_argument("--student-preset", choices=tuple(PRESETS), default="small", help="the student's size")
    parser.add_argument("--divergence", choices=tuple(DIVERGENCES), default=DistillConfig.divergence,
                        help="D in the objective")
    parser.add_argument("--form", choices=FORMS, default=DistillConfig.form,
                        help="interpolate: (1 − λ)·CE + λ·T²·D; additive: CE + λ·T²·D")
    parser.add_argument("--label-noise", type=float, default=DistillConfig.label_noise,
                        help="fraction of ground-truth labels corrupted")
    parser.add_argument("--teacher-bias", metavar="CONTEXT,WRONG,BONUS",
                        help="a systematic teacher error: after token CONTEXT, WRONG's logit gets +BONUS "
                             "(e.g. 'the,cats,4')")
    parser.add_argument("--train-tokens", type=int, default=None, help="grammar: size of the student's corpus")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_commands(commands):
    """``minikd distill`` and ``minikd sweep``."""
    distill = commands.add_parser("distill", help="train a student from a frozen teacher checkpoint")
    _add_objective_arguments(distill)
    distill.add_argument("--task", choices=TASKS, default=None, help="default: the teacher's own task")
    distill.add_argument("--data", metavar="FILE", help="a UTF-8 text file (task 'text' only)")
    distill.add_argument("--lam", type=float, default=DistillConfig.lam, help="weight of the distillation term")
    distill.add_argument("--lam-end", type=float, default=DistillConfig.lam_end, help="λ at the last step (with --schedule)")
    distill.add_argument("--schedule", choices=schedules.KINDS, default=DistillConfig.lam_schedule,
                         help="how λ moves from --lam to --lam-end")
    distill.add_argument("--T", type=float, default=DistillConfig.T, help="temperature")
    distill.add_argument("--T-end", type=float, default=DistillConfig.T_end, help="T at the last step (with --T-schedule)")
    distill.add_argument("--T-schedule", choices=schedules.KINDS, default=DistillConfig.T_schedule,
                         help="how T moves from --T to --T-end")
    distill.add_argument("--completions", choices=COMPLETIONS,
                         help="sequence-level KD: train on the teacher's completions (addition task)")
    distill.add_argument("--on-policy", type=float, default=0.0, metavar="P",
                         help="fraction of steps that learn on the student's own samples (addition task)")
    distill.add_argument("--hidden-weight", type=float, default=0.0, metavar="MU",
                         help="weight of the hidden-state MSE (0: prediction layer only)")
    distill.add_argument("--layer-map", metavar="S:T,...",
                         help="student:teacher residual streams to match, 0 = embeddings (default: the last "
                              "student block to the last teacher block, evenly spaced)")
    add_training_arguments(distill)
    distill.add_argument("--out", default="runs/distill", help="folder for the student's run")
    add_run_folder_arguments(distill)
    distill.set_defaults(run=_distill_command)

    sweep_parser = commands.add_parser("sweep", help="a grid of λ and T, one student each; writes results.csv")
    _add_objective_arguments(sweep_parser)
    sweep_parser.add_argument("--lam", default="0,0.25,0.5,0.75,1", help="comma-separated λ values")
    sweep_parser.add_argument("--T", default="1,2,4", help="comma-separated temperatures")
    add_training_arguments(sweep_parser, TrainConfig(steps=400, eval_every=100), lr=False)
    sweep_parser.add_argument("--out", default="runs/sweep", help="folder for results.csv")
    add_run_folder_arguments(sweep_parser)
    sweep_parser.set_defaults(run=_sweep_command)


def _distill_command(args):
    for flag, value, default, schedule_flag, schedule in (
            ("--lam-end", args.lam_end, DistillConfig.lam_end, "--schedule", args.schedule),
            ("--T-end", args.T_end, DistillConfig.T_end, "--T-schedule", args.T_schedule)):
        if value != default and schedule == "constant":
            warnings.warn(f"{flag} {value} has no effect with {schedule_flag} constant")
    config = DistillConfig(lam=args.lam, lam_end=args.lam_end, lam_schedule=args.schedule, T=args.T, T_end=args.T_end,
                           T_schedule=args.T_schedule, divergence=args.divergence, form=args.form,
                           label_noise=args.label_noise, teacher_bias=parse_bias(args.teacher_bias))
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every,
                               seed=args.seed)
    run(args.teacher, config, train_config, args.out, task_name=args.task, data=args.data,
        student_preset=args.student_preset, train_tokens=args.train_tokens, completions=args.completions,
        on_policy=args.on_policy, hidden_weight=args.hidden_weight,
        layer_map=parse_layer_map(args.layer_map) if args.layer_map else None, resume=args.resume,
        overwrite=args.overwrite, progress=not args.quiet)
    return 0


def _sweep_command(args):
    base = DistillConfig(divergence=args.divergence, form=args.form, label_noise=args.label_noise,
                         teacher_bias=parse_bias(args.teacher_bias))
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, eval_every=args.eval_every, seed=args.seed)
    sweep(args.teacher, parse_numbers("--lam", args.lam), parse_numbers("--T", args.T), base, train_config, args.out,
          student_preset=args.student_preset, train_tokens=args.train_tokens, resume=args.resume,
          overwrite=args.overwrite, progress=not args.quiet)
    return 0
