"""The spawn form: server-rendered HTML (works without JavaScript; a small script improves it)
and parsing of posted data. Pure.

Field names posted by the form:

- ``choice``: ``"last"`` (same as last time) or ``"new"``
- ``image``: an image key; ``version--<image key>``: that image's version key
- ``size``: a size key
- ``shown-image``, ``shown-version``, ``shown-size``: what the fields showed when the page was
  rendered. Without JavaScript nothing unchecks "same as last time" when the user picks a field:
  a post with ``choice=last`` whose fields differ from what they showed is the user's new choice.

With JavaScript, picking any field checks "choose below", and sizes the checked image cannot run
on are disabled. Without it, the server refuses such a pair with a message, and the form shown
with the message keeps the user's choices.
"""

import html
import json

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
from .quota.budget import size_amount
from .sizes import allowed_sizes, resources_text

SHOWN_FIELDS = ("shown-image", "shown-version", "shown-size")
FORM_FIELDS = frozenset({"_xsrf", "choice", "image", "size", *SHOWN_FIELDS})
VERSION_FIELD = "version--"
MAX_FORM_FIELDS = 200


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
    return f"{name} {version}, size {size}"


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


def _last_section(images, sizes, user_groups, last, availability, selected, out):
    problem = last_choice_problem(images, sizes, user_groups, last)
    last_ok = not problem
    if last_ok:
        allowed, note = availability.get(last["size"], (True, ""))
        if not allowed:
            last_ok, problem = False, f"Your last size cannot be started now: {note}"
    use_last = last_ok and selected.get("choice") != "new"
    out.append('<fieldset class="form-group ptjaas-last"><legend>Start</legend>')
    if last_ok:
        out.append(
            '<div class="form-check">'
            f'<input class="form-check-input" type="radio" name="choice" value="last" '
            f'id="{_id("choice-last")}"{" checked" if use_last else ""}>'
            f'<label class="form-check-label" for="{_id("choice-last")}">Same as last time: '
            f"{_e(describe_last(images, sizes, last))}</label>"
        )
        version = (images[last["image"]]["versions"].get(last["version"]) or {})
        if version.get("deprecated"):
            out.append(
                '<br><small class="ptjaas-last-deprecated text-warning">This version is deprecated: '
                f'{_e(version["deprecated"])}</small>'
            )
        digest = last.get("image_digest") or last.get("image_ref")
        if digest:
            out.append(
                '<details class="ptjaas-last-digest"><summary>Exact image</summary>'
                f"<code>{_e(digest)}</code></details>"
            )
        out.append("</div>")
    else:
        out.append(f'<p class="alert alert-warning ptjaas-last-problem" role="alert">{_e(problem)}</p>')
    out.append(
        '<div class="form-check">'
        f'<input class="form-check-input" type="radio" name="choice" value="new" '
        f'id="{_id("choice-new")}"{"" if use_last else " checked"}>'
        f'<label class="form-check-label" for="{_id("choice-new")}">'
        "Choose an image and a size below</label>"
        "</div></fieldset>"
    )


