"""The image-version catalog and the resolution of a user's choice. Pure.

An image (see ``PtjaasSpawner.images``)::

    {"display_name": "Python", "description": "...", "sizes": [...], "groups": [...],
     "versions": {"2024.05": {"image": "repo/python:2024.05", "label": "...", "notes": "...",
                              "default": True, "deprecated": "use 2025.01"}}}

``resolve_choice`` turns posted options (form or REST ``user_options``) into a ``Choice``,
or raises ``ChoiceError`` with a message meant for the user.
"""

from dataclasses import asdict, dataclass, field

from .settings_schema import IMAGE, VERSION, keys
from .sizes import allowed_sizes, groups_allow

IMAGE_KEYS = keys(IMAGE)
VERSION_KEYS = keys(VERSION)
OPTION_KEYS = frozenset({"image", "version", "size", "same_as_last"})


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

    def as_state(self) -> dict:
        d = asdict(self)
        d.pop("notes")
        d.pop("deprecated")
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


def _check_options(options) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ChoiceError("Server options must be an object with image, version and size.")
    unknown = sorted(set(options) - OPTION_KEYS - {"profile"})
    if unknown:
        raise ChoiceError(
            f"Unknown server option(s): {', '.join(map(str, unknown))}. "
            f"Known options: image, version, size, same_as_last."
        )
    for key in ("image", "version", "size"):
        value = options.get(key)
        if value is not None and not isinstance(value, str):
            raise ChoiceError(f"Server option {key!r} must be a string, not {value!r}.")
    return options


def resolve_choice(images, sizes, user_groups, options=None, last=None, availability=None) -> Choice:
    """Validate the user's options against the catalog and their entitlements.

    - ``options``: ``{"image", "version", "size"}`` (each optional: missing keys take the
      defaults) or ``{"same_as_last": True}``.
    - ``last``: the previous choice from the spawner state (``Choice.as_state()``).
    - ``availability``: ``{size_key: (allowed, note)}`` from the quota layer.

    Raises ChoiceError naming what was refused and what may be chosen instead.
    """
    options = _check_options(options)
    availability = availability or {}
    if options.get("same_as_last"):
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
            f"Image {image_key!r} is not available to you. "
            f"Available images: {', '.join(visible)}."
        )
    image = images[image_key]

    version_key = options.get("version")
    if version_key is None:
        version_key = default_version(image)
    if version_key not in image["versions"]:
        raise ChoiceError(
            f"Version {version_key!r} of image {_describe(images, image_key)!r} does not exist "
            f"(it may have been removed). Available versions: {', '.join(image['versions'])}."
        )

    usable = image_sizes(image, sizes, user_groups)
    size_key = options.get("size")
    if size_key is None:
        fitting = [k for k in usable if availability.get(k, (True, ""))[0]]
        size_key = (fitting or usable)[0]
    if size_key not in usable:
        if size_key in sizes and groups_allow(sizes[size_key], user_groups):
            reason = f"image {_describe(images, image_key)!r} cannot run on size {size_key!r}"
        else:
            reason = f"size {size_key!r} is not available to you"
        raise ChoiceError(f"Refused: {reason}. Sizes you can use with this image: {', '.join(usable)}.")
    allowed, note = availability.get(size_key, (True, ""))
    if not allowed:
        raise ChoiceError(f"Size {size_key!r} cannot be started now: {note}")

    version = image["versions"][version_key]
    choice = Choice(image_key, version_key, size_key, version["image"])
    if version.get("deprecated"):
        choice.deprecated = str(version["deprecated"])
        choice.notes.append(
            f"Version {version_label(image, version_key)!r} of {_describe(images, image_key)!r} "
            f"is deprecated: {version['deprecated']}"
        )
    return choice


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
        return f"The size you used last time ({size_key!r}) is no longer available to you."
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


def profile_list(images: dict, sizes: dict, user_groups=None) -> list:
    """The catalog as a KubeSpawner-style ``profile_list`` (one profile per size, an image
    option per profile), for tools built on KubeSpawner's profiles. Informational: ptjaas
    itself starts from ``image``/``version``/``size`` options."""
    from .sizes import size_summary, spawner_settings

    profiles = []
    for size_key in allowed_sizes(sizes, user_groups):
        size = sizes[size_key]
        choices = {}
        for image_key in visible_images(images, sizes, user_groups):
            image = images[image_key]
            if size_key not in image_sizes(image, sizes, user_groups):
                continue
            for version_key, version in image["versions"].items():
                choices[f"{image_key}:{version_key}"] = {
                    "display_name": f"{_describe(images, image_key)} {version_label(image, version_key)}",
                    "default": not choices and True or False,
                    "kubespawner_override": {"image": version["image"]},
                }
        if not choices:
            continue
        profiles.append(
            {
                "slug": size_key,
                "display_name": size.get("display_name") or size_key,
                "description": size.get("description") or size_summary(size),
                "kubespawner_override": spawner_settings(size),
                "profile_options": {"image": {"display_name": "Image", "choices": choices}},
            }
        )
    return profiles
