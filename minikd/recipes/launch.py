"""The ``distill`` and ``sweep`` entry points: pick the kind of distillation, train, write the run folder.

The choice between token-level, hidden-state, sequence-level and on-policy distillation is made
here, by the caller; the recipes themselves never import each other's callers.
"""

import csv
import json
import os
from dataclasses import replace

from minikd.engine import validate
from minikd.recipes import sequence
from minikd.recipes.distill import Distiller, check_bias, resolve_bias
from minikd.recipes.hidden import HiddenDistiller
from minikd.recipes.teacher import load_setting, new_student
from minikd.recipes.train import train


def run(teacher_dir, config, train_config, out, task_name=None, data=None, student_preset="small",
        train_tokens=None, completions=None, on_policy=0.0, hidden_weight=0.0, layer_map=None, progress=True,
        out_fn=print):
    """``minikd distill``: load the frozen teacher, train a student with ``config``; returns (student, history).

    ``completions`` (``"greedy"`` or ``"sampled"``): sequence-level KD, training on the teacher's
    completions of the prompts instead of the ground truth. ``on_policy`` = p: that fraction of steps
    learns on the student's own samples. ``hidden_weight`` = μ > 0 (or a ``layer_map``) adds
    hidden-state distillation. Everything is checked before anything is written.
    """
    path, teacher, task = load_setting(teacher_dir, train_config.seed, task_name, data, train_tokens)
    config = replace(config, teacher_bias=resolve_bias(config.teacher_bias, task.tokenizer))
    validate.check_choice("completions", completions, (None, "greedy", "sampled"))
    student = new_student(student_preset, task, teacher, train_config.seed)
    distiller, extra = Distiller(teacher, config, train_config.steps, seed=train_config.seed), None
    if hidden_weight or layer_map:
        distiller = HiddenDistiller(teacher, student, config, train_config.steps, mu=hidden_weight,
                                    layer_map=layer_map, seed=train_config.seed)
        extra = distiller.projections
    loss_fn = distiller
    if on_policy:
        loss_fn = sequence.OnPolicyDistiller(teacher, task, on_policy, distiller, T=config.T, seed=train_config.seed)
    train_task = task
    if completions:
        train_task = sequence.teacher_completions(teacher, task, temperature=0.0 if completions == "greedy" else 1.0,
                                                  seed=train_config.seed)
    out_fn(f"distilling {path} ({teacher.num_params():,} parameters) into a '{student_preset}' student "
           f"({student.num_params():,}) on {task.name}: {config.divergence}, lam {config.lam} ({config.lam_schedule}), "
           f"T {config.T} ({config.T_schedule})"
           + (f"; trained on the teacher's {completions} completions" if completions else "")
           + (f"; on-policy with p={on_policy}" if on_policy else "")
           + (f"; hidden states {distiller.pairs} with mu={hidden_weight}" if extra is not None else ""))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "distill_config.json"), "w") as f:
        json.dump({**config.to_dict(), "completions": completions, "on_policy": on_policy,
                   "hidden_weight": hidden_weight, "layer_map": getattr(distiller, "pairs", None)}, f, indent=2)
    with open(os.path.join(out, "schedule.jsonl"), "w") as f:  # the schedule of every step
        f.writelines(json.dumps({"step": t, **distiller.describe(t)}) + "\n" for t in range(train_config.steps))
    history = train(student, train_task, train_config, out=out, loss_fn=loss_fn, progress=progress, teacher=teacher,
                    describe=distiller.describe, extra=extra)
    out_fn(f"student: {_summary(history[-1])}")
    return student, history


def _summary(final):
    """One line of a student's final evaluation: CE, distance to the teacher, and task measures."""
    return (f"validation CE {final['val_loss']:.4f}, KL to the teacher {final['kl_to_teacher']:.4f}, "
            f"top-1 agreement {final['agreement']:.1%}"
            + (f", KL to the truth {final['kl_to_true']:.4f}" if "kl_to_true" in final else "")
            + (f", exact match {final['accuracy']:.1%}" if "accuracy" in final else ""))


def sweep(teacher_dir, lams, temperatures, base, train_config, out, student_preset="small", train_tokens=None,
          progress=True, out_fn=print):
    """``minikd sweep``: one student per (λ, T) on the same data, steps and seed; writes ``out/results.csv``.

    ``base`` (a DistillConfig) gives every other setting. Returns the rows written.
    """
    _, teacher, task = load_setting(teacher_dir, train_config.seed, train_tokens=train_tokens)
    base = replace(base, teacher_bias=resolve_bias(base.teacher_bias, task.tokenizer))
    check_bias(base.teacher_bias, teacher.config.vocab_size)
    grid = [replace(base, lam=lam, T=T) for lam in lams for T in temperatures]  # all checked before training
    new_student(student_preset, task, teacher, train_config.seed)
    os.makedirs(out, exist_ok=True)
    rows = []
    for config in grid:
        student = new_student(student_preset, task, teacher, train_config.seed)
        final = train(student, task, train_config, loss_fn=Distiller(teacher, config, train_config.steps,
                                                                      seed=train_config.seed),
                      progress=progress, teacher=teacher)[-1]
        rows.append({"lam": config.lam, "T": config.T, "divergence": config.divergence, "form": config.form,
                     "steps": train_config.steps, "seed": train_config.seed,
                     **{k: v for k, v in final.items() if k not in ("step", "lr", "elapsed_s")}})
        out_fn(f"lam={config.lam:<5g} T={config.T:<5g} {_summary(final)}")
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out_fn(f"wrote {os.path.join(out, 'results.csv')} ({len(rows)} runs)")
    return rows
