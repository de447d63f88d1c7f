"""The spawn form: server-rendered HTML (no JavaScript needed) and parsing of posted data. Pure.

Field names posted by the form:

- ``choice``: ``"last"`` (same as last time) or ``"new"``
- ``image``: an image key; ``version--<image key>``: that image's version key
- ``size``: a size key
"""

import html

from .catalog import (
    default_version,
    image_sizes,
    last_choice_problem,
    version_label,
    visible_images,
)
from .sizes import allowed_sizes, size_summary


def _e(value) -> str:
    """HTML-escape, and keep template syntax inert."""
    return html.escape(str(value), quote=True).replace("{", "&#123;").replace("}", "&#125;")


def _id(*parts) -> str:
    raw = "-".join(str(p) for p in parts)
    return "ptjaas-" + "".join(c if c.isalnum() or c in "-_" else f"_{ord(c):x}" for c in raw)


def describe_last(images, sizes, last) -> str:
    image = images.get(last.get("image"), {})
    name = image.get("display_name") or last.get("image")
    version = version_label(image, last.get("version")) if image else last.get("version")
    size = (sizes.get(last.get("size")) or {}).get("display_name") or last.get("size")
    text = f"{name} {version}, size {size}"
    digest = last.get("image_digest") or last.get("image_ref")
    if digest:
        text += f" ({digest})"
    return text


def render_form(images, sizes, user_groups, last=None, availability=None, selected=None) -> str:
    """HTML for the options form, showing only what the user may use.

    ``availability``: ``{size_key: (allowed, note)}`` from the quota layer; refused sizes are
    shown disabled with their note. ``selected``: ``{"image", "version", "size"}`` to
    pre-select (e.g. the user's previous, still valid, options).
    """
    availability = availability or {}
    selected = selected or {}
    out = ['<div class="ptjaas-options">']
    visible = visible_images(images, sizes, user_groups)
    if not visible:
        out.append(
            '<p class="alert alert-warning" role="alert">No image is available to your account. '
            "Ask your administrator for access.</p></div>"
        )
        return "\n".join(out)

    last_ok = False
    if last and last.get("image"):
        problem = last_choice_problem(images, sizes, user_groups, last)
        last_ok = not problem
        if last_ok:
            allowed, note = availability.get(last["size"], (True, ""))
            if not allowed:
                last_ok, problem = False, f"Your last size cannot be started now: {note}"
        out.append('<fieldset class="form-group ptjaas-last"><legend>Start</legend>')
        if last_ok:
            out.append(
                '<div class="form-check">'
                f'<input class="form-check-input" type="radio" name="choice" value="last" '
                f'id="{_id("choice-last")}" checked>'
                f'<label class="form-check-label" for="{_id("choice-last")}">Same as last time: '
                f"{_e(describe_last(images, sizes, last))}</label></div>"
            )
        else:
            out.append(f'<p class="alert alert-warning ptjaas-last-problem" role="alert">{_e(problem)}</p>')
        out.append(
            '<div class="form-check">'
            f'<input class="form-check-input" type="radio" name="choice" value="new" '
            f'id="{_id("choice-new")}"{"" if last_ok else " checked"}>'
            f'<label class="form-check-label" for="{_id("choice-new")}">'
            "Choose an image and a size below</label>"
            "</div></fieldset>"
        )

    sel_image = selected.get("image") if selected.get("image") in visible else visible[0]
    out.append('<fieldset class="form-group ptjaas-images"><legend>Image</legend>')
    for key in visible:
        image = images[key]
        iid = _id("image", key)
        checked = " checked" if key == sel_image else ""
        out.append('<div class="form-check ptjaas-image">')
        out.append(
            f'<input class="form-check-input" type="radio" name="image" value="{_e(key)}" '
            f'id="{iid}"{checked}><label class="form-check-label" for="{iid}">'
            f'<strong>{_e(image.get("display_name") or key)}</strong>'
        )
        if image.get("description"):
            out.append(f' <span class="ptjaas-description">{_e(image["description"])}</span>')
        out.append("</label>")
        vid = _id("version", key)
        default = default_version(image)
        sel_version = selected.get("version") if key == sel_image else None
        if sel_version not in image["versions"]:
            sel_version = default
        out.append(
            f'<div class="ptjaas-version"><label for="{vid}">'
            f'Version of {_e(image.get("display_name") or key)}</label> '
            f'<select class="form-control" name="version--{_e(key)}" id="{vid}">'
        )
        notes = []
        for vkey, version in image["versions"].items():
            text = version_label(image, vkey)
            if vkey == default:
                text += " (default)"
            if version.get("deprecated"):
                text += f" - deprecated: {version['deprecated']}"
                notes.append(f"{version_label(image, vkey)}: deprecated: {version['deprecated']}")
            if version.get("notes"):
                notes.append(f"{version_label(image, vkey)}: {version['notes']}")
            sel = " selected" if vkey == sel_version else ""
            out.append(f'<option value="{_e(vkey)}"{sel}>{_e(text)}</option>')
        out.append("</select>")
        if notes:
            out.append('<ul class="ptjaas-version-notes">')
            out.extend(f"<li>{_e(n)}</li>" for n in notes)
            out.append("</ul>")
        usable = image_sizes(image, sizes, user_groups)
        if image.get("sizes"):
            names = ", ".join((sizes[s].get("display_name") or s) for s in usable)
            out.append(f'<p class="ptjaas-image-sizes">Runs on: {_e(names)}</p>')
        out.append("</div></div>")
    out.append("</fieldset>")

    user_sizes = allowed_sizes(sizes, user_groups)
    sel_size = selected.get("size")
    fitting = [k for k in user_sizes if availability.get(k, (True, ""))[0]]
    if sel_size not in fitting:
        sel_size = fitting[0] if fitting else None
    out.append('<fieldset class="form-group ptjaas-sizes"><legend>Size</legend>')
    for key in user_sizes:
        size = sizes[key]
        sid = _id("size", key)
        allowed, note = availability.get(key, (True, ""))
        attrs = (" checked" if key == sel_size else "") + ("" if allowed else " disabled")
        out.append(
            f'<div class="form-check ptjaas-size{"" if allowed else " ptjaas-unavailable"}">'
            f'<input class="form-check-input" type="radio" name="size" value="{_e(key)}" id="{sid}"{attrs}>'
            f'<label class="form-check-label" for="{sid}">'
            f'<strong>{_e(size.get("display_name") or key)}</strong> '
            f"({_e(size_summary(size))})"
        )
        if size.get("description"):
            out.append(f' <span class="ptjaas-description">{_e(size["description"])}</span>')
        if note:
            tone = "text-muted" if allowed else "text-danger"
            out.append(f'<br><small class="ptjaas-size-note {tone}">{_e(note)}</small>')
        out.append("</label></div>")
    out.append("</fieldset></div>")
    return "\n".join(out)


def options_from_formdata(formdata) -> dict:
    """Form data (dict of lists of strings) -> user_options. Validation happens later, in
    ``catalog.resolve_choice``; this only reshapes."""

    def first(name):
        values = formdata.get(name) or [None]
        return values[0]

    if first("choice") == "last":
        return {"same_as_last": True}
    options = {}
    image = first("image")
    if image is not None:
        options["image"] = image
        version = first(f"version--{image}")
        if version is not None:
            options["version"] = version
    size = first("size")
    if size is not None:
        options["size"] = size
    return options
