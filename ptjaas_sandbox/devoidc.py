"""A local OpenID Connect provider for ``ptjaas demo`` and the tests.

Starts ``ptjaas_sandbox/oidc_provider.mjs`` (npm ``oidc-provider``, a real, certified OpenID
Connect implementation) with Node.js on a free loopback port, with users and their groups given
here. Users, groups and the registered client can be changed while it runs (the provider re-reads
its state file on every lookup), so a group change at the "identity provider" is one call.

    from ptjaas_sandbox.devoidc import DevOIDCProvider
    with DevOIDCProvider(users={"alice": {"password": "pw", "groups": ["vision"]}}) as idp:
        idp.issuer, idp.client_id, idp.client_secret
        idp.set_redirect_uris(["http://127.0.0.1:8000/hub/oauth_callback"])
        print(idp.authenticator_config_text(allowed_groups=["vision"]))
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

SCRIPT = Path(__file__).parent / "oidc_provider.mjs"


class DevOIDCError(RuntimeError):
    """The local OpenID Connect provider could not be started."""


def find_oidc_provider_module(node_modules: str | os.PathLike | None = None) -> Path:
    """Locate npm ``oidc-provider``'s entry file.

    Looks in ``node_modules`` if given, then ``$PTJAAS_NODE_MODULES``, ``./node_modules`` and the
    source checkout's ``node_modules``.
    """
    candidates = []
    if node_modules:
        candidates.append(Path(node_modules))
    if os.environ.get("PTJAAS_NODE_MODULES"):
        candidates.append(Path(os.environ["PTJAAS_NODE_MODULES"]))
    candidates += [Path.cwd() / "node_modules", Path(__file__).resolve().parents[1] / "node_modules"]
    for nm in candidates:
        entry = nm / "oidc-provider" / "lib" / "index.js"
        if entry.is_file():
            return entry
    raise DevOIDCError(
        "npm package oidc-provider not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); run `npm install` in the ptjaas checkout or set PTJAAS_NODE_MODULES"
    )


def _user_record(spec: dict) -> dict:
    """``{"password", "groups", "claims"}`` -> the provider's ``{"password", "claims"}``."""
    claims = dict(spec.get("claims") or {})
    if "groups" in spec:
        claims["groups"] = spec["groups"]
    return {"password": spec.get("password", ""), "claims": claims}


