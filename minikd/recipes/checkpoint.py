"""Checkpoints: one ``.npz`` with the parameters, the optimizer state, and JSON metadata.

Written to a temporary file in the same folder and renamed, so a crash never leaves half a file
under the real name; read with ``allow_pickle=False``, so loading a file never runs code; and
checked member by member before use (names, sizes, shapes, dtypes, the config), so a damaged or
crafted file is one ``CheckpointError`` naming the file and the problem.
"""

import glob
import json
import os
import zipfile
from dataclasses import dataclass

from minikd.engine import backend
from minikd.nn.model import ModelConfig, TransformerLM
from minikd.recipes import sizes

FORMAT = "minikd-checkpoint/1"
MAX_META_BYTES = 1 << 20  # the JSON metadata: a few KiB in practice
NPY_HEADER_BYTES = 4096  # a .npy member is its data plus a header well under this


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not hold what minikd wrote."""


@dataclass
class Checkpoint:
    meta: dict  # format, config (JSON text), model_seed, step, and whatever the writer added
    model_state: dict  # parameter name -> host array
    optimizer_state: dict
    extra_state: dict  # a module trained beside the model (e.g. hidden-state projections); often empty
    path: str = "checkpoint"

    @property
    def config(self):
        return ModelConfig.from_json(self.meta["config"])

    @property
    def step(self):
        return int(self.meta["step"])

    @property
    def symbols(self):
        """The tokenizer's symbols the model was trained with (None for checkpoints that predate them)."""
        return self.meta.get("symbols")

    def model(self):
        """The TransformerLM these weights belong to, in evaluation mode."""
        model = TransformerLM(self.config, seed=self.meta["model_seed"])
        model.load_state_dict(self.model_state)  # keys, shapes and dtypes were checked by ``load``
        return model.eval()


