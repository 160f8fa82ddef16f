"""Precision policies: which quantiser each layer of a network gets.

A :class:`Policy` is an ordered list of :class:`Rule`. A rule matches a *target* — a
called module, or an add tree / concatenation that F2F will harmonise — when

* its ``types`` is empty or contains the target's type name (the module's class name,
  e.g. ``"Conv2d"``, ``"ReLU"``, or the pseudo-types ``"add"`` and ``"cat"``), and
* its ``name`` is ``None`` or ``re.fullmatch(name, qualified_name)`` succeeds (full match,
  not search: ``"dw5_1\\..*"`` selects a block's layers, ``"fc"`` only the module ``fc``).

**The first matching rule wins**; later rules never see a target an earlier rule took.
Resolution is strict, so that nothing silently stays float or goes unused:

* a rule that matches no target, or only targets taken by earlier rules, is an error
  naming the rule (unless the rule is ``optional``, as in the ready-made policies);
* a rule whose name selects a module that has no quantised counterpart (e.g. a
  ``Sigmoid``) is an error naming module and rule. Modules that stay float by design
  (BatchNorm, pooling, flatten, dropout: see :data:`FLOAT_TYPES`) are skipped by
  name-only rules and can never be named in ``types``;
* targets no rule matches are errors listing them, unless an ``allow_float`` entry — a
  type name, or a regex full-matching the qualified name — excuses them. An
  ``allow_float`` entry that excuses nothing is an error too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edgeq.errors import ConfigError
from edgeq.train.spec import InitSpec, QuantSpec

#: Module class names with a fake-quantised counterpart (see convert.py).
QUANTISABLE_TYPES = ("Conv2d", "Linear", "ReLU", "ReLU6", "LeakyReLU", "Identity")
#: Pseudo-types of the harmonised operations.
PSEUDO_TYPES = ("add", "cat")
#: Modules that stay float on purpose: F2T folds them (BN) or they are exact on integers.
FLOAT_TYPES = (
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d",
    "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
    "Flatten", "Dropout", "Dropout1d", "Dropout2d",
)
MATCHABLE_TYPES = QUANTISABLE_TYPES + PSEUDO_TYPES


@dataclass(frozen=True)
class Target:
    """Something a policy can assign a quantiser to."""

    name: str  # qualified module name (for add/cat: the name the harmonised module gets)
    type_name: str  # class name, or "add" / "cat"

    @property
    def quantisable(self) -> bool:
        return self.type_name in MATCHABLE_TYPES

    @property
    def stays_float(self) -> bool:
        return self.type_name in FLOAT_TYPES

    def __str__(self) -> str:
        return f"'{self.name}' ({self.type_name})"


@dataclass(frozen=True)
class Rule:
    """Match targets by type and/or qualified-name regex, and give them ``spec``."""

    spec: QuantSpec
    types: tuple[str, ...] = ()
    name: str | None = None
    optional: bool = False

    def __post_init__(self) -> None:
        types = (self.types,) if isinstance(self.types, str) else tuple(self.types)
        object.__setattr__(self, "types", types)
        if not isinstance(self.spec, QuantSpec):
            raise ConfigError(f"spec must be a QuantSpec, got {type(self.spec).__name__}")
        for t in types:
            if t in FLOAT_TYPES:
                raise ConfigError(f"type '{t}' cannot be quantised: it stays float by design "
                                  "(BatchNorm is folded at F2T; pooling/flatten are exact)")
            if t not in MATCHABLE_TYPES:
                raise ConfigError(f"unknown type '{t}'; quantisable: {list(MATCHABLE_TYPES)}")
        if self.name is not None:
            try:
                re.compile(self.name)
            except (re.error, TypeError) as exc:
                raise ConfigError(f"invalid name regex {self.name!r}: {exc}") from None
        if not isinstance(self.optional, bool):
            raise ConfigError(f"optional must be a boolean, got {self.optional!r}")

    def selects(self, target: Target) -> bool:
        """Type and name both fit (whether or not the target can be quantised)."""
        type_ok = not self.types or target.type_name in self.types
        return type_ok and (self.name is None or re.fullmatch(self.name, target.name) is not None)

    def describe(self) -> str:
        spec = self.spec
        kind = "signed" if spec.signed else "unsigned"
        return (f"{{types={list(self.types)}, name={self.name!r}, spec={spec.algorithm} "
                f"{spec.n_levels} levels {kind} {spec.granularity}}}")

    def to_json(self) -> dict:
        return {"types": list(self.types), "name": self.name, "optional": self.optional,
                "spec": self.spec.to_json()}

    @classmethod
    def from_json(cls, data: Any) -> Rule:
        if not isinstance(data, dict):
            raise ConfigError(f"a rule must be a JSON object, got {data!r}")
        unknown = sorted(set(data) - {"types", "name", "optional", "spec"})
        if unknown:
            raise ConfigError(f"unknown rule key(s) {unknown}; known: name, optional, spec, types")
        if "spec" not in data:
            raise ConfigError("rule has no 'spec'")
        types = data.get("types", [])
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise ConfigError(f"'types' must be a list of strings, got {types!r}")
        return cls(spec=QuantSpec.from_json(data["spec"]), types=tuple(types),
                   name=data.get("name"), optional=data.get("optional", False))


def _rule_error(index: int, content: object, exc: Exception) -> ConfigError:
    return ConfigError(f"policy rule #{index} {content}: {exc}")


@dataclass(frozen=True)
class Resolution:
    """Outcome of matching a policy against a model's targets."""

    assigned: dict[str, tuple[int, QuantSpec]]  # target name -> (rule index, spec)
    allowed_float: tuple[str, ...]  # targets an allow_float entry kept float
    unmatched: tuple[Target, ...]  # targets nothing matched (empty unless strict=False)


