"""Strict validation of outbound Intercom request bodies against Intercom's OpenAPI description.

Why: Intercom answers a malformed body with a 400 at run time, in production, after the job has
been queued and retried. Checking every request the workers send (through the fake, or in unit
tests with mocked HTTP) against the official 2.14 description moves that failure to the test run.

Only requests are checked, and strictly (required properties, types, enums, ``oneOf``,
``additionalProperties`` where the description sets it). Responses are not: Intercom's own
response examples do not always match their schemas.

The description is about 0.9 MB of YAML, so it is parsed once per process and per file version
(``load_spec`` / ``get_checker`` are cached), and a validator is built once per operation, on
first use. The validator libraries (``openapi-schema-validator``, ``referencing``, ``jsonschema``)
and PyYAML are imported lazily, so importing this module costs nothing and works without them.

Where the published description rejects requests that Intercom demonstrably accepts, a small,
named patch (an erratum, see ``SPEC_ERRATA``) is applied to the loaded copy. Each erratum checks
that the part of the description it fixes still has the shape it expects and otherwise leaves the
description alone, so a corrected future version of the file is used as published.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SPEC_ERRATA",
    "Operation",
    "RequestChecker",
    "SpecError",
    "Violation",
    "get_checker",
    "load_spec",
]

_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_SPEC_URI = "urn:intercom-openapi"
_MAX_MESSAGE = 400


class SpecError(RuntimeError):
    """The OpenAPI description could not be read or is not an OpenAPI 3.0 document."""


@dataclass(frozen=True)
class Violation:
    """One way in which a request breaks the OpenAPI description.

    ``pointer`` is a JSON pointer into the request body (or ``path:<name>`` /
    ``query:<name>`` for parameters), so a failing test names the offending field.
    """

    operation: str
    method: str
    path: str
    template: str
    pointer: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """Plain-JSON form, as recorded by the fake and served on ``/_fake/stats``."""
        return {
            "operation": self.operation,
            "method": self.method,
            "path": self.path,
            "template": self.template,
            "pointer": self.pointer,
            "message": self.message,
        }

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.operation}) {self.pointer}: {self.message}"


@dataclass(frozen=True)
class Operation:
    """An operation of the description: what a request to ``method template`` must look like."""

    operation_id: str
    method: str
    template: str
    body_pointer: str | None
    path_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    query_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Errata: published description vs. what Intercom accepts
# --------------------------------------------------------------------------------------------


def _schemas(spec: dict[str, Any]) -> dict[str, Any]:
    return spec.get("components", {}).get("schemas", {})


def _erratum_search_mixed_nesting(spec: dict[str, Any]) -> bool:
    """A group's ``value`` may mix single filters and nested groups.

    The description says the array holds only groups or only filters (``oneOf`` of two
    arrays), but Intercom's search documentation nests an ``OR`` group next to plain filters
    inside an ``AND``, and the API accepts it.
    """
    prop = _schemas(spec).get("multiple_filter_search_request", {}).get("properties", {})
    value = prop.get("value")
    if not isinstance(value, dict) or len(value.get("oneOf", [])) != 2:
        return False
    single = "#/components/schemas/single_filter_search_request"
    multiple = "#/components/schemas/multiple_filter_search_request"
    refs = {branch.get("items", {}).get("$ref") for branch in value["oneOf"]}
    if refs != {single, multiple}:
        return False
    prop["value"] = {
        "type": "array",
        "description": value.get("description", "Filters and nested groups."),
        "items": {"anyOf": [{"$ref": single}, {"$ref": multiple}]},
    }
    return True


def _erratum_search_null_value(spec: dict[str, Any]) -> bool:
    """A single filter's ``value`` may be ``null`` (the description marks it ``nullable``).

    OpenAPI 3.0 only honours ``nullable`` next to ``type``; on a bare ``oneOf`` it is
    ignored by validators, which would reject the documented null search.
    """
    prop = _schemas(spec).get("single_filter_search_request", {}).get("properties", {})
    value = prop.get("value")
    if not isinstance(value, dict) or not value.get("nullable") or "oneOf" not in value:
        return False
    if {"enum": [None]} in value["oneOf"]:
        return False
    value["oneOf"] = [*value["oneOf"], {"enum": [None]}]
    return True


def _erratum_company_custom_attribute_types(spec: dict[str, Any]) -> bool:
    """Company ``custom_attributes`` values may be numbers and booleans, not only strings.

    The description restricts them to strings, while its own example in the same schema
    sends ``paid_subscriber: true`` and ``monthly_spend: 155.5``, and integer, float and
    boolean company data attributes exist (``POST /data_attributes``).
    """
    schema = _schemas(spec).get("create_or_update_company_request", {})
    custom = schema.get("properties", {}).get("custom_attributes")
    if not isinstance(custom, dict) or custom.get("additionalProperties") != {"type": "string"}:
        return False
    custom["additionalProperties"] = {
        "anyOf": [
            {"type": "string"},
            {"type": "number"},
            {"type": "boolean"},
            {"enum": [None]},
        ]
    }
    return True


def _erratum_create_tag_ambiguity(spec: dict[str, Any]) -> bool:
    """``POST /tags`` bodies are matched with ``anyOf``, not ``oneOf``.

    ``untag_company_request`` is a superset of ``tag_company_request`` (its only extra
    property is optional), so every company-tagging body matches both and ``oneOf``
    rejects it. Plain ``{"name": ...}`` matches only the first alternative either way.
    """
    post = spec.get("paths", {}).get("/tags", {}).get("post", {})
    media = post.get("requestBody", {}).get("content", {}).get("application/json", {})
    schema = media.get("schema")
    if not isinstance(schema, dict) or "oneOf" not in schema:
        return False
    refs = [branch.get("$ref", "") for branch in schema["oneOf"]]
    if not any(ref.endswith("/untag_company_request") for ref in refs):
        return False
    schema["anyOf"] = schema.pop("oneOf")
    return True


#: (name, patch) pairs applied to every loaded description; each patch's docstring says why.
SPEC_ERRATA: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    ("search-mixed-nesting", _erratum_search_mixed_nesting),
    ("search-null-value", _erratum_search_null_value),
    ("company-custom-attribute-types", _erratum_company_custom_attribute_types),
    ("create-tag-any-of", _erratum_create_tag_ambiguity),
)


# --------------------------------------------------------------------------------------------
# Loading (cached per process and file version)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> tuple[dict[str, Any], tuple[str, ...]]:
    del mtime_ns, size  # part of the cache key only: a changed file is parsed again
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, encoding="utf-8") as handle:
            spec = yaml.load(handle, Loader=loader)  # noqa: S506 (a SafeLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"cannot read OpenAPI description {path}: {exc}") from exc
    if not isinstance(spec, dict) or not str(spec.get("openapi", "")).startswith("3.0"):
        raise SpecError(f"{path} is not an OpenAPI 3.0 description")
    applied = tuple(name for name, patch in SPEC_ERRATA if patch(spec))
    return spec, applied


def _file_key(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    resolved = str(Path(path).resolve())
    try:
        info = os.stat(resolved)
    except OSError as exc:
        raise SpecError(f"cannot read OpenAPI description {resolved}: {exc}") from exc
    return resolved, info.st_mtime_ns, info.st_size


def load_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed description with ``SPEC_ERRATA`` applied; shared, so treat it as read-only."""
    return _load(*_file_key(path))[0]