def render_form(images, sizes, user_groups, last=None, availability=None, selected=None, summary="",
                budget="") -> str:
    """HTML for the options form, showing only what the user may use.

    ``availability``: ``{size_key: (allowed, note)}`` from the quota layer; refused sizes are
    shown disabled with their note. ``selected``: ``{"image", "version", "size"}`` to
    pre-select (e.g. the user's previous, still valid, options), with ``"refused": True`` and
    ``"choice": "new"`` for a post being shown again with its error. ``summary``: the user's
    quota in one line, shown at the top; ``budget``: its GPU-/CPU-hour budgets in one line.
    """
    availability = availability or {}
    selected = selected or {}
    out = ['<div class="ptjaas-options">']
    if summary:
        out.append(f'<p class="ptjaas-quota-summary"><strong>Quota</strong> {_e(summary)}</p>')
    if budget:
        out.append(f'<p class="ptjaas-time-budget"><strong>Budget</strong> {_e(budget)}</p>')
    visible = visible_images(images, sizes, user_groups)
    if not visible:
        out.append(
            '<p class="alert alert-warning" role="alert">No image is available to your account. '
            "Ask your administrator for access.</p></div>"
        )
        return "\n".join(out)

    if last and last.get("image"):
        _last_section(images, sizes, user_groups, last, availability, selected, out)

    sel_image, sel_size = preselect(images, sizes, user_groups, availability, selected)
    if sel_size is None:
        out.append(
            '<p class="alert alert-warning ptjaas-nothing-fits" role="alert">None of your sizes can '
            "be started right now (see the notes below).</p>"
        )
    out.append('<fieldset class="form-group ptjaas-images"><legend>Image</legend>')
    sel_version = None
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
        version = selected.get("version") if key == sel_image else None
        if version not in image["versions"]:
            version = default
        if key == sel_image:
            sel_version = version
        out.append(
            f'<div class="ptjaas-version"><label for="{vid}">'
            f'Version of {_e(image.get("display_name") or key)}</label> '
            f'<select class="form-control" name="{VERSION_FIELD}{_e(key)}" id="{vid}">'
        )
        notes = []
        for vkey, ver in image["versions"].items():
            text = version_label(image, vkey)
            if vkey == default:
                text += " (default)"
            if ver.get("deprecated"):
                text += f" - deprecated: {ver['deprecated']}"
                notes.append(f"{version_label(image, vkey)}: deprecated: {ver['deprecated']}")
            if ver.get("notes"):
                notes.append(f"{version_label(image, vkey)}: {ver['notes']}")
            sel = " selected" if vkey == version else ""
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

    out.append('<fieldset class="form-group ptjaas-sizes"><legend>Size</legend>')
    for key in allowed_sizes(sizes, user_groups):
        size = sizes[key]
        sid = _id("size", key)
        allowed, note = availability.get(key, (True, ""))
        runs = [i for i in visible if key in image_sizes(images[i], sizes, user_groups)]
        attrs = (" checked" if key == sel_size else "") + ("" if allowed else " disabled")
        out.append(
            f'<div class="form-check ptjaas-size{"" if allowed else " ptjaas-unavailable"}">'
            f'<input class="form-check-input" type="radio" name="size" value="{_e(key)}" id="{sid}"'
            f' data-ptjaas-images="{_e(json.dumps(runs))}"{attrs}>'
            f'<label class="form-check-label" for="{sid}">'
            f'<strong>{_e(size.get("display_name") or key)}</strong> '
            f'<span class="ptjaas-resources">{_e(size_text(size))}</span>'
        )
        if size.get("description"):
            out.append(f' <span class="ptjaas-description">{_e(size["description"])}</span>')
        if note:
            tone = "text-muted" if allowed else "text-danger"
            out.append(f'<br><small class="ptjaas-size-note {tone}">{_e(note)}</small>')
        out.append('<small class="ptjaas-size-other-image text-muted" hidden> (not with this image)</small>')
        out.append("</label></div>")
    out.append("</fieldset>")
    for field, value in zip(SHOWN_FIELDS, (sel_image, sel_version, sel_size)):
        out.append(f'<input type="hidden" name="{field}" value="{_e(value or "")}">')
    out.append(SCRIPT)
    out.append("</div>")
    return "\n".join(out)


# progressive enhancement: the form works without it
SCRIPT = """<script>
(function () {
  var root = document.currentScript && document.currentScript.parentNode;
  if (!root) return;
  function all(sel) { return Array.prototype.slice.call(root.querySelectorAll(sel)); }
  function checkedImage() {
    var i = root.querySelector('input[name="image"]:checked');
    return i ? i.value : null;
  }
  function fitSizes() {
    var image = checkedImage(), first = null, any = false;
    all('input[name="size"]').forEach(function (s) {
      if (s.dataset.ptjaasUnavailable === undefined) s.dataset.ptjaasUnavailable = s.disabled ? "1" : "";
      var runs = JSON.parse(s.dataset.ptjaasImages || "[]").indexOf(image) >= 0;
      s.disabled = !runs || s.dataset.ptjaasUnavailable === "1";
      var hint = s.parentNode.querySelector(".ptjaas-size-other-image");
      if (hint) hint.hidden = runs;
      if (s.disabled && s.checked) s.checked = false;
      if (s.checked) any = true;
      if (!s.disabled && first === null) first = s;
    });
    if (!any && first) first.checked = true;
  }
  function chooseNew() {
    var n = root.querySelector('input[name="choice"][value="new"]');
    if (n) n.checked = true;
  }
  all('input[name="image"], input[name="size"], select').forEach(function (el) {
    el.addEventListener("change", function () { chooseNew(); fitSizes(); });
  });
  fitSizes();
})();
</script>"""


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
    if image is not None:
        options["image"] = image
        version = first(f"{VERSION_FIELD}{image}")
        if version is not None:
            options["version"] = version
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
            return {"same_as_last": True}
        # the user picked a field: that switches "same as last time" off
    return options
