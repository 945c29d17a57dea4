"""``minikd landscape``: loss surfaces around trained runs, linear paths between two runs, sharpness,
and maps of the objective over the simplex; PNGs, the grid (.npz, .csv) and landscape.json.

Everything is checked before the first model is loaded or the first file written; the numbers come
from ``landscape``, ``sharpness`` and ``objective_maps``, the pictures from ``plots``, so the
command, the Python API and tutorial 7 share one implementation.
"""

import csv
import json
import os
import time
from dataclasses import asdict, dataclass

from minikd.engine import backend, validate
from minikd.losses.divergences import DIVERGENCES
from minikd.losses.functional import FORMS
from minikd.recipes import checkpoint
from minikd.recipes.distill import DistillConfig
from minikd.recipes.teacher import check_pair, open_run
from minikd.tools import landscape, objective_maps, plots, sharpness

SLICE_RANGE, PATH_RANGE = (-1.0, 1.0), (-0.5, 1.5)  # the default --range of slices and of paths
OUTPUTS = ("landscape.json", "grid.npz", "grid.csv", "slice_1d.png", "surface_2d.png", "surface_3d.png",
           "sharpness.png", "path.png", "simplex.png", "simplex.csv", "objective_lambda_T.png")  # what it may write
MAX_SIMPLEX_PANELS = 6


@dataclass(frozen=True)
class LandscapeConfig:
    dims: int = 2  # 1: a line plot; 2: contours and a 3-D surface
    points: int = 21  # per axis, odd so that the trained weights (0) lie on the grid
    value_range: tuple = SLICE_RANGE  # (low, high) of α (and β), or of t on a path
    seed: int = 0  # the directions: the same for every model of one architecture
    windows: int = 128  # fixed validation windows the loss is evaluated on
    batch_size: int = 128  # windows per forward pass
    what: str = "ce"  # ce, objective or terms (see landscape.WHATS)
    lam: float = DistillConfig.lam
    T: float = DistillConfig.T
    divergence: str = DistillConfig.divergence
    beta: float = DistillConfig.beta
    form: str = DistillConfig.form
    sharpness: bool = False
    iterations: int = 20  # power-iteration steps (Hessian-vector products)
    samples: int = 10  # Hutchinson samples

    def __post_init__(self):
        validate.check_choice("dims", self.dims, (1, 2))
        for name in ("points", "windows", "batch_size", "iterations", "samples"):
            validate.check_positive_int(name if name != "points" else "--points", getattr(self, name))
        if self.points < 3 or self.points % 2 == 0:
            raise ValueError(f"--points must be odd and at least 3 (0 must be a grid point), got {self.points}")
        low, high = self.value_range
        if not low < high:
            raise ValueError(f"--range must be LOW,HIGH with LOW < HIGH, got {low:g},{high:g}: the range is empty")
        validate.check_choice("what", self.what, landscape.WHATS)
        validate.check_choice("form", self.form, FORMS)
        validate.check_choice("divergence", self.divergence, tuple(DIVERGENCES))
        validate.check_temperature(self.T)
        validate.check_lam(self.lam, self.form)
        validate.check_beta(self.beta)

    def axis(self):
        return backend.host_xp().linspace(self.value_range[0], self.value_range[1], self.points)

    def loss(self, x, y, teacher=None):
        return landscape.WindowLoss(x, y, self.what, teacher, lam=self.lam, T=self.T, divergence=self.divergence,
                                    beta=self.beta, form=self.form, batch_size=self.batch_size)


def parse_range(text):
    """``"LOW,HIGH"`` -> (low, high); a ValueError naming --range otherwise."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--range must be two numbers LOW,HIGH, got {text!r}") from None
    return low, high


def parse_list(flag, text):
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise ValueError(f"{flag} must be a number or comma-separated numbers, got {text!r}")
    return values


def check_run(path, flag="RUN_DIR"):
    """A run is a folder holding checkpoint.npz (or the .npz file itself)."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "checkpoint.npz")):
        return path
    if os.path.isfile(path) and path.endswith(".npz"):
        return path
    raise ValueError(f"{flag} {path!r} is not a run: no checkpoint.npz in it (make one with minikd train or distill)")


def check_out(out, overwrite):
    """Refuse to overwrite an earlier landscape unless asked."""
    if os.path.exists(os.path.join(out, "landscape.json")) and not overwrite:
        raise ValueError(f"--out {out!r} already holds a landscape.json; pass --overwrite or choose another folder")


