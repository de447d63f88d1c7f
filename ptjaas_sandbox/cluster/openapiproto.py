"""The OpenAPI v2 document in protobuf, as kube-apiserver serves ``/openapi/v2`` to a client that
accepts ``application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` (kubectl does, to validate
a ``kind: List``): the ``openapi.v2.Document`` message of gnostic's ``openapiv2/OpenAPIv2.proto``
(google/gnostic; field numbers below are that schema's), encoded with the protobuf wire format.

No maintained pure-Python package encodes gnostic's messages, so the few wire-format rules are
written here (varints, length-delimited fields, 64-bit doubles). As gnostic does, values with no
message of their own (``default``, ``enum``, ``example``, ``x-*`` extensions) are an ``Any``
holding their YAML text (JSON, which YAML reads); proto3 defaults (empty, 0, false) are left out.
"""

from __future__ import annotations

import functools
import json
import struct

MEDIA_TYPES = ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
               "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
# what the answer is labelled, whichever was asked for (Go's mime parser refuses the '@' form)
CONTENT_TYPE = MEDIA_TYPES[1]


# ---- the wire format ---------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64: two's complement, ten bytes
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _len(field: int, data: bytes) -> bytes:
    return _tag(field, 2) + _varint(len(data)) + data


def _string(field: int, value) -> bytes:
    return _len(field, str(value).encode()) if value not in (None, "") else b""


def _strings(field: int, values) -> bytes:
    if isinstance(values, str):
        values = [values]
    return b"".join(_len(field, str(v).encode()) for v in values or ())


def _bool(field: int, value) -> bytes:
    return _tag(field, 0) + b"\x01" if value else b""


def _int(field: int, value) -> bytes:
    return _tag(field, 0) + _varint(int(value)) if value else b""


def _double(field: int, value) -> bytes:
    return _tag(field, 1) + struct.pack("<d", float(value)) if value else b""


def _message(field: int, body: bytes) -> bytes:
    return _len(field, body)


# ---- gnostic's messages ------------------------------------------------------------------------

def _any(value) -> bytes:
    """``Any``: field 2, ``yaml``."""
    return _string(2, json.dumps(value))


def _named_any(name, value) -> bytes:
    return _string(1, name) + _message(2, _any(value))


def _extensions(field: int, obj: dict) -> bytes:
    return b"".join(_message(field, _named_any(k, v)) for k, v in obj.items() if k.startswith("x-"))


def _external_docs(docs: dict) -> bytes:
    return _string(1, docs.get("description")) + _string(2, docs.get("url")) + _extensions(3, docs)


def schema(s: dict) -> bytes:
    """``Schema``."""
    out = [_string(1, s.get("$ref")), _string(2, s.get("format")), _string(3, s.get("title")),
           _string(4, s.get("description"))]
    if "default" in s:
        out.append(_message(5, _any(s["default"])))
    out += [_double(6, s.get("multipleOf")), _double(7, s.get("maximum")), _bool(8, s.get("exclusiveMaximum")),
            _double(9, s.get("minimum")), _bool(10, s.get("exclusiveMinimum")), _int(11, s.get("maxLength")),
            _int(12, s.get("minLength")), _string(13, s.get("pattern")), _int(14, s.get("maxItems")),
            _int(15, s.get("minItems")), _bool(16, s.get("uniqueItems")), _int(17, s.get("maxProperties")),
            _int(18, s.get("minProperties")), _strings(19, s.get("required"))]
    out += [_message(20, _any(v)) for v in s.get("enum") or ()]
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        out.append(_message(21, _message(1, schema(extra))))
    elif isinstance(extra, bool):
        out.append(_message(21, _tag(2, 0) + (b"\x01" if extra else b"\x00")))
    if "type" in s:
        out.append(_message(22, _strings(1, s["type"])))
    if "items" in s:
        items = s["items"] if isinstance(s["items"], list) else [s["items"]]
        out.append(_message(23, b"".join(_message(1, schema(i)) for i in items)))
    out += [_message(24, schema(a)) for a in s.get("allOf") or ()]
    if "properties" in s:
        out.append(_message(25, b"".join(_message(1, _string(1, k) + _message(2, schema(v)))
                                         for k, v in s["properties"].items())))
    out += [_string(26, s.get("discriminator")), _bool(27, s.get("readOnly"))]
    if "externalDocs" in s:
        out.append(_message(29, _external_docs(s["externalDocs"])))
    if "example" in s:
        out.append(_message(30, _any(s["example"])))
    out.append(_extensions(31, s))
    return b"".join(out)


def _primitive(p: dict, start: int) -> bytes:
    """The fields from ``type`` on, shared by ``PrimitivesItems`` (from 1) and the non-body
    parameter sub-schemas (from 5 or 6), in the schema's order."""
    f = start
    out = [_string(f, p.get("type")), _string(f + 1, p.get("format"))]
    if "items" in p:
        out.append(_message(f + 2, _primitive(p["items"], 1)))
    out.append(_string(f + 3, p.get("collectionFormat")))
    if "default" in p:
        out.append(_message(f + 4, _any(p["default"])))
    out += [_double(f + 5, p.get("maximum")), _bool(f + 6, p.get("exclusiveMaximum")), _double(f + 7, p.get("minimum")),
            _bool(f + 8, p.get("exclusiveMinimum")), _int(f + 9, p.get("maxLength")), _int(f + 10, p.get("minLength")),
            _string(f + 11, p.get("pattern")), _int(f + 12, p.get("maxItems")), _int(f + 13, p.get("minItems")),
            _bool(f + 14, p.get("uniqueItems"))]
    out += [_message(f + 15, _any(v)) for v in p.get("enum") or ()]
    out += [_double(f + 16, p.get("multipleOf")), _extensions(f + 17, p)]
    return b"".join(out)


