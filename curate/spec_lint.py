"""Spec lint: what a spec author should hear before labeling starts (coverage shares that cannot add up, pointers
outside the output schema, slow regexes, rules that run code, missing data files).

    >>> from curate.spec import load_spec
    >>> from curate.spec_lint import lint
    >>> lint(load_spec("specs/support-triage"))
    []
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
)

from curate.regex_risk import regex_timeout, risky_pattern
from curate.spec_model import (
    CASE_CATEGORIES,
    FAILURE_CATEGORIES,
    JsonParse,
    JsonSchemaCheck,
    Spec,
    code_rules,
)

# ---------------------------------------------------------------- lint


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: str
    severity: Literal["error", "warning"]
    message: str
    where: str = ""


def lint(spec: Spec) -> list[Finding]:
    """What a spec author should hear before labeling starts; an empty list means clean."""
    out: list[Finding] = []

    def add(
        code: str, message: str, where: str = "", severity: Literal["error", "warning"] = "warning"
    ) -> None:
        out.append(Finding(code=code, severity=severity, message=message, where=where))

    ids = Counter(r.id for r in spec.rules)
    for rid, n in ids.items():
        if n > 1:
            add("duplicate_rule_id", f"rule id {rid!r} is used {n} times", "rules", "error")
    shares = sum(c.min_share for c in spec.cases.values())
    if shares > 1.0 + 1e-9:
        add(
            "coverage_over_one",
            f"case min_share values add up to {shares:.2f} > 1; no dataset can meet them",
            "cases",
            "error",
        )
    for cat in CASE_CATEGORIES:
        if cat not in spec.cases:
            add(
                "missing_case_category",
                f"no case category {cat!r}; coverage targets and case generation "
                "expect typical, edge, adversarial and negative cases",
                "cases",
            )
    if not spec.automatic_rules():
        add("no_automatic_rule", "every rule is human-judged: nothing can be checked automatically", "rules")
    used_cats = {r.category for r in spec.rules}
    for fc in FAILURE_CATEGORIES:
        if fc not in used_cats and fc in ("format", "safety"):
            add("failure_category_without_rule", f"no rule in failure category {fc!r}", "rules")
    pointers_used: set[str] = set()
    for i, rule in enumerate(spec.rules):
        where = f"rules[{i}] ({rule.id})"
        check = rule.check
        if check == "human":
            continue
        if isinstance(check, JsonSchemaCheck) and check.schema_ is None and spec.output.schema_ is None:
            add("schema_rule_without_schema", "json_schema rule but output.schema is empty", where, "error")
        if spec.output.format == "text" and (check.field or isinstance(check, (JsonParse, JsonSchemaCheck))):
            add("json_rule_on_text_output", "this check reads JSON but output.format is text", where, "error")
        for ptr in _pointers(check):
            pointers_used.add(ptr.split("/")[1] if ptr.count("/") >= 1 and ptr != "" else ptr)
            if spec.output.schema_ is not None and not _pointer_in_schema(spec.output.schema_, ptr):
                add(
                    "pointer_not_in_schema",
                    f"JSON Pointer {ptr!r} names no property of output.schema",
                    where,
                    "error",
                )
        if check.when and check.when.category and check.when.category not in spec.cases:
            add(
                "unknown_category",
                f"when.category {check.when.category!r} is not a case category",
                where,
                "error",
            )
    schema = spec.output.schema_ or {}
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    for prop in props:
        if prop not in pointers_used and not any(isinstance(r.check, JsonSchemaCheck) for r in spec.rules):
            add("unused_field", f"output field {prop!r} is not checked by any rule", "output.schema")
    if spec.output.format == "json" and spec.output.schema_ is None:
        add("json_without_schema", "output.format is json but no output.schema is given", "output")
    if (
        spec.output.format == "json"
        and spec.output.schema_ is not None
        and not any(isinstance(r.check, JsonSchemaCheck) for r in spec.rules)
    ):
        add("schema_not_checked", "output.schema is set but no json_schema rule checks it", "rules")
    if not spec.system_prompt.strip():
        add(
            "no_system_prompt",
            "system_prompt is empty: labelers and the model get no instructions",
            "system_prompt",
        )
    for name, cat in spec.cases.items():
        if name in ("edge", "adversarial") and not cat.seeds:
            add("no_seeds", f"case category {name!r} has no seeds to expand from", f"cases.{name}")
    has_negative = "negative" in spec.cases
    if has_negative and not spec.automatic_rules():
        add("negative_without_rules", "negative examples need automatic rules to violate", "cases.negative")
    for d in spec.data_outside():
        add(
            "data_outside_spec",
            f"data file {d!r} is outside the spec folder: a build reads it only with --allow-outside-data",
            "data",
        )
    for i, rule in enumerate(spec.rules):
        check = rule.check
        pattern = getattr(check, "pattern", None) if check != "human" else None
        if isinstance(pattern, str):
            why = risky_pattern(pattern)
            if why:
                add(
                    "slow_regex",
                    f"pattern {pattern!r} has {why}: it may take exponential time, so it runs with a "
                    f"{regex_timeout():g} s bound per text and counts as failed when it runs out; simplify it",
                    f"rules[{i}] ({rule.id})",
                )
    for rid, fn, what in code_rules(spec):
        add(
            "runs_code",
            f"rule {rid!r} runs Python code ({fn} from {what}); build, check and eval run it only "
            "with --allow-code; `spec check` never does",
            "rules",
        )
    from curate.errors import InputError
    from curate.readers.containers import split_format

    for path in spec.data_paths(allow_outside=True):
        try:
            file, _ = split_format(path)  # `data: [chats.jsonl:sharegpt]` names the file's format
        except InputError as err:
            add("bad_data_format", str(err), "data", "error")
            continue
        if not file.exists():
            add("missing_data_file", f"data file {file} does not exist", "data", "error")
    return out


def _pointers(check: Any) -> list[str]:
    out = [check.field] if check.field else []
    if check.when:
        for p in (check.when.nonempty, check.when.empty, check.when.equals and check.when.equals.pointer):
            if p:
                out.append(p)
    return out


def _pointer_in_schema(schema: dict[str, Any], ptr: str) -> bool:
    node: Any = schema
    for part in ptr.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict):
            return False
        if part in node.get("properties", {}):
            node = node["properties"][part]
        elif part.isdigit() and "items" in node:
            node = node["items"]
        else:
            return node.get("additionalProperties") not in (None, False) or "patternProperties" in node
    return True
