"""The spec's model: rules and their checks, cases, split, export, dedup and judge settings (pydantic, frozen,
unknown keys refused). Import these names from `curate.spec`; modules below the spec's lint (the checks, labeling)
import them from here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

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


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec file, for editors (written to schemas/spec.schema.json)."""
    schema = Spec.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "curate behavior spec"
    schema.get("properties", {}).pop("path", None)
    schema.get("properties", {}).pop("digest", None)
    return schema


# ---------------------------------------------------------------- python rules: what they would import


def target_file(function: str, base_dir: str | Path) -> str:
    """What `module:function` would import: the module file beside the spec, else the installed module's name."""
    module = function.partition(":")[0]
    local = Path(base_dir, *module.split(".")).with_suffix(".py")
    return str(local) if local.is_file() else f"installed module {module!r}"


def code_rules(spec: Spec) -> list[tuple[str, str, str]]:
    """(rule id, module:function, what it imports) of every `python` rule of the spec; nothing is imported."""
    out = []
    for rule in spec.rules:
        check: Any = rule.check
        if check != "human" and getattr(check, "kind", None) == "python":
            out.append((rule.id, check.function, target_file(check.function, spec.base_dir)))
    return out
