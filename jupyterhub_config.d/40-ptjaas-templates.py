# ptjaas config fragment 40: ptjaas's page templates: the admin usage page in the navigation bar,
# each server's image, version and size on the admin page, and a user's time-budget warning (90 %)
# as a banner on every hub page they see (JupyterHub's announcement; a site's own announcement
# in c.JupyterHub.template_vars stays, the warning is added after it).
#
# Appends ptjaas_spawner/templates to c.JupyterHub.template_paths (after a site's own paths, so
# that a site's page.html still wins) and, when the selected authenticator serves the admin usage
# page (/hub/ptjaas/usage: PtjaasAuthenticator and its presets do), links it for admins.
import os

c = c  # noqa: F821  (see 00-ptjaas.py)


def _ptjaas_templates():
    from importlib.metadata import entry_points

    from traitlets.config import LazyConfigValue
    from traitlets.utils.importstring import import_item

    import ptjaas_spawner

    hub = c.JupyterHub

    def current(name, empty):
        value = hub[name] if name in hub else empty
        return value.get_value(empty) if isinstance(value, LazyConfigValue) else value

    here = os.path.join(os.path.dirname(os.path.abspath(ptjaas_spawner.__file__)), "templates")
    paths = list(current("template_paths", []))
    if here not in paths:
        hub.template_paths = paths + [here]

    cls = current("authenticator_class", None)
    if isinstance(cls, str):
        found = [ep for ep in entry_points(group="jupyterhub.authenticators") if ep.name == cls]
        try:
            cls = found[0].load() if found else import_item(cls)
        except (ImportError, AttributeError, ValueError):
            cls = None
    if getattr(cls, "ptjaas_usage_page", False):
        hub.template_vars = dict(current("template_vars", {}), ptjaas_usage_url="ptjaas/usage")

    from ptjaas_spawner.accounting.banner import install_budget_banner

    install_budget_banner(c)


_ptjaas_templates()
