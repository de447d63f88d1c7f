"""Keep secrets out of the hub log.

KubeSpawner logs the whole pod when its creation fails (``Failed for {...}``), with the user's
``JUPYTERHUB_API_TOKEN`` in the environment; client errors may echo ``Authorization`` headers.
``RedactingFilter`` rewrites every record that passes a handler it is attached to:

- the values of environment variables and keys whose name says they are secret (``*TOKEN*``,
  ``*SECRET*``, ``*PASSWORD*``, ``*API_KEY*``, ``*PRIVATE_KEY*``), in the shapes pods are logged in
  (``{'name': 'X', 'value': '...'}``, ``"X": "..."``, ``X=...``);
- ``Authorization: token/bearer/basic ...`` headers and ``token=...`` query parameters;
- any exact secret value registered with ``remember`` (each spawner registers its API token
  while it starts, whatever shape it is logged in, and ``forget``s it when its server stops:
  JupyterHub revokes the token then). At most ``MAX_KNOWN`` values are kept, the oldest
  forgotten first, so memory stays bounded however many servers start. A record is checked
  against them in one pass, whatever their number: a value made of token characters
  (``A-Z a-z 0-9 _ -``, as JupyterHub's tokens are) can only be inside a run of such characters at
  least as long as itself, so only those runs are looked up (by length, in a set); the few
  other values are searched for one by one.

``install(logger)`` attaches the filter to the handlers of that logger and of the root logger
(a filter on a logger would not see records of its child loggers), idempotently.
"""

import logging
import re
import threading
from collections import OrderedDict

MASK = "[redacted]"
_SECRET_NAME = r"[A-Za-z0-9_.-]*(?:TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|PRIVATE_KEY|CLIENT_KEY)[A-Za-z0-9_.-]*"

_PATTERNS = [
    # {'name': 'JUPYTERHUB_API_TOKEN', 'value': 'abc'} (V1EnvVar dicts, pprint may break lines)
    re.compile(r"""(?P<head>['"]name['"]\s*:\s*['"]""" + _SECRET_NAME + r"""['"]\s*,\s*['"]value['"]\s*:\s*)"""
               r"""(?P<q>['"])(?P<secret>(?:\\.|(?!(?P=q)).)*)(?P=q)""", re.I | re.S),
    # "JUPYTERHUB_API_TOKEN": "abc" / 'client_secret': 'abc'
    re.compile(r"""(?P<head>(?P<kq>['"])""" + _SECRET_NAME + r"""(?P=kq)\s*:\s*)"""
               r"""(?P<q>['"])(?P<secret>(?:\\.|(?!(?P=q)).)*)(?P=q)""", re.I | re.S),
    # JUPYTERHUB_API_TOKEN=abc
    re.compile(r"""(?P<head>\b""" + _SECRET_NAME + r"""=)(?P<q>)(?P<secret>[^\s&'",;]+)""", re.I),
    # Authorization: token abc / bearer abc
    re.compile(r"""(?P<head>authorization['"]?\s*[:=]\s*['"]?(?:token|bearer|basic)\s+)(?P<q>)(?P<secret>[^\s'",]+)""",
               re.I),
]

MAX_KNOWN = 10_000  # secrets remembered at once (a hub's running servers, with room to spare)
# a record that matches none of these words cannot match a pattern above: it skips them
_ANY_SECRET_WORD = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_KEY|CLIENT_KEY|authorization", re.I)
# the same words, looked for in the lowered text of an ASCII record (most of them: a
# case-insensitive search for the expression above costs ~10x as much); a record with other
# characters is searched with the expression, whose case folding covers them ("K" is "k")
_LOWER_SECRET_WORD = re.compile(r"token|secret|password|passwd|api_?key|private_key|client_key|authorization")


def _may_hold_secret_words(text: str) -> bool:
    if text.isascii():
        return _LOWER_SECRET_WORD.search(text.lower()) is not None
    return _ANY_SECRET_WORD.search(text) is not None

MIN_KNOWN_LENGTH = 8  # shorter values are not remembered (they would mask ordinary words)
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_-]{%d,}" % MIN_KNOWN_LENGTH)  # where a remembered token can be

_lock = threading.Lock()
_known = OrderedDict()  # owner -> secret value, oldest first
# the same values indexed for the one-pass check (``_known_in``), with how many owners hold each:
_tokens_by_length: dict = {}  # length -> {value of token characters: owners}
_others: dict = {}  # value with other characters -> owners


def _index(secret: str, step: int) -> None:
    if _TOKEN_CHARS.fullmatch(secret):
        table = _tokens_by_length.setdefault(len(secret), {})
    else:
        table = _others
    count = table.get(secret, 0) + step
    if count > 0:
        table[secret] = count
    else:
        table.pop(secret, None)
        if not table and table is not _others:
            del _tokens_by_length[len(secret)]


def _drop(key) -> None:
    secret = _known.pop(key, None)
    if secret is not None:
        _index(secret, -1)


def remember(secret, owner=None):
    """Redact this exact value wherever it appears. An ``owner`` (e.g. a spawner) holds one
    secret at a time: its next one replaces it (a revoked token may stay masked meanwhile).
    Beyond ``MAX_KNOWN`` values the oldest is forgotten."""
    if not secret or len(str(secret)) < MIN_KNOWN_LENGTH:
        return
    key = owner if owner is not None else str(secret)
    with _lock:
        _drop(key)
        _known[key] = str(secret)
        _index(str(secret), +1)
        while len(_known) > MAX_KNOWN:
            _drop(next(iter(_known)))


def forget(owner):
    """Stop masking ``owner``'s secret (its server stopped: the token is revoked)."""
    with _lock:
        _drop(owner)


def _known_in(text: str) -> list:
    """The remembered values found in ``text``, longest first."""
    found = set()
    with _lock:
        if _tokens_by_length:
            shortest = min(_tokens_by_length)
            for run in _TOKEN_RUN.findall(text):
                if len(run) < shortest:
                    continue
                for length, tokens in _tokens_by_length.items():
                    for start in range(len(run) - length + 1):
                        if run[start:start + length] in tokens:
                            found.add(run[start:start + length])
        for secret in _others:
            if secret in text:
                found.add(secret)
    return sorted(found, key=len, reverse=True)


def remembered() -> int:
    """How many secrets are remembered now."""
    with _lock:
        return len(_known)


def redact(text: str) -> str:
    """``text`` with every secret replaced by ``[redacted]``."""
    if not text:
        return text
    if _may_hold_secret_words(text):
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: f"{m.group('head')}{m.group('q')}{MASK}{m.group('q')}", text)
    for secret in _known_in(text):
        text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback) with ``redact``; never drops a record."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave the record to the handler's error path
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if getattr(record, "stack_info", None):
            record.stack_info = redact(record.stack_info)
        return True


FILTER = RedactingFilter()


def install(*loggers):
    """Attach the filter to every handler of ``loggers`` and of the root logger (idempotent)."""
    seen = set()
    for logger in (*loggers, logging.getLogger()):
        if logger is None:
            continue
        current = logger
        while current is not None:  # the handlers a record of this logger reaches
            for handler in current.handlers:
                if id(handler) not in seen:
                    seen.add(id(handler))
                    if FILTER not in handler.filters:
                        handler.addFilter(FILTER)
            current = current.parent if current.propagate else None
