"""Fuzz the ``edgeq`` command line with mutated models, inputs, configs and run directories.

    python benchmarks/fuzz.py [--cases 1200] [--seed 0] [--json OUT.json]

Seed files: the QuantLab Dronet fixture, and a digits CNN/ResNet exported by the engine
in both integer dialects (edgeq, dory with its ``config_*.json``) and as float ONNX. Each
case mutates one of them (or an input file, a pipeline config, a finished run directory)
and runs one CLI command in a worker process limited to ``--mem-mb`` of address space
(``resource.setrlimit``); a case that takes longer than ``--timeout`` is a hang. Outcome
classes:

- ``ok``: exit status 0;
- ``error:<Type>``: a typed ``EdgeqError`` (the CLI's one-line ``error: ...``);
- ``traceback:<Type>``: any other exception reached the CLI (its last-resort guard);
- ``killed`` (the worker died: memory limit, signal), ``hang`` (timeout);
- ``half-written``: the command failed but left an output file or a temporary file.

Prints the counts per class and exits non-zero unless tracebacks, kills, hangs and
half-written outputs are all zero. ``tests/test_fuzz.py`` runs a few hundred cases.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
DRONET = ROOT / "../shared/fixtures/quantlab/dronet"
BAD_CLASSES = ("traceback", "killed", "hang", "half-written")


# -- seed files ------------------------------------------------------------------------------
def make_seeds(work: Path) -> dict[str, Path]:
    """Write the seed models (and their inputs) to ``work``; return name -> model path."""
    import torch

    from edgeq.data import load_digits_splits
    from edgeq.engine.onnx.exporter import export_onnx
    from edgeq.lab.config import PipelineConfig
    from edgeq.lab.pipeline import build_model, input_spec
    from edgeq.lab.training import predict
    from edgeq.train.controller import observing
    from edgeq.train.f2f import f2f
    from edgeq.train.f2t import f2t
    from edgeq.train.modules import quant_modules

    seeds = {}
    x = load_digits_splits(0).x_test[:32]
    np.save(work / "x_float.npy", x[:2].numpy())
    for name, bits in (("digits_cnn", 8), ("digits_resnet", 4)):
        torch.manual_seed(0)
        cfg = PipelineConfig.from_json(
            {"model": {"name": name}, "policy": {"uniform": {"bits": bits, "algorithm": "pact"}}})
        model = build_model(cfg).eval()
        fq, _ = f2f(model, cfg.build_policy(), x[:1], input_spec=input_spec(cfg))
        with observing(fq):
            predict(fq, x)
        for _, m in quant_modules(fq):
            m.start()
        tq = f2t(fq.eval(), x[:1], acc_bits=32, significant_bits=24)
        d = work / name
        d.mkdir()
        export_onnx(tq.to_ir(), d / "tq.onnx")
        export_onnx(tq.to_ir(), d / "tq_dory.onnx", dialect="dory")
        torch.onnx.export(model, (x[:1],), str(d / "fp.onnx"), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"])
        np.save(d / "x_int.npy", tq.quantise_input(x[:2]).numpy().astype(np.int64))
        seeds.update({f"{name}/tq": d / "tq.onnx", f"{name}/dory": d / "tq_dory.onnx",
                      f"{name}/fp": d / "fp.onnx"})
    dronet = work / "dronet"
    dronet.mkdir()
    for f in ("DRONETV3_ql_integerized.onnx", "input.txt"):
        (dronet / f).write_bytes((DRONET / f).read_bytes())
    seeds["dronet"] = dronet / "DRONETV3_ql_integerized.onnx"
    return seeds


def make_run_dir(work: Path) -> Path:
    """A finished one-seed pipeline run (tiny) for the f2t-report cases."""
    from edgeq.cli import main

    cfg = work / "base_config.json"
    cfg.write_text(json.dumps(BASE_CONFIG))
    rc = main(["quantize", str(cfg), "--out", str(work / "run"), "--quiet"])
    assert rc == 0, "the base pipeline run failed"
    return work / "run"


BASE_CONFIG = {
    "model": {"name": "digits_cnn"},
    "dataset": {"name": "digits", "seed": 0, "batch_size": 64},
    "policy": {"uniform": {"bits": 8, "algorithm": "pact"}},
    "input": {"bits": 8, "signed": False, "lo": 0.0, "hi": 1.0},
    "training": {"fp_epochs": 1, "qat_epochs": 1, "lr": 0.003, "qat_lr": 0.001},
    "seeds": [0],
    "output_dir": "unused",
}


# -- mutations of ONNX models --------------------------------------------------------------------
WEIRD_INTS = [0, -1, 1, 2, 3, 7, 33, 64, 255, 2**31, 2**40, -(2**40), 2**62]
WEIRD_FLOATS = [0.0, -1.0, 0.5, 3.0, 1e30, float("inf"), float("-inf"), float("nan")]
DTYPES = [0, TensorProto.STRING, TensorProto.COMPLEX64, TensorProto.COMPLEX128,
          TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.INT4, TensorProto.UINT4,
          TensorProto.FLOAT8E4M3FN, TensorProto.BOOL, TensorProto.UINT64, 99]


def _pick(rng: random.Random, seq):
    return seq[rng.randrange(len(seq))] if len(seq) else None


def mutate_model(model: onnx.ModelProto, rng: random.Random) -> str:
    """Apply one random structural mutation in place; return its name."""
    g = model.graph
    kind = rng.choice(MODEL_MUTATIONS)
    return kind(g, model, rng) or kind.__name__


def m_drop_initializer(g, model, rng):
    if g.initializer:
        del g.initializer[rng.randrange(len(g.initializer))]


def m_drop_node(g, model, rng):
    if g.node:
        del g.node[rng.randrange(len(g.node))]


def m_dangling_input(g, model, rng):
    n = _pick(rng, g.node)
    if n is not None and n.input:
        n.input[rng.randrange(len(n.input))] = "nowhere"


def m_cycle(g, model, rng):
    if len(g.node) > 2:
        i = rng.randrange(len(g.node) - 1)
        j = rng.randrange(i + 1, len(g.node))
        if g.node[i].input and g.node[j].output:
            g.node[i].input[0] = g.node[j].output[0]


def m_swap_nodes(g, model, rng):
    if len(g.node) > 2:
        i, j = rng.sample(range(len(g.node)), 2)
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(g.node[i])
        b.CopyFrom(g.node[j])
        g.node[i].CopyFrom(b)
        g.node[j].CopyFrom(a)


def m_duplicate_output(g, model, rng):
    if len(g.node) > 2:
        i, j = rng.sample(range(len(g.node)), 2)
        if g.node[i].output and g.node[j].output:
            g.node[i].output[0] = g.node[j].output[0]


def m_init_dims(g, model, rng):
    t = _pick(rng, g.initializer)
    if t is not None:
        t.dims[:] = [rng.choice([2**40, -3, 0, 2**20, 7])] + list(t.dims)[1:]


def m_init_dtype(g, model, rng):
    t = _pick(rng, g.initializer)
    if t is not None:
        t.data_type = rng.choice(DTYPES)


def m_init_truncate(g, model, rng):
    t = _pick(rng, g.initializer)
    if t is not None and t.raw_data:
        t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data))]


def m_init_external(g, model, rng):
    t = _pick(rng, g.initializer)
    if t is not None:
        t.data_location = TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", rng.choice(["missing.bin", "../../etc/passwd", ""])
        t.ClearField("raw_data")


def m_init_segment(g, model, rng):
    t = _pick(rng, g.initializer)
    if t is not None:
        t.segment.begin, t.segment.end = 0, 2**40


def m_shape(g, model, rng):
    vis = list(g.input) + list(g.output) + list(g.value_info)
    vi = _pick(rng, vis)
    if vi is not None and vi.type.tensor_type.shape.dim:
        dims = vi.type.tensor_type.shape.dim
        dims[rng.randrange(len(dims))].dim_value = rng.choice([2**40, -5, 0, 2**31, 10**6])


def m_attr_type(g, model, rng):
    n = _pick(rng, [n for n in g.node if n.attribute])
    if n is None:
        return
    a = n.attribute[rng.randrange(len(n.attribute))]
    choice = rng.randrange(4)
    name = a.name
    a.Clear()
    a.name = name
    if choice == 0:
        a.type, a.f = onnx.AttributeProto.FLOAT, rng.choice(WEIRD_FLOATS)
    elif choice == 1:
        a.type, a.i = onnx.AttributeProto.INT, rng.choice(WEIRD_INTS)
    elif choice == 2:
        a.type = onnx.AttributeProto.INTS
        a.ints.extend(rng.choice(WEIRD_INTS) for _ in range(rng.randrange(6)))
    else:
        a.type, a.s = onnx.AttributeProto.STRING, b"\xff\x00junk"


def m_attr_value(g, model, rng):
    n = _pick(rng, [n for n in g.node if n.attribute])
    if n is None:
        return
    a = n.attribute[rng.randrange(len(n.attribute))]
    if a.type == onnx.AttributeProto.INT:
        a.i = rng.choice(WEIRD_INTS)
    elif a.type == onnx.AttributeProto.FLOAT:
        a.f = rng.choice(WEIRD_FLOATS)
    elif a.type == onnx.AttributeProto.INTS and a.ints:
        a.ints[rng.randrange(len(a.ints))] = rng.choice(WEIRD_INTS)
        if rng.random() < 0.3:
            del a.ints[-1]


def m_drop_attr(g, model, rng):
    n = _pick(rng, [n for n in g.node if n.attribute])
    if n is not None:
        del n.attribute[rng.randrange(len(n.attribute))]


def m_const_value(g, model, rng):
    """Change a scalar constant (a requant divisor, a clip bound...)."""
    scalars = [t for t in g.initializer if len(t.dims) == 0] + [
        a.t for n in g.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    t = _pick(rng, scalars)
    if t is not None:
        arr = numpy_helper.to_array(t)
        new = np.asarray(rng.choice([3.0, 0.0, -4.0, 1e30, float("nan"), 2.0**70, 0.5]),
                         dtype=arr.dtype if arr.dtype.kind == "f" else np.float32)
        t.CopyFrom(numpy_helper.from_array(new.reshape(arr.shape) if arr.size == 1 else new,
                                           t.name))


def m_opset(g, model, rng):
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = rng.choice([1, 6, 9, 10, 12, 21, 99])


def m_metadata(g, model, rng):
    props = [p for p in model.metadata_props if p.key == "edgeq.annotations"]
    if not props:
        p = model.metadata_props.add()
        p.key = "edgeq.annotations"
        props = [p]
    p = props[0]
    try:
        data = json.loads(p.value)
    except (ValueError, RecursionError):  # an earlier mutation of this case broke it
        data = {}
    choice = rng.randrange(7)
    if choice == 0:
        p.value = "[" * 100_000 + "]" * 100_000
    elif choice == 1:
        p.value = p.value[: rng.randrange(max(1, len(p.value)))]
    elif choice == 2 and isinstance(data, dict):
        key = rng.choice(list(data) or ["x"])
        data[key] = rng.choice([None, 5, "s", [], [[1]], {"a": 1}, 1e308])
        p.value = json.dumps(data)
    elif choice == 3 and isinstance(data, dict) and isinstance(data.get("values"), dict):
        for rec in list(data["values"].values())[:3]:
            if isinstance(rec, dict):
                rec[rng.choice(["dtype", "quant"])] = rng.choice(
                    [None, "complex128", "object", 3, {"range": {"n_levels": 2**70}},
                     {"range": {"n_levels": -1}}, {"range": [1]}, {"eps": "x"}])
        p.value = json.dumps(data)
    elif choice == 4 and isinstance(data, dict) and isinstance(data.get("ops"), list):
        for op in data["ops"][:2]:
            if isinstance(op, dict):
                op[rng.choice(["attrs", "names", "inputs", "op"])] = rng.choice(
                    [None, 1, [], {"shift": -1}, {"shift": 2**70}, ["a"] * 3, "RequantShift"])
        p.value = json.dumps(data)
    elif choice == 5 and isinstance(data, dict):
        data["version"] = rng.choice([0, 2, "1", None])
        p.value = json.dumps(data)
    else:
        p.value = json.dumps({"inputs": {"x": {"range": {"n_levels": [[[1]]]}}}})


def m_quantlab(g, model, rng):
    """QuantLab-specific: adder/Clip/annotation attributes of wrong types or ranges."""
    n = _pick(rng, [n for n in g.node if n.op_type in ("Add", "Clip", "Conv", "AveragePool",
                                                       "Gemm", "MaxPool", "Div")])
    if n is None:
        return
    key = rng.choice(["in1_shift", "out_n_levels", "in2_mul", "out_signed", "min", "max",
                      "weight_bits", "out_bits", "kernel_shape", "alpha", "strides", "pads"])
    for a in list(n.attribute):
        if a.name == key:
            n.attribute.remove(a)
    value = rng.choice([-3, 0, 64, 2**40, 1.5, float("inf"), [0], [1, 2, 3], "x"])
    n.attribute.append(helper.make_attribute(key, value))


MODEL_MUTATIONS = [m_drop_initializer, m_drop_node, m_dangling_input, m_cycle, m_swap_nodes,
                   m_duplicate_output, m_init_dims, m_init_dtype, m_init_truncate,
                   m_init_external, m_init_segment, m_shape, m_attr_type, m_attr_value,
                   m_drop_attr, m_const_value, m_opset, m_metadata, m_quantlab]


def byte_mutation(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    if rng.random() < 0.5:
        return bytes(data[: rng.randrange(max(1, len(data)))])
    for _ in range(rng.randrange(1, 20)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


# -- inputs, configs, run directories ------------------------------------------------------------
def npy_bytes(rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:  # a header declaring 10^12 elements
        hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }"
        return b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr.encode() + b"\0" * 64
    import io

    arrays = [np.zeros((2, 1, 8, 8), np.complex64), np.array(["a", "b"]),
              np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]),
              np.full((2, 1, 8, 8), np.nan, np.float32), np.zeros((3, 3), np.int64),
              np.full((2, 1, 8, 8), 2**40, np.int64)]
    buf = io.BytesIO()
    np.save(buf, arrays[choice - 1] if choice > 0 else arrays[0])
    data = buf.getvalue()
    return data[: rng.randrange(len(data))] if rng.random() < 0.2 else data


def text_vector(rng: random.Random) -> str:
    choice = rng.randrange(5)
    if choice == 0:
        return "# input (shape [1000000, 1000000]),\n1,\n"
    if choice == 1:
        return "# input (shape [1, 1, 8, 8]),\n" + "x,\n" * 64
    if choice == 2:
        return "# input (shape [1, 1, 8, 8]),\n" + "1,\n" * 10
    if choice == 3:
        return "# input (shape [" + ", ".join(["99999"] * 40) + "]),\n"
    return "# input (shape [1, 1, 8, 8]),\n" + "".join(f"{rng.choice([0, 10**30, -1, 1e9])},\n"
                                                      for _ in range(64))


def config_mutation(rng: random.Random, out_dir: Path, blocker: Path) -> dict:
    data = json.loads(json.dumps(BASE_CONFIG))
    data["output_dir"] = str(out_dir)
    section = rng.choice(["model", "dataset", "policy", "input", "training", "seeds",
                          "output_dir", "extra"])
    weird = rng.choice([None, 0, -1, 2**70, 1e308, "x", [], {}, [[[]]], True, 0.5])
    if section == "training":
        data["training"][rng.choice(["fp_epochs", "qat_epochs", "lr", "qat_lr",
                                     "freeze_epoch"])] = weird
    elif section == "output_dir":
        data["output_dir"] = rng.choice([str(blocker / "sub"), "", str(blocker)])
    elif section == "extra":
        data[rng.choice(["unknown", "policy"])] = weird
    elif section == "seeds":
        data["seeds"] = weird
    elif section == "policy":
        data["policy"] = rng.choice([weird, {"uniform": {"bits": weird}},
                                     {"uniform": {"algorithm": weird}}, {"rules": weird}])
    elif isinstance(data.get(section), dict):
        keys = list(data[section]) or ["x"]
        data[section][rng.choice(keys)] = weird
    return data


# -- one case --------------------------------------------------------------------------------------
def build_case(i: int, rng: random.Random, seeds: dict, run_dir: Path | None,
               work: Path) -> dict:
    """Write the files of case ``i`` under ``work/case<i>``; return its argv and outputs."""
    d = work / f"case{i}"
    d.mkdir()
    blocker = d / "blocker"
    blocker.write_text("a regular file")
    kinds = ["model"] * 6 + ["bytes", "input", "dory_config", "out_path"]
    kinds += ["config", "run_dir"] if run_dir is not None else []
    kind = rng.choice(kinds)
    if kind in ("model", "bytes", "dory_config", "out_path", "input"):
        key = rng.choice(sorted(seeds))
        if kind == "dory_config":
            key = rng.choice([k for k in seeds if k.endswith("dory")])
        src = seeds[key]
        target = d / src.name
        if kind == "bytes":
            target.write_bytes(byte_mutation(src.read_bytes(), rng))
            what = "bytes"
        elif kind == "model":
            model = onnx.load(str(src))
            what = "+".join(mutate_model(model, rng) for _ in range(rng.choice([1, 1, 2])))
            target.write_bytes(model.SerializeToString())
        else:
            target.write_bytes(src.read_bytes())
            what = kind
        for side in src.parent.glob("config_*.json"):
            (d / side.name).write_bytes(side.read_bytes())
        if kind == "dory_config":
            cfg = d / f"config_{target.stem}.json"
            cfg.write_text(rng.choice(["5", "null", "[]", '{"input_bits": 2e308}',
                                       '{"input_bits": 99999999999999999999}',
                                       '{"input_bits": "8"}', '{"input_bits": 8, '
                                       '"input_signed": "yes"}', "{" * 50_000,
                                       '{"input_bits": true}', '{"BNRelu_bits": 7, '
                                       '"input_bits": 8}', "\xff\xfe"]), encoding="latin-1")
        feed = _feed_for(key, src, d, rng, kind == "input")
        argv = ["run", str(target), *feed]
        out = None
        if kind == "out_path" or rng.random() < 0.2:
            out = str(rng.choice([blocker / "x.npz", d / "missing" / "x.npz", d / "o.npz"]))
            argv += ["--out", out]
        elif rng.random() < 0.25:
            argv = ["inspect", str(target)]
        return {"argv": argv, "what": f"{key}:{what}", "outputs": [out] if out else [],
                "dir": str(d)}
    if kind == "config":
        cfg = d / "config.json"
        text = json.dumps(config_mutation(rng, d / "out", blocker))
        if rng.random() < 0.15:
            text = byte_mutation(text.encode(), rng).decode("latin-1")
        cfg.write_text(text, encoding="latin-1")
        return {"argv": ["quantize", str(cfg), "--quiet"], "what": "config",
                "outputs": [str(d / "out")], "dir": str(d)}
    run = d / "run"
    run.mkdir()
    for f in run_dir.iterdir():
        if f.is_file():
            (run / f.name).write_bytes(f.read_bytes())
    victim = run / rng.choice(["fq_state.pt", "fq_state.pt", "config.json", "summary.json"])
    choice = rng.randrange(3)
    if choice == 0:
        victim.write_bytes(byte_mutation(victim.read_bytes(), rng))
    elif choice == 1:
        victim.write_bytes(b"")
    else:
        victim.unlink()
    argv = ["f2t-report", str(run)]
    outputs = []
    if rng.random() < 0.3:
        outputs = [str(rng.choice([blocker / "r.json", d / "r.json"]))]
        argv += ["--json", outputs[0]]
    return {"argv": argv, "what": f"run:{victim.name}", "outputs": outputs, "dir": str(d)}


def _feed_for(key: str, src: Path, d: Path, rng: random.Random, mutate: bool) -> list[str]:
    if key == "dronet":
        text = src.parent / "input.txt"
        feed = d / "input.txt"
        feed.write_bytes(text.read_bytes())
        layout = ["--layout", "hwc"]
    else:
        name = "x_float.npy" if key.endswith("/fp") else "x_int.npy"
        base = src.parent / name if (src.parent / name).is_file() else src.parents[1] / name
        feed = d / "x.npy"
        feed.write_bytes(base.read_bytes())
        layout = []
    if mutate:
        if rng.random() < 0.5:
            feed = d / "x.npy"
            feed.write_bytes(npy_bytes(rng))
        else:
            feed = d / "input.txt"
            feed.write_text(text_vector(rng))
    return ["--input", str(feed), *layout]


# -- worker and driver -----------------------------------------------------------------------------
def worker(mem_mb: int) -> None:
    """Run cases read from stdin (one JSON per line); print one JSON result per line."""
    import contextlib
    import io
    import resource

    limit = mem_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import edgeq.cli as cli
    from edgeq.errors import EdgeqError

    for line in sys.stdin:
        case = json.loads(line)
        err = io.StringIO()
        outcome = "ok"
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                args = cli.build_parser().parse_args(case["argv"])
                args.func(args)
        except EdgeqError as exc:
            outcome = f"error:{type(exc).__name__}"
            if "\n" in str(exc):
                outcome = f"traceback:multi-line {type(exc).__name__}"
        except SystemExit as exc:
            outcome = "ok" if not exc.code else "error:usage"
        except BaseException as exc:  # noqa: BLE001 - the point is to see everything
            outcome = f"traceback:{type(exc).__name__}"
            case["detail"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        if outcome != "ok" and outcome.startswith("error"):
            left = [o for o in case["outputs"] if o and Path(o).exists()]
            tmp = [str(p) for p in Path(case["dir"]).rglob(".*.tmp")]
            if left or tmp:
                outcome = "half-written"
                case["detail"] = f"left behind: {left + tmp}"
        print(json.dumps({"outcome": outcome, "what": case["what"],
                          "detail": case.get("detail", "")}), flush=True)


class Driver:
    """Feeds cases to a worker; restarts it after a kill or a hang."""

    def __init__(self, mem_mb: int, timeout: float) -> None:
        self.mem_mb, self.timeout, self.proc = mem_mb, timeout, None

    def _start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--mem-mb", str(self.mem_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env)

    def run(self, case: dict) -> dict:
        import selectors

        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(self.timeout)
        sel.close()
        if not ready:
            self.stop()
            return {"outcome": "hang", "what": case["what"], "detail": ""}
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.proc = None
            return {"outcome": "killed", "what": case["what"], "detail": ""}
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def fuzz(n_cases: int, seed: int, work: Path, mem_mb: int = 3072, timeout: float = 60.0,
         with_runs: bool = True, progress: bool = False) -> list[dict]:
    """Build and run ``n_cases`` cases; return one result dict per case."""
    rng = random.Random(seed)
    seeds = make_seeds(work)
    run_dir = make_run_dir(work) if with_runs else None
    driver = Driver(mem_mb, timeout)
    results = []
    try:
        for i in range(n_cases):
            case = build_case(i, rng, seeds, run_dir, work)
            results.append(driver.run(case))
            if progress and (i + 1) % 100 == 0:
                print(f"  {i + 1}/{n_cases} cases", file=sys.stderr, flush=True)
    finally:
        driver.stop()
    return results


def summary(results: list[dict]) -> dict[str, int]:
    return dict(sorted(collections.Counter(r["outcome"] for r in results).items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mem-mb", type=int, default=3072)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--json", metavar="OUT.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.mem_mb)
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeq-fuzz-") as tmp:
        results = fuzz(args.cases, args.seed, Path(tmp), args.mem_mb, args.timeout,
                       progress=True)
    counts = summary(results)
    print(f"{len(results)} cases, seed {args.seed}, {time.perf_counter() - start:.0f} s")
    for outcome, n in counts.items():
        print(f"  {outcome:40s} {n:6d}")
    bad = [r for r in results if r["outcome"].split(":")[0] in BAD_CLASSES]
    for r in bad[:20]:
        print(f"  BAD {r['outcome']}: {r['what']} {r['detail']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"counts": counts, "bad": bad}, indent=2))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
