"""The spawn form: server-rendered HTML (works without JavaScript; a small script improves it)
and parsing of posted data. Pure: the page is ``templates/form/spawn_form.html`` (Jinja, through
``formtemplates``) given the plain data built here.

Field names posted by the form:

- ``choice``: ``"last"`` (same as last time) or ``"new"``
- ``image``: an image key; ``version--<image key>``: that image's version key
- ``size``: a size key
- ``custom_image``: the reference of an image of one's own, with ``image=custom``
  (``customimages``; offered only to permitted users)
- ``connections`` (repeated): the data connections ticked; ``connections-shown``: the boxes were
  on the page (none ticked then means none)
- ``shown-image``, ``shown-version``, ``shown-size``: what the fields showed when the page was
  rendered. Without JavaScript nothing unchecks "same as last time" when the user picks a field:
  a post with ``choice=last`` whose fields differ from what they showed is the user's new choice.

With JavaScript, picking any field checks "choose below", and sizes the checked image cannot run
on are disabled. Without it, the server refuses such a pair with a message, and the form shown
with the message keeps the user's choices.
"""

import json

from . import connections as data_connections
from . import customimages, formtemplates
from .catalog import (
    MAX_OPTION_LENGTH,
    ChoiceError,
    default_version,
    image_sizes,
    last_choice_problem,
    shown,
    version_label,
    visible_images,
)
from .homevolume import growth_decision
from .interfaces import describe as describe_interface, interface_of
from .quota.budget import size_amount
from .sizes import allowed_sizes, resources_text

SHOWN_FIELDS = ("shown-image", "shown-version", "shown-size")
CONNECTIONS_SHOWN = "connections-shown"
FORM_FIELDS = frozenset({"_xsrf", "choice", "image", "size", "custom_image", "connections", CONNECTIONS_SHOWN,
                         *SHOWN_FIELDS})
VERSION_FIELD = "version--"
MAX_FORM_FIELDS = 200


def _id(*parts) -> str:
    raw = "-".join(str(p) for p in parts)
    return "ptjaas-" + "".join(c if c.isalnum() or c in "-_" else f"_{ord(c):x}" for c in raw)


def describe_last(images, sizes, last) -> str:
    image = images.get(last.get("image"), {})
    name = image.get("display_name") or last.get("image")
    version = version_label(image, last.get("version")) if image else last.get("version")
    size = (sizes.get(last.get("size")) or {}).get("display_name") or last.get("size")
    return f"{name} {version}, size {size}"


def home_text(home: dict | None) -> str:
    """Where the user's home volume lives, for the form: ``home`` is ``{"claim", "namespace",
    "size", "wanted", "exists"}`` from what the spawner knows (``exists`` None: not known).

    "Your home: claim-alice in namespace team-vision, 10Gi" for an existing home (and what a
    bigger group size grows it to), "A new 10Gi home, claim-alice, will be made in namespace
    team-vision" for a first start; '' without ``home``."""
    if not home or not home.get("claim"):
        return ""
    claim, namespace, wanted = home["claim"], home.get("namespace") or "", home.get("wanted") or ""
    where = f" in namespace {namespace}" if namespace else ""
    if home.get("exists") is False:
        new = f"A new {wanted} home volume" if wanted else "A new home volume"
        return f"{new}, {claim}, will be made{where} when your server starts."
    text = f"Your home: {claim}{where}"
    size = home.get("size")
    if size:
        text += f", {size}"
        if wanted and growth_decision(size, wanted, True)[0] == "grow":
            text += f" (grown to {wanted} at this start where its storage class allows)"
    return text


def gpu_text(size: dict) -> str:
    gpus = size_amount(size).gpus
    return "no GPU" if not gpus else f"{gpus} GPU" + ("s" if gpus > 1 else "")


def preview_image(image: dict, key: str, version_key: str) -> dict:
    """The preview's image and interface parts for one version of a catalog image."""
    version = image["versions"].get(version_key) or {}
    ref = version.get("image") or ""
    text = f"{image.get('display_name') or key} {version_label(image, version_key)}" + (f" ({ref})" if ref else "")
    opens = describe_interface(interface_of(image, version)) or "Opens the default interface"
    return {"image": text, "opens": opens}


