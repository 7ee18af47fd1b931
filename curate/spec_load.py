"""Loading a spec file: YAML with line numbers, so every SpecError names file:line:column, the field and a fix;
alias bombs and nesting refused before anything walks the document.

    >>> from curate.spec_load import load_spec
    >>> load_spec("specs/support-triage").name
    'support-triage'
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

from curate.errors import SpecError
from curate.spec_model import (
    CHECK_KINDS,
    SPEC_FILENAMES,
    JsonParse,
    JsonSchemaCheck,
    JudgeCheck,
    MaxChars,
    MaxSentences,
    MaxWords,
    PhrasesAbsent,
    PhrasesPresent,
    PythonCheck,
    QuestionCount,
    Refusal,
    RegexAbsent,
    RegexPresent,
    Spec,
    ValuesInInput,
)

# ---------------------------------------------------------------- loading with line numbers


def resolve_spec_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        for name in SPEC_FILENAMES:
            if (p / name).is_file():
                return p / name
        raise SpecError(f"{p}: no spec.yaml in this folder; create one with `curate spec init NAME`")
    if not p.exists():
        raise SpecError(f"{p}: no such spec file or folder")
    return p


def _position(doc: Any, loc: tuple[Any, ...]) -> tuple[int, int]:
    """(line, column), 1-based, of the deepest node on `loc` that the YAML document still has."""
    line, col = 1, 1
    node = doc
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            ln, cl = node.lc.key(key)
            line, col = ln + 1, cl + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            ln, cl = node.lc.item(key)
            line, col = ln + 1, cl + 1
            node = node[key]
        else:
            break
    return line, col


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at `loc` (for 'did you mean' hints)."""
    model: Any = Spec
    for key in loc:
        if isinstance(key, int):
            continue
        fields = getattr(model, "model_fields", {})
        info = fields.get(key)
        if info is None:
            # a discriminated check: loc holds the kind name
            return _CHECK_MODELS.get(key, model)
        ann = info.annotation
        model = _unwrap_model(ann, key)
        if model is None:
            return None
    return model


def _unwrap_model(ann: Any, key: str) -> Any:
    import typing

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        got = _unwrap_model(arg, key)
        if got is not None:
            return got
    return None


_CHECK_MODELS: dict[str, type[BaseModel]] = {
    m.model_fields["kind"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in (
        JsonParse,
        JsonSchemaCheck,
        RegexPresent,
        RegexAbsent,
        PhrasesPresent,
        PhrasesAbsent,
        MaxChars,
        MaxWords,
        MaxSentences,
        QuestionCount,
        ValuesInInput,
        Refusal,
        PythonCheck,
        JudgeCheck,
    )
}


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items() if name not in ("path", "digest")]


_TYPE_TAGS = {
    "int": "an integer",
    "str": "a string",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "a mapping",
    "none": "nothing",
}


def _is_branch(key: Any) -> bool:
    """pydantic's union-branch names in an error location (not fields of the spec)."""
    return isinstance(key, str) and ("[" in key or "(" in key or key in _CHECK_MODELS or key in _TYPE_TAGS)


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(k for k in loc if not _is_branch(k))


def _pick_errors(errors: list[dict[str, Any]]) -> list[tuple[tuple[Any, ...], list[dict[str, Any]]]]:
    """Group errors by their cleaned location; drop the `human` branch of `check` when a real check failed."""
    real = [e for e in errors if not any(isinstance(k, str) and k.startswith("literal[") for k in e["loc"])]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for e in real or errors:
        groups.setdefault(_clean_loc(tuple(e["loc"])), []).append(e)
    # an unknown key usually explains a missing one ("rulez" for "rules"): report it first
    return sorted(groups.items(), key=lambda kv: kv[1][0]["type"] != "extra_forbidden")