@functools.lru_cache(maxsize=4)
def _checker(path: str, mtime_ns: int, size: int) -> RequestChecker:
    spec, applied = _load(path, mtime_ns, size)
    return RequestChecker(spec, source=path, errata_applied=applied)


def get_checker(path: str | os.PathLike[str]) -> RequestChecker:
    """The process-wide checker for one description file (built on first call)."""
    return _checker(*_file_key(path))


# --------------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------------


def _escape_pointer(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _pointer(parts: Any) -> str:
    return "/" + "/".join(_escape_pointer(str(part)) for part in parts) if parts else "/"


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _coerce_param(raw: str, schema: Mapping[str, Any]) -> tuple[bool, Any]:
    """Turn a path or query string into the JSON value the parameter schema describes."""
    kind = schema.get("type")
    if kind == "integer":
        if re.fullmatch(r"-?\d+", raw):
            return True, int(raw)
        return False, raw
    if kind == "number":
        try:
            return True, float(raw)
        except ValueError:
            return False, raw
    if kind == "boolean":
        if raw in ("true", "false"):
            return True, raw == "true"
        return False, raw
    return True, raw


def _deepest_leaf(error: Any) -> Any:
    """The failure deepest inside the body among all alternatives of a ``oneOf``/``anyOf``.

    The alternative that got furthest into the body is the one the sender meant, so its
    failure (say ``/query/value/0/operator: 'gt' is not one of [...]``) is the useful one;
    on a tie, a wrong type is the less specific explanation.
    """
    leaves = []
    stack = list(error.context)
    while stack:
        item = stack.pop()
        if item.context:
            stack.extend(item.context)
        else:
            leaves.append(item)
    return max(leaves, key=lambda e: (len(e.absolute_path), e.validator != "type"))


class RequestChecker:
    """Finds the operation for a request and reports how its body and parameters break it."""

    def __init__(
        self,
        spec: dict[str, Any],
        *,
        source: str = "<memory>",
        errata_applied: tuple[str, ...] = (),
    ) -> None:
        self.source = source
        self.errata_applied = errata_applied
        self._spec = spec
        self._lock = threading.Lock()
        self._validators: dict[str, Any] = {}
        self._registry: Any = None
        self._operations: dict[tuple[str, str], Operation] = {}
        self._matchers: list[tuple[int, re.Pattern[str], str]] = []
        self._index()

    # -- operations ---------------------------------------------------------------------

    def _index(self) -> None:
        for template, item in self._spec.get("paths", {}).items():
            if not isinstance(item, dict):
                continue
            shared = item.get("parameters", [])
            for method in _HTTP_METHODS:
                op = item.get(method)
                if not isinstance(op, dict):
                    continue
                path_params: dict[str, Mapping[str, Any]] = {}
                query_params: dict[str, Mapping[str, Any]] = {}
                for param in [*shared, *op.get("parameters", [])]:
                    param = self._deref(param)
                    target = {"path": path_params, "query": query_params}.get(param.get("in"))
                    if target is not None:
                        target[param["name"]] = self._deref(param.get("schema", {}))
                media = op.get("requestBody", {}).get("content", {}).get("application/json")
                body_pointer = None
                if isinstance(media, dict) and "schema" in media:
                    body_pointer = "/".join(
                        [
                            "#/paths",
                            _escape_pointer(template),
                            method,
                            "requestBody/content/application~1json/schema",
                        ]
                    )
                self._operations[(method.upper(), template)] = Operation(
                    operation_id=str(op.get("operationId", f"{method} {template}")),
                    method=method.upper(),
                    template=template,
                    body_pointer=body_pointer,
                    path_params=path_params,
                    query_params=query_params,
                )
            pattern = re.sub(r"\\\{[^}/]+\\\}", "[^/]+", re.escape(template))
            templated = template.count("{")
            self._matchers.append((templated, re.compile(f"^{pattern}$"), template))
        # Literal segments win over parameters (``/contacts/search`` before ``/contacts/{id}``).
        self._matchers.sort(key=lambda entry: (entry[0], -len(entry[2])))

    def _deref(self, node: Any) -> dict[str, Any]:
        while isinstance(node, dict) and "$ref" in node:
            target: Any = self._spec
            for token in node["$ref"].lstrip("#/").split("/"):
                target = target[token.replace("~1", "/").replace("~0", "~")]
            node = target
        return node if isinstance(node, dict) else {}

    def operation(self, method: str, path: str) -> Operation | None:
        """The operation a request goes to; ``path`` may be concrete or a template."""
        method = method.upper()
        exact = self._operations.get((method, path))
        if exact is not None:
            return exact
        for _, pattern, template in self._matchers:
            if pattern.match(path):
                op = self._operations.get((method, template))
                if op is not None:
                    return op
        return None

    def _template_values(self, template: str, path: str) -> dict[str, str]:
        names = re.findall(r"\{([^}/]+)\}", template)
        pattern = re.sub(r"\\\{[^}/]+\\\}", "([^/]+)", re.escape(template))
        match = re.match(f"^{pattern}$", path)
        if not match or path == template:
            return {}
        return dict(zip(names, match.groups(), strict=True))

    # -- validation ---------------------------------------------------------------------

    def _validator(self, pointer: str) -> Any:
        with self._lock:
            validator = self._validators.get(pointer)
            if validator is not None:
                return validator
            from openapi_schema_validator import OAS30WriteValidator
            from referencing import Registry, Resource, Specification

            if self._registry is None:
                # The description is one resource; OpenAPI 3.0 schemas carry no ``id``s, so
                # nothing inside it may be taken for one (properties are often named ``id``).
                opaque = Specification(
                    name="openapi-3.0-document",
                    id_of=lambda contents: None,
                    subresources_of=lambda contents: (),
                    anchors_in=lambda specification, contents: (),
                    maybe_in_subresource=lambda segments, resolver, subresource: resolver,
                )
                resource = Resource(contents=self._spec, specification=opaque)
                self._registry = Registry().with_resource(_SPEC_URI, resource)
            validator = OAS30WriteValidator(
                {"$ref": f"{_SPEC_URI}{pointer}"},
                registry=self._registry,
                format_checker=OAS30WriteValidator.FORMAT_CHECKER,
            )
            self._validators[pointer] = validator
            return validator

    def check(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
    ) -> list[Violation]:
        """Every violation of one request; an empty list means the request is valid.

        A missing body (``None``) is checked as ``{}``: Intercom reads absent parameters as
        absent, so a ``POST /articles`` without a body misses ``title`` and ``author_id``.
        A request whose operation is not in the description is itself a violation.
        """
        method = method.upper()
        op = self.operation(method, path)
        if op is None:
            return [Violation("unknown", method, path, path, "/", "no such operation in spec")]
        found: list[Violation] = []

        def add(pointer: str, message: str) -> None:
            found.append(
                Violation(op.operation_id, method, path, op.template, pointer, _shorten(message))
            )

        for name, raw in self._template_values(op.template, path).items():
            schema = op.path_params.get(name, {})
            ok, value = _coerce_param(raw, schema)
            if not ok:
                add(f"path:{name}", f"{raw!r} is not of type {schema.get('type')!r}")
            elif "enum" in schema and value not in schema["enum"]:
                add(f"path:{name}", f"{raw!r} is not one of {schema['enum']!r}")
        for name, raw in (query or {}).items():
            schema = op.query_params.get(name)
            if schema is None:
                continue  # undeclared query parameters (e.g. ``page`` on listArticles) pass
            ok, value = _coerce_param(raw, schema)
            if not ok:
                add(f"query:{name}", f"{raw!r} is not of type {schema.get('type')!r}")
            elif "enum" in schema and value not in schema["enum"]:
                add(f"query:{name}", f"{raw!r} is not one of {schema['enum']!r}")
        if op.body_pointer is not None:
            found.extend(self._check_body(op, method, path, {} if body is None else body))
        return found

    def check_body(self, method: str, path: str, body: Any) -> list[Violation]:
        """Only the body part of ``check`` (parameters are not looked at)."""
        op = self.operation(method, path)
        if op is None:
            return [Violation("unknown", method, path, path, "/", "no such operation in spec")]
        if op.body_pointer is None:
            return []
        return self._check_body(op, method.upper(), path, {} if body is None else body)

    def _check_body(self, op: Operation, method: str, path: str, body: Any) -> list[Violation]:
        assert op.body_pointer is not None
        validator = self._validator(op.body_pointer)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.path)))
        found = []
        for error in errors:
            message = error.message
            if error.context:
                # oneOf/anyOf: say which part of the closest alternative failed.
                closest = _deepest_leaf(error)
                where = _pointer(closest.absolute_path)
                message = f"{message}; closest: {where}: {closest.message}"
            found.append(
                Violation(
                    op.operation_id,
                    method,
                    path,
                    op.template,
                    _pointer(error.absolute_path),
                    _shorten(message),
                )
            )
        return found