def _start_writing(out):
    """Create ``out`` and remove an earlier landscape's files from it (``check_out`` has allowed it):
    called after all the work, just before the first write."""
    os.makedirs(out, exist_ok=True)
    for name in OUTPUTS:
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))


def load_model(run_dir):
    """The model of a run (folder or checkpoint file), without building its task."""
    return checkpoint.load_model(checkpoint.path_of(run_dir))


def load_run(run_dir, windows, data=None):
    """(model, x, y): a run's model and ``windows`` fixed validation windows of its own task (or of ``data``)."""
    _, model, task = open_run(run_dir, data=data)
    x, y = task.eval_set("val", windows)
    return model, x, y


def _labels(paths):
    names = [os.path.basename(os.path.normpath(p)) for p in paths]
    return names if len(set(names)) == len(names) else [os.path.normpath(p) for p in paths]


def surfaces(runs, config, out, teacher_dir=None, data=None, progress=True, out_fn=print):
    """Slices (``config.dims``) around each run, optionally sharpness; writes the files; returns the report."""
    np = backend.host_xp()
    teacher = None if teacher_dir is None else load_model(teacher_dir)
    labels, axis, report, grids, models = _labels(runs), config.axis(), {}, [], {}
    for label, run_dir in zip(labels, runs):
        model, x, y = load_run(run_dir, config.windows, data)
        if teacher is not None:
            check_pair(teacher, model)
        loss, start = config.loss(x, y, teacher), time.perf_counter()
        centre = loss(model)
        grid = landscape.loss_grid(model, loss, landscape.directions(model, config.seed, config.dims),
                                   [axis] * config.dims, progress=progress)
        seconds = time.perf_counter() - start
        entry = {"run": run_dir, "centre": dict(zip(loss.names, map(float, centre))),
                 "minimum": landscape.minima([axis] * config.dims, grid, loss.names), "seconds": round(seconds, 2)}
        lowest = entry["minimum"]
        out_fn(f"{label}: " + "; ".join(f"{name} {entry['centre'][name]:.4f} at the weights, lowest "
                                        f"{lowest[name]['loss']:.4f} at {_where(lowest[name]['at'])}"
                                        for name in loss.names)
               + f"; {'×'.join([str(config.points)] * config.dims)} points in {seconds:.1f} s")
        report[label], models[label] = entry, (model, loss)
        grids.append(grid)
    sharp = _sharpness(models, report, config, out_fn) if config.sharpness else None
    _start_writing(out)
    if sharp is not None:
        plots.save(sharp, os.path.join(out, "sharpness.png"))
    _write_grid(out, labels, [axis] * config.dims, np.stack(grids), loss.names)
    _plot_surfaces(out, labels, axis, grids, loss, config)
    return report


def _where(at):
    """"α = 0.1" or "(α, β) = (0.1, -0.2)"."""
    values = ", ".join(f"{c:.3g}" for c in at)
    return f"α = {values}" if len(at) == 1 else f"(α, β) = ({values})"


def _sharpness(models, report, config, out_fn):
    """Top eigenvalue, trace and the eigenvector slice of every run, on one α axis; returns the figure."""
    results = {label: sharpness.sharpness(model, loss, seed=config.seed, iterations=config.iterations,
                                          samples=config.samples) for label, (model, loss) in models.items()}
    largest = max(r["top_eigenvalue"] for r in results.values())
    alphas = sharpness.slice_axis(largest, config.points)
    series = {}
    for label, result in results.items():
        model, loss = models[label]
        along, curvature = sharpness.eigen_slices(model, loss, result, config.seed, alphas)
        series.update({f"{label}: {name}": values for name, values in along.items()})
        report[label]["sharpness"] = {**{k: v for k, v in result.items() if k != "vector"},
                                      "curvature": curvature}
        out_fn(f"{label}: top Hessian eigenvalue {result['top_eigenvalue']:.4g} "
               f"({'converged' if result['converged'] else 'not converged'} after {result['iterations']} products), "
               f"trace {result['trace']:.4g} ± {result['trace_stderr']:.2g} (Hutchinson, {config.samples} samples); "
               f"the eigenvector slice's second difference at 0 {curvature['top eigenvector']['slice']:.4g}; "
               f"curvature along a random unit direction {curvature['random direction']['hessian']:.3g}")
    return plots.line_plot(alphas, series, "The loss along the top Hessian eigenvector and a random direction",
                           "α (step along a unit vector)", models[label][1].ylabel)