# NonBodyParameter's oneof field, and where each sub-schema's ``type`` field is
_NON_BODY = {"header": (1, 5), "formData": (2, 6), "query": (3, 6), "path": (4, 5)}


def parameter_item(p: dict) -> bytes:
    """``ParametersItem``: a ``Parameter`` (1) or a ``JsonReference`` (2)."""
    if "$ref" in p:
        return _message(2, _string(1, p["$ref"]) + _string(2, p.get("description")))
    head = _bool(1, p.get("required")), _string(2, p.get("in")), _string(3, p.get("description")), _string(4, p.get("name"))
    if p.get("in") == "body":
        body = (_string(1, p.get("description")) + _string(2, p.get("name")) + _string(3, p.get("in"))
                + _bool(4, p.get("required")) + (_message(5, schema(p["schema"])) if "schema" in p else b"")
                + _extensions(6, p))
        return _message(1, _message(1, body))
    which, start = _NON_BODY.get(p.get("in"), (3, 6))
    sub = b"".join(head) + (_bool(5, p.get("allowEmptyValue")) if start == 6 else b"") + _primitive(p, start)
    return _message(1, _message(2, _message(which, sub)))


def _response(r: dict) -> bytes:
    if "$ref" in r:
        return _message(2, _string(1, r["$ref"]) + _string(2, r.get("description")))
    body = _string(1, r.get("description"))
    if "schema" in r:
        body += _message(2, _message(1, schema(r["schema"])))
    return _message(1, body + _extensions(5, r))


def operation(op: dict) -> bytes:
    out = [_strings(1, op.get("tags")), _string(2, op.get("summary")), _string(3, op.get("description"))]
    if "externalDocs" in op:
        out.append(_message(4, _external_docs(op["externalDocs"])))
    out += [_string(5, op.get("operationId")), _strings(6, op.get("produces")), _strings(7, op.get("consumes"))]
    out += [_message(8, parameter_item(p)) for p in op.get("parameters") or ()]
    if "responses" in op:
        codes = b"".join(_message(1, _string(1, code) + _message(2, _response(r)))
                         for code, r in op["responses"].items() if not code.startswith("x-"))
        out.append(_message(9, codes + _extensions(2, op["responses"])))
    out += [_strings(10, op.get("schemes")), _bool(11, op.get("deprecated"))]
    out += [_message(12, _security(req)) for req in op.get("security") or ()]
    out.append(_extensions(13, op))
    return b"".join(out)


_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def path_item(item: dict) -> bytes:
    out = [_string(1, item.get("$ref"))]
    out += [_message(n, operation(item[m])) for m, n in _METHODS.items() if m in item]
    out += [_message(9, parameter_item(p)) for p in item.get("parameters") or ()]
    out.append(_extensions(10, item))
    return b"".join(out)


def _security(requirement: dict) -> bytes:
    """``SecurityRequirement``: name -> ``StringArray``."""
    return b"".join(_message(1, _string(1, k) + _message(2, _strings(1, v))) for k, v in requirement.items())


def _security_definition(d: dict) -> bytes:
    if d.get("type") == "apiKey":
        body = (_string(1, d.get("type")) + _string(2, d.get("name")) + _string(3, d.get("in"))
                + _string(4, d.get("description")) + _extensions(5, d))
        return _message(2, body)
    body = _string(1, d.get("type")) + _string(2, d.get("description")) + _extensions(3, d)
    return _message(1, body)


def document(doc: dict) -> bytes:
    """``Document`` for an OpenAPI v2 document (a dict as ``/openapi/v2`` serves it in JSON)."""
    info = doc.get("info") or {}
    out = [_string(1, doc.get("swagger")),
           _message(2, _string(1, info.get("title")) + _string(2, info.get("version"))
                    + _string(3, info.get("description")) + _extensions(7, info)),
           _string(3, doc.get("host")), _string(4, doc.get("basePath")), _strings(5, doc.get("schemes")),
           _strings(6, doc.get("consumes")), _strings(7, doc.get("produces"))]
    if "paths" in doc:
        paths = doc["paths"]
        out.append(_message(8, _extensions(1, paths) + b"".join(
            _message(2, _string(1, p) + _message(2, path_item(item))) for p, item in paths.items()
            if not p.startswith("x-"))))
    if "definitions" in doc:
        out.append(_message(9, b"".join(_message(1, _string(1, k) + _message(2, schema(v)))
                                        for k, v in doc["definitions"].items())))
    out += [_message(12, _security(req)) for req in doc.get("security") or ()]
    if "securityDefinitions" in doc:
        out.append(_message(13, b"".join(_message(1, _string(1, k) + _message(2, _security_definition(v)))
                                         for k, v in doc["securityDefinitions"].items())))
    out.append(_extensions(16, doc))
    return b"".join(out)


@functools.lru_cache(maxsize=4)
def v2_protobuf(json_body: bytes) -> bytes:
    """The protobuf of a served JSON v2 document (encoded once per document)."""
    return document(json.loads(json_body))


def wants_protobuf(accept: str) -> bool:
    """Does an ``Accept`` header ask for the protobuf document (as kubectl's does)?"""
    return any(m.split(";")[0].strip() in MEDIA_TYPES for m in (accept or "").split(","))
