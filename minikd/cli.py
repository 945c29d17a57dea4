"""The ``minikd`` command line: ``minikd check`` and ``minikd bench kd-loss``."""

import argparse
import sys

from minikd import backend


def _parser():
    parser = argparse.ArgumentParser(prog="minikd", description="Knowledge distillation in NumPy/CuPy, to read and check.")
    parser.add_argument("--backend", choices=("numpy", "cupy"), help="array backend (default: $MINIKD_BACKEND or numpy)")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="the distillation loss on random logits and a gradient check of every op")
    check.add_argument("--seed", type=int, default=0)

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
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.backend:
        backend.use(args.backend)
    if args.command == "check":
        from minikd import check

        return 0 if check.run(seed=args.seed) else 1
    if args.command == "bench":
        from minikd import bench

        result = bench.kd_loss(N=args.N, V=args.V, T=args.T, lam=args.lam, dtype=args.dtype,
                               repeat=args.repeat, seed=args.seed)
        if args.json:
            bench.write_json(result, args.json)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
