"""The image-version catalog and the resolution of a user's choice. Pure.

An image (see ``PtjaasSpawner.images``)::

    {"display_name": "Python", "description": "...", "sizes": [...], "groups": [...],
     "versions": {"2024.05": {"image": "repo/python:2024.05", "label": "...", "notes": "...",
                              "default": True, "deprecated": "use 2025.01"}}}

``resolve_choice`` turns posted options (form or REST ``user_options``) into a ``Choice``,
or raises ``ChoiceError`` with a message meant for the user.
"""

from dataclasses import asdict, dataclass, field

from . import connections as data_connections
from . import customimages
from .interfaces import interface_of
from .settings_schema import IMAGE, VERSION, keys
from .sizes import allowed_sizes, groups_allow

IMAGE_KEYS = keys(IMAGE)
VERSION_KEYS = keys(VERSION)
OPTION_KEYS = frozenset({"image", "version", "size", "same_as_last", "custom_image", "connections"})


class ChoiceError(ValueError):
    """A choice the user may not make; the message is shown to the user."""


@dataclass
class Choice:
    image: str
    version: str
    size: str
    image_ref: str
    deprecated: str = ""
    notes: list = field(default_factory=list)
    interface: str = ""      # what it opens ("VS Code"; '' : the hub's default_url)
    default_url: str = ""    # where the server opens ('' : the hub's default_url)
    launchers: list = field(default_factory=list)
    collaboration: bool | None = None  # real-time collaboration on/off (None: as the image is)
    pull_secret: str = ""    # a custom image's pull Secret
    connections: list = field(default_factory=list)  # data connections (connections.py), by name

    @property
    def custom(self) -> bool:
        return self.image == customimages.CUSTOM

    def as_state(self) -> dict:
        d = asdict(self)
        for derived in ("notes", "deprecated", "interface", "default_url", "launchers", "collaboration",
                        "pull_secret"):
            d.pop(derived)
        return d


def default_version(image: dict) -> str:
    """The version marked ``default``, else the first one listed."""
    versions = image["versions"]
    for key, version in versions.items():
        if version.get("default"):
            return key
    return next(iter(versions))


def version_label(image: dict, version_key: str) -> str:
    version = image["versions"].get(version_key) or {}
    return version.get("label") or version_key


def image_sizes(image: dict, sizes: dict, user_groups) -> list:
    """Size keys usable with this image by this user (image restriction x entitlement)."""
    usable = allowed_sizes(sizes, user_groups)
    restrict = image.get("sizes")
    if restrict:
        usable = [key for key in usable if key in restrict]
    return usable


def visible_images(images: dict, sizes: dict, user_groups) -> list:
    """Image keys the user may start: entitled and with at least one usable size."""
    return [
        key
        for key, image in images.items()
        if groups_allow(image, user_groups) and image_sizes(image, sizes, user_groups)
    ]


def _describe(images: dict, key: str) -> str:
    image = images.get(key)
    return (image or {}).get("display_name") or key


def _size_name(sizes: dict, key: str) -> str:
    return (sizes.get(key) or {}).get("display_name") or key


# posted option values are bounded; messages and logs show at most a short, escaped prefix
MAX_OPTION_LENGTH = 256
SHOWN_PREFIX = 40


def shown(value) -> str:
    """A posted value as it may appear in a message or a log line: ``repr`` (quotes, control
    characters escaped) of at most ``SHOWN_PREFIX`` characters, with '...' if cut."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > SHOWN_PREFIX:
        return repr(text[:SHOWN_PREFIX]) + "..."
    return repr(text)


def _check_options(options) -> dict:
    """Strict, bounded: only the known keys, strings of at most MAX_OPTION_LENGTH characters,
    ``same_as_last`` a boolean."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ChoiceError("Server options must be an object with image, version and size.")
    unknown = [key for key in options if key not in OPTION_KEYS]
    if unknown:
        names = ", ".join(shown(k) for k in unknown[:5])
        if len(unknown) > 5:
            names += f" and {len(unknown) - 5} more"
        raise ChoiceError(
            f"Unknown server option(s): {names}. Known options: image, version, size, same_as_last, custom_image, "
            f"connections."
        )
    custom = options.get("custom_image")
    # what a custom start is saved as (``image: custom``, ``version``: its tag) may come back
    if custom is not None and (options.get("image") not in (None, customimages.CUSTOM) or options.get("same_as_last")
                               or options.get("version") not in (None, customimages.tag_of(custom))):
        raise ChoiceError("Choose either an image of your own (custom_image) or an image and version from the "
                          "list, not both.")
    for key in ("image", "version", "size", "custom_image"):
        value = options.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ChoiceError(f"Server option {key!r} must be a string, not {shown(value)}.")
        if len(value) > MAX_OPTION_LENGTH:
            raise ChoiceError(
                f"Server option {key!r} is too long ({len(value)} characters, at most "
                f"{MAX_OPTION_LENGTH}): {shown(value)}."
            )
    same = options.get("same_as_last")
    if same is not None and not isinstance(same, bool):
        raise ChoiceError(f"Server option 'same_as_last' must be true or false, not {shown(same)}.")
    return options


