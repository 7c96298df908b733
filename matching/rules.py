"""The vectorised, three-valued rule engine.

Every policy's rule compiles once into a tree whose leaves evaluate over whole columns of a
:class:`~profiles.columns.ProfileBatch`. A result is a pair of boolean masks ``(true, false)``;
rows in neither are *unknown* (Kleene logic: AND is true when all are true and false when any
is false; OR the dual; NOT swaps the pair). Leaves shared by several policies are evaluated
once per batch. The same trace of leaf masks explains a single enterprise clause by clause.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import numpy as np

from matching.gaps import order_of, statically_closable
from policies.params import parameters
from policies.rules import All, Leaf, Not, Rule, leaves, params_of, top_clauses
from policies.schema import Policy
from profiles.columns import ProfileBatch, codes
from profiles.fields import FIELDS, Kind
from profiles.labels import value_text

ELIGIBLE, INELIGIBLE, UNKNOWN = 1, 0, 2
SMALL_BATCH = 256  # rows up to which the stacked evaluation path is used (see RuleEngine)
Masks = tuple[np.ndarray, np.ndarray]  # (true, false)


class LeafCache:
    """Per-batch memo of leaf masks and per-field helpers (known masks, shifted codes)."""

    def __init__(self, batch: ProfileBatch) -> None:
        self.batch = batch
        self.leaves: dict[tuple[str, str, Any], Masks] = {}
        self._known: dict[str, np.ndarray] = {}
        self._shifted: dict[str, np.ndarray] = {}

    def known(self, name: str) -> np.ndarray:
        if name not in self._known:
            col = self.batch.columns[name]
            kind = FIELDS[name].kind
            if kind is Kind.NUMBER:
                self._known[name] = ~np.isnan(col)
            elif kind is Kind.SET:
                self._known[name] = self.batch.columns[name + "__known"]
            else:
                self._known[name] = col >= 0
        return self._known[name]

    def shifted(self, name: str) -> np.ndarray:
        """Category codes + 1, so that index 0 is 'unknown' in a lookup table."""
        if name not in self._shifted:
            self._shifted[name] = self.batch.columns[name].astype(np.intp) + 1
        return self._shifted[name]


def eval_leaf(leaf: Leaf, cache: LeafCache) -> Masks:
    hit = cache.leaves.get(leaf.key)
    if hit is not None:
        return hit
    name, op, value = leaf.field, leaf.op, leaf.value
    kind = FIELDS[name].kind
    col = cache.batch.columns[name]
    if kind is Kind.NUMBER:
        known = cache.known(name)
        with np.errstate(invalid="ignore"):
            cmp = {
                "eq": np.equal, "ne": np.not_equal, "lt": np.less,
                "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
            }[op](col, value)
        out = (cmp & known, ~cmp & known)
    elif kind in (Kind.CATEGORY, Kind.BOOL):
        table, false_table = _category_tables(leaf)
        idx = cache.shifted(name)
        out = (table[idx], false_table[idx])
    else:  # SET
        bits = 0
        for v in value:
            bits |= 1 << codes(name)[v]
        known = cache.known(name)
        overlap = col & np.uint16(bits)
        if op == "has_any":
            hit_mask = overlap != 0
        elif op == "has_all":
            hit_mask = overlap == bits
        else:  # has_none
            hit_mask = overlap == 0
        out = (hit_mask & known, ~hit_mask & known)
    cache.leaves[leaf.key] = out
    return out


_TABLES: dict[tuple[str, str, Any], tuple[np.ndarray, np.ndarray]] = {}


def _category_tables(leaf: Leaf) -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables (true, false) over category codes + 1; index 0 is 'unknown'. Built once per leaf."""
    hit = _TABLES.get(leaf.key)
    if hit is None:
        kind = FIELDS[leaf.field].kind
        wanted = leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)
        lookup = codes(leaf.field)
        table = np.zeros(len(lookup) + 1, dtype=bool)
        for v in wanted:
            table[1 + (int(v) if kind is Kind.BOOL else lookup[v])] = True
        if leaf.op in ("ne", "not_in"):
            table[1:] = ~table[1:]
        false_table = ~table
        false_table[0] = False
        hit = _TABLES[leaf.key] = (table, false_table)
    return hit


