"""Edge, adversarial and negative cases: the generators `Expander` runs (see curate.expand.generate)."""

from __future__ import annotations

from typing import Any

from curate.expand import adversarial as adv
from curate.expand import edge
from curate.expand.mutators import Mutant, mutate
from curate.expand.parents import GEN, Parent, plausible_paraphrase, protected_values
from curate.spec import Rule


class CaseGenerators:
    """The generators of `Expander` (a mixin: they use its rng, recast, add_prompt and add_pair): edge cases,
    adversarial cases and negative cases (preference pairs from verified mutants)."""

    # ------------------------------------------------------------ generators
    def edge_cases(self, variants: int = 2) -> None:
        sources: list[tuple[str, str, Parent | None]] = []
        for cat in ("edge", "typical"):
            case = self.spec.cases.get(cat)
            for i, s in enumerate(case.seeds if case else ()):
                sources.append((f"seed:{cat}:{i}", s, None))
        sources += [(p.id, p.last_user, p) for p in self.parents if p.record.category == "typical"]
        for n, (pid, text, parent) in enumerate(sources):
            rng = self.rng("edge", pid)
            protect = protected_values(parent.response, parent.last_user) if parent else set()
            primaries = list(edge.PRIMARY)
            rng.shuffle(primaries)
            made = 0
            for primary in primaries:
                if made >= variants:
                    break
                if parent is not None and edge.KEEPS_ANSWER[primary]:

                    def make(
                        k: int,
                        primary: str = primary,
                        text: str = text,
                        pid: str = pid,
                        protect: Any = protect,
                    ) -> Any:
                        v = edge.variant(
                            text, self.rng("edge", pid, primary, k), primary, protect=protect, context=k
                        )
                        if v is None:
                            return None
                        return (
                            v.text,
                            tuple(f"edge:{t}" for t in v.transforms),
                            {"transforms": list(v.transforms), **v.params},
                        )

                    made += (
                        self.recast(parent, make, "edge", f"{GEN}.edge", key=("edge", pid, primary))
                        != "dropped"
                    )
                    continue
                v = edge.variant(text, self.rng("edge", pid, primary), primary, protect=protect)
                if v is None or not self.novel(v.text, ("edge", pid, primary)):
                    continue
                made += 1
                self.add_prompt(
                    v.text,
                    "edge",
                    tuple(f"edge:{t}" for t in v.transforms),
                    f"{GEN}.edge",
                    {"transforms": list(v.transforms), **v.params},
                    pid,
                    parent.prompt if parent else None,
                )
            if (
                self.model is not None
                and parent is not None
                and self.counts["model_paraphrases"] < self.model_paraphrases
            ):
                self.counts["model_paraphrases"] += 1
                para = self.model.paraphrase(text)
                if plausible_paraphrase(para, text, protected_values(parent.response, text)) and self.novel(
                    para, ("edge", pid, "model")
                ):
                    self.add_prompt(
                        para,
                        "edge",
                        ("edge:model_paraphrase",),
                        f"{GEN}.edge",
                        {"transforms": ["model_paraphrase"], "model": self.model.name},
                        pid,
                        parent.prompt,
                    )
            if self.progress:
                self.progress("edge", n + 1, len(sources))

    def adversarial_cases(self, per_pattern: int = 6) -> None:
        requests: list[tuple[str, str, Parent | None]] = [
            (p.id, p.last_user, p) for p in self.parents if p.record.category == "typical"
        ]
        tcase = self.spec.cases.get("typical")
        requests += [(f"seed:typical:{i}", s, None) for i, s in enumerate(tcase.seeds if tcase else ())]
        if not requests:
            return
        for pattern in adv.patterns(self.spec):
            rng = self.rng("adversarial", pattern)
            order = list(range(len(requests)))
            rng.shuffle(order)
            made = 0
            for idx in order:
                if made >= per_pattern:
                    break
                pid, text, parent = requests[idx]
                allowed = [r for r in self.rules if parent is None or parent.passes(r.id)]
                rule = adv.pick_rule(self.spec, pattern, rng, allowed or None)
                if rule is None:
                    continue

                def make(
                    k: int, text: str = text, pid: str = pid, rule: Rule = rule, pattern: str = pattern
                ) -> Any:
                    a = adv.attack(
                        self.spec, text, pattern, rule, self.rng("adversarial", pattern, pid), extra=k
                    )
                    return (
                        a.text,
                        a.tags,
                        {"pattern": pattern, "rule": rule.id, "template": a.template, "bait": a.bait},
                    )

                if parent is not None and adv.KEEPS_ANSWER.get(pattern, True):
                    made += (
                        self.recast(
                            parent,
                            make,
                            "adversarial",
                            f"{GEN}.adversarial",
                            key=("adversarial", pattern, pid),
                        )
                        != "dropped"
                    )
                    continue
                got = make(0)
                if not self.novel(got[0], ("adversarial", pattern, pid)):
                    continue
                made += 1
                self.add_prompt(
                    got[0],
                    "adversarial",
                    got[1],
                    f"{GEN}.adversarial",
                    got[2],
                    pid,
                    parent.prompt if parent else None,
                )

    def negative_cases(self, per_rule: int = 4) -> None:
        for rule in self.rules:
            rng = self.rng("mutate", rule.id)
            donors = [p for p in self.parents if p.passes(rule.id)]
            rng.shuffle(donors)
            exact: list[tuple[Parent, Mutant]] = []
            loose: list[tuple[Parent, Mutant]] = []
            for p in donors:
                if len(exact) >= per_rule:
                    break
                ms = mutate(
                    self.spec,
                    rule,
                    p.response,
                    user_text=p.record.user_text(),
                    category="negative",
                    tags=p.record.tags,
                    rng=self.rng("mutate", rule.id, p.id),
                )
                if ms:
                    (exact if ms[0].exact else loose).append((p, ms[0]))
            made = 0
            for p, m in exact + loose:
                if made >= per_rule:
                    break
                if self.add_pair(p, m) is not None:
                    made += 1
            if not made and per_rule:
                self.result.summary.setdefault("rules_without_mutant", []).append(rule.id)