def resolve_custom(custom_images, sizes, user_groups, options, availability) -> Choice:
    """A custom image (``customimages``): permitted, a valid and allowed reference, a size the
    user may use with it and can start now."""
    reference = options.get("custom_image")
    problem = customimages.problem(custom_images, user_groups, reference)
    if problem:
        raise ChoiceError(problem)
    usable = allowed_sizes(sizes, user_groups)
    if (custom_images or {}).get("sizes"):
        usable = [k for k in usable if k in custom_images["sizes"]]
    if not usable:
        raise ChoiceError("No size is available to you for an image of your own.")
    size_key = options.get("size")
    if size_key is None:
        fitting = [k for k in usable if availability.get(k, (True, ""))[0]]
        size_key = (fitting or usable)[0]
    if size_key not in usable:
        raise ChoiceError(f"Refused: size {shown(size_key)} is not available to you for an image of your own. "
                          f"Sizes you can use: {', '.join(_size_name(sizes, k) for k in usable)}.")
    allowed, note = availability.get(size_key, (True, ""))
    if not allowed:
        raise ChoiceError(f"Size {_size_name(sizes, size_key)!r} cannot be started now: {note}")
    return Choice(customimages.CUSTOM, customimages.tag_of(reference), size_key, reference,
                  pull_secret=(custom_images or {}).get("pull_secret") or "")


def resolve_choice(images, sizes, user_groups, options=None, last=None, availability=None,
                   custom_images=None, connections=None) -> Choice:
    """``resolve_image_choice`` plus the data connections ticked (``connections`` option: names
    of ``connections``, the ``data_connections`` setting; "same as last time" repeats the last
    ones), each one the user's groups allow."""
    choice = resolve_image_choice(images, sizes, user_groups, options, last, availability, custom_images)
    options = options or {}
    names = options.get("connections")
    if names is None and options.get("same_as_last"):
        names = (last or {}).get("connections") or None
    try:
        choice.connections = data_connections.chosen(connections or {}, user_groups, names)
    except data_connections.ConnectionRefused as e:
        raise ChoiceError(str(e)) from None
    return choice