def save(path, model, optimizer=None, step=0, extra=None, **meta):
    """Write model (optimizer, extra module) state and ``meta`` (JSON-serialisable values) to ``path`` atomically."""
    np = backend.host_xp()
    header = {"format": FORMAT, "config": model.config.to_json(), "model_seed": model.seed, "step": int(step), **meta}
    arrays = {"meta": np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)}
    arrays.update({f"model/{k}": backend.to_numpy(v) for k, v in model.state_dict().items()})
    if optimizer is not None:
        arrays.update({f"optimizer/{k}": backend.to_numpy(v) for k, v in optimizer.state_dict().items()})
    if extra is not None:
        arrays.update({f"extra/{k}": backend.to_numpy(v) for k, v in extra.state_dict().items()})
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)  # atomic on POSIX and Windows
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def remove_temporary(path):
    """Delete the temporary files a killed ``save`` of ``path`` left behind; returns their names."""
    folder, name = os.path.split(os.path.abspath(path))
    leftovers = sorted(glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")))
    for leftover in leftovers:
        os.remove(leftover)
    return leftovers


def _read_meta(path, archive, members):
    if "meta.npy" not in members:
        raise CheckpointError(f"{path!r} is not a minikd checkpoint (no metadata member 'meta')")
    if members["meta.npy"].file_size > MAX_META_BYTES:
        raise CheckpointError(f"checkpoint {path!r}: its metadata is {members['meta.npy'].file_size} bytes, "
                              f"more than the {MAX_META_BYTES} a checkpoint holds")
    raw = archive["meta"]  # a pickled (object) member raises here: "cannot be read"
    try:
        meta = json.loads(raw.tobytes().decode())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path!r} is not a minikd checkpoint (no valid metadata: {err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else meta
        raise CheckpointError(f"{path!r} is not a minikd checkpoint (no valid metadata: format {found!r})")
    for key, kind in (("config", str), ("model_seed", int), ("step", int)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise CheckpointError(f"checkpoint {path!r}: metadata field {key!r} must be a {kind.__name__}, "
                                  f"got {meta.get(key, '(missing)')!r}")
    if meta["step"] < 0:
        raise CheckpointError(f"checkpoint {path!r}: step must be >= 0, got {meta['step']}")
    for key, kind in (("train_config", dict), ("task", str)):  # optional, written by ``train``
        if key in meta and not isinstance(meta[key], kind):
            raise CheckpointError(f"checkpoint {path!r}: metadata field {key!r} must be a {kind.__name__}, "
                                  f"got {meta[key]!r}")
    return meta


def _config(path, meta):
    try:
        config = ModelConfig.from_json(meta["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path!r}: its model config is invalid ({err})") from None
    try:
        sizes.check_memory(f"the model in checkpoint {path!r}", sizes.FLOAT_BYTES * sizes.model_parameters(config))
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    symbols = meta.get("symbols")
    if symbols is not None and (not isinstance(symbols, list) or len(symbols) != config.vocab_size
                                or not all(isinstance(s, str) for s in symbols)):
        raise CheckpointError(f"checkpoint {path!r}: 'symbols' must list the {config.vocab_size} vocabulary "
                              f"symbols as strings")
    return config


def _read_part(path, archive, members, prefix, expected, limit=None):
    """Members ``prefix/name``: exactly the names, shapes and dtypes of ``expected`` ({name: array}), or
    with ``expected=None`` any names, each at most ``limit`` bytes."""
    names = {m[len(prefix):-len(".npy")] for m in members if m.startswith(prefix)}
    if expected is not None:
        missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
        if missing or unexpected:
            raise CheckpointError(f"checkpoint {path!r}: {prefix.rstrip('/')} state "
                                  + (f"lacks {missing}" if missing else "")
                                  + (" and " if missing and unexpected else "")
                                  + (f"has unexpected entries {unexpected}" if unexpected else ""))
    state = {}
    for name in sorted(names):
        want = None if expected is None else expected[name]
        most = (want.nbytes if want is not None else limit) + NPY_HEADER_BYTES
        size = members[f"{prefix}{name}.npy"].file_size
        if size > most:  # checked in the zip directory, before the member is unpacked
            raise CheckpointError(f"checkpoint {path!r}: member {prefix}{name} is {size} bytes unpacked, "
                                  f"more than the {most} it should take")
        value = archive[f"{prefix}{name}"]
        if want is not None and (value.shape != tuple(want.shape) or value.dtype != want.dtype):
            raise CheckpointError(f"checkpoint {path!r}: {prefix}{name} has shape {value.shape} and dtype "
                                  f"{value.dtype}, the config needs {tuple(want.shape)} and {want.dtype}")
        state[name] = value
    return state


def _check_optimizer(path, state, params, n_extra):
    """Optimizer state: an integer ``steps`` and buffers ``<kind>.<i>``, buffer i shaped like parameter i
    (the model's parameters first, then at most ``n_extra`` of the extra module's)."""
    if not state:
        return
    steps = state.get("steps")
    if steps is None or steps.shape != () or steps.dtype.kind not in "iu" or int(steps) < 0:
        raise CheckpointError(f"checkpoint {path!r}: optimizer state needs a non-negative integer 'steps'")
    for name, value in state.items():
        if name == "steps":
            continue
        kind, _, index = name.rpartition(".")
        if not kind or not index.isdigit() or int(index) >= len(params) + n_extra:
            raise CheckpointError(f"checkpoint {path!r}: optimizer state entry {name!r} names no parameter")
        if value.dtype.kind != "f" or (int(index) < len(params) and value.shape != params[int(index)].shape):
            raise CheckpointError(f"checkpoint {path!r}: optimizer state {name} has shape {value.shape} "
                                  f"({value.dtype}), not its parameter's")


def load(path):
    """Read and check a checkpoint; any problem raises a CheckpointError naming the file and what is wrong."""
    np = backend.host_xp()
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        with zipfile.ZipFile(path) as zipped:
            members = {info.filename: info for info in zipped.infolist()}
        with np.load(path, allow_pickle=False) as archive:
            meta = _read_meta(path, archive, members)
            config = _config(path, meta)
            foreign = sorted(m for m in members if m != "meta.npy" and not (
                m.endswith(".npy") and m.partition("/")[0] in ("model", "optimizer", "extra") and "/" in m))
            if foreign:
                raise CheckpointError(f"checkpoint {path!r} holds unexpected members {foreign[:5]}")
            model = TransformerLM(config, seed=meta["model_seed"])
            expected = {k: backend.to_numpy(v) for k, v in model.state_dict().items()}
            model_state = _read_part(path, archive, members, "model/", expected)
            params = [backend.to_numpy(p.data) for p in model.parameters()]
            model_bytes = sum(value.nbytes for value in expected.values())  # no other buffer is larger
            optimizer_state = _read_part(path, archive, members, "optimizer/", None, model_bytes)
            extra_state = _read_part(path, archive, members, "extra/", None, model_bytes)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path!r} cannot be read (truncated or not an .npz file): {err}") from None
    _check_optimizer(path, optimizer_state, params, len(extra_state))
    return Checkpoint(meta, model_state, optimizer_state, extra_state, path)


def path_of(run):
    """The checkpoint of ``run``: ``run/checkpoint.npz`` for a run folder, ``run`` itself for a file."""
    return os.path.join(run, "checkpoint.npz") if os.path.isdir(run) else run


def load_model(path):
    """The TransformerLM stored in a checkpoint, with its weights, in evaluation mode."""
    return load(path).model()
