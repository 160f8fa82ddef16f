"""Data-parallel training of one run with ``torchrun`` (DDP, gloo backend, CPU).

Command (every rank runs the whole pipeline's training; rank 0 alone evaluates, exports
and writes files)::

    torchrun --nproc_per_node 2 -m edgeq.lab.ddp CONFIG.json --out DIR [--seed S]

What keeps the ranks consistent:

* **data**: :class:`ShardedBatches` uses ``DistributedSampler`` (seeded by the run's
  seed, a new order every epoch); each rank takes ``batch_size / world`` samples per step,
  so a step averages the gradient over ``batch_size`` samples as one process does, and
  the number of steps per epoch (hence the OneCycle and QAT schedules) is the same;
* **parameters**: DDP broadcasts rank 0's parameters when it wraps the model and
  all-reduces (averages) gradients, so every rank applies the same Adam step;
* **buffers** (BatchNorm statistics, every quantiser's flags, observer statistics, ANA
  μ/σ, TQT moments): DDP broadcasts rank 0's buffers before every forward, and
  :meth:`DDPContext.sync_buffers` once more after every epoch (the last forward's
  updates);
* **statistics a quantiser computes from data**: the calibration pass observes the same
  first ``CALIBRATION_SAMPLES`` training samples on every rank (identical data, so
  identical PACT/TQT/ANA initial ε); weight ε is re-fitted from the (identical) weights.
  (An activation quantiser the calibration never reached would initialise lazily from
  its rank's first batch, and a learned ε would then differ between ranks: the pipeline
  calibrates the whole network, so this does not happen there);
* **QAT controllers**: every rank steps its own controller at the same epochs and steps;
  when freezing changes which parameters train, the model is wrapped again (DDP only
  reduces parameters that required gradients when it was built).

Checkpoints, TensorBoard files and exports come from rank 0 only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from edgeq.errors import ConfigError, EdgeqError


@dataclass
class DDPContext:
    """This process's rank in a gloo process group of ``world`` processes."""

    rank: int
    world: int
    dump_dir: Path | None = None  # set: every rank saves its trained FQ state there

    def finished(self, model: nn.Module) -> None:
        """After QAT: with ``dump_dir``, write this rank's state (tests compare ranks)."""
        if self.dump_dir is not None:
            torch.save(model.state_dict(), Path(self.dump_dir) / f"params_rank{self.rank}.pt")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DDPContext:
        """Join the group ``torchrun`` describes in the environment (gloo, CPU)."""
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise ConfigError("edgeq.lab.ddp: RANK/WORLD_SIZE unset; start it with "
                              "torchrun --nproc_per_node N -m edgeq.lab.ddp CONFIG.json")
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    def wrap(self, model: nn.Module, current: nn.Module) -> nn.Module:
        """``model`` in DDP; the current wrapper again while its parameters still train."""
        trainable = [p for p in model.parameters() if p.requires_grad]
        if isinstance(current, nn.parallel.DistributedDataParallel) and \
                getattr(current, "_edgeq_trainable", None) == [id(p) for p in trainable]:
            return current
        # rank 0's buffers are broadcast at wrapping and before every forward
        wrapped = nn.parallel.DistributedDataParallel(model, forward_sync_buffers=True)
        wrapped._edgeq_trainable = [id(p) for p in trainable]
        return wrapped

    @torch.no_grad()
    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers to every rank: after an epoch's last forward each rank has
        updated its own BatchNorm statistics (DDP syncs buffers only before a forward)."""
        for buf in model.buffers():
            dist.broadcast(buf, 0)

    def sum_pair(self, a: float, b: float) -> tuple[float, float]:
        """(Σ a, Σ b) over the ranks, in float64."""
        t = torch.tensor([a, b], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t[0]), float(t[1])

    def batches(self, task, split: str, batch_size: int, seed: int) -> ShardedBatches:
        if batch_size % self.world:
            raise ConfigError(f"task.batch_size {batch_size} must be divisible by the "
                              f"{self.world} data-parallel processes")
        return ShardedBatches(task, split, batch_size // self.world, seed, self)

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class ShardedBatches:
    """This rank's mini-batches of one split: ``DistributedSampler`` order, a new one every
    epoch (the epoch counter is the state a checkpoint saves)."""

    def __init__(self, task, split: str, batch_size: int, seed: int, ctx: DDPContext):
        self.task, self.data, self.batch_size = task, task.split(split), batch_size
        self.sampler = DistributedSampler(_Indices(len(self.data)), num_replicas=ctx.world,
                                          rank=ctx.rank, shuffle=True, seed=seed)
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        order = torch.tensor(list(self.sampler), dtype=torch.int64)
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.task.to_input(self.data.raw[idx]), self.data.targets[idx]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])


def main(argv: list[str] | None = None) -> int:
    """``torchrun ... -m edgeq.lab.ddp CONFIG.json --out DIR``: one seed, data-parallel."""
    from edgeq.lab import pipeline
    from edgeq.lab.config import PipelineConfig
    from edgeq.lab.tasks import make_task

    ap = argparse.ArgumentParser(prog="edgeq.lab.ddp")
    ap.add_argument("config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=None, help="default: the config's first seed")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--checkpoint", action="store_true")
    ap.add_argument("--tensorboard", action="store_true")
    ap.add_argument("--dump-params", action="store_true",
                    help="every rank writes its trained FQ state to params_rank<R>.pt")
    args = ap.parse_args(argv)
    ctx = None
    try:
        config = PipelineConfig.load(args.config)
        ctx = DDPContext.from_env()
        if args.dump_params:
            ctx.dump_dir = Path(args.out)
        seed = config.seeds[0] if args.seed is None else args.seed
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        task = make_task(config)
        if task.threads is not None:
            torch.set_num_threads(task.threads)
        result = pipeline.run_seed(config, seed, out, progress=False, task=task,
                                   checkpoint=args.checkpoint, resume=args.resume,
                                   tensorboard=args.tensorboard, ddp=ctx)
        if ctx.is_main:
            summary = pipeline.summarise([result], task)
            summary["ddp_world_size"] = ctx.world
            _write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
            _write(out / "table.txt", pipeline.format_table(summary, task) + "\n")
    except EdgeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if ctx is not None:
            ctx.close()
    return 0


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a temporary file beside ``path``, then a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