def eval_rule(rule: Rule, cache: LeafCache) -> Masks:
    if isinstance(rule, Leaf):
        return eval_leaf(rule, cache)
    if isinstance(rule, Not):
        t, f = eval_rule(rule.child, cache)
        return f, t
    n = cache.batch.n
    if not rule.children:  # all([]) is true, any([]) is rejected by the parser
        return np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    parts = [eval_rule(child, cache) for child in rule.children]
    t, f = parts[0]
    if isinstance(rule, All):
        for pt, pf in parts[1:]:
            t, f = t & pt, f | pf
    else:
        for pt, pf in parts[1:]:
            t, f = t | pt, f & pf
    return t, f


def is_actionable(rule: Rule, negated: bool = False) -> bool:
    """Can a firm meet this clause by its own action? Only by raising a number, improving a grade,
    obtaining a qualification or clearing a problem (``matching/data/gaps.yaml``): never by changing its
    size, industry, entity type, region or age, never by shrinking, never by getting into trouble (破产, 涉案 …).
    The package refines this per firm (plausibility, closeness) with ``matching.gaps.clause_gaps``."""
    if isinstance(rule, Leaf):
        return statically_closable(rule, negated)  # ordered categories are refined per row by ``improvable``
    if isinstance(rule, Not):
        return is_actionable(rule.child, not negated)
    results = [is_actionable(c, negated) for c in rule.children]
    needs_all = isinstance(rule, All) != negated
    return all(results) if needs_all else any(results)


@dataclass(frozen=True)
class CompiledPolicy:
    policy: Policy
    rule: Rule
    clauses: tuple[Rule, ...]
    #: per top-level clause: can a firm meet it by changing something (not by getting into trouble)?
    actionable: tuple[bool, ...]
    #: per top-level clause: (leaf, negated) when it compares an ordered category, else None
    ordinal: tuple[tuple[Leaf, bool] | None, ...]
    leaf_count: int

    @classmethod
    def compile(cls, policy: Policy, as_of: dt.date | None = None) -> CompiledPolicy:
        """Compile the rule; a rule with parameter thresholds needs the day whose values it takes."""
        rule = policy.rule if as_of is None else policy.rule_at(as_of)
        clauses = top_clauses(rule)
        return cls(policy, rule, clauses, tuple(is_actionable(c) for c in clauses),
                   tuple(ordinal_leaf(c) for c in clauses), len(leaves(rule)))

    @property
    def id(self) -> str:
        return self.policy.id


@dataclass
class BatchResult:
    """Outcomes for every (policy, enterprise): status codes and near-miss flags."""

    policy_ids: list[str]
    status: np.ndarray  # int8 [policies, n]: ELIGIBLE / INELIGIBLE / UNKNOWN
    near_miss: np.ndarray  # bool [policies, n]: failed exactly one top-level clause
    active: np.ndarray  # bool [policies]: published and in force on as_of
    cache: LeafCache | None = dc_field(default=None, repr=False)
    #: the compiled rules evaluated: parameter thresholds as in force on as_of (explain with these)
    compiled: list[CompiledPolicy] = dc_field(default_factory=list, repr=False)

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            pid: {
                "eligible": int((self.status[i] == ELIGIBLE).sum()),
                "possibly_eligible": int((self.status[i] == UNKNOWN).sum()),
                "near_miss": int(self.near_miss[i].sum()),
            }
            for i, pid in enumerate(self.policy_ids)
        }


