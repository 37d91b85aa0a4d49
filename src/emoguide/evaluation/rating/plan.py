"""The assignment plan: which rater rates which item, in which order, and which items come twice.

Pure functions of (items' contexts, raters, settings, seed), so a plan is reproducible: the same
study.toml over the same generations gives the same plan (the opaque ids are drawn afterwards).

1. Who rates what: each item gets k raters (all of them by default: fully crossed, as in the
   paper), chosen among raters whose quota is not used up, least-loaded first, ties broken at
   random (so a quota below the fair share is met exactly and the others share the rest); an
   item gets fewer than k only when quotas leave too few raters (reported).
2. Order: per rater, a seeded random order in which two items of the same context (one context's
   conditions and models) are never adjacent. A random greedy walk picks, at each step, a random
   item whose context differs from the previous one and whose choice leaves the rest arrangeable
   (no context may hold more than half of what is left, rounded up); when a rater's items make that
   impossible (e.g. one context only) the violations are counted and reported, never hidden.
3. Retests: round(retest_fraction x n) of each rater's items get a second showing, inserted at a
   random place at least retest_min_gap positions after the first showing, again never next to an
   item of the same context. Items with no such place are not picked (the shortfall is reported).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Hashable, Sequence


@dataclass
class RaterPlan:
    rater_id: str
    #: (item index, is_retest) in showing order; item indices refer to the `contexts` list given
    order: list[tuple[int, bool]] = field(default_factory=list)
    adjacent_same_context: int = 0
    retests_wanted: int = 0


@dataclass
class Plan:
    raters: dict[str, RaterPlan]
    raters_per_item: dict[int, int]
    k: int
    warnings: list[str] = field(default_factory=list)

    def items_of(self, rater_id: str) -> list[int]:
        return [i for i, r in self.raters[rater_id].order if not r]


def _rng(seed: int, *parts: object) -> random.Random:
    # a str seed is hashed with sha512 by random.seed: stable across runs and PYTHONHASHSEED
    return random.Random(":".join([str(seed), *map(str, parts)]))


def assign_items(
    n_items: int, rater_ids: Sequence[str], k: int | None, quotas: dict[str, int], seed: int
) -> dict[str, list[int]]:
    """Item indices per rater: k raters per item (None: all), within quotas, loads balanced."""
    k_eff = len(rater_ids) if k is None else min(k, len(rater_ids))
    cap = {r: quotas.get(r, n_items) for r in rater_ids}
    load = {r: 0 for r in rater_ids}
    got: dict[str, list[int]] = {r: [] for r in rater_ids}
    rng = _rng(seed, "assign")
    items = list(range(n_items))
    rng.shuffle(items)
    for i in items:
        free = [r for r in rater_ids if load[r] < cap[r]]
        ties = {r: rng.random() for r in free}
        free.sort(key=lambda r: (load[r], ties[r]))
        for r in free[:k_eff]:
            got[r].append(i)
            load[r] += 1
    return {r: sorted(v) for r, v in got.items()}


def _feasible(counts: dict[Hashable, int], last: Hashable | None) -> bool:
    """Can `counts` be laid out with no two equal neighbours, the first differing from `last`?"""
    n = sum(counts.values())
    for c, m in counts.items():
        if m > (n + 1) // 2 or (c == last and m > n // 2):
            return False
    return True


def order_items(items: Sequence[int], contexts: Sequence[Hashable], rng: random.Random) -> tuple[list[int], int]:
    """A random order of `items` with no two of one context adjacent; returns (order, violations)."""
    remaining: dict[Hashable, list[int]] = {}
    for i in items:
        remaining.setdefault(contexts[i], []).append(i)
    for lst in remaining.values():
        rng.shuffle(lst)
    counts = {c: len(v) for c, v in remaining.items()}
    order: list[int] = []
    last: Hashable | None = None
    violations = 0
    for _ in range(len(items)):
        live = [c for c, m in counts.items() if m > 0]
        ok = []
        for c in live:
            if c == last:
                continue
            counts[c] -= 1
            if _feasible(counts, c):
                ok.append(c)
            counts[c] += 1
        if not ok:  # infeasible input: the least bad choice, counted
            ok = [c for c in live if c != last] or live
        # weight contexts by what they have left, so the walk is uniform over items
        choice = rng.choices(ok, weights=[counts[c] for c in ok])[0]
        if choice == last:
            violations += 1
        order.append(remaining[choice].pop())
        counts[choice] -= 1
        last = choice
    return order, violations


def insert_retests(
    order: list[int], contexts: Sequence[Hashable], n_retests: int, min_gap: int, rng: random.Random
) -> list[tuple[int, bool]]:
    """`order` with `n_retests` second showings inserted >= min_gap after the first, no same-context neighbours."""
    seq: list[tuple[int, bool]] = [(i, False) for i in order]
    picked: set[int] = set()
    candidates = list(order)
    rng.shuffle(candidates)
    for item in candidates:
        if len(picked) >= n_retests:
            break
        first = next(p for p, (i, r) in enumerate(seq) if i == item and not r)
        ctx = contexts[item]
        slots = [
            j for j in range(first + min_gap, len(seq) + 1)
            if contexts[seq[j - 1][0]] != ctx and (j == len(seq) or contexts[seq[j][0]] != ctx)
        ]
        if not slots:
            continue
        seq.insert(rng.choice(slots), (item, True))
        picked.add(item)
    return seq


def make_plan(
    contexts: Sequence[Hashable],
    rater_ids: Sequence[str],
    k: int | None = None,
    quotas: dict[str, int] | None = None,
    seed: int = 0,
    retest_fraction: float = 0.05,
    retest_min_gap: int = 10,
) -> Plan:
    """The whole plan; `contexts[i]` is item i's context key (e.g. (session_id, target_index))."""
    quotas = dict(quotas or {})
    n = len(contexts)
    per_rater = assign_items(n, rater_ids, k, quotas, seed)
    k_eff = len(rater_ids) if k is None else min(k, len(rater_ids))
    warnings: list[str] = []
    if k is not None and k > len(rater_ids):
        warnings.append(f"raters_per_item = {k} but the study has {len(rater_ids)} raters; each item gets {k_eff}")
    counts = {i: 0 for i in range(n)}
    for lst in per_rater.values():
        for i in lst:
            counts[i] += 1
    short = sum(1 for c in counts.values() if c < k_eff)
    if short:
        warnings.append(f"{short} item(s) get fewer than {k_eff} raters: the quotas leave too few")
    plans: dict[str, RaterPlan] = {}
    for r in rater_ids:
        rng = _rng(seed, "order", r)
        order, _ = order_items(per_rater[r], contexts, rng)
        wanted = round(retest_fraction * len(order))
        seq = insert_retests(order, contexts, wanted, retest_min_gap, _rng(seed, "retest", r))
        got = sum(1 for _, t in seq if t)
        bad = sum(1 for a, b in zip(seq, seq[1:]) if contexts[a[0]] == contexts[b[0]])
        if bad:
            warnings.append(f"{r}: {bad} pair(s) of same-context items are adjacent (too few contexts to avoid it)")
        if got < wanted:
            warnings.append(
                f"{r}: {got} of {wanted} retest(s) placed (no room {retest_min_gap} positions after the first showing)"
            )
        plans[r] = RaterPlan(r, seq, adjacent_same_context=bad, retests_wanted=wanted)
    return Plan(raters=plans, raters_per_item=counts, k=k_eff, warnings=warnings)


