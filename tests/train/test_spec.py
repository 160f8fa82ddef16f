"""Specs: exact JSON round trip, validation errors naming the key, derived ranges."""

import json

import pytest

from edgeq.errors import ConfigError, RangeError
from edgeq.numerics.intrange import IntRange
from edgeq.train.spec import (
    AnaParams,
    AnnealSpec,
    InitSpec,
    InqParams,
    PactParams,
    QuantSpec,
    ScheduleSpec,
    SteParams,
    TqtParams,
)


def roundtrip(obj):
    cls = type(obj)
    back = cls.from_json(json.loads(json.dumps(obj.to_json())))
    assert back == obj
    assert back.to_json() == obj.to_json()
    return back


SPECS = [
    QuantSpec(),
    QuantSpec(algorithm="ste", n_levels=2, signed=True, params=SteParams(clip_gradient=False)),
    QuantSpec(
        algorithm="pact",
        n_levels=3,
        signed=True,
        granularity="per_channel",
        init=InitSpec("meanstd", k=2.5),
        params=PactParams(learn_clip=False, clip_gradient=False),
    ),
    QuantSpec(
        algorithm="tqt",
        n_levels=65536,
        init=InitSpec("percentile", percentile=99.5),
        params=TqtParams(beta=0.5, norm_eps=1e-6, use_tanh=True),
    ),
    QuantSpec(
        algorithm="ana",
        n_levels=16,
        signed=True,
        init=InitSpec("const", lo=-1.5, hi=2),
        params=AnaParams(
            noise="logistic",
            strategy="random",
            mu=AnnealSpec("uws", base=0.25, start=2, alpha=0.5, eps=0.01),
            sigma=AnnealSpec("bws", base=2.0, start=1, end=7, alpha=2.0),
        ),
    ),
    QuantSpec(
        algorithm="inq",
        n_levels=8,
        signed=True,
        init=InitSpec("mse"),
        params=InqParams(levels="pow2", strategy="random", schedule=((1, 0.3), (4, 1)), seed=7),
    ),
    QuantSpec(algorithm="inq", n_levels=5, params=InqParams(levels="uniform")),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.algorithm)
def test_quant_spec_roundtrip(spec):
    roundtrip(spec)


@pytest.mark.parametrize(
    "obj",
    [
        InitSpec(),
        InitSpec("const", lo=0, hi=6),
        SteParams(),
        PactParams(),
        TqtParams(),
        AnaParams(),
        InqParams(),
        AnnealSpec(),
        ScheduleSpec(),
        ScheduleSpec(start_epoch=3, freeze_epoch=9, observe_epochs=2),
    ],
    ids=lambda o: type(o).__name__,
)
def test_small_specs_roundtrip(obj):
    roundtrip(obj)


def test_default_params_follow_algorithm():
    assert QuantSpec(algorithm="tqt").params == TqtParams()
    assert isinstance(QuantSpec.from_json({"algorithm": "ana"}).params, AnaParams)


