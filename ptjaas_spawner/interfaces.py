"""What a choice opens: the interface (IDE) an image or version declares in the catalog. Pure.

An image or one of its versions may say ``interface``: a known name (``jupyterlab``,
``notebook``, ``vscode``, ``rstudio``) or ``{"name": "...", "default_url": "/..."}`` for
another one served through jupyter-server-proxy; and ``launchers``: the extra applications its
jupyter-server-proxy entries add to the launcher (``["TensorBoard"]``), shown in the form. A
version's own settings win over its image's. With no ``interface`` the server opens where
JupyterHub's ``default_url`` (z2jh: ``singleuser.defaultUrl``) says, as before.

``collaboration: true`` says the image has JupyterLab's real-time collaboration
(jupyter-collaboration: people a server is shared with edit the same notebook together); the
form says so and the server is started with it on (``--YDocExtension.disable_rtc=False``);
``false`` starts it off in an image that has it (``disable_rtc=True``); absent: as the image is.
"""

INTERFACES = {
    "jupyterlab": {"name": "JupyterLab", "default_url": "/lab"},
    "notebook": {"name": "Jupyter Notebook", "default_url": "/tree"},
    # code-server through jupyter-server-proxy (jupyter-vscode-proxy), as images/ builds it
    "vscode": {"name": "VS Code", "default_url": "/vscode/"},
    # RStudio Server through jupyter-server-proxy (jupyter-rsession-proxy): docs/environments.md
    "rstudio": {"name": "RStudio", "default_url": "/rstudio/"},
}

# the schema of ``interface`` and ``launchers`` (settings_schema.IMAGE and VERSION)
INTERFACE_SCHEMA = {
    "type": ["string", "object"],
    "description": ("What the server opens: " + ", ".join(f"`{k}`" for k in INTERFACES)
                    + ", or `{name, default_url}` for another application served through jupyter-server-proxy."),
    "oneOf": [
        {"type": "string", "enum": list(INTERFACES)},
        {"type": "object", "additionalProperties": False, "required": ["name", "default_url"],
         "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 60},
                        "default_url": {"type": "string", "pattern": "^/[A-Za-z0-9._~/-]*$", "maxLength": 200}}},
    ],
}
COLLABORATION_SCHEMA = {"type": "boolean", "description": (
    "The image has JupyterLab's real-time collaboration (jupyter-collaboration): true turns it on "
    "for the server and says so in the form; false turns it off; absent: as the image is.")}
LAUNCHERS_SCHEMA = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 60},
                    "description": "Extra applications in the launcher (jupyter-server-proxy entries), shown in the form."}


def interface_of(image: dict, version: dict | None = None) -> dict:
    """``{"name", "default_url", "launchers"}`` of a catalog choice: the version's settings,
    else the image's; ``name`` and ``default_url`` '' when neither declares an interface."""
    version = version or {}
    declared = version.get("interface", image.get("interface"))
    launchers = version.get("launchers", image.get("launchers")) or []
    common = {"launchers": list(launchers), "collaboration": version.get("collaboration", image.get("collaboration"))}
    if declared is None:
        return {"name": "", "default_url": "", **common}
    if isinstance(declared, str):
        known = INTERFACES.get(declared) or {"name": declared, "default_url": ""}  # refused at start-up
        return {"name": known["name"], "default_url": known["default_url"], **common}
    return {"name": declared["name"], "default_url": declared["default_url"], **common}


def describe(interface: dict) -> str:
    """"Opens VS Code (also: TensorBoard)" for the form; '' when nothing is declared."""
    if not interface.get("name") and not interface.get("launchers") and not interface.get("collaboration"):
        return ""
    text = f"Opens {interface['name']}" if interface.get("name") else "Opens the default interface"
    if interface.get("launchers"):
        text += f" (also: {', '.join(interface['launchers'])})"
    if interface.get("collaboration"):
        text += ", with real-time collaboration"
    return text


def collaboration_args(collaboration) -> list:
    """The server's arguments for a choice's ``collaboration`` (jupyter-collaboration's
    ``YDocExtension.disable_rtc``); none when the catalog does not say."""
    if collaboration is None:
        return []
    return [f"--YDocExtension.disable_rtc={not collaboration}"]
