"""The behavior spec: one YAML file that is the labeling guide, the curation contract and the eval checklist.

>>> from curate.spec import load_spec, lint
>>> spec = load_spec("specs/support-triage")          # a folder with spec.yaml, or the YAML file itself
>>> [r.id for r in spec.automatic_rules()][:2]
['valid-json', 'matches-schema']
>>> lint(spec)                                         # findings a spec author wants before labeling starts
[]
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

from curate.errors import SpecError

FailureCategory = Literal["format", "instruction", "knowledge", "safety"]
FAILURE_CATEGORIES: tuple[str, ...] = ("format", "instruction", "knowledge", "safety")
CASE_CATEGORIES: tuple[str, ...] = ("typical", "edge", "adversarial", "negative")
SPEC_FILENAMES = ("spec.yaml", "spec.yml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- conditions and checks


class When(_Strict):
    """Conditions under which a rule applies; all given ones must hold, else the rule is skipped."""

    nonempty: str | None = Field(None, description="JSON Pointer that must hold a non-empty value")
    empty: str | None = Field(None, description="JSON Pointer that must be missing or empty")
    equals: PointerEquals | None = None
    category: str | None = Field(None, description="the record's case category")
    tag: str | None = Field(None, description="a tag the record must carry (e.g. safe, forbidden)")
    not_tag: str | None = Field(None, description="a tag the record must not carry")


class PointerEquals(_Strict):
    pointer: str
    value: Any


class _CheckBase(_Strict):
    field: str | None = Field(None, description="JSON Pointer into the JSON response; absent: the whole text")
    when: When | None = None

    @field_validator("field")
    @classmethod
    def _pointer(cls, v: str | None) -> str | None:
        if v is not None and v != "" and not v.startswith("/"):
            raise ValueError(f"a JSON Pointer starts with '/', got {v!r} (write '/{v}')")
        return v


def _valid_schema(v: dict[str, Any] | None) -> dict[str, Any] | None:
    if v is not None:
        _check_json_schema(v)
    return v


SchemaDoc = Annotated[dict[str, Any] | None, AfterValidator(_valid_schema)]
"""A JSON Schema, checked against its meta-schema when the spec loads."""


class JsonParse(_CheckBase):
    kind: Literal["json_parse"]


class JsonSchemaCheck(_CheckBase):
    kind: Literal["json_schema"]
    schema_: SchemaDoc = Field(None, alias="schema", description="defaults to output.schema")


class _Regex(_CheckBase):
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as err:
            raise ValueError(f"bad regex: {err}") from None
        return v


class RegexPresent(_Regex):
    kind: Literal["regex_present"]


class RegexAbsent(_Regex):
    kind: Literal["regex_absent"]


class _Phrases(_CheckBase):
    phrases: list[str] = Field(min_length=1)


class PhrasesPresent(_Phrases):
    kind: Literal["phrases_present"]


class PhrasesAbsent(_Phrases):
    kind: Literal["phrases_absent"]


class _Max(_CheckBase):
    max: int = Field(ge=0)


class MaxChars(_Max):
    kind: Literal["max_chars"]


class MaxWords(_Max):
    kind: Literal["max_words"]


class MaxSentences(_Max):
    kind: Literal["max_sentences"]


class QuestionCount(_CheckBase):
    kind: Literal["question_count"]
    equals: int | None = Field(None, ge=0)
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_bound(self) -> QuestionCount:
        if self.equals is None and self.min is None and self.max is None:
            raise ValueError("question_count needs equals, min or max")
        return self


class ValuesInInput(_CheckBase):
    kind: Literal["values_in_input"]


class Refusal(_CheckBase):
    kind: Literal["refusal"]
    expect: bool = Field(description="true: the response must refuse; false: it must not")
    phrases: list[str] | None = Field(None, description="refusal phrases; defaults to a built-in list")


class PythonCheck(_CheckBase):
    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["python"]
    function: str = Field(description="module:function taking (response_text, ctx)")

    @field_validator("function")
    @classmethod
    def _shape(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
            raise ValueError(f"expected 'module:function', got {v!r}")
        return v


class JudgeCheck(_CheckBase):
    """A model judges the response against a rubric (curate.judge); it counts as automatic only while its
    calibration against human labels passes the spec's gate (`judge:`), else it is a suggestion to
    labelers."""

    kind: Literal["judge"]
    rubric: str = Field(min_length=1, description="what passes and what fails, in plain words")
    pass_examples: list[str] = Field(default_factory=list, description="one or two responses that pass")
    fail_examples: list[str] = Field(default_factory=list, description="one or two responses that fail")


Check = Annotated[
    JsonParse
    | JsonSchemaCheck
    | RegexPresent
    | RegexAbsent
    | PhrasesPresent
    | PhrasesAbsent
    | MaxChars
    | MaxWords
    | MaxSentences
    | QuestionCount
    | ValuesInInput
    | Refusal
    | PythonCheck
    | JudgeCheck,
    Field(discriminator="kind"),
]
CHECK_KINDS: tuple[str, ...] = (
    "json_parse",
    "json_schema",
    "regex_present",
    "regex_absent",
    "phrases_present",
    "phrases_absent",
    "max_chars",
    "max_words",
    "max_sentences",
    "question_count",
    "values_in_input",
    "refusal",
    "python",
    "judge",
)


# ---------------------------------------------------------------- the spec


class Rule(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    says: str = Field(min_length=1, description="the sentence a labeler reads")
    check: Check | Literal["human"]
    category: FailureCategory

    @property
    def automatic(self) -> bool:
        """Checked by code. A `judge` rule is not: it runs a model and counts only once calibrated
        (curate.judge.calibration.gated_rules)."""
        return self.check != "human" and not isinstance(self.check, JudgeCheck)

    @property
    def judge(self) -> bool:
        return isinstance(self.check, JudgeCheck)


class Output(_Strict):
    format: Literal["json", "text"] = "text"
    schema_: SchemaDoc = Field(None, alias="schema")


class CaseCategory(_Strict):
    min_share: float = Field(0.0, ge=0.0, le=1.0)
    description: str | None = None
    seeds: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list, description="adversarial pressure patterns")


class Coverage(_Strict):
    min_per_cell: int = Field(2, ge=0, description="records per (case category x automatic rule) cell")


class Split(_Strict):
    heldout: float = Field(0.15, gt=0.0, lt=1.0)
    seed: int = 13
    stratify: list[str] = Field(default_factory=lambda: ["category"])


class Export(_Strict):
    formats: list[Literal["sft", "dpo"]] = Field(default_factory=lambda: ["sft", "dpo"])
    sft_format: Literal["messages", "prompt-completion"] = "messages"
    max_tokens: int = Field(2048, gt=0)
    include_system_prompt: bool = True
    license: str | None = Field(
        None,
        max_length=100,
        pattern=r"^[A-Za-z0-9.+\-]+$",
        description="the dataset's license (an SPDX id such as cc-by-4.0), for the card",
    )
    stale_labels: Literal["warn", "error"] = Field(
        "warn", description="labels made under another rule hash: warn (default) or fail the build"
    )
    jsonl: bool = Field(
        True,
        description="also write each split as JSON lines beside the Parquet files (false or `curate build "
        "--no-jsonl`: Parquet only, about a quarter of the bytes)",
    )
    text_records: Literal["prompts", "text"] = Field(
        "prompts",
        description="unlabeled prompts (plain {text: ...} records, tag unlabeled): exported as TRL prompt-only "
        "rows in prompts/ (default: to label or generate from) or as language-modeling rows in text/",
    )


class Dedup(_Strict):
    """What the build does with duplicates and look-alikes (docs/contracts.md, "What a duplicate is")."""

    threshold: float | None = Field(
        None, gt=0.0, le=1.0, description="near-duplicate and leakage threshold (default: the build's, 0.8)"
    )
    drop_prefixes: bool = Field(False, description="drop a conversation that is a strict prefix of another")
    turn_markers: Literal["warn", "quarantine"] = Field(
        "warn",
        description="turn markers (Human:, Assistant:) inside turn text: count a warning or quarantine",
    )


class JudgeSettings(_Strict):
    """How `judge` rules run and when they count (see docs/contracts.md, "Calibration gate")."""

    model: str | None = Field(None, description="local model: an HF folder or a .gguf file")
    gguf_file: str | None = Field(None, description="the .gguf file inside `model` when it is a folder")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (http://host:port/v1)")
    endpoint_model: str | None = Field(None, description="model name sent to the endpoint")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the endpoint's key")
    gate: float = Field(
        0.6, ge=-1.0, le=1.0, description="lowest allowed lower bound of kappa's 95% interval"
    )
    min_n: int = Field(30, ge=1, description="fewest human-labeled responses a calibration needs")
    max_new_tokens: int = Field(48, gt=0)


class Example(_Strict):
    user: str
    assistant: str
    note: str | None = None


class Spec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int | str  # a number >= 0 or a short name (it names out/<name>/v<version>): _safe_version
    description: str = ""
    system_prompt: str = ""
    output: Output = Output()
    rules: list[Rule] = Field(min_length=1)
    cases: dict[str, CaseCategory] = Field(
        default_factory=lambda: {c: CaseCategory() for c in CASE_CATEGORIES}
    )
    coverage: Coverage = Coverage()
    split: Split = Split()
    export: Export = Export()
    dedup: Dedup = Dedup()
    data: list[str] = Field(default_factory=list, description="example data files, relative to the spec")
    examples: list[Example] = Field(default_factory=list)
    judge: JudgeSettings = JudgeSettings()

    # set by load_spec, not part of the YAML
    path: Path | None = Field(None, exclude=True)
    digest: str = Field("", exclude=True)

    @field_validator("version", mode="before")
    @classmethod
    def _safe_version(cls, v: Any) -> Any:
        if not isinstance(v, (int, str)):
            return v  # pydantic's own "expected an integer or a string"
        if isinstance(v, bool) or (isinstance(v, int) and v < 0):
            raise ValueError(f"version must be a number >= 0 or a short name, got {v!r}")
        if isinstance(v, str) and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", v):
            raise ValueError(
                f"version {v!r} must be a short name of letters, digits and . _ + - (it names the "
                "output folder v<version>: no slashes, spaces or leading dots)"
            )
        return v

    @property
    def ref(self) -> str:
        """`name@version`, stamped on every record built under this spec."""
        return f"{self.name}@{self.version}"

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def data_paths(self, *, allow_outside: bool | None = None) -> list[Path]:
        """The `data:` files. A path that is absolute or leaves the spec folder raises SpecError unless
        `allow_outside` (default: `allow_outside_data()` / CURATE_ALLOW_OUTSIDE_DATA=1 / the CLI's
        --allow-outside-data): a spec from elsewhere must not make a build read files beside it."""
        outside = self.data_outside()
        ok = allow_outside if allow_outside is not None else _outside_data_allowed()
        if outside and not ok:
            raise SpecError(
                f"{self.path or self.name}: data: {outside[0]!r} is outside the spec folder "
                f"{self.base_dir}; move it beside the spec, pass --input, or pass --allow-outside-data "
                "(or set CURATE_ALLOW_OUTSIDE_DATA=1) if you mean it"
            )
        return [self.base_dir / d for d in self.data]

    def data_outside(self) -> list[str]:
        """The `data:` entries that are absolute or lead out of the spec folder (symlinks followed)."""
        base = os.path.realpath(self.base_dir)
        out = []
        for d in self.data:
            cands = [d]
            head, sep, tail = d.rpartition(":")
            if sep and head and "/" not in tail and "\\" not in tail:  # FILE:FORMAT
                cands.append(head)
            for c in cands:
                full = os.path.realpath(os.path.join(base, c))
                if os.path.isabs(c) or (full != base and not full.startswith(base + os.sep)):
                    out.append(d)
                    break
        return out

    def automatic_rules(self) -> list[Rule]:
        return [r for r in self.rules if r.automatic]

    def human_rules(self) -> list[Rule]:
        return [r for r in self.rules if not r.automatic]

    def judge_rules(self) -> list[Rule]:
        return [r for r in self.rules if r.judge]

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def default_out_dir(self) -> Path:
        return Path("out") / self.name / f"v{self.version}"

    def default_expand_dir(self) -> Path:
        """`curate expand`'s folder: beside the build folder, never inside one (a build owns its folder)."""
        return Path("out") / self.name / f"v{self.version}-expand"