def _format_error(file: Path, doc: Any, shown: tuple[Any, ...], errs: list[dict[str, Any]]) -> str:
    err = errs[0]
    loc = tuple(err["loc"])
    etype = err["type"]
    if etype == "extra_forbidden":
        field_loc, key = shown[:-1], shown[-1]
        model = _model_at(tuple(k for k in loc[:-1] if not (isinstance(k, str) and "[" in k)))
        hint = ""
        if model is not None:
            close = difflib.get_close_matches(str(key), _field_names(model), n=1, cutoff=0.6)
            hint = (
                f'; did you mean "{close[0]}"?'
                if close
                else f"; known keys: {', '.join(_field_names(model))}"
            )
        line, col = _position(doc, shown)
        return f'{file}:{line}:{col}: {_dotted(field_loc) or "(top level)"}: unknown key "{key}"{hint}'
    line, col = _position(doc, shown)
    msg = err["msg"]
    type_errors = [e for e in errs if e["loc"] and e["loc"][-1] in _TYPE_TAGS]
    if len(type_errors) > 1:
        wanted = " or ".join(_TYPE_TAGS[e["loc"][-1]] for e in type_errors)
        msg = f"expected {wanted} (got {err.get('input')!r})"
    elif etype == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        close = difflib.get_close_matches(str(tag), CHECK_KINDS, n=1, cutoff=0.5)
        msg = f"unknown check kind {tag!r}" + (
            f'; did you mean "{close[0]}"?' if close else f"; known kinds: {', '.join(CHECK_KINDS)}"
        )
    elif etype == "union_tag_not_found":
        msg = "a check needs a `kind` (one of: " + ", ".join(CHECK_KINDS) + ") or the word `human`"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif etype == "missing":
        msg = "required field is missing"
    elif etype in (
        "int_type",
        "int_parsing",
        "float_type",
        "float_parsing",
        "string_type",
        "list_type",
        "dict_type",
        "bool_type",
        "bool_parsing",
        "model_type",
        "literal_error",
        "string_pattern_mismatch",
        "greater_than",
        "less_than",
        "greater_than_equal",
        "less_than_equal",
        "too_short",
    ):
        msg = f"{msg} (got {err.get('input')!r})"
    return f"{file}:{line}:{col}: {_dotted(shown) or '(top level)'}: {msg}"


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def load_spec(path: str | Path) -> Spec:
    """Load and validate a spec; raise SpecError naming file:line:column, the field and a fix."""
    file = resolve_spec_path(path)
    raw = file.read_bytes()
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(
            f"{file}: {len(raw):,} bytes; a spec is at most {MAX_SPEC_BYTES:,} (put data in data files)"
        )
    yaml = YAML(typ="rt")
    try:
        doc = yaml.load(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise SpecError(f"{file}: not UTF-8 text (byte {err.start})") from None
    except RecursionError:
        raise SpecError(f"{file}: YAML nested too deep to read") from None
    except ReaderError as err:  # a NUL or another character YAML does not allow
        text = raw.decode("utf-8", "replace")
        pos = getattr(err, "position", 0) or 0
        line = text.count("\n", 0, pos) + 1
        raise SpecError(
            f"{file}:{line}:{pos - (text.rfind(chr(10), 0, pos) + 1) + 1}: character "
            f"#x{getattr(err, 'character', 0):04x} is not allowed in YAML"
        ) from None
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = err.problem or err.context or "invalid YAML"
        ctx = err.context_mark
        if ctx is not None and err.problem_mark is not None and ctx.line != err.problem_mark.line:
            problem += f" ({err.context} at line {ctx.line + 1}, column {ctx.column + 1})"
        raise SpecError(f"{file}:{line}:{col}: YAML syntax error: {problem}") from None
    if isinstance(doc, CommentedMap):
        for internal in ("path", "digest"):
            if internal in doc:
                line, col = _position(doc, (internal,))
                raise SpecError(f'{file}:{line}:{col}: (top level): unknown key "{internal}"')
    if not isinstance(doc, CommentedMap):
        raise SpecError(
            f"{file}:1:1: a spec is a YAML mapping (name:, version:, rules: ...), got {type(doc).__name__}"
        )
    _check_expansion(file, doc)
    dupes = _duplicate_rule_ids(doc)
    if dupes:
        idx, rid, first = dupes[0]
        line, col = _position(doc, ("rules", idx, "id"))
        raise SpecError(
            f'{file}:{line}:{col}: rules[{idx}].id: duplicate rule id "{rid}" '
            f"(first used by rules[{first}]); rule ids must be unique"
        )
    try:
        spec = Spec.model_validate(_plain(doc))
    except ValidationError as err:
        groups = _pick_errors(err.errors())
        first = _format_error(file, doc, *groups[0])
        n = len(groups) - 1
        more = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
        raise SpecError(first + more) from None
    _check_cross_refs(file, doc, spec)
    return spec.model_copy(update={"path": file, "digest": hashlib.sha256(raw).hexdigest()})


MAX_SPEC_BYTES = 4 << 20  # a spec file
MAX_SPEC_NODES = 200_000  # values once YAML aliases are expanded (a real spec has a few thousand)
MAX_SPEC_ALIASES = 2_000  # alias uses (*name)
MAX_SPEC_DEPTH = 64


def _check_expansion(file: Path, doc: Any) -> None:
    """Refuse YAML whose aliases expand to a huge document ("billion laughs"), or nesting deeper than any spec
    needs, before anything walks it expanded: SpecError naming the line of the worst anchor."""
    sizes: dict[int, int] = {}
    seen: set[int] = set()
    uses = 0
    worst: tuple[int, Any] = (0, None)

    def size(node: Any, depth: int) -> int:
        nonlocal uses, worst
        if depth > MAX_SPEC_DEPTH:
            line = node.lc.line + 1 if hasattr(node, "lc") else 1
            raise SpecError(
                f"{file}:{line}:1: YAML nested deeper than {MAX_SPEC_DEPTH} levels; a spec needs far fewer"
            )
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in seen:
            uses += 1
            if uses > MAX_SPEC_ALIASES:
                raise SpecError(
                    f"{file}:{_line_of(node)}:1: more than {MAX_SPEC_ALIASES} YAML alias uses; write "
                    "the values out"
                )
            if key in sizes:
                return sizes[key]
            raise SpecError(f"{file}:{_line_of(node)}:1: a YAML alias refers to a node that contains it")
        seen.add(key)
        children = node.values() if isinstance(node, dict) else node
        n = 1 + sum(size(c, depth + 1) for c in children)
        sizes[key] = n
        if getattr(getattr(node, "anchor", None), "value", None) and n > worst[0]:
            worst = (n, node)
        if n > MAX_SPEC_NODES:
            bad = worst[1] if worst[1] is not None else node
            name = getattr(getattr(bad, "anchor", None), "value", None)
            raise SpecError(
                f"{file}:{_line_of(bad)}:1: YAML aliases expand this spec to more than "
                f"{MAX_SPEC_NODES:,} values"
                + (f" (anchor &{name})" if name else "")
                + "; a spec needs no alias bombs: write the values out"
            )
        return n

    size(doc, 0)


def _line_of(node: Any) -> int:
    lc = getattr(node, "lc", None)
    return (lc.line + 1) if lc is not None and lc.line is not None else 1


def _duplicate_rule_ids(doc: CommentedMap) -> list[tuple[int, str, int]]:
    seen: dict[str, int] = {}
    out = []
    rules = doc.get("rules")
    if isinstance(rules, list):
        for i, r in enumerate(rules):
            rid = r.get("id") if isinstance(r, dict) else None
            if isinstance(rid, str):
                if rid in seen:
                    out.append((i, rid, seen[rid]))
                else:
                    seen[rid] = i
    return out


def _check_cross_refs(file: Path, doc: Any, spec: Spec) -> None:
    """Errors that need the whole spec: a json_schema rule with no schema, pointers on text output."""
    for i, rule in enumerate(spec.rules):
        check = rule.check
        if check == "human":
            continue
        if isinstance(check, JsonSchemaCheck) and check.schema_ is None and spec.output.schema_ is None:
            line, col = _position(doc, ("rules", i, "check"))
            raise SpecError(
                f'{file}:{line}:{col}: rules[{i}].check: json_schema rule "{rule.id}" has no schema; '
                "add output.schema or a schema: to the check"
            )
