"""Request bodies as kube-apiserver reads them: JSON or YAML (415 for other media types, e.g.
``application/vnd.kubernetes.protobuf``, which no maintained Python package decodes), strict field
validation (``?fieldValidation=Strict``) against the OpenAPI schemas, and server-side apply
(``application/apply-patch+yaml``)."""

import json

import yaml

from . import errors, openapi

PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")
APPLY = "application/apply-patch+yaml"


def media_type(content_type):
    return (content_type or "").split(";")[0].strip().lower()


def unsupported(content_type, accepted):
    return errors.ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media types include: "
                           + ", ".join(accepted))


def decode(raw, content_type, patch=False):
    """The body as Python data; {} when empty."""
    kind = media_type(content_type)
    if not raw:
        return {}
    if patch:
        if kind not in PATCH_TYPES:
            raise unsupported(content_type, PATCH_TYPES)
    elif kind not in ("", "application/json", "application/yaml", "*/*"):
        raise unsupported(content_type, ("application/json", "application/yaml"))
    if kind in ("application/yaml", APPLY):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise errors.bad_request(f"error converting YAML to JSON: {e}") from None
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.bad_request("the body of the request was not valid JSON") from None


def check_apply_fields(rtype, obj, minor):
    """Server-side apply builds a typed object from the schema whatever ``fieldValidation`` says:
    an undeclared field fails it, with the real server's (500) answer."""
    try:
        unknown = sorted(openapi.unknown_fields(minor, rtype, obj))
    except openapi.Unavailable:
        return
    if unknown:
        meta = obj.get("metadata") or {}
        raise errors.ApiError(500, None, f"failed to create typed patch object ({meta.get('namespace', '')}/{meta.get('name', '')}; "
                                         f"{rtype.api_version}, Kind={rtype.kind}): {unknown[0]}: field not declared in schema")


def invalid_patch(patched, strict_error):
    """A patch whose result fails strict decoding: 422, quoting the patched object, as the real server."""
    value = json.dumps(patched, separators=(",", ":"))
    message = f"Invalid value: {json.dumps(value)}: {strict_error.message.split(': ', 1)[1]}"
    return errors.ApiError(422, "Invalid", f' "" is invalid: patch: {message}',
                           {"causes": [{"reason": "FieldValueInvalid", "message": message, "field": "patch"}]})


def prune(rtype, obj, minor, patch=False):
    """Drop the fields the type does not define, as the real server's decoder does outside Strict."""
    if isinstance(obj, dict):
        try:
            openapi.unknown_fields(minor, rtype, obj, prune=True, patch=patch)
        except openapi.Unavailable:
            pass


def check_fields(rtype, obj, mode, minor):
    """``fieldValidation``: Strict rejects unknown fields with 400, as the real server does;
    Warn (the default) and Ignore accept them (the caller drops them). Returns warnings for Warn."""
    mode = (mode or "Warn")
    if mode not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(f"fieldValidation must be one of Ignore, Warn, Strict, not {mode!r}")
    if mode == "Ignore" or not isinstance(obj, dict):
        return []
    try:
        unknown = [p.lstrip(".") for p in openapi.unknown_fields(minor, rtype, obj)]
    except openapi.Unavailable:
        return []
    if not unknown:
        return []
    if mode == "Strict":
        fields = ", ".join(f'unknown field "{p}"' for p in unknown)
        raise errors.bad_request(f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                                 f"strict decoding error: {fields}")
    return [f'unknown field "{p}"' for p in unknown]
