"""Statistics of an experiment against hand computations (tabulated t quantiles, closed
forms and exact enumeration), not against scipy."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from edgeq.lab.experiment.stats import analyse, paired, summary

# two-sided 95 % quantiles t(0.975, df), from printed tables
T975 = {1: 12.706204736174698, 2: 4.302652729749464, 3: 3.182446305284263,
        5: 2.570581835636314}


@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0, 4.0], [90.5, 92.0, 91.25],
                                    [10.0, 12.0], [3.0, 1.0, 4.0, 1.0, 5.0, 9.0]])
def test_summary_is_mean_sample_std_and_t_interval(values):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T975[n - 1] * std / math.sqrt(n)
    s = summary(values)
    assert s["n"] == n
    assert s["mean"] == pytest.approx(mean, abs=1e-12)
    assert s["std"] == pytest.approx(std, rel=1e-12)
    assert s["ci_low"] == pytest.approx(mean - half, rel=1e-9)
    assert s["ci_high"] == pytest.approx(mean + half, rel=1e-9)


def test_summary_of_one_run_has_no_spread():
    assert summary([7.5]) == {"n": 1, "mean": 7.5, "std": None, "ci_low": None,
                              "ci_high": None}


def test_paired_t_matches_the_closed_form_for_two_degrees_of_freedom():
    a, b = [80.0, 85.0, 90.0], [82.0, 86.0, 94.0]
    d = [y - x for x, y in zip(a, b, strict=True)]  # 2, 1, 4
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    t = mean / (sd / math.sqrt(3))
    p = 1 - abs(t) / math.sqrt(2 + t * t)  # two-sided p of Student's t with 2 dof
    r = paired(a, b)
    assert r["n"] == 3 and r["mean_diff"] == pytest.approx(mean)
    assert r["t"] == pytest.approx(t, rel=1e-12)
    assert r["p_t"] == pytest.approx(p, rel=1e-9)


def _exact_wilcoxon(d):
    """Two-sided exact signed-rank p-value by enumerating every sign pattern."""
    ranks = {v: i + 1 for i, v in enumerate(sorted(abs(x) for x in d))}  # no ties here
    w = sum(ranks[abs(x)] for x in d if x > 0)
    centre = len(d) * (len(d) + 1) / 4
    count = 0
    for signs in itertools.product((0, 1), repeat=len(d)):
        wp = sum(r for r, s in zip(ranks.values(), signs, strict=True) if s)
        count += abs(wp - centre) >= abs(w - centre)
    return count / 2 ** len(d)


def test_wilcoxon_p_value_is_the_exact_signed_rank_probability():
    a = [50.0, 60.0, 70.0, 80.0, 90.0]
    b = [51.0, 58.0, 73.0, 84.0, 95.0]  # differences 1, -2, 3, 4, 5
    expected = _exact_wilcoxon([1.0, -2.0, 3.0, 4.0, 5.0])
    assert expected == 6 / 32
    assert paired(a, b)["p_wilcoxon"] == pytest.approx(expected, rel=1e-12)


def test_identical_cells_compare_with_p_one():
    r = paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert r["mean_diff"] == 0 and r["p_t"] == 1.0 and r["p_wilcoxon"] == 1.0


def _rows():
    """Two factors x 2 seeds x 2 folds with known accuracies, in shuffled order."""
    rows = []
    for alg, bits in itertools.product(("pact", "ste"), ("4", "8")):
        for seed, fold in itertools.product((0, 1), (0, 1)):
            base = {"pact": 90, "ste": 85}[alg] + {"4": 0, "8": 3}[bits]
            acc = base + seed + 0.5 * fold
            rows.append({"run": f"{alg}{bits}{seed}{fold}", "algorithm": alg, "bits": bits,
                         "seed": seed, "fold": fold, "status": "done", "tq_accuracy": acc})
    rows.append({**rows[0], "run": "x", "status": "failed", "tq_accuracy": 0.0, "seed": 9})
    random.Random(0).shuffle(rows)
    return rows


def test_analyse_cells_fold_means_and_pairing():
    stats = analyse(_rows(), ["algorithm", "bits"], ["tq_accuracy"], ["tq_accuracy"],
                    {"algorithm": ["pact", "ste"], "bits": ["4", "8"]})
    assert [tuple(c["levels"].values()) for c in stats["cells"]] == [
        ("pact", "4"), ("pact", "8"), ("ste", "4"), ("ste", "8")]
    cells = {(c["levels"]["algorithm"], c["levels"]["bits"]): c for c in stats["cells"]}
    assert len(cells) == 4
    pact8 = cells[("pact", "8")]
    assert pact8["runs"] == 4  # the failed run is left out
    values = [93.0, 93.5, 94.0, 94.5]
    assert pact8["metrics"]["tq_accuracy"]["mean"] == pytest.approx(sum(values) / 4)
    assert [(f["seed"], f["tq_accuracy"]) for f in pact8["fold_means"]] == [(0, 93.25),
                                                                              (1, 94.25)]
    comps = {(c["factor"], tuple(c["fixed"].items())): c for c in stats["comparisons"]}
    assert len(comps) == 4  # two per factor; the diagonal pairs differ in two factors
    bits = comps[("bits", (("algorithm", "ste"),))]
    assert (bits["a"], bits["b"], bits["n"]) == ("4", "8", 4)
    # paired by seed and fold: every difference is exactly +3, whatever the row order
    assert bits["mean_diff"] == pytest.approx(3.0) and bits["p_t"] is None
    alg = comps[("algorithm", (("bits", "4"),))]
    assert alg["mean_diff"] == pytest.approx(-5.0)