def preview_size(size: dict, key: str) -> dict:
    """The preview's size and GPU parts: 'Size Small: CPU 0.1 → 1, memory 64Mi → 1Gi', 'no GPU'."""
    held = size_amount(size)
    resources = resources_text(held.cpu, size["cpu_limit"], held.memory, size["mem_limit"])
    return {"size": f"Size {size.get('display_name') or key}: {resources}", "gpus": gpu_text(size)}


def preview_custom(reference: str) -> dict:
    return {"image": f"An image of your own: {reference or '(type its reference above)'}",
            "opens": "Opens the default interface"}


NO_SIZE = {"size": "No size can be started now", "gpus": ""}


def _preview_last(images, sizes, last) -> dict:
    if last.get("image") == customimages.CUSTOM:
        parts = preview_custom(last.get("image_ref") or "")
    else:
        parts = preview_image(images[last["image"]], last["image"], last.get("version"))
    size = sizes.get(last.get("size"))
    return {**parts, **(preview_size(size, last["size"]) if size else NO_SIZE)}


def size_text(size: dict) -> str:
    """CPU, memory (guarantee → limit) and GPUs of a size, as the usage page shows them: the
    guarantee is what the quota charges (``size_amount``: a guarantee of 0 is the limit)."""
    held = size_amount(size)
    return resources_text(held.cpu, size["cpu_limit"], held.memory, size["mem_limit"], held.gpus)


def preselect(images, sizes, user_groups, availability, selected):
    """(image key, size key or None) to pre-select: a pair that can start now.

    The ``selected`` image and size are kept when they can start together; a refused post
    (``selected["refused"]``) keeps the user's choices as they were, as long as they are
    offered at all. Otherwise the first image (in the admin's order) with a size that fits
    now, and its first fitting size."""
    visible = visible_images(images, sizes, user_groups)
    fits = lambda k: availability.get(k, (True, ""))[0]  # noqa: E731
    want_image, want_size = selected.get("image"), selected.get("size")
    if selected.get("refused") and want_image in visible:
        offered = [k for k in allowed_sizes(sizes, user_groups) if fits(k)]
        if want_size in offered:
            return want_image, want_size
    order = ([want_image] if want_image in visible else []) + [k for k in visible if k != want_image]
    for key in order:
        fitting = [k for k in image_sizes(images[key], sizes, user_groups) if fits(k)]
        if fitting:
            return key, (want_size if want_size in fitting else fitting[0])
    return (want_image if want_image in visible else visible[0]), None


def _last_choice(images, sizes, user_groups, last, availability, selected) -> dict:
    """The "same as last time" part of the form: whether it can be offered, and why not."""
    problem = last_choice_problem(images, sizes, user_groups, last)
    last_ok = not problem
    if last_ok:
        allowed, note = availability.get(last["size"], (True, ""))
        if not allowed:
            last_ok, problem = False, f"Your last size cannot be started now: {note}"
    use_last = last_ok and selected.get("choice") != "new"
    out = {"ok": last_ok, "use_last": use_last, "problem": problem, "id_last": _id("choice-last"),
           "id_new": _id("choice-new"), "text": "", "deprecated": "", "digest": ""}
    if last_ok:
        version = (images.get(last["image"]) or {}).get("versions", {}).get(last.get("version")) or {}
        preview = _preview_last(images, sizes, last)
        out.update(text=describe_last(images, sizes, last), deprecated=version.get("deprecated") or "",
                   preview=preview, preview_json=json.dumps(preview),
                   digest=last.get("image_digest") or last.get("image_ref") or "")
    return out