class RuleEngine:
    """All policies of a catalog compiled once; evaluates column batches."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.compiled = [CompiledPolicy.compile(p) for p in policies]
        self.index = {c.id: i for i, c in enumerate(self.compiled)}
        self._dated = [i for i, c in enumerate(self.compiled) if params_of(c.rule)]
        self._epochs: dict[tuple[Any, ...], list[CompiledPolicy]] = {}

    def at(self, as_of: dt.date) -> list[CompiledPolicy]:
        """The compiled rules with parameter thresholds as in force on ``as_of`` (one compile per distinct set
        of values: the rules without parameters are shared)."""
        if not self._dated:
            return self.compiled
        table = parameters()
        key = tuple(tuple(table[name].latest(as_of).value for name in params_of(self.compiled[i].rule))
                    for i in self._dated)
        hit = self._epochs.get(key)
        if hit is None:
            hit = list(self.compiled)
            for i in self._dated:
                hit[i] = CompiledPolicy.compile(self.compiled[i].policy, as_of)
            self._epochs[key] = hit
        return hit

    @property
    def policy_ids(self) -> list[str]:
        return [c.id for c in self.compiled]

    def evaluate(self, batch: ProfileBatch, as_of: dt.date, *, keep_trace: bool = False,
                 near_misses: bool = True) -> BatchResult:
        """Three-valued eligibility of every policy for every row of ``batch``.

        ``batch`` must carry derived fields for ``as_of`` (see ``ProfileBatch.with_derived``).
        Inactive policies (draft, retired, outside validity) are ineligible for everyone.
        """
        if batch.as_of != as_of:
            raise ValueError(f"batch derived for {batch.as_of}, evaluated for {as_of}")
        cache = LeafCache(batch)
        compiled = self.at(as_of)
        active = np.array([c.policy.is_active(as_of) for c in compiled], dtype=bool)
        if batch.n <= SMALL_BATCH:
            status, near = self._evaluate_stacked(compiled, cache, active, near_misses)
        else:
            status, near = self._evaluate_per_policy(compiled, cache, active, near_misses)
        return BatchResult(self.policy_ids, status, near, active, cache if keep_trace else None, compiled)

    def _evaluate_per_policy(self, compiled: list[CompiledPolicy], cache: LeafCache, active: np.ndarray,
                             near_misses: bool) -> tuple[np.ndarray, np.ndarray]:
        """Large batches: one pass per policy over whole columns."""
        n, m = cache.batch.n, len(compiled)
        status = np.zeros((m, n), dtype=np.int8)
        near = np.zeros((m, n), dtype=bool)
        for i, comp in enumerate(compiled):
            if not active[i]:
                continue
            clause_masks = [eval_rule(cl, cache) for cl in comp.clauses]
            if not clause_masks:  # all([]) is true for everyone
                status[i] = ELIGIBLE
                continue
            t, f = clause_masks[0]
            for ct, cf in clause_masks[1:]:
                t, f = t & ct, f | cf
            # status = 1 where true, 2 where unknown, 0 where false — arithmetic, not masked stores
            row = status[i]
            np.copyto(row, t.view(np.int8))
            row += np.logical_not(t | f).view(np.int8) * np.int8(UNKNOWN)
            if near_misses and f.any():  # near misses exist only among rows that are not eligible
                actionable: list[bool | np.ndarray] = []
                for static, ordinal in zip(comp.actionable, comp.ordinal, strict=True):
                    actionable.append(improvable(*ordinal, cache) if static and ordinal else static)
                near[i] = _near_miss(clause_masks, actionable)
        return status, near

    def _evaluate_stacked(self, compiled: list[CompiledPolicy], cache: LeafCache, active: np.ndarray,
                          near_misses: bool) -> tuple[np.ndarray, np.ndarray]:
        """Small batches (one enterprise on the phone): every top-level clause of every policy is a
        row of stacked matrices, so status and near misses cost a few whole-matrix operations
        instead of a dozen tiny ones per policy (numpy's per-call overhead dominates at n = 1)."""
        n, m = cache.batch.n, len(compiled)
        true_rows: list[np.ndarray] = []
        false_rows: list[np.ndarray] = []
        fix_rows: list[np.ndarray] = []  # false AND actionable
        starts: list[int] = []
        sizes = np.zeros(m, dtype=np.int16)
        yes, no = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
        for i, comp in enumerate(compiled):
            starts.append(len(true_rows))
            if not active[i] or not comp.clauses:  # inactive: one false clause; all([]): one true
                true_rows.append(yes if active[i] else no)
                false_rows.append(no if active[i] else yes)
                fix_rows.append(no)
                sizes[i] = 1
                continue
            sizes[i] = len(comp.clauses)
            for clause, static, ordinal in zip(comp.clauses, comp.actionable, comp.ordinal, strict=True):
                t, f = eval_rule(clause, cache)
                true_rows.append(t)
                false_rows.append(f)
                if not near_misses or not static:
                    fix_rows.append(no)
                else:
                    fix_rows.append(f & improvable(*ordinal, cache) if ordinal else f)
        index = np.array(starts)
        n_true = np.add.reduceat(np.stack(true_rows).astype(np.int16), index, axis=0)
        n_false = np.add.reduceat(np.stack(false_rows).astype(np.int16), index, axis=0)
        k = sizes[:, None]
        eligible = n_true == k
        unknown = (n_false == 0) & ~eligible
        status = eligible.view(np.int8) + unknown.view(np.int8) * np.int8(UNKNOWN)
        if near_misses:
            n_fix = np.add.reduceat(np.stack(fix_rows).astype(np.int16), index, axis=0)
            near = (n_false == 1) & (n_fix == 1) & (n_true == k - 1)
        else:
            near = np.zeros((m, n), dtype=bool)
        return status, near


def ordinal_leaf(rule: Rule) -> tuple[Leaf, bool] | None:
    """(leaf, negated) when the clause is one comparison on an ordered category, else None."""
    negated = False
    while isinstance(rule, Not):
        rule, negated = rule.child, not negated
    if isinstance(rule, Leaf) and order_of(rule.field):
        return rule, negated
    return None


def allowed_values(leaf: Leaf, negated: bool) -> set[str]:
    vocab = list(codes(leaf.field))
    wanted = set(leaf.value if isinstance(leaf.value, tuple) else (leaf.value,))
    keep = leaf.op in ("eq", "in")
    if negated:
        keep = not keep
    return {v for v in vocab if (v in wanted) == keep}


def improvable_value(leaf: Leaf, negated: bool, current: str | None) -> bool:
    """Does the condition allow a value better than ``current`` (per the field's order)?"""
    if current is None:
        return False
    order = order_of(leaf.field)
    if current not in order:
        return False
    return any(v in order and order.index(v) < order.index(current) for v in allowed_values(leaf, negated))


_IMPROVABLE: dict[tuple[tuple[str, str, Any], bool], np.ndarray] = {}


def improvable(leaf: Leaf, negated: bool, cache: LeafCache) -> np.ndarray:
    """Vectorised :func:`improvable_value` over the batch (a lookup on the category codes)."""
    table = _IMPROVABLE.get((leaf.key, negated))
    if table is None:
        vocab = list(codes(leaf.field))
        table = np.zeros(len(vocab) + 1, dtype=bool)
        for i, value in enumerate(vocab):
            table[i + 1] = improvable_value(leaf, negated, value)
        _IMPROVABLE[(leaf.key, negated)] = table
    return table[cache.shifted(leaf.field)]


def _near_miss(clauses: list[Masks], actionable: Sequence[bool | np.ndarray]) -> np.ndarray:
    """Rows where exactly one top-level clause is false, that clause is actionable and every
    other clause is true: OR over j of (false_j AND all true except j), via prefix/suffix ANDs."""
    k = len(clauses)
    if k == 1:
        if isinstance(actionable[0], np.ndarray):
            return clauses[0][1] & actionable[0]
        return clauses[0][1] if actionable[0] else np.zeros_like(clauses[0][1])
    prefix: list[np.ndarray | None] = [None] * k  # AND of true masks before j
    suffix: list[np.ndarray | None] = [None] * k  # AND of true masks after j
    acc: np.ndarray | None = None
    for j in range(k):
        prefix[j] = acc
        acc = clauses[j][0] if acc is None else acc & clauses[j][0]
    acc = None
    for j in range(k - 1, -1, -1):
        suffix[j] = acc
        acc = clauses[j][0] if acc is None else acc & clauses[j][0]
    out = np.zeros_like(clauses[0][0])
    for j in range(k):
        if actionable[j] is False:
            continue
        term = clauses[j][1]
        if isinstance(actionable[j], np.ndarray):
            term = term & actionable[j]
        for other in (prefix[j], suffix[j]):
            if other is not None:
                term = term & other
        out |= term
    return out


# ---- explanation ------------------------------------------------------------------------

PASSED, FAILED, UNKNOWN_TEXT = "passed", "failed", "unknown"


@dataclass
class ClauseTrace:
    """One clause for one enterprise: what was required, what was observed, the outcome."""

    text: str
    outcome: str  # passed | failed | unknown
    note: str = ""
    field: str | None = None
    observed: Any = None
    threshold: Any = None
    children: list[ClauseTrace] = dc_field(default_factory=list)

    @property
    def observed_text(self) -> str:
        if self.field is None:
            return ""
        return value_text(self.field, self.observed, "未填写", None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"clause": self.text, "outcome": self.outcome}
        if self.note:
            out["note"] = self.note
        if self.field is not None:
            out.update(field=self.field, observed=self.observed, threshold=self.threshold)
        if self.children:
            out["children"] = [c.to_json() for c in self.children]
        return out

    def unknown_fields(self) -> list[str]:
        if self.outcome != UNKNOWN_TEXT:
            return []
        if self.field is not None:
            return [self.field]
        found = [f for c in self.children for f in c.unknown_fields()]
        return list(dict.fromkeys(found))


def describe_leaf(leaf: Leaf) -> str:
    """The requirement in Chinese, e.g. ``企业规模为小型或微型``."""
    f = FIELDS[leaf.field]
    vals = leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)
    shown = [value_text(leaf.field, v, digits=None) for v in vals]
    op = leaf.op
    if f.kind is Kind.BOOL:
        positive = (op == "eq") == bool(leaf.value)
        text = f.says(positive)
    elif op == "eq":
        text = f"{f.label}为{shown[0]}"
    elif op == "ne":
        text = f"{f.label}不为{shown[0]}"
    elif op == "in":
        text = f"{f.label}为{'或'.join(shown)}"
    elif op == "not_in":
        text = f"{f.label}不为{'、'.join(shown)}"
    elif op in ("lt", "le", "gt", "ge"):
        word = {"lt": "少于", "le": "不超过", "gt": "多于", "ge": "不少于"}[op]
        if f.unit in ("万元",):
            word = {"lt": "低于", "le": "不超过", "gt": "高于", "ge": "不低于"}[op]
        text = f"{f.label}{word}{shown[0]}"
    elif op == "has_any":
        text = f"{f.label}包含{'或'.join(shown)}"
    elif op == "has_all":
        text = f"{f.label}同时包含{'、'.join(shown)}"
    else:
        text = f"{f.label}不含{'、'.join(shown)}"
    return text