def _groups_of(record: dict) -> list:
    groups = (record.get("claims") or {}).get("groups")
    return [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []


class DevOIDCProvider:
    """A running local OpenID Connect provider (see module docstring).

    ``users``: ``{name: {"password": str, "groups": [...], "claims": {extra claims}}}``; any JSON
    may be given as ``groups`` or in ``claims`` (tests use that for malformed claims).
    ``groups_in_id_token``: also put the claims into the ID token (by default they are only in
    the userinfo response, as with most providers). ``host`` must be a loopback address.
    """

    def __init__(
        self,
        users: dict | None = None,
        *,
        redirect_uris: list[str] | None = None,
        client_id: str = "ptjaas-hub",
        client_secret: str | None = None,
        groups_in_id_token: bool = False,
        host: str = "127.0.0.1",
        node: str = "node",
        node_modules: str | os.PathLike | None = None,
        state_dir: str | os.PathLike | None = None,
    ):
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.host = host
        self.node = node
        self.node_modules = node_modules
        self._users = {name: _user_record(spec) for name, spec in (users or {}).items()}
        self._redirect_uris = list(redirect_uris or ["http://127.0.0.1:1/hub/oauth_callback"])
        self._groups_in_id_token = groups_in_id_token
        self._own_dir = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="ptjaas-oidc-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.state_dir / "oidc-state.json"
        self.log_file = self.state_dir / "oidc-provider.log"
        self.issuer: str | None = None
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    # ---- state ----
    def _write_state(self):
        state = {
            "host": self.host,
            "groups_in_id_token": self._groups_in_id_token,
            "clients": [
                {
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "redirect_uris": self._redirect_uris,
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "client_secret_post",
                }
            ],
            "users": self._users,
        }
        with self._lock:
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1))
            os.replace(tmp, self.state_file)  # atomic: the provider never reads half a file

    def set_user(self, name: str, password: str | None = None, groups=None, claims=None, **kw):
        """Add or change a user; ``groups=None`` keeps their groups, ``[]`` removes all."""
        rec = self._users.setdefault(name, {"password": "", "claims": {}})
        if password is not None:
            rec["password"] = password
        if claims is not None:
            rec["claims"] = dict(claims)
        if groups is not None:
            rec["claims"]["groups"] = groups
        if kw.get("drop_groups"):
            rec["claims"].pop("groups", None)
        self._write_state()

    def set_redirect_uris(self, uris: list[str]):
        """Register the hub's callback URL(s) (``{hub_url}/hub/oauth_callback``)."""
        self._redirect_uris = list(uris)
        self._write_state()

    # ---- process ----
    def start(self, timeout: float = 30) -> DevOIDCProvider:
        node = shutil.which(self.node)
        if not node:
            raise DevOIDCError(f"Node.js ({self.node!r}) not found on PATH")
        module = find_oidc_provider_module(self.node_modules)
        self._write_state()
        env = dict(os.environ, PTJAAS_OIDC_PROVIDER_MODULE=module.as_uri())
        self._log = open(self.log_file, "ab")
        self.proc = subprocess.Popen(
            [node, str(SCRIPT), str(self.state_file)],
            stdin=subprocess.PIPE,  # kept open: the provider exits when its parent goes away
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        line = self._read_first_line(timeout)
        try:
            self.issuer = json.loads(line)["issuer"]
        except (ValueError, KeyError, TypeError):
            self.stop()
            raise DevOIDCError(f"OIDC provider failed to start: {line!r}; see {self.log_file}")
        return self

    def _read_first_line(self, timeout):
        out = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not out:
            self.stop()
            raise DevOIDCError(f"OIDC provider did not start within {timeout}s; see {self.log_file}")
        return out[0].decode("utf8", "replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc:
            for f in (self.proc.stdin, self.proc.stdout):
                if f:
                    f.close()
        if getattr(self, "_log", None):
            self._log.close()
        self.proc = None

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # ---- how a hub uses it ----
    def authenticator_config(self, **overrides) -> dict:
        """``c.PtjaasAuthenticator`` settings for this provider (a plain dict)."""
        cfg = {
            "oidc_issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": ["openid", "profile", "email", "groups"],
            "groups_claim": "groups",
        }
        cfg.update(overrides)
        return cfg

    def authenticator_config_text(self, **overrides) -> str:
        """The same as Python config lines to append to a ``jupyterhub_config.py``."""
        lines = ['c.JupyterHub.authenticator_class = "ptjaas"']
        for key, value in self.authenticator_config(**overrides).items():
            lines.append(f"c.PtjaasAuthenticator.{key} = {value!r}")
        return "\n".join(lines) + "\n"

    def hub_config_text(self, hub_url: str, allowed_groups=None, admin_groups=None) -> str:
        """Everything a hub at ``hub_url`` needs to log in through this provider: registers the
        hub's callback, and returns config lines (authenticator, allowed/admin groups, auth
        state with an encryption key so that group changes apply at auth refresh)."""
        self.set_redirect_uris([f"{hub_url.rstrip('/')}/hub/oauth_callback"])
        groups = sorted({g for u in self._users.values() for g in _groups_of(u)})
        allowed = sorted(allowed_groups) if allowed_groups is not None else groups
        key = secrets.token_hex(32)
        lines = [
            self.authenticator_config_text().rstrip("\n"),
            "c.Authenticator.allow_all = False",
            "c.JupyterHub.load_groups = {}  # groups come from the provider (manage_groups)",
            f"c.PtjaasAuthenticator.allowed_groups = {set(allowed)!r}" if allowed else "",
            f"c.PtjaasAuthenticator.admin_groups = {set(admin_groups)!r}" if admin_groups else "",
            "c.PtjaasAuthenticator.enable_auth_state = True",
            f"c.CryptKeeper.keys = [bytes.fromhex({key!r})]",
        ]
        return "\n".join(line for line in lines if line) + "\n"

    def wait_ready(self, timeout: float = 10):
        """Poll the provider's discovery document until it answers."""
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.issuer}/.well-known/openid-configuration", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise DevOIDCError(f"OIDC provider at {self.issuer} not answering")
                time.sleep(0.05)


def parse_user_spec(spec: str) -> tuple[str, dict]:
    """``"alice:secret:vision,nlp"`` -> ``("alice", {"password": "secret", "groups": [...]})``."""
    name, _, rest = spec.partition(":")
    password, _, groups = rest.partition(":")
    if not name:
        raise ValueError(f"bad user {spec!r}: expected NAME[:PASSWORD[:GROUP,GROUP...]]")
    return name, {"password": password, "groups": [g for g in groups.split(",") if g]}


def main(argv=None):
    """Run a local provider until interrupted: ``python -m ptjaas_sandbox.devoidc``."""
    import argparse

    p = argparse.ArgumentParser(description="Local OpenID Connect provider for trying ptjaas")
    p.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD:GROUP,GROUP",
                   help="a user (repeatable); default: alice (vision), bob (nlp), admin (hubadmins)")
    p.add_argument("--redirect-uri", action="append", default=[],
                   help="the hub's callback, e.g. http://127.0.0.1:8000/hub/oauth_callback")
    p.add_argument("--groups-in-id-token", action="store_true")
    args = p.parse_args(argv)
    specs = args.user or ["alice:alice:vision", "bob:bob:nlp", "admin:admin:hubadmins"]
    users = dict(parse_user_spec(s) for s in specs)
    with DevOIDCProvider(users, redirect_uris=args.redirect_uri or None,
                         groups_in_id_token=args.groups_in_id_token) as idp:
        print(f"OpenID Connect provider at {idp.issuer}")
        for name, u in users.items():
            print(f"user {name}: password {u['password']!r}, groups {u['groups']}")
        print("hub config:\n" + idp.authenticator_config_text(), flush=True)
        try:
            idp.proc.wait()  # until Ctrl-C (the provider also exits when this process dies)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