def _write_grid(out, labels, axes, losses, names):
    """grid.npz (axes, losses (runs, *grid, names), names, runs) and grid.csv (one row per point and run)."""
    np = backend.host_xp()
    coordinate_names = ["alpha", "beta"][:len(axes)] if len(axes) <= 2 else [f"c{k}" for k in range(len(axes))]
    np.savez(os.path.join(out, "grid.npz"), losses=losses, names=np.array(names), runs=np.array(labels),
             **{name: axis for name, axis in zip(coordinate_names, axes)})
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
    with open(os.path.join(out, "grid.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", *coordinate_names, *names])
        for label, values in zip(labels, losses):
            for point, row in zip(points, values.reshape(-1, len(names))):
                writer.writerow([label, *(f"{c:.6g}" for c in point), *(f"{v:.8g}" for v in row)])


def _plot_surfaces(out, labels, axis, grids, loss, config):
    np = backend.host_xp()
    names = loss.names
    if config.dims == 1:
        series = {(label if len(names) == 1 else f"{label}: {name}"): grid[:, k]
                  for label, grid in zip(labels, grids) for k, name in enumerate(names)}
        fig = plots.line_plot(axis, series, "The loss along a filter-normalised random direction",
                              "α (in filter norms)", loss.ylabel)
        plots.save(fig, os.path.join(out, "slice_1d.png"))
        return
    A, B = np.meshgrid(axis, axis)  # "xy": rows are β, columns α
    panels = {(label if len(names) == 1 else f"{label}: {name}"): (A, B, grid[:, :, k].T)
              for label, grid in zip(labels, grids) for k, name in enumerate(names)}
    title = "Loss around the trained weights (star), one colour scale"
    fig = plots.shared_contours({k: (*p, (0.0, 0.0)) for k, p in panels.items()}, title,
                                "α (direction 1)", "β (direction 2)", loss.ylabel)
    plots.save(fig, os.path.join(out, "surface_2d.png"))
    fig = plots.surface_panels(panels, "The same surfaces in 3-D", "α", "β", loss.ylabel)
    plots.save(fig, os.path.join(out, "surface_3d.png"))


def path(run_a, run_b, config, out, data=None, teacher_dir=None, progress=True, out_fn=print):
    """The loss along (1 − t)·θ_A + t·θ_B on A's windows; writes path.png, grid files; returns the report."""
    np = backend.host_xp()
    model_a, x, y = load_run(run_a, config.windows, data)
    model_b = load_model(run_b)
    landscape.check_same_architecture(model_a, model_b)
    teacher = None if teacher_dir is None else load_model(teacher_dir)
    if teacher is not None:
        check_pair(teacher, model_a)
    loss, ts = config.loss(x, y, teacher), config.axis()
    ends = landscape.linear_path(model_a, model_b, loss, [0.0, 1.0])
    values = landscape.linear_path(model_a, model_b, loss, ts, progress=progress)
    report = {"path": {"A": run_a, "B": run_b, "at_A": dict(zip(loss.names, map(float, ends[0]))),
                       "at_B": dict(zip(loss.names, map(float, ends[1]))),
                       "minimum": landscape.minima([ts], values, loss.names)}}
    barrier = {name: float(np.max(values[(ts >= 0) & (ts <= 1), k]) - max(ends[0, k], ends[1, k]))
               for k, name in enumerate(loss.names)}
    report["path"]["barrier"] = barrier
    for k, name in enumerate(loss.names):
        out_fn(f"{name}: {ends[0, k]:.4f} at A (t = 0), {ends[1, k]:.4f} at B (t = 1); the highest point between "
               f"them is {barrier[name]:+.4f} above the higher end")
    _start_writing(out)
    _write_grid(out, ["A→B"], [ts], values[None], loss.names)
    series = {name: values[:, k] for k, name in enumerate(loss.names)}
    fig = plots.line_plot(ts, series, "The loss on the straight line from A (t = 0) to B (t = 1)",
                          "t: weights (1 − t)·θ_A + t·θ_B", loss.ylabel)
    for t in (0.0, 1.0):
        fig.axes[0].axvline(t, linestyle=":", color="0.4")
    plots.save(fig, os.path.join(out, "path.png"))
    return report


