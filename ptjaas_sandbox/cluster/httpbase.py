"""What every handler of the embedded API server shares: the bearer token checked first
(``auth.py``), errors answered as the real server's ``Status`` objects, JSON in and out."""

import json

from tornado import web

from . import auth, errors


class BaseHandler(web.RequestHandler):
    def initialize(self, cluster):
        self.cluster = cluster

    def check_xsrf_cookie(self):
        pass

    def prepare(self):
        auth.check(self.request.path, self.request.headers, self.cluster.token)

    def write_json(self, obj, status=200):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj))

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, errors.ApiError):
            self.set_status(exc.code)
            body = exc.status()
        else:
            body = errors.ApiError(status_code, "InternalError" if status_code >= 500 else "BadRequest",
                                   self._reason or "error").status()
        self.set_header("Content-Type", "application/json")
        if body.get("code") == 401:
            self.set_header("Cache-Control", "no-cache, private")
        self.finish(json.dumps(body))

    def log_exception(self, typ, value, tb):
        if not isinstance(value, errors.ApiError):
            super().log_exception(typ, value, tb)

    def json_body(self):
        if not self.request.body:
            return {}
        try:
            return json.loads(self.request.body)
        except ValueError:
            raise errors.bad_request("the body of the request was not valid JSON") from None
