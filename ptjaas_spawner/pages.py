"""The hub pages ptjaas adds, in one list, and how to install them in a hub config.

- ``/hub/ptjaas/usage`` + ``/hub/api/ptjaas/usage``: quotas and usage (admins);
- ``/hub/ptjaas/audit`` + ``/hub/api/ptjaas/audit``: the data-access record (admins);
- ``/hub/ptjaas/snapshots`` + ``/hub/api/ptjaas/snapshots/<user>``: home snapshots;
- ``/hub/ptjaas/sharing``: share a running server with a user or a group (``sharing``);
- ``/hub/ptjaas/datasets`` + ``/hub/api/ptjaas/datasets/<team>``: team datasets (``datasets``).

``PtjaasAuthenticator`` registers them by itself. With another authenticator::

    from ptjaas_spawner.pages import install
    install(c)   # extra_handlers + the home page template showing the user's snapshots
"""

from __future__ import annotations

from .audithandlers import audit_handlers
from .datasets.handlers import dataset_handlers
from .sharing import CUSTOM_SCOPES, record_visits, sharing_handlers
from .usagepages import usage_handlers
from .snapshots.handlers import TEMPLATE_DIR, snapshot_handlers


def ptjaas_handlers() -> list:
    return usage_handlers + audit_handlers + snapshot_handlers + sharing_handlers + dataset_handlers


def install(c, handlers: bool = True) -> None:
    """Add the pages (unless ``handlers`` is False: PtjaasAuthenticator adds them), the
    home page template (``templates/home.html``: the hub home page lists the user's snapshots),
    and the custom scopes shares' modes grant (``sharing``; the spawner's OAuth clients then pass
    them to a visitor's login)."""
    hub = c.JupyterHub
    scopes = dict(hub.custom_scopes if "custom_scopes" in hub else {})
    hub.custom_scopes = dict(CUSTOM_SCOPES, **scopes)
    record_visits()  # each visit of a shared server on the owner's audit record
    if handlers:
        hub.extra_handlers = list(hub.extra_handlers if "extra_handlers" in hub else []) + ptjaas_handlers()
    paths = list(hub.template_paths if "template_paths" in hub else [])
    if TEMPLATE_DIR not in paths:
        # after the admin's own templates (their home.html wins), before JupyterHub's defaults
        defaults = [i for i, p in enumerate(paths) if str(p).rstrip("/").endswith("share/jupyterhub/templates")]
        paths.insert(defaults[0] if defaults else len(paths), TEMPLATE_DIR)
        hub.template_paths = paths
