"""Checkpoints: one ``.npz`` with the parameters, the optimizer state, and JSON metadata.

Written to a temporary file in the same folder and renamed, so a crash never leaves half a file
under the real name; read with ``allow_pickle=False``, so loading a file never runs code.
"""

import json
import os
import zipfile
from dataclasses import dataclass

from minikd.engine import backend
from minikd.nn.model import ModelConfig, TransformerLM

FORMAT = "minikd-checkpoint/1"


@dataclass
class Checkpoint:
    meta: dict  # format, config (JSON text), model_seed, step, and whatever the writer added
    model_state: dict  # parameter name -> host array
    optimizer_state: dict
    extra_state: dict  # a module trained beside the model (e.g. hidden-state projections); often empty

    @property
    def config(self):
        return ModelConfig.from_json(self.meta["config"])

    @property
    def step(self):
        return int(self.meta["step"])

    def model(self, path="checkpoint"):
        """The TransformerLM these weights belong to, in evaluation mode (``path`` names it in errors)."""
        model = TransformerLM(self.config, seed=self.meta["model_seed"])
        try:
            model.load_state_dict(self.model_state)
        except ValueError as err:
            raise ValueError(f"checkpoint {path!r} does not match its own config: {err}") from None
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


def load(path):
    """Read a checkpoint; a missing, truncated or foreign file raises a ValueError naming it."""
    np = backend.host_xp()
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise ValueError(f"checkpoint {path!r} cannot be read (truncated or not an .npz file): {err}") from None
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
    except (KeyError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path!r} is not a minikd checkpoint (no valid metadata: {err})") from None

    def part(prefix):
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    return Checkpoint(meta, part("model/"), part("optimizer/"), part("extra/"))


def load_model(path):
    """The TransformerLM stored in a checkpoint, with its weights, in evaluation mode."""
    return load(path).model(path)
