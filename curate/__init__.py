"""curate: a behavior spec in, a training-ready dataset for TRL out.

import curate
spec = curate.load_spec("specs/support-triage")
assert not curate.lint(spec)
results = curate.check_response(spec, '{"intent": "other"}', user_text="hi")
"""

from curate._version import __version__
from curate.checks import check_response, run_rules
from curate.errors import CurateError
from curate.records import Message, PreferenceRecord, SFTRecord, parse_record
from curate.spec import Spec, lint, load_spec

__all__ = [
    "CurateError",
    "Message",
    "PreferenceRecord",
    "SFTRecord",
    "Spec",
    "__version__",
    "build",
    "check_response",
    "lint",
    "load_spec",
    "parse_record",
    "run_rules",
]


def __getattr__(name: str):  # lazy: `import curate` stays light for the CLI
    if name == "build":
        from curate.steps.pipeline import build

        return build
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
