"""The ``minikd`` command line: ``check``, ``train``, ``bench kd-loss`` and ``bench train-step``."""

import argparse
import sys

from minikd import backend
from minikd.train import TrainConfig


def _parser():
    parser = argparse.ArgumentParser(prog="minikd", description="Knowledge distillation in NumPy/CuPy, to read and check.")
    parser.add_argument("--backend", choices=("numpy", "cupy"), help="array backend (default: $MINIKD_BACKEND or numpy)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc as it is (by default freed buffers are kept for reuse; "
                             "see backend.reuse_freed_memory)")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="the distillation loss on random logits and a gradient check of every op")
    check.add_argument("--seed", type=int, default=0)

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


def _run(args):
    if args.backend:
        backend.use(args.backend)
    malloc_tuned = False if args.default_malloc else backend.reuse_freed_memory()
    if args.command == "check":
        from minikd import check

        return 0 if check.run(seed=args.seed) else 1
    if args.command == "train":
        from minikd import train

        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                             eval_every=args.eval_every, seed=args.seed)
        train.run(args.task, args.preset, config, args.out, data=args.data, dropout=args.dropout,
                  resume=args.resume, progress=not args.quiet)
        return 0
    if args.command == "bench":
        from minikd import bench

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