_NEGATED_OP = {"eq": "ne", "ne": "eq", "in": "not_in", "not_in": "in", "lt": "ge", "ge": "lt",
               "le": "gt", "gt": "le", "has_any": "has_none", "has_none": "has_any"}


def _outcome(masks: Masks, row: int) -> str:
    t, f = masks
    return PASSED if t[row] else FAILED if f[row] else UNKNOWN_TEXT


def trace_rule(rule: Rule, cache: LeafCache, row: int, record: dict[str, Any]) -> ClauseTrace:
    """Explain ``rule`` for one row of the cached batch."""
    masks = eval_rule(rule, cache)
    outcome = _outcome(masks, row)
    if isinstance(rule, Leaf):
        return ClauseTrace(describe_leaf(rule), outcome, rule.note, rule.field, record.get(rule.field),
                           list(rule.value) if isinstance(rule.value, tuple) else rule.value)
    if isinstance(rule, Not):
        inner = trace_rule(rule.child, cache, row, record)
        if isinstance(rule.child, Leaf) and rule.child.op in _NEGATED_OP:
            leaf = rule.child
            text = describe_leaf(Leaf(leaf.field, _NEGATED_OP[leaf.op], leaf.value))
            return ClauseTrace(text, outcome, leaf.note, leaf.field, inner.observed, inner.threshold)
        return ClauseTrace(f"并非{inner.text}", outcome, children=[inner])
    kids = [trace_rule(c, cache, row, record) for c in rule.children]
    if isinstance(rule, All):
        text = "同时满足：" + "；".join(k.text for k in kids) if kids else "面向所有市场主体"
    else:
        text = "满足其一：" + "；".join(k.text for k in kids)
    return ClauseTrace(text, outcome, children=kids)


def leaf_count(rule: Rule) -> int:
    return len(leaves(rule))