def _image_entry(key, image, sizes, user_groups, checked, version) -> dict:
    default = default_version(image)
    if version not in image["versions"]:
        version = default
    options, notes = [], []
    for vkey, ver in image["versions"].items():
        text = version_label(image, vkey)
        if vkey == default:
            text += " (default)"
        said = [str(ver["notes"])] if ver.get("notes") else []
        if ver.get("deprecated"):
            text += " - deprecated"
            said.append(f"deprecated: {ver['deprecated']}")
        if said:  # one line per version: its notes, then why it is deprecated
            notes.append(f"{version_label(image, vkey)}: {'; '.join(said)}")
        options.append({"key": vkey, "text": text, "selected": vkey == version, **preview_image(image, key, vkey)})
    runs_on = ""
    if image.get("sizes"):
        runs_on = ", ".join((sizes[s].get("display_name") or s) for s in image_sizes(image, sizes, user_groups))
    return {"key": key, "id": _id("image", key), "checked": checked, "name": image.get("display_name") or key,
            "description": image.get("description") or "", "version_id": _id("version", key),
            "opens": describe_interface(interface_of(image, image["versions"].get(version))),
            "version_field": f"{VERSION_FIELD}{key}", "versions": options, "notes": notes,
            "runs_on": runs_on, "version": version,
            "previews_json": json.dumps({o["key"]: {"image": o["image"], "opens": o["opens"]} for o in options})}


def render_form(images, sizes, user_groups, last=None, availability=None, selected=None, summary="",
                budget="", template_paths=(), template_text="", custom_images=None, connections=None,
                home=None) -> str:
    """HTML for the options form, showing only what the user may use.

    ``availability``: ``{size_key: (allowed, note)}`` from the quota layer; refused sizes are
    shown disabled with their note. ``selected``: ``{"image", "version", "size"}`` to
    pre-select (e.g. the user's previous, still valid, options), with ``"refused": True`` and
    ``"choice": "new"`` for a post being shown again with its error. ``summary``: the user's
    quota in one line, shown at the top; ``budget``: its GPU-/CPU-hour budgets in one line (main's
    accounting, issue 24). Rendered from ``templates/form/spawn_form.html`` (or a
    site's: ``template_paths``, ``template_text``; see ``formtemplates``). ``custom_images``,
    ``connections``: the settings of those names; the form offers an image of one's own where
    the user is permitted one, and the data connections their groups allow. ``home``: where the
    user's home volume lives (``home_text``), shown under the quota.
    """
    availability = availability or {}
    selected = selected or {}
    visible = visible_images(images, sizes, user_groups)
    context = {"summary": summary, "budget": budget, "home": home_text(home), "visible": bool(visible), "last": None,
               "nothing_fits": False, "images": [], "sizes": [], "shown": [], "custom": None, "connections": [],
               "preview": None}
    custom = customimages.permitted(custom_images, user_groups)
    custom_sizes = (custom_images or {}).get("sizes")
    if custom:
        reference = selected.get("custom_image") or (last or {}).get("image_ref") \
            if (selected.get("image") or (last or {}).get("image")) == customimages.CUSTOM else ""
        context["custom"] = {"allowed": ", ".join(custom_images["allowed"]), "value": reference or "",
                             "checked": selected.get("image") == customimages.CUSTOM}
    ticked = selected.get("connections")
    if ticked is None:
        ticked = (last or {}).get("connections") or []
    for key in data_connections.usable(connections or {}, user_groups):
        c = connections[key]
        context["connections"].append({"key": key, "id": _id("connection", key), "checked": key in ticked,
                                       "name": c.get("display_name") or key, "description": c.get("description") or ""})
    if visible:
        if last and last.get("image"):
            context["last"] = _last_choice(images, sizes, user_groups, last, availability, selected)
        sel_image, sel_size = preselect(images, sizes, user_groups, availability, selected)
        context["nothing_fits"] = sel_size is None
        entries = [_image_entry(key, images[key], sizes, user_groups, key == sel_image,
                                selected.get("version") if key == sel_image else None) for key in visible]
        sel_version = next((e["version"] for e in entries if e["checked"]), None)
        for key in allowed_sizes(sizes, user_groups):
            size = sizes[key]
            allowed, note = availability.get(key, (True, ""))
            runs = [i for i in visible if key in image_sizes(images[i], sizes, user_groups)]
            if custom and (not custom_sizes or key in custom_sizes):
                runs.append(customimages.CUSTOM)
            context["sizes"].append({
                "key": key, "id": _id("size", key), "checked": key == sel_size, "allowed": allowed,
                "runs_json": json.dumps(runs), "name": size.get("display_name") or key,
                "resources": size_text(size), "description": size.get("description") or "", "note": note,
                **{f"preview_{k}": v for k, v in preview_size(size, key).items()}})
        context["images"] = entries
        context["preview"] = _preview(context, entries, sel_size)
        context["shown"] = [(f, v or "") for f, v in zip(SHOWN_FIELDS, (sel_image, sel_version, sel_size))]
    return formtemplates.render(formtemplates.SPAWN_FORM, context, template_paths, template_text)