# ---------------------------------------------------------------------------- report (rate plan)
def plan_report(store) -> dict:
    """Per-rater counts, pairwise overlap and retest items of a stored study (blinded: ids only)."""
    conn = store.connection()
    rows = conn.execute("SELECT rater_id, position, item_id, is_retest FROM assignments ORDER BY rater_id, position").fetchall()
    raters = [r.rater_id for r in store.raters()]
    items: dict[str, set[str]] = {r: set() for r in raters}
    counts = {r: {"items": 0, "retests": 0, "positions": 0} for r in raters}
    first_pos: dict[tuple[str, str], int] = {}
    retests = []
    for row in rows:
        r = row["rater_id"]
        counts[r]["positions"] += 1
        if row["is_retest"]:
            counts[r]["retests"] += 1
            retests.append({"rater_id": r, "item_id": row["item_id"], "position": int(row["position"]),
                            "first_position": first_pos.get((r, row["item_id"]))})
        else:
            counts[r]["items"] += 1
            items[r].add(row["item_id"])
            first_pos[(r, row["item_id"])] = int(row["position"])
    overlap = {a: {b: len(items[a] & items[b]) for b in raters} for a in raters}
    all_items = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    per_item: dict[str, int] = {}
    for r in raters:
        for i in items[r]:
            per_item[i] = per_item.get(i, 0) + 1
    return {"raters": raters, "counts": counts, "overlap": overlap, "retests": retests,
            "n_items": int(all_items), "raters_per_item": per_item}
