"""Kubernetes API errors, each rendered as a proper ``Status`` object."""


class ApiError(Exception):
    """An error answered with a ``Status`` body, like the real API server does."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self):
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.reason is None:   # e.g. the real server's 500s carry no reason
            del body["reason"]
        if self.details:
            body["details"] = self.details
        return body


def _details(resource, name, group=""):
    details = {"kind": resource}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def resource_label(resource, group=""):
    return f"{resource}.{group}" if group else resource


def not_found(resource, name, group=""):
    return ApiError(404, "NotFound", f'{resource_label(resource, group)} "{name}" not found',
                    _details(resource, name, group))


def already_exists(resource, name, group=""):
    return ApiError(409, "AlreadyExists", f'{resource_label(resource, group)} "{name}" already exists',
                    _details(resource, name, group))


def conflict(resource, name, group="", why="the object has been modified; please apply your changes to the latest version and try again"):
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {resource_label(resource, group)} "{name}": {why}',
                    _details(resource, name, group))


def invalid(kind, name, causes, group=""):
    """422 Invalid. ``causes`` is a list of (field, message) pairs, e.g. ("metadata.name", "Invalid value: ...")."""
    text = ", ".join(f"{field}: {msg}" for field, msg in causes)
    if len(causes) > 1:
        text = "[" + text + "]"
    details = {"name": name, "kind": kind,
               "causes": [{"reason": _CAUSE_REASONS.get(msg.split(":")[0], "FieldValueInvalid"), "message": msg,
                           "field": field} for field, msg in causes]}
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{kind}{"." + group if group else ""} "{name}" is invalid: {text}', details)


# field.ErrorType of a cause, from how its message starts (k8s.io/apimachinery/pkg/util/validation/field)
_CAUSE_REASONS = {"Required value": "FieldValueRequired", "Unsupported value": "FieldValueNotSupported",
                  "Forbidden": "FieldValueForbidden", "Duplicate value": "FieldValueDuplicate",
                  "Too long": "FieldValueTooLong", "Too many": "FieldValueTooMany", "Not found": "FieldValueNotFound"}


def forbidden(resource, name, why, group=""):
    what = f'{resource_label(resource, group)} "{name}"' if name else resource_label(resource, group)
    return ApiError(403, "Forbidden", f"{what} is forbidden: {why}", _details(resource, name, group))


def bad_request(message):
    return ApiError(400, "BadRequest", message)


def gone(message="too old resource version"):
    return ApiError(410, "Expired", message)


def method_not_allowed(message="the server does not allow this method on the requested resource"):
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media(content_type):
    return ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type!r})')