def test_int_range():
    assert QuantSpec.from_bits(1, signed=True).int_range == IntRange.binary()
    assert QuantSpec.from_bits(1, signed=False).int_range == IntRange(2, 0)
    assert QuantSpec(n_levels=3, signed=True).int_range == IntRange.ternary()
    assert (QuantSpec.from_bits(8).int_range.lo, QuantSpec.from_bits(8).int_range.hi) == (0, 255)
    r16 = QuantSpec.from_bits(16, signed=True).int_range
    assert (r16.lo, r16.hi) == (-32768, 32767)


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: QuantSpec(algorithm="lsq"), "QuantSpec.algorithm"),
        (lambda: QuantSpec(n_levels=0), "QuantSpec.n_levels"),
        (lambda: QuantSpec(n_levels=1), "QuantSpec.n_levels"),
        (lambda: QuantSpec(n_levels=65537), "QuantSpec.n_levels"),
        (lambda: QuantSpec(n_levels=4.0), "QuantSpec.n_levels"),
        (lambda: QuantSpec(signed=1), "QuantSpec.signed"),
        (lambda: QuantSpec(granularity="per_row"), "QuantSpec.granularity"),
        (lambda: QuantSpec(algorithm="pact", params=TqtParams()), "QuantSpec.params"),
        (lambda: QuantSpec.from_bits(0), "bits"),
        (lambda: QuantSpec.from_bits(17), "bits"),
        (lambda: InitSpec("max"), "InitSpec.method"),
        (lambda: InitSpec("const", lo=1.0), "InitSpec.lo"),
        (lambda: InitSpec("const", lo=2.0, hi=1.0), "InitSpec.lo"),
        (lambda: InitSpec("minmax", hi=1.0), "InitSpec.lo"),
        (lambda: InitSpec(k=0), "InitSpec.k"),
        (lambda: InitSpec(percentile=101), "InitSpec.percentile"),
        (lambda: InitSpec(k=float("nan")), "InitSpec.k"),
        (lambda: PactParams(learn_clip="yes"), "PactParams.learn_clip"),
        (lambda: TqtParams(beta=1.0), "TqtParams.beta"),
        (lambda: AnaParams(noise="cauchy"), "AnaParams.noise"),
        (lambda: AnaParams(strategy="mean"), "AnaParams.strategy"),
        (lambda: AnnealSpec("bws", start=3, end=3), "AnnealSpec.end"),
        (lambda: AnnealSpec("cosine"), "AnnealSpec.kind"),
        (lambda: InqParams(schedule=((2, 0.5), (1, 0.7))), "InqParams.schedule"),
        (lambda: InqParams(schedule=((1, 0.5), (2, 0.4))), "InqParams.schedule"),
        (lambda: InqParams(schedule=((1, 1.5),)), "InqParams.schedule"),
        (lambda: InqParams(levels="log"), "InqParams.levels"),
        (lambda: QuantSpec(algorithm="inq", signed=False, n_levels=8), "QuantSpec.signed"),
        (lambda: QuantSpec(algorithm="inq", signed=True, n_levels=3), "QuantSpec.n_levels"),
        (lambda: QuantSpec(algorithm="inq", signed=True, n_levels=256), "QuantSpec.n_levels"),
        (lambda: ScheduleSpec(start_epoch=-1), "ScheduleSpec.start_epoch"),
        (lambda: ScheduleSpec(start_epoch=4, freeze_epoch=2), "ScheduleSpec.freeze_epoch"),
        (lambda: ScheduleSpec(observe_epochs=0), "ScheduleSpec.observe_epochs"),
    ],
)
def test_bad_values_name_the_key(make, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make()


def test_unknown_algorithm_is_named():
    with pytest.raises(ConfigError, match="lsq"):
        QuantSpec.from_json({"algorithm": "lsq"})


@pytest.mark.parametrize(
    ("cls", "data", "key"),
    [
        (QuantSpec, {"bitz": 8}, "bitz"),
        (InitSpec, {"methd": "minmax"}, "methd"),
        (AnaParams, {"noise": "normal", "sigmaa": 1}, "sigmaa"),
        (AnnealSpec, {"kind": "bws", "stop": 3}, "stop"),
        (InqParams, {"fractions": []}, "fractions"),
        (ScheduleSpec, {"start": 1}, "start"),
        (QuantSpec, {"algorithm": "pact", "params": {"learn": True}}, "learn"),
        (QuantSpec, {"init": {"method": "mse", "iters": 3}}, "iters"),
    ],
)
def test_unknown_keys_are_named(cls, data, key):
    with pytest.raises(ConfigError, match=key):
        cls.from_json(data)


def test_from_json_needs_an_object():
    with pytest.raises(ConfigError, match="QuantSpec"):
        QuantSpec.from_json([1, 2])


def test_signed_binary_with_offset_is_a_range_error():
    with pytest.raises(RangeError, match="step"):
        IntRange(2, offset=0, step=2)


def test_anneal_factors():
    bws = AnnealSpec("bws", base=2.0, start=1, end=5, alpha=2.0)
    # f(t) = clip((5 - t)/4, 0, 1)^2
    assert [bws.value(t) for t in range(7)] == [2.0, 2.0, 2 * 0.5625, 2 * 0.25, 2 * 0.0625, 0, 0]
    uws = AnnealSpec("uws", base=1.0, start=2, alpha=1.0, eps=0.3)
    # f(t) = 1/(t - 1) from t = 2 on, 0 once below 0.3
    assert [uws.value(t) for t in range(7)] == [1.0, 1.0, 1.0, 0.5, 1 / 3, 0.0, 0.0]
    assert AnnealSpec("const", base=0.7).value(100) == 0.7


def test_inq_fraction_lookup():
    p = InqParams(schedule=((2, 0.25), (5, 0.5), (9, 1.0)))
    assert [p.fraction(e) for e in (0, 1, 2, 4, 5, 8, 9, 20)] == [0, 0, 0.25, 0.25, 0.5, 0.5, 1, 1]


def test_schedule_observe_reset_epoch():
    assert ScheduleSpec(start_epoch=5, observe_epochs=2).observe_reset_epoch == 3
    assert ScheduleSpec(start_epoch=1, observe_epochs=4).observe_reset_epoch == 0
    assert ScheduleSpec(start_epoch=1).observe_reset_epoch is None
