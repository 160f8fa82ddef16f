"""Per-epoch training checkpoints: what a killed run needs to continue bit for bit.

One file per run directory, ``checkpoint.pt``, replaced atomically after every epoch (a
temporary file in the same directory, then ``os.replace``: a run killed at any moment
leaves either the previous or the new checkpoint, never half of one). It holds:

* ``phase`` (``"fp"`` or ``"qat"``) and ``epoch`` (the last finished epoch of that phase);
* ``model`` (the phase's network: FP, or FQ with every quantiser's ε, flags and observer
  statistics, which are buffers/parameters of the state dict), ``optimizer``,
  ``scheduler``, ``controller`` (QAT epoch/step counters), ``losses`` so far;
* ``rng``: torch, numpy and Python generator states and the training batches' own
  generator (or the data-parallel sampler's epoch);
* ``extra``: what the caller needs beyond the phase (the final FP weights during QAT,
  TensorBoard step counters) and ``fingerprint`` (config and seed: a checkpoint of
  another run is refused).

Loading a file that is not a readable checkpoint raises :class:`CheckpointError` naming
the file.
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeq.errors import CheckpointError

CHECKPOINT = "checkpoint.pt"
FORMAT = 1  # bumped when the layout changes; older files are refused by name
PHASES = ("fp", "qat")


@dataclass(frozen=True)
class Checkpointer:
    """Writes and reads ``checkpoint.pt`` of one run directory.

    ``fingerprint`` identifies the run (resolved config and seed); a checkpoint with a
    different fingerprint is refused on load.
    """

    directory: Path
    fingerprint: str = ""

    @property
    def path(self) -> Path:
        return Path(self.directory) / CHECKPOINT

    def save(self, state: dict) -> None:
        """Write ``state`` atomically (temporary file beside the target, then rename)."""
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{CHECKPOINT}.", dir=path.parent)
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; keep the umask's
            with os.fdopen(fd, "wb") as f:
                torch.save({**state, "format": FORMAT, "fingerprint": self.fingerprint}, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self) -> dict | None:
        """The last checkpoint, or None when there is none yet; a bad file -> error."""
        path = self.path
        if not path.exists():
            return None
        try:
            state = torch.load(path, weights_only=True)  # tensors and plain data only
        except Exception as exc:  # torch.load raises many types on a corrupt file
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            raise CheckpointError(f"{path}: corrupt checkpoint, cannot resume "
                                  f"({type(exc).__name__}: {first})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not an edgeq checkpoint of format {FORMAT}")
        if state.get("phase") not in PHASES or not isinstance(state.get("epoch"), int):
            raise CheckpointError(f"{path}: checkpoint lacks a valid phase/epoch")
        if self.fingerprint and state.get("fingerprint") != self.fingerprint:
            raise CheckpointError(f"{path}: checkpoint of a different config or seed; "
                                  "remove it or resume with the run's own config")
        return state


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- RNG ----------------------------------------------------------------------------------
def rng_state(loader: Any) -> dict:
    """Every generator a training epoch draws from (global ones and the loader's)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                   "has_gauss": has_gauss, "cached": cached}  # tensors: weights_only loads
    return {"torch": torch.get_rng_state(), "numpy": numpy_state,
            "python": random.getstate(), "loader": loader_state(loader)}


def set_rng_state(state: dict, loader: Any) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    random.setstate(state["python"])
    load_loader_state(loader, state["loader"])


def loader_state(loader: Any):
    """The batch order's state: a ``state_dict()`` if the loader has one, else the state
    of its ``generator`` (:class:`edgeq.lab.tasks.base.Batches`), else None."""
    if hasattr(loader, "state_dict"):
        return loader.state_dict()
    gen = getattr(loader, "generator", None)
    return gen.get_state() if isinstance(gen, torch.Generator) else None


def load_loader_state(loader: Any, state) -> None:
    if state is None:
        return
    if hasattr(loader, "load_state_dict"):
        loader.load_state_dict(state)
    else:
        loader.generator.set_state(state)


# -- quantisers ---------------------------------------------------------------------------
def refreeze(model: torch.nn.Module) -> None:
    """After ``load_state_dict``: frozen quantisers stop requiring gradients again.

    ``frozen`` is a saved buffer, but ``requires_grad`` of a frozen ε parameter is not
    part of a state dict; freezing again restores it (idempotent).
    """
    from edgeq.train.algorithms import Quantiser

    for m in model.modules():
        if isinstance(m, Quantiser) and bool(m.frozen):
            m.freeze()