def simplex(teacher_probs, label, lams, temperatures, config, out, student_probs=None, out_fn=print):
    """The objective over the 3-class simplex, one panel per (λ, T); with ``student_probs``, also the
    objective of that student over the (λ, T) grid. Returns the report."""
    np = backend.host_xp()
    panels, report = {}, {"simplex": {"teacher": teacher_probs, "label": label, "panels": {}}}
    for lam in lams:
        for T in temperatures:
            q, values, best = objective_maps.simplex_objective(teacher_probs, label, lam, T, config.divergence,
                                                               config.beta, config.form, steps=90)
            name = f"λ = {lam:g}, T = {T:g}"
            panels[name] = (q, values, {"minimum on the grid": tuple(best), "teacher p": tuple(teacher_probs)})
            report["simplex"]["panels"][name] = {"minimiser": [float(v) for v in best], "minimum": float(values.min())}
            out_fn(f"{name}: the best student on the grid is q = ({best[0]:.3f}, {best[1]:.3f}, {best[2]:.3f}), "
                   f"loss {values.min():.4f}")
    _start_writing(out)
    corners = tuple(f"class {k}" + (" (label)" if k == label else "") for k in range(3))
    plots.save(plots.simplex_panels(panels, f"The {config.form} objective ({config.divergence}) over the simplex",
                                 corners), os.path.join(out, "simplex.png"))
    with open(os.path.join(out, "simplex.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["q0", "q1", "q2", *panels])
        for k, point in enumerate(q):
            writer.writerow([*(f"{c:.6g}" for c in point), *(f"{p[1][k]:.8g}" for p in panels.values())])
    if student_probs is not None:
        xp = backend.xp()
        z = xp.log(backend.from_numpy(np.array([student_probs])))  # (1, 3)
        v = xp.log(backend.from_numpy(np.array([teacher_probs])))
        y = backend.from_numpy(np.array([label]))
        table = objective_maps.objective_over_lam_T(z, v, y, lams, temperatures, divergence=config.divergence,
                                                    beta=config.beta, form=config.form)
        report["simplex"]["student"] = student_probs
        report["simplex"]["objective_lambda_T"] = table.tolist()
        fig = plots.heatmap_by_column(table, temperatures, lams, "The objective of the given student over λ and T",
                                      "temperature T", "λ")
        plots.save(fig, os.path.join(out, "objective_lambda_T.png"))
    return report


def add_commands(commands):
    """``minikd landscape``."""
    defaults = LandscapeConfig()
    parser = commands.add_parser("landscape", help="loss surfaces, linear paths and sharpness of trained runs")
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run folders (minikd train/distill --out)")
    parser.add_argument("--dims", type=int, choices=(1, 2), default=defaults.dims,
                        help="1: the loss along one direction; 2: on a plane (contours and a 3-D surface)")
    parser.add_argument("--range", dest="value_range", metavar="LOW,HIGH",
                        help=f"α (and β) from LOW to HIGH in filter norms (default {SLICE_RANGE[0]:g},"
                             f"{SLICE_RANGE[1]:g}); t on a --path (default {PATH_RANGE[0]:g},{PATH_RANGE[1]:g})")
    parser.add_argument("--points", type=int, default=defaults.points, help="grid points per axis (odd)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="the random directions (the same for every run of one architecture)")
    parser.add_argument("--windows", type=int, default=defaults.windows, help="fixed validation windows evaluated")
    parser.add_argument("--data", metavar="FILE", help="take the windows from this UTF-8 text file instead")
    parser.add_argument("--teacher", metavar="DIR", help="a teacher run: slice the distillation objective")
    parser.add_argument("--what", choices=landscape.WHATS,
                        help="ce: held-out cross-entropy; objective: the KD objective; terms: its hard and soft "
                             "terms separately (default: objective with --teacher, else ce)")
    parser.add_argument("--lam", default=str(defaults.lam),
                        help="λ of the objective (with --simplex: comma-separated values, one panel each)")
    parser.add_argument("--T", default=str(defaults.T), help="temperature (with --simplex: comma-separated values)")
    parser.add_argument("--divergence", choices=tuple(DIVERGENCES), default=defaults.divergence,
                        help="D in the objective")
    parser.add_argument("--beta", type=float, default=defaults.beta, help="JSD mixture weight")
    parser.add_argument("--form", choices=FORMS, default=defaults.form,
                        help="interpolate: (1 − λ)·CE + λ·T²·D; additive: CE + λ·T²·D")
    parser.add_argument("--path", nargs=2, metavar=("A", "B"), help="the loss on the line from run A to run B")
    parser.add_argument("--sharpness", action="store_true",
                        help="also the top Hessian eigenvalue, the Hessian trace and the slice along the eigenvector")
    parser.add_argument("--iterations", type=int, default=defaults.iterations, help="power-iteration steps")
    parser.add_argument("--samples", type=int, default=defaults.samples, help="Hutchinson samples for the trace")
    parser.add_argument("--simplex", metavar="P0,P1,P2",
                        help="the objective over the 3-class simplex for this teacher distribution")
    parser.add_argument("--label", type=int, default=0, help="with --simplex: the true class (0, 1 or 2)")
    parser.add_argument("--student", metavar="Q0,Q1,Q2",
                        help="with --simplex: also this student's objective over the --lam × --T grid")
    parser.add_argument("--out", default="runs/landscape",
                        help="folder for the PNGs, grid.npz, grid.csv and landscape.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier landscape in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_command)


def _config(args, lam, T):
    """The LandscapeConfig of the command line (validated on construction)."""
    default_range = PATH_RANGE if args.path else SLICE_RANGE
    what = args.what or ("objective" if args.teacher else "ce")
    if what != "ce" and not args.teacher:
        raise ValueError(f"--what {what} needs --teacher DIR")
    if what == "ce" and args.teacher:
        raise ValueError("--teacher is used only with --what objective or terms")
    return LandscapeConfig(dims=args.dims, points=args.points, seed=args.seed, windows=args.windows, what=what,
                           value_range=parse_range(args.value_range) if args.value_range else default_range,
                           lam=lam, T=T, divergence=args.divergence, beta=args.beta, form=args.form,
                           sharpness=args.sharpness, iterations=args.iterations, samples=args.samples)


def _command(args):
    """Check every input, then compute, then write (landscape.json last)."""
    modes = [bool(args.runs), bool(args.path), bool(args.simplex)]
    if sum(modes) != 1:
        raise ValueError("give RUN_DIR(s), --path A B, or --simplex P0,P1,P2 (exactly one of them)")
    lams, temperatures = parse_list("--lam", args.lam), parse_list("--T", args.T)
    if not args.simplex and (len(lams) > 1 or len(temperatures) > 1):
        raise ValueError("--lam and --T take one value each except with --simplex")
    check_out(args.out, args.overwrite)
    progress = not args.quiet
    if args.simplex:
        teacher_probs = objective_maps.check_distribution("--simplex", parse_list("--simplex", args.simplex))
        student = (objective_maps.check_distribution("--student", parse_list("--student", args.student))
                   if args.student else None)
        if len(lams) * len(temperatures) > MAX_SIMPLEX_PANELS:
            raise ValueError(f"--simplex draws one panel per (λ, T): at most {MAX_SIMPLEX_PANELS}, "
                             f"got {len(lams)} × {len(temperatures)}")
        for lam in lams:
            validate.check_lam(lam, args.form)
        for T in temperatures:
            validate.check_temperature(T)
        config = LandscapeConfig(divergence=args.divergence, beta=args.beta, form=args.form)
        report = simplex(teacher_probs, args.label, lams, temperatures, config, args.out, student)
    else:
        config = _config(args, lams[0], temperatures[0])
        for run_dir in (args.path or args.runs):
            check_run(run_dir)
        if args.teacher:
            check_run(args.teacher, "--teacher")
        if args.data and not os.path.isfile(args.data):
            raise ValueError(f"--data {args.data!r} does not exist (or is not a file)")
        if args.path:
            report = path(*args.path, config, args.out, args.data, args.teacher, progress)
        else:
            report = surfaces(args.runs, config, args.out, args.teacher, args.data, progress)
    settings = {"command": "landscape", **{k: v for k, v in vars(args).items() if k not in ("run", "command")}}
    with open(os.path.join(args.out, "landscape.json"), "w") as f:
        json.dump({"settings": settings, "config": asdict(config) if not args.simplex else None, "results": report},
                  f, indent=2)
    written = [name for name in OUTPUTS if os.path.exists(os.path.join(args.out, name))]
    print(f"wrote {os.path.abspath(args.out)}: {', '.join(written)}")
    return 0
