"""The ``minikd`` command line: check, demo, train, distill, sweep, weak-to-strong, figures and bench."""

import argparse
import sys

from minikd.engine import backend
from minikd.recipes.hidden import parse_layer_map
from minikd.recipes.train import TrainConfig
from minikd.recipes.weak_to_strong import WeakToStrongConfig


def _parser():
    parser = argparse.ArgumentParser(prog="minikd", description="Knowledge distillation in NumPy/CuPy, to read and check.")
    parser.add_argument("--backend", choices=("numpy", "cupy"), help="array backend (default: $MINIKD_BACKEND or numpy)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc as it is (by default freed buffers are kept for reuse; "
                             "see backend.reuse_freed_memory)")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="the distillation loss on random logits and a gradient check of every op")
    check.add_argument("--seed", type=int, default=0)

    demo = commands.add_parser("demo", help="teacher, CE-only student and KD student on the grammar task, compared")
    demo.add_argument("--out", default="runs/demo", help="folder for report.json, curves and checkpoints")
    demo.add_argument("--fast", action="store_true", help="tiny sizes: seconds instead of about a minute")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--lam", type=float, default=0.5, help="weight of the distillation term")
    demo.add_argument("--T", type=float, default=2.0, help="temperature")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")

    distill = commands.add_parser("distill", help="train a student from a frozen teacher checkpoint")
    distill.add_argument("--teacher", required=True, metavar="DIR", help="a folder with checkpoint.npz (minikd train --out)")
    distill.add_argument("--task", choices=("grammar", "addition", "text"), default=None,
                         help="default: the teacher's own task")
    distill.add_argument("--data", metavar="FILE", help="a UTF-8 text file (task 'text' only)")
    distill.add_argument("--student-preset", choices=("tiny", "small", "teacher"), default="small")
    distill.add_argument("--lam", type=float, default=0.5)
    distill.add_argument("--lam-end", type=float, default=0.0, help="λ at the last step (with --schedule)")
    distill.add_argument("--schedule", choices=("constant", "linear", "cosine", "step"), default="constant",
                         help="how λ moves from --lam to --lam-end")
    distill.add_argument("--T", type=float, default=2.0)
    distill.add_argument("--T-end", type=float, default=1.0, help="T at the last step (with --T-schedule)")
    distill.add_argument("--T-schedule", choices=("constant", "linear", "cosine", "step"), default="constant")
    distill.add_argument("--divergence", choices=("forward_kl", "reverse_kl", "jsd"), default="forward_kl")
    distill.add_argument("--form", choices=("interpolate", "additive"), default="interpolate")
    distill.add_argument("--label-noise", type=float, default=0.0, help="fraction of ground-truth labels corrupted")
    distill.add_argument("--teacher-bias", metavar="CONTEXT,WRONG,BONUS",
                         help="a systematic teacher error: after token CONTEXT, WRONG's logit gets +BONUS "
                              "(e.g. 'the,cats,4')")
    distill.add_argument("--completions", choices=("greedy", "sampled"),
                         help="sequence-level KD: train on the teacher's completions (addition task)")
    distill.add_argument("--on-policy", type=float, default=0.0, metavar="P",
                         help="fraction of steps that learn on the student's own samples (addition task)")
    distill.add_argument("--hidden-weight", type=float, default=0.0, metavar="MU",
                         help="weight of the hidden-state MSE (0: prediction layer only)")
    distill.add_argument("--layer-map", metavar="S:T,...",
                         help="student:teacher residual streams to match, 0 = embeddings (default: the last "
                              "student block to the last teacher block, evenly spaced)")
    distill.add_argument("--train-tokens", type=int, default=None, help="grammar: size of the student's corpus")
    distill.add_argument("--steps", type=int, default=TrainConfig.steps)
    distill.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    distill.add_argument("--lr", type=float, default=TrainConfig.lr)
    distill.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    distill.add_argument("--seed", type=int, default=0)
    distill.add_argument("--out", default="runs/distill")
    distill.add_argument("--quiet", action="store_true")

    sweep = commands.add_parser("sweep", help="a grid of λ and T, one student each; writes results.csv")
    sweep.add_argument("--teacher", required=True, metavar="DIR")
    sweep.add_argument("--lam", default="0,0.25,0.5,0.75,1", help="comma-separated λ values")
    sweep.add_argument("--T", default="1,2,4", help="comma-separated temperatures")
    sweep.add_argument("--divergence", choices=("forward_kl", "reverse_kl", "jsd"), default="forward_kl")
    sweep.add_argument("--form", choices=("interpolate", "additive"), default="interpolate")
    sweep.add_argument("--label-noise", type=float, default=0.0)
    sweep.add_argument("--teacher-bias", metavar="CONTEXT,WRONG,BONUS", help="as for distill")
    sweep.add_argument("--student-preset", choices=("tiny", "small", "teacher"), default="small")
    sweep.add_argument("--train-tokens", type=int, default=None, help="grammar: size of the students' corpus")
    sweep.add_argument("--steps", type=int, default=400)
    sweep.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    sweep.add_argument("--eval-every", type=int, default=100)
    sweep.add_argument("--seed", type=int, default=0)
    sweep.add_argument("--out", default="runs/sweep")
    sweep.add_argument("--quiet", action="store_true")

    figures = commands.add_parser("figures", help="run every tutorial to regenerate the figures")
    figures.add_argument("--out", default="figures", help="folder for the PNG files")
    figures.add_argument("--fast", action="store_true", help="the tutorials' fast mode (small sizes)")
    figures.add_argument("--only", metavar="PREFIX", help="only tutorials whose file name starts with PREFIX")
    figures.add_argument("--tutorials", metavar="DIR", help="the tutorials folder (default: the checkout's)")
    figures.add_argument("--runs", metavar="DIR", help="folder for the tutorials' training runs "
                                                       "(default: runs/tutorials)")

    w2s = commands.add_parser("weak-to-strong", help="a weak teacher supervises a larger student (addition); PGR table")
    defaults = WeakToStrongConfig()
    w2s.add_argument("--weak-preset", choices=("tiny", "small", "teacher"), default=defaults.weak_preset)
    w2s.add_argument("--weak-steps", type=int, default=defaults.weak_steps, help="the weak teacher's training")
    w2s.add_argument("--strong-preset", choices=("tiny", "small", "teacher"), default=defaults.strong_preset)
    w2s.add_argument("--steps", type=int, default=defaults.steps, help="student's and ceiling's steps")
    w2s.add_argument("--n-verified", type=int, default=defaults.n_verified, help="problems with true answers")
    w2s.add_argument("--verified-batch", type=int, default=defaults.verified_batch,
                     help="verified rows in each step's batch")
    w2s.add_argument("--lam", type=float, default=defaults.lam, help="weight of the weak teacher's labels")
    w2s.add_argument("--T", type=float, default=defaults.T)
    w2s.add_argument("--alpha-max", type=float, default=defaults.alpha_max, help="confidence loss weight")
    w2s.add_argument("--alpha-warmup", type=float, default=defaults.alpha_warmup,
                     help="fraction of steps over which α rises to --alpha-max")
    w2s.add_argument("--batch-size", type=int, default=32)
    w2s.add_argument("--seed", type=int, default=0)
    w2s.add_argument("--out", default="runs/weak_to_strong")
    w2s.add_argument("--quiet", action="store_true")

    train = commands.add_parser("train", help="train a model with cross-entropy (this is how a teacher is made)")
    train.add_argument("--task", choices=("grammar", "addition", "text"), default="grammar")
    train.add_argument("--data", metavar="FILE", help="a UTF-8 text file (task 'text' only)")
    train.add_argument("--preset", choices=("tiny", "small", "teacher"), default="teacher")
    train.add_argument("--steps", type=int, default=TrainConfig.steps)
    train.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    train.add_argument("--lr", type=float, default=TrainConfig.lr, help="peak learning rate")
    train.add_argument("--optimizer", choices=("adamw", "sgd"), default=TrainConfig.optimizer)
    train.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    train.add_argument("--dropout", type=float, default=0.0)
    train.add_argument("--seed", type=int, default=0, help="initial weights and batches")
    train.add_argument("--out", default="runs/train", help="folder for metrics.jsonl and checkpoint.npz")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    bench = commands.add_parser("bench", help="timings, beside PyTorch when it is installed")
    bench_kinds = bench.add_subparsers(dest="benchmark", required=True)
    kd = bench_kinds.add_parser("kd-loss", help="forward+backward of distillation_loss on [N, V] logits")
    kd.add_argument("--N", type=int, default=2048, help="positions (rows)")
    kd.add_argument("--V", type=int, default=32000, help="vocabulary size (columns)")
    kd.add_argument("--T", type=float, default=2.0, help="temperature")
    kd.add_argument("--lam", type=float, default=0.5, help="weight of the distillation term")
    kd.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    kd.add_argument("--repeat", type=int, default=5, help="timed runs after one warm-up")
    kd.add_argument("--seed", type=int, default=0)
    kd.add_argument("--json", metavar="FILE", help="also write the result table as JSON")
    ts = bench_kinds.add_parser("train-step", help="tokens/s of one training step at each preset, beside PyTorch")
    ts.add_argument("--presets", default="tiny,small,teacher", help="comma-separated presets")
    ts.add_argument("--batch-size", type=int, default=32)
    ts.add_argument("--block-size", type=int, default=32)
    ts.add_argument("--vocab-size", type=int, default=60)
    ts.add_argument("--repeat", type=int, default=10, help="timed steps after one warm-up")
    ts.add_argument("--seed", type=int, default=0)
    ts.add_argument("--profile", action="store_true", help="also print where minikd's step spends its time")
    ts.add_argument("--json", metavar="FILE", help="also write the result table as JSON")
    return parser


