"""``minikd demo``: a teacher, then a CE-only student and a KD student of the same size, side by side.

On the grammar task. The teacher learns from a large corpus; both students see only a small one
(the same windows, steps and seed): the CE student learns from the one-hot next tokens, the KD
student also from the teacher's soft labels on those windows. Writes ``report.json`` and PNG curves.
"""

import json
import os
import time

from minikd.engine import backend
from minikd.tasks import data
from minikd.tools import plots
from minikd.recipes.distill import DistillConfig, Distiller
from minikd.nn.model import TransformerLM, preset
from minikd.recipes import run_folder
from minikd.recipes.train import TrainConfig, add_run_folder_arguments, checkpoint_exists, train

FULL = {"teacher_tokens": 200_000, "student_tokens": 8_000, "teacher_steps": 800, "student_steps": 1200,
        "eval_every": 100, "eval_windows": 256}
FAST = {"teacher_tokens": 5_000, "student_tokens": 2_000, "teacher_steps": 20, "student_steps": 20,
        "eval_every": 10, "eval_windows": 16}
ROWS = [("val_loss", "validation CE (nats/token)"), ("kl_to_true", "KL to the true distribution"),
        ("kl_to_teacher", "KL(teacher ‖ student)"), ("agreement", "top-1 agreement with the teacher")]


def run(out="runs/demo", fast=False, seed=0, lam=DistillConfig.lam, T=DistillConfig.T, resume=False, overwrite=False,
        progress=True, out_fn=print):
    """Train the three models, print the table, write ``report.json`` and the curves; returns the report.

    ``out`` is the run folder (``run_folder.claim``), each model's run a folder inside it; ``resume``
    continues the unfinished ones. λ and T are checked before the teacher trains.
    """
    kd = DistillConfig(lam=lam, T=T)  # checks λ and T before any work
    sizes = FAST if fast else FULL
    with run_folder.claim(out, "demo", {"fast": fast, "seed": seed, "lam": lam, "T": T}, resume=resume,
                          overwrite=overwrite):
        report = _train_all(out, sizes, seed, kd, resume, progress, out_fn)
    out_fn(f"wrote {os.path.join(out, 'report.json')}, val_loss.png, kl_to_true.png")
    return report


def _train_all(out, sizes, seed, kd, resume, progress, out_fn):
    lam, T = kd.lam, kd.T
    timings = {}
    teacher_task = data.GrammarTask(train_tokens=sizes["teacher_tokens"], seed=seed)
    student_task = data.GrammarTask(train_tokens=sizes["student_tokens"], seed=seed)
    V, S = teacher_task.tokenizer.vocab_size, teacher_task.block_size
    out_fn(f"minikd demo on the grammar task (backend {backend.name()}): the teacher sees "
           f"{sizes['teacher_tokens']:,} tokens, each student {sizes['student_tokens']:,}; KD with lam={lam}, T={T}")

    def config(steps):
        return TrainConfig(steps=steps, eval_every=sizes["eval_every"], eval_windows=sizes["eval_windows"], seed=seed)

    start = time.perf_counter()
    teacher = TransformerLM(preset("teacher", V, S), seed=seed)
    folder = os.path.join(out, "teacher")
    teacher_history = train(teacher, teacher_task, config(sizes["teacher_steps"]), out=folder, progress=progress,
                            resume=resume and checkpoint_exists(folder))
    teacher.eval()
    timings["teacher_s"] = time.perf_counter() - start

    histories, students = {}, {}
    for name in ("ce", "kd"):
        start = time.perf_counter()
        student = TransformerLM(preset("small", V, S), seed=seed)
        steps = sizes["student_steps"]
        loss_fn = Distiller(teacher, kd, steps, seed=seed) if name == "kd" else None
        folder = os.path.join(out, f"student_{name}")
        histories[name] = train(student, student_task, config(steps), out=folder, progress=progress, teacher=teacher,
                                resume=resume and checkpoint_exists(folder),
                                **({"loss_fn": loss_fn} if loss_fn else {}))
        students[name] = student
        timings[f"student_{name}_s"] = time.perf_counter() - start

    final = {name: history[-1] for name, history in histories.items()}
    report = {
        "settings": {**sizes, "seed": seed, "lam": lam, "T": T, "teacher_preset": "teacher", "student_preset": "small",
                     "teacher_params": teacher.num_params(), "student_params": students["ce"].num_params(),
                     "backend": backend.name()},
        "teacher": teacher_history[-1],
        "students": final,
        "timings": timings,
    }
    _print_table(report, out_fn)
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    floor = final["ce"]["entropy_floor"]
    curves = {"CE-only student": histories["ce"], f"KD student (λ={lam}, T={T})": histories["kd"]}
    plots.save(plots.training_curves(curves, "val_loss", floor=floor, title="Students on the grammar task",
                                     ylabel="validation cross-entropy (nats/token)"),
               os.path.join(out, "val_loss.png"))
    plots.save(plots.training_curves(curves, "kl_to_true", title="Distance to the true distribution",
                                     ylabel="KL(true ‖ student) (nats/token)"),
               os.path.join(out, "kl_to_true.png"))
    return report


def _print_table(report, out_fn):
    students, teacher = report["students"], report["teacher"]
    out_fn(f"\nteacher: {report['settings']['teacher_params']:,} parameters, validation CE {teacher['val_loss']:.4f}, "
           f"KL to the truth {teacher['kl_to_true']:.4f}; entropy floor {teacher['entropy_floor']:.4f}")
    out_fn(f"students: {report['settings']['student_params']:,} parameters each\n")
    out_fn(f"  {'metric':<34s} {'CE-only':>9s} {'KD':>9s}")
    for key, label in ROWS:
        out_fn(f"  {label:<34s} {students['ce'][key]:>9.4f} {students['kd'][key]:>9.4f}")
    timing = report["timings"]
    out_fn(f"\ntimes: teacher {timing['teacher_s']:.0f} s, CE student {timing['student_ce_s']:.0f} s, "
           f"KD student {timing['student_kd_s']:.0f} s")


def add_commands(commands):
    """``minikd demo``: the defaults are ``run``'s."""
    parser = commands.add_parser("demo", help="teacher, CE-only student and KD student on the grammar task, compared")
    parser.add_argument("--out", default="runs/demo", help="folder for report.json, curves and checkpoints")
    parser.add_argument("--fast", action="store_true", help="tiny sizes: seconds instead of about a minute")
    parser.add_argument("--seed", type=int, default=0, help="data, initial weights and batches")
    parser.add_argument("--lam", type=float, default=DistillConfig.lam, help="weight of the distillation term")
    parser.add_argument("--T", type=float, default=DistillConfig.T, help="temperature")
    add_run_folder_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=_command)


def _command(args):
    run(args.out, fast=args.fast, seed=args.seed, lam=args.lam, T=args.T, resume=args.resume, overwrite=args.overwrite,
        progress=not args.quiet)
    return 0