def _check_json_schema(schema: dict[str, Any]) -> None:
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        raise ValueError(f"not a valid JSON Schema at {where}: {err.message}") from None


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


_ALLOW_OUTSIDE = False


def allow_outside_data(on: bool = True) -> None:
    """Let `data:` entries outside the spec folder be read (the CLI's --allow-outside-data)."""
    global _ALLOW_OUTSIDE
    _ALLOW_OUTSIDE = on


def _outside_data_allowed() -> bool:
    return _ALLOW_OUTSIDE or os.environ.get("CURATE_ALLOW_OUTSIDE_DATA", "").strip().lower() in (
        "1",
        "true",
        "yes",
    )


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
            from curate.checks.text_checks import regex_timeout, risky_pattern

            why = risky_pattern(pattern)
            if why:
                add(
                    "slow_regex",
                    f"pattern {pattern!r} has {why}: it may take exponential time, so it runs with a "
                    f"{regex_timeout():g} s bound per text and counts as failed when it runs out; simplify it",
                    f"rules[{i}] ({rule.id})",
                )
    from curate.checks.code import code_rules

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


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec file, for editors (written to schemas/spec.schema.json)."""
    schema = Spec.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "curate behavior spec"
    schema.get("properties", {}).pop("path", None)
    schema.get("properties", {}).pop("digest", None)
    return schema