def _preview(context, entries, sel_size) -> dict:
    """What pressing Start starts, as the page is rendered (the script keeps it up to date):
    "same as last time" when it is checked, else the checked image, version and size."""
    last = context["last"]
    if last and last["use_last"]:
        return last["preview"]
    custom = context["custom"]
    if custom and custom["checked"]:
        parts = preview_custom(custom["value"])
    else:
        entry = next(e for e in entries if e["checked"])
        option = next(o for o in entry["versions"] if o["selected"])
        parts = {"image": option["image"], "opens": option["opens"]}
    size = next((s for s in context["sizes"] if s["key"] == sel_size), None)
    return {**parts, **({"size": size["preview_size"], "gpus": size["preview_gpus"]} if size else NO_SIZE)}


CHOICES = ("last", "new")


def posted_summary(formdata) -> dict:
    """What a refused form post asked for, for the audit record: the first value of each field
    but ``_xsrf`` (at most 20 fields; the record bounds the values)."""
    out = {}
    for name, values in list((formdata or {}).items())[:20]:
        if name != "_xsrf":
            out[str(name)[:100]] = (values or [None])[0] if isinstance(values, list) else values
    return out


def options_from_formdata(formdata, offered_images=None) -> dict:
    """Form data (dict of lists of strings) -> user_options. Strict about field names (an
    unknown field is refused, as is a version field of an image not in ``offered_images``, the
    images the form offers the user, when given) and about ``choice`` (``last`` or ``new``);
    the other values are checked later, in ``catalog.resolve_choice``."""
    names = list(formdata or {})
    unknown = [n for n in names if n not in FORM_FIELDS and not n.startswith(VERSION_FIELD)]
    if unknown:
        raise ChoiceError(f"Unknown form field(s): {', '.join(shown(n) for n in unknown[:5])}.")
    if len(names) > MAX_FORM_FIELDS:
        raise ChoiceError(f"Too many form fields ({len(names)}).")
    if offered_images is not None:
        foreign = [n for n in names if n.startswith(VERSION_FIELD) and n[len(VERSION_FIELD):] not in offered_images]
        if foreign:
            raise ChoiceError(
                f"Form field {shown(foreign[0])} is the version of an image that is not available to you.")

    def first(name):
        values = formdata.get(name) or [None]
        value = values[0]
        if isinstance(value, str) and len(value) > MAX_OPTION_LENGTH:
            raise ChoiceError(f"Form field {shown(name)} is too long ({len(value)} characters, at most "
                              f"{MAX_OPTION_LENGTH}): {shown(value)}.")
        return value

    options = {}
    image = first("image")
    if image == customimages.CUSTOM:
        options.update(image=image, custom_image=(first("custom_image") or "").strip())
    elif image is not None:
        options["image"] = image
        version = first(f"{VERSION_FIELD}{image}")
        if version is not None:
            options["version"] = version
    if formdata.get(CONNECTIONS_SHOWN):  # the boxes were on the page: none ticked is none
        ticked = list(formdata.get("connections") or [])
        if len(ticked) > data_connections.MAX_CONNECTIONS or any(len(t) > 63 for t in ticked):
            raise ChoiceError(f"Too many or too long data connections (at most {data_connections.MAX_CONNECTIONS}).")
        options["connections"] = ticked
    size = first("size")
    if size is not None:
        options["size"] = size
    choice = first("choice")
    if choice is not None and choice not in CHOICES:
        raise ChoiceError(f"Form field 'choice' must be 'last' or 'new', not {shown(choice)}.")
    if choice == "last":
        shown_values = [first(f) for f in SHOWN_FIELDS]
        if all(v is None for v in shown_values):
            # no record of what the page showed: the fields must agree with last time
            return {"same_as_last": True, **options}
        posted = [options.get("image"), options.get("version"), options.get("size")]
        if [v or None for v in shown_values] == posted:
            return {"same_as_last": True, **({"connections": options["connections"]} if "connections" in options else {})}
        # the user picked a field: that switches "same as last time" off
    return options