def resolve_image_choice(images, sizes, user_groups, options=None, last=None, availability=None,
                         custom_images=None) -> Choice:
    """Validate the user's options against the catalog and their entitlements.

    - ``options``: ``{"image", "version", "size"}`` (each optional: missing keys take the
      defaults) or ``{"same_as_last": True}`` (with no other key, or only keys equal to the
      last choice: "same as last time" never starts something else than the page showed).
    - ``last``: the previous choice from the spawner state (``Choice.as_state()``).
    - ``availability``: ``{size_key: (allowed, note)}`` from the quota layer.
    - ``custom_images``: the ``custom_images`` setting; ``{"custom_image": reference, "size"}``
      is then resolved by ``resolve_custom``.

    Raises ChoiceError naming what was refused and what may be chosen instead. Messages name
    images and sizes by the display names the form shows; a value the form never offered is
    shown as a short escaped prefix of what was posted.
    """
    options = _check_options(options)
    availability = availability or {}
    if options.get("custom_image") is not None:
        return resolve_custom(custom_images, sizes, user_groups, options, availability)
    if options.get("same_as_last"):
        conflict = same_as_last_conflict(images, sizes, options, last)
        if conflict:
            raise ChoiceError(conflict)
        if (last or {}).get("image") == customimages.CUSTOM:
            return resolve_custom(custom_images, sizes, user_groups,
                                  {"custom_image": last.get("image_ref"), "size": last.get("size")}, availability)
        return resolve_last(images, sizes, user_groups, last, availability)

    visible = visible_images(images, sizes, user_groups)
    if not visible:
        raise ChoiceError(
            "No image is available to your account. Ask your administrator for access."
        )
    image_key = options.get("image")
    if image_key is None:
        image_key = visible[0]
    if image_key not in visible:
        raise ChoiceError(
            f"Image {shown(image_key)} is not available to you. "
            f"Available images: {', '.join(_describe(images, k) for k in visible)}."
        )
    image = images[image_key]

    version_key = options.get("version")
    if version_key is None:
        version_key = default_version(image)
    if version_key not in image["versions"]:
        raise ChoiceError(
            f"Version {shown(version_key)} of image {_describe(images, image_key)!r} does not exist "
            f"(it may have been removed). Available versions: "
            f"{', '.join(version_label(image, v) for v in image['versions'])}."
        )

    usable = image_sizes(image, sizes, user_groups)
    size_key = options.get("size")
    if size_key is None:
        fitting = [k for k in usable if availability.get(k, (True, ""))[0]]
        size_key = (fitting or usable)[0]
    if size_key not in usable:
        if size_key in sizes and groups_allow(sizes[size_key], user_groups):
            reason = (
                f"image {_describe(images, image_key)!r} cannot run on size "
                f"{_size_name(sizes, size_key)!r}"
            )
        else:
            reason = f"size {shown(size_key)} is not available to you"
        raise ChoiceError(
            f"Refused: {reason}. Sizes you can use with {_describe(images, image_key)!r}: "
            f"{', '.join(_size_name(sizes, k) for k in usable)}."
        )
    allowed, note = availability.get(size_key, (True, ""))
    if not allowed:
        raise ChoiceError(f"Size {_size_name(sizes, size_key)!r} cannot be started now: {note}")

    version = image["versions"][version_key]
    opens = interface_of(image, version)
    choice = Choice(image_key, version_key, size_key, version["image"], interface=opens["name"],
                    default_url=opens["default_url"], launchers=opens["launchers"],
                    collaboration=opens["collaboration"])
    if version.get("deprecated"):
        choice.deprecated = str(version["deprecated"])
        choice.notes.append(
            f"Version {version_label(image, version_key)!r} of {_describe(images, image_key)!r} "
            f"is deprecated: {version['deprecated']}"
        )
    return choice


def same_as_last_conflict(images, sizes, options, last) -> str:
    """Why options naming both ``same_as_last`` and explicit choices are refused ('' if the
    explicit choices are the last ones): the page must start what it shows."""
    last = last or {}
    differ = [k for k in ("image", "version", "size")
              if options.get(k) is not None and options[k] != last.get(k)]
    if not differ:
        return ""
    image = images.get(last.get("image")) or {}
    picked = []
    for key in differ:
        value = options[key]
        if key == "image":
            known = value in images
            picked.append(f"image {_describe(images, value)!r}" if known else f"image {shown(value)}")
        elif key == "size":
            picked.append(f"size {_size_name(sizes, value)!r}" if value in sizes else f"size {shown(value)}")
        else:
            chosen = images.get(options.get("image") or last.get("image")) or image
            label = version_label(chosen, value) if value in (chosen.get("versions") or {}) else None
            picked.append(f"version {label!r}" if label else f"version {shown(value)}")
    return (
        f"You chose \"Same as last time\" and also {', '.join(picked)}, which differ from last time. "
        "Choose either \"Same as last time\" or a new image and size, not both."
    )


def last_choice_problem(images, sizes, user_groups, last) -> str:
    """Why "same as last time" cannot be used now ('' if it can)."""
    if not last or not last.get("image"):
        return "There is no previous start to repeat."
    image_key, version_key, size_key = last.get("image"), last.get("version"), last.get("size")
    if image_key not in images:
        return f"The image you used last time ({image_key!r}) has been removed from the catalog."
    image = images[image_key]
    if version_key not in image["versions"]:
        return (
            f"The version you used last time ({_describe(images, image_key)} {version_key!r}) "
            f"has been removed. Please choose a version; the current default is "
            f"{version_label(image, default_version(image))!r}."
        )
    if size_key not in sizes:
        return f"The size you used last time ({size_key!r}) no longer exists. Please choose a size."
    if image_key not in visible_images(images, sizes, user_groups):
        return f"The image you used last time ({_describe(images, image_key)}) is no longer available to you."
    if size_key not in image_sizes(image, sizes, user_groups):
        return f"The size you used last time ({_size_name(sizes, size_key)!r}) is no longer available to you."
    return ""


def resolve_last(images, sizes, user_groups, last, availability=None) -> Choice:
    problem = last_choice_problem(images, sizes, user_groups, last)
    if problem:
        raise ChoiceError(problem)
    return resolve_choice(
        images,
        sizes,
        user_groups,
        {"image": last["image"], "version": last["version"], "size": last["size"]},
        availability=availability,
    )
