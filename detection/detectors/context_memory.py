"""The learner behind the context detector: a memory of (left facts -> right facts) contexts.

This follows the published Contextual Anomaly Detector, open-source edition (CAD OSE, M. Smirnov,
2016; one of NAB's reference detectors), written from its description for this project.

Vocabulary. A *fact* is a small integer. Each step the value arrives as a handful of sensor facts
(see `ContextDetector.encode`). A *context* pairs a left semi-context (the facts of the previous
step: its sensor facts plus the ids of the contexts that were active then, so the left side
carries a little history) with a right semi-context (this step's sensor facts). Contexts are
stored once and counted each time they fully match.

One step:
1. The pair (previous left group, current sensor facts) is the *zero-level* context; storing it
   tells whether this exact transition was seen before.
2. Every stored context whose left side fully matched the previous left group is *selected*; it
   is *active* when its right side fully matches the current facts (a correct prediction).
   Partially matching pairs of zero-level contexts propose new, smaller contexts (their common
   facts), which are stored when the transition was new.
3. The most frequently confirmed active contexts become the "neuron" facts of the next left group.
4. Surprise = (1 - share of selected contexts that were active + share of proposed contexts that
   were really new) / 2, in [0, 1].

The memory only grows; `max_contexts` stops it from learning new contexts beyond that size (the
scores stay defined; a series that needs more is better served by a refit).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ContextMemory"]

NEURON_BASE = 1 << 31  # neuron facts live above every sensor fact


class _Side:
    """One side's semi-contexts: fact tuples, an index fact -> semi-context ids, and the match
    of a crossing (id -> facts of the crossed group it contains, in the group's order)."""

    def __init__(self) -> None:
        self.ids: dict[tuple, int] = {}
        self.facts: list[tuple] = []
        self.by_fact: dict[int, list[int]] = {}
        self.by_top: dict[int, list[int]] = {}  # largest fact -> ids (finds subsets of a group fast)

    def get_or_add(self, facts: tuple) -> tuple[int, bool]:
        sid = self.ids.get(facts)
        if sid is not None:
            return sid, False
        sid = len(self.facts)
        self.ids[facts] = sid
        self.facts.append(facts)
        for f in facts:
            self.by_fact.setdefault(f, []).append(sid)
        if facts:
            self.by_top.setdefault(facts[-1], []).append(sid)
        return sid, True

    def cross(self, group: tuple) -> dict[int, list[int]]:
        """Every semi-context sharing a fact with `group`: id -> the shared facts, in order."""
        matched: dict[int, list[int]] = {}
        for f in group:
            for sid in self.by_fact.get(f, ()):
                hit = matched.get(sid)
                if hit is None:
                    matched[sid] = [f]
                else:
                    hit.append(f)
        return matched

    def subsets(self, group: tuple) -> dict[int, list[int]]:
        """Only the semi-contexts wholly inside `group` (a subset's largest fact is in it), as
        `cross` would report them: enough when no new transition asks for partial matches."""
        members = set(group)
        out: dict[int, list[int]] = {}
        for f in group:
            for sid in self.by_top.get(f, ()):
                facts = self.facts[sid]
                if members.issuperset(facts):
                    out[sid] = list(facts)
        return out


class ContextMemory:
    def __init__(self, max_left: int = 7, max_neurons: int = 15, max_contexts: int = 1_000_000) -> None:
        self.max_left = max_left
        self.max_neurons = max_neurons
        self.max_contexts = max_contexts
        self.left, self.right = _Side(), _Side()
        self.links: list[dict[int, int]] = []  # per left semi-context: right id -> context id
        self.count: list[int] = []  # how often each context was confirmed
        self.zero: bytearray = bytearray()  # 1 = the context was seen as a whole transition
        self.ctx_left: list[int] = []
        self.ctx_right: list[int] = []
        self.group: tuple = ()  # the current left group (sensor + neuron facts)

    def __len__(self) -> int:
        return len(self.count)

    # ---- storage ----
    def _store(self, left: tuple, right: tuple, zero: bool) -> tuple[int, bool]:
        """Context id of (left, right), adding it when new and there is room; -1 when full."""
        lid, new_left = self.left.get_or_add(left)
        if new_left:
            self.links.append({})
        rid, _ = self.right.get_or_add(right)
        cid = self.links[lid].get(rid)
        if cid is not None:
            if zero:
                self.zero[cid] = 1
            return cid, False
        if len(self.count) >= self.max_contexts:
            return -1, False
        cid = len(self.count)
        self.links[lid][rid] = cid
        self.count.append(0)
        self.zero.append(1 if zero else 0)
        self.ctx_left.append(lid)
        self.ctx_right.append(rid)
        return cid, True

    # ---- one step ----
    def step(self, sensor: tuple) -> float:
        """Learn from this step's sorted sensor facts; return the surprise in [0, 1]."""
        proposals: set[tuple] = set()
        fresh, fresh_id = False, -1
        if self.group and sensor:
            transition = (self.group, sensor)
            proposals.add(transition)
            fresh_id, fresh = self._store(self.group, sensor, zero=True)
        rmatch = self.right.cross(sensor)
        # Partial left matches only matter when the transition is new (they propose contexts).
        lmatch = self.left.cross(self.group) if fresh else self.left.subsets(self.group)
        active, selected, proposed = self._match(lmatch, rmatch, fresh, fresh_id if fresh else -1)
        proposals.update(proposed)
        confirmed = len(active) / selected if selected else 0.0

        active.sort()
        neurons = [NEURON_BASE + cid for _, cid in active[-self.max_neurons:]]
        self.group = tuple(sorted(set(sensor).union(neurons)))
        added = sum(self._store(left, right, zero=False)[1] for left, right in proposed)
        added += 1 if fresh else 0
        novelty = added / len(proposals) if fresh and proposals else 0.0
        return (1.0 - confirmed + novelty) / 2.0

    def _match(self, lmatch: dict, rmatch: dict, fresh: bool, fresh_id: int) -> tuple[list, int, list]:
        """Selected / active contexts for the crossed sides, and the proposed new contexts."""
        left, right = self.left, self.right
        active: list[tuple[int, int]] = []
        proposed: list[tuple] = []
        selected = 0
        rfacts = right.facts
        count, zero, max_left = self.count, self.zero, self.max_left
        for lid in sorted(lmatch):
            lhit = lmatch[lid]
            whole = len(lhit) == len(left.facts[lid])
            for rid, cid in self.links[lid].items():
                if cid == fresh_id:
                    continue
                rhit = rmatch.get(rid)
                if whole:
                    selected += 1
                    if rhit is None:
                        continue
                    if len(rhit) == len(rfacts[rid]):
                        count[cid] += 1
                        active.append((count[cid], cid))
                    elif zero[cid] and fresh and len(lhit) <= max_left:
                        proposed.append((tuple(lhit), tuple(rhit)))
                elif rhit is not None and zero[cid] and fresh and len(lhit) <= max_left:
                    proposed.append((tuple(lhit), tuple(rhit)))
        return active, selected, proposed

    # ---- serialization: flat integer arrays ----
    def dump(self) -> dict[str, np.ndarray]:
        def flat(side: _Side, name: str) -> dict[str, np.ndarray]:
            lengths = np.array([len(f) for f in side.facts], dtype=np.int64)
            facts = np.array([f for fs in side.facts for f in fs], dtype=np.int64)
            return {f"{name}.len": lengths, f"{name}.facts": facts}

        return {**flat(self.left, "left"), **flat(self.right, "right"),
                "ctx.left": np.array(self.ctx_left, dtype=np.int64),
                "ctx.right": np.array(self.ctx_right, dtype=np.int64),
                "ctx.count": np.array(self.count, dtype=np.int64),
                "ctx.zero": np.frombuffer(bytes(self.zero), dtype=np.uint8).copy(),
                "group": np.array(self.group, dtype=np.int64)}

    @classmethod
    def load(cls, arrays: dict[str, np.ndarray], **params) -> ContextMemory:
        mem = cls(**params)
        for side, name in ((mem.left, "left"), (mem.right, "right")):
            facts = arrays[f"{name}.facts"].tolist()
            pos = 0
            for n in arrays[f"{name}.len"].tolist():
                side.get_or_add(tuple(facts[pos:pos + n]))
                pos += n
        mem.links = [{} for _ in mem.left.facts]
        mem.ctx_left = arrays["ctx.left"].tolist()
        mem.ctx_right = arrays["ctx.right"].tolist()
        mem.count = arrays["ctx.count"].tolist()
        mem.zero = bytearray(arrays["ctx.zero"].astype(np.uint8).tobytes())
        for cid, (lid, rid) in enumerate(zip(mem.ctx_left, mem.ctx_right, strict=True)):
            mem.links[lid][rid] = cid
        mem.group = tuple(arrays["group"].tolist())
        return mem
