"""What a check sees: the response (parsed once), the user's text, the record's category and tags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from curate.spec_model import Spec

_MISSING = object()


class PointerError(LookupError):
    pass


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """RFC 6901 JSON Pointer lookup; raises PointerError when a step is missing."""
    if pointer in ("", "/"):
        return doc
    node = doc
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            if part not in node:
                raise PointerError(pointer)
            node = node[part]
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise PointerError(pointer)
            node = node[int(part)]
        else:
            raise PointerError(pointer)
    return node


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@dataclass
class CheckContext:
    spec: Spec
    response: str
    user_text: str = ""
    category: str = "typical"
    tags: frozenset[str] = field(default_factory=frozenset)
    skip_reason: str = ""
    _parsed: Any = field(default=_MISSING, repr=False)
    _parse_error: str = ""

    @property
    def parsed(self) -> Any:
        """The response as JSON, or _MISSING when it does not parse (see parse_error)."""
        if self._parsed is _MISSING and not self._parse_error:
            try:
                self._parsed = orjson.loads(self.response.strip().encode("utf-8"))
            except orjson.JSONDecodeError as err:
                self._parse_error = str(err)
        return self._parsed

    @property
    def parse_error(self) -> str:
        _ = self.parsed
        return self._parse_error

    def value(self, pointer: str | None) -> Any:
        """The value a check looks at: the whole text, or the JSON value at `pointer`.

        Returns _MISSING (and sets skip_reason) when the response is not JSON or lacks the pointer: the
        json_parse / json_schema rules report that, so field rules stay quiet instead of piling on.
        """
        if not pointer:
            return self.response
        doc = self.parsed
        if doc is _MISSING:
            self.skip_reason = "response is not valid JSON (reported by the JSON rules)"
            return _MISSING
        try:
            return resolve_pointer(doc, pointer)
        except PointerError:
            self.skip_reason = f"response has no {pointer} (reported by the schema rule)"
            return _MISSING

    def text(self, pointer: str | None) -> str | None:
        """The value as text (JSON-serialised when not a string), or None when missing."""
        v = self.value(pointer)
        if v is _MISSING:
            return None
        if isinstance(v, str):
            return v
        return orjson.dumps(v).decode("utf-8")

    def when_fails(self, when: Any) -> str:
        """'' when every condition holds, else why the rule does not apply."""
        if when is None:
            return ""
        if when.category is not None and self.category != when.category:
            return f"applies to category {when.category} only"
        if when.tag is not None and when.tag not in self.tags:
            return f"applies to records tagged {when.tag} only"
        if when.not_tag is not None and when.not_tag in self.tags:
            return f"does not apply to records tagged {when.not_tag}"
        for ptr, want_empty in ((when.nonempty, False), (when.empty, True)):
            if ptr is None:
                continue
            v = self.value(ptr)
            if v is _MISSING:
                if self.parsed is _MISSING:
                    return "response is not valid JSON (reported by the JSON rules)"
                v = None
            if is_empty(v) != want_empty:
                return f"applies only when {ptr} is {'empty' if want_empty else 'not empty'}"
        if when.equals is not None:
            v = self.value(when.equals.pointer)
            if v is _MISSING or v != when.equals.value:
                return f"applies only when {when.equals.pointer} == {when.equals.value!r}"
        return ""


MISSING = _MISSING