@dataclass(frozen=True)
class Policy:
    """Ordered rules (first match wins) plus the explicit ``allow_float`` exceptions."""

    rules: tuple[Rule, ...]
    allow_float: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))
        allow = (self.allow_float,) if isinstance(self.allow_float, str) else self.allow_float
        object.__setattr__(self, "allow_float", tuple(allow))
        if not self.rules:
            raise ConfigError("a policy needs at least one rule")
        for i, rule in enumerate(self.rules):
            if not isinstance(rule, Rule):
                raise ConfigError(f"policy rule #{i} {rule!r}: must be a Rule")
        for entry in self.allow_float:
            try:
                re.compile(entry)
            except (re.error, TypeError) as exc:
                raise ConfigError(f"allow_float entry {entry!r}: invalid regex: {exc}") from None

    # -- construction ------------------------------------------------------------------
    @classmethod
    def uniform(
        cls,
        bits: int = 8,
        algorithm: str = "pact",
        *,
        act_algorithm: str | None = None,
        weight_granularity: str = "per_channel",
        weight_init: InitSpec | None = None,
        act_init: InitSpec | None = None,
        allow_float: tuple[str, ...] = (),
    ) -> Policy:
        """Every quantisable layer at ``bits``: signed weights, unsigned ReLU/ReLU6 outputs,
        signed LeakyReLU/Identity outputs and harmonised add/cat outputs.

        ``act_algorithm`` defaults to ``algorithm``, except for the weight-only INQ, whose
        activations default to STE (as in QuantLab's INQ experiments). All rules are
        optional, so the policy fits any model.
        """
        if act_algorithm is None:
            act_algorithm = "ste" if algorithm == "inq" else algorithm
        w_init = weight_init or InitSpec()
        a_init = act_init or InitSpec()

        def spec(alg: str, signed: bool, gran: str, init: InitSpec) -> QuantSpec:
            return QuantSpec.from_bits(bits, signed=signed, algorithm=alg, granularity=gran,
                                       init=init)

        rules = (
            Rule(spec(algorithm, True, weight_granularity, w_init), ("Conv2d", "Linear"),
                 optional=True),
            Rule(spec(act_algorithm, False, "per_tensor", a_init), ("ReLU", "ReLU6"),
                 optional=True),
            Rule(spec(act_algorithm, True, "per_tensor", a_init), ("LeakyReLU", "Identity"),
                 optional=True),
            Rule(spec(act_algorithm, True, "per_tensor", a_init), PSEUDO_TYPES, optional=True),
        )
        return cls(rules, allow_float)

    def prepend(self, *rules: Rule) -> Policy:
        """A policy whose new ``rules`` take precedence (e.g. first/last layer at 8 bits)."""
        return Policy(tuple(rules) + self.rules, self.allow_float)

    # -- JSON --------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"rules": [r.to_json() for r in self.rules], "allow_float": list(self.allow_float)}

    @classmethod
    def from_json(cls, data: Any) -> Policy:
        if not isinstance(data, dict):
            raise ConfigError(f"a policy must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"rules", "allow_float"})
        if unknown:
            raise ConfigError(f"unknown policy key(s) {unknown}; known: allow_float, rules")
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list):
            raise ConfigError(f"policy 'rules' must be a list, got {raw_rules!r}")
        rules = []
        for i, raw in enumerate(raw_rules):
            try:
                rules.append(Rule.from_json(raw))
            except ConfigError as exc:
                raise _rule_error(i, raw, exc) from None
        allow = data.get("allow_float", [])
        if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
            raise ConfigError(f"policy 'allow_float' must be a list of strings, got {allow!r}")
        return cls(tuple(rules), tuple(allow))

    # -- matching ----------------------------------------------------------------------
    def _excuses(self, entry: str, target: Target) -> bool:
        return entry == target.type_name or re.fullmatch(entry, target.name) is not None

    def resolve(self, targets: list[Target], strict: bool = True) -> Resolution:
        """Assign a rule to every target; see the module docstring for the errors."""
        assigned: dict[str, tuple[int, QuantSpec]] = {}
        selected: list[list[Target]] = [[] for _ in self.rules]
        for target in targets:
            if target.stays_float:
                continue
            for i, rule in enumerate(self.rules):
                if rule.selects(target):
                    selected[i].append(target)
                    if not target.quantisable:
                        raise ConfigError(
                            f"policy rule #{i} {rule.describe()} selects module {target}, which "
                            f"has no quantised counterpart (quantisable: {list(QUANTISABLE_TYPES)}"
                            "); narrow the rule with 'types' or list the module in allow_float"
                        )
                    assigned.setdefault(target.name, (i, rule.spec))
        self._check_rules_used(selected, assigned)
        return self._settle_unmatched(targets, assigned, strict)

    def _check_rules_used(self, selected, assigned) -> None:
        for i, (rule, hits) in enumerate(zip(self.rules, selected, strict=True)):
            if rule.optional:
                continue
            if not hits:
                raise ConfigError(f"policy rule #{i} {rule.describe()} matches no module")
            won = [t for t in hits if assigned[t.name][0] == i]
            if not won:
                names = ", ".join(str(t) for t in hits[:5])
                raise ConfigError(
                    f"policy rule #{i} {rule.describe()} is shadowed: everything it matches "
                    f"({names}) is taken by an earlier rule (first match wins); move it up"
                )

    def _settle_unmatched(self, targets, assigned, strict: bool) -> Resolution:
        left = [t for t in targets if not t.stays_float and t.name not in assigned]
        allowed = [t for t in left if any(self._excuses(e, t) for e in self.allow_float)]
        for entry in self.allow_float:
            if not any(self._excuses(entry, t) for t in allowed):
                raise ConfigError(f"allow_float entry {entry!r} excuses no unmatched module")
        unmatched = tuple(t for t in left if t not in allowed)
        if unmatched and strict:
            listed = ", ".join(str(t) for t in unmatched)
            raise ConfigError(
                f"no policy rule matches {listed}; add a rule for them or list them in "
                "allow_float to keep them float on purpose"
            )
        return Resolution(assigned, tuple(t.name for t in allowed), unmatched)


__all__ = ["FLOAT_TYPES", "PSEUDO_TYPES", "QUANTISABLE_TYPES", "Policy", "Resolution", "Rule",
           "Target"]