def main(argv=None):
    """Run one command; a ValueError (bad input) is printed as ``minikd: error: ...`` with exit code 2."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except ValueError as err:
        print(f"minikd: error: {err}", file=sys.stderr)
        return 2


def _numbers(flag, text):
    """A comma-separated list of numbers, or a ValueError naming the flag."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def _bias(text):
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


def _run(args):
    if args.backend:
        backend.use(args.backend)
    malloc_tuned = False if args.default_malloc else backend.reuse_freed_memory()
    if args.command == "check":
        from minikd.tools import check

        return 0 if check.run(seed=args.seed) else 1
    if args.command == "demo":
        from minikd.tools import demo

        demo.run(args.out, fast=args.fast, seed=args.seed, lam=args.lam, T=args.T, progress=not args.quiet)
        return 0
    if args.command == "distill":
        from minikd.recipes import launch
        from minikd.recipes.distill import DistillConfig

        config = DistillConfig(lam=args.lam, lam_end=args.lam_end, lam_schedule=args.schedule, T=args.T,
                                       T_end=args.T_end, T_schedule=args.T_schedule, divergence=args.divergence,
                                       form=args.form, label_noise=args.label_noise, teacher_bias=_bias(args.teacher_bias))
        train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                   eval_every=args.eval_every, seed=args.seed)
        launch.run(args.teacher, config, train_config, args.out, task_name=args.task, data=args.data,
                    student_preset=args.student_preset, train_tokens=args.train_tokens, completions=args.completions,
                    on_policy=args.on_policy, hidden_weight=args.hidden_weight,
                    layer_map=parse_layer_map(args.layer_map) if args.layer_map else None, progress=not args.quiet)
        return 0
    if args.command == "sweep":
        from minikd.recipes import launch
        from minikd.recipes.distill import DistillConfig

        base = DistillConfig(divergence=args.divergence, form=args.form, label_noise=args.label_noise,
                                     teacher_bias=_bias(args.teacher_bias))
        train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, eval_every=args.eval_every,
                                   seed=args.seed)
        launch.sweep(args.teacher, _numbers("--lam", args.lam), _numbers("--T", args.T), base, train_config,
                      args.out, student_preset=args.student_preset, train_tokens=args.train_tokens,
                      progress=not args.quiet)
        return 0
    if args.command == "figures":
        from minikd.tools import figures

        try:
            figures.run(args.out, folder=args.tutorials or figures.TUTORIALS, fast=args.fast, only=args.only,
                        runs=args.runs)
        except RuntimeError as err:
            print(f"minikd: {err}", file=sys.stderr)
            return 1
        return 0
    if args.command == "weak-to-strong":
        from minikd.recipes import weak_to_strong

        config = WeakToStrongConfig(weak_preset=args.weak_preset, weak_steps=args.weak_steps,
                                    strong_preset=args.strong_preset, steps=args.steps, n_verified=args.n_verified,
                                    verified_batch=args.verified_batch, lam=args.lam, T=args.T,
                                    alpha_max=args.alpha_max, alpha_warmup=args.alpha_warmup)
        weak_to_strong.run(config, args.out, seed=args.seed, batch_size=args.batch_size, progress=not args.quiet)
        return 0
    if args.command == "train":
        from minikd.recipes import train

        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                             eval_every=args.eval_every, seed=args.seed)
        train.run(args.task, args.preset, config, args.out, data=args.data, dropout=args.dropout,
                  resume=args.resume, progress=not args.quiet)
        return 0
    if args.command == "bench":
        from minikd.tools import bench

        if args.benchmark == "kd-loss":
            result = bench.kd_loss(N=args.N, V=args.V, T=args.T, lam=args.lam, dtype=args.dtype,
                                   repeat=args.repeat, seed=args.seed)
        else:
            result = bench.train_step(presets=tuple(args.presets.split(",")), batch_size=args.batch_size,
                                      block_size=args.block_size, vocab_size=args.vocab_size, repeat=args.repeat,
                                      seed=args.seed, profile=args.profile, malloc_tuned=malloc_tuned)
        if args.json:
            bench.write_json(result, args.json)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
