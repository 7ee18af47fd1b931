"""The behavior spec: one YAML file that is the labeling guide, the curation contract and the eval checklist.

>>> from curate.spec import load_spec, lint
>>> spec = load_spec("specs/support-triage")          # a folder with spec.yaml, or the YAML file itself
>>> [r.id for r in spec.automatic_rules()][:2]
['valid-json', 'matches-schema']
>>> lint(spec)                                         # findings a spec author wants before labeling starts
[]

The model is in `curate.spec_model`, loading in `curate.spec_load`, lint in `curate.spec_lint`; every name is
importable from here. Modules that lint imports (the checks, labeling) import the model from `curate.spec_model`,
so no import circle runs through this module.
"""

from __future__ import annotations

from curate.spec_lint import (
    Finding,
    lint,
)
from curate.spec_load import (
    MAX_SPEC_ALIASES,
    MAX_SPEC_BYTES,
    MAX_SPEC_DEPTH,
    MAX_SPEC_NODES,
    load_spec,
    resolve_spec_path,
)
from curate.spec_model import (
    CASE_CATEGORIES,
    CHECK_KINDS,
    FAILURE_CATEGORIES,
    SPEC_FILENAMES,
    CaseCategory,
    Check,
    Coverage,
    Dedup,
    Example,
    Export,
    FailureCategory,
    JsonParse,
    JsonSchemaCheck,
    JudgeCheck,
    JudgeSettings,
    MaxChars,
    MaxSentences,
    MaxWords,
    Output,
    PhrasesAbsent,
    PhrasesPresent,
    PointerEquals,
    PythonCheck,
    QuestionCount,
    Refusal,
    RegexAbsent,
    RegexPresent,
    Rule,
    SchemaDoc,
    Spec,
    Split,
    ValuesInInput,
    When,
    allow_outside_data,
    code_rules,
    spec_json_schema,
    target_file,
)

__all__ = [
    "CASE_CATEGORIES",
    "CHECK_KINDS",
    "FAILURE_CATEGORIES",
    "MAX_SPEC_ALIASES",
    "MAX_SPEC_BYTES",
    "MAX_SPEC_DEPTH",
    "MAX_SPEC_NODES",
    "SPEC_FILENAMES",
    "CaseCategory",
    "Check",
    "Coverage",
    "Dedup",
    "Example",
    "Export",
    "FailureCategory",
    "Finding",
    "JsonParse",
    "JsonSchemaCheck",
    "JudgeCheck",
    "JudgeSettings",
    "MaxChars",
    "MaxSentences",
    "MaxWords",
    "Output",
    "PhrasesAbsent",
    "PhrasesPresent",
    "PointerEquals",
    "PythonCheck",
    "QuestionCount",
    "Refusal",
    "RegexAbsent",
    "RegexPresent",
    "Rule",
    "SchemaDoc",
    "Spec",
    "Split",
    "ValuesInInput",
    "When",
    "allow_outside_data",
    "code_rules",
    "lint",
    "load_spec",
    "resolve_spec_path",
    "spec_json_schema",
    "target_file",
]
