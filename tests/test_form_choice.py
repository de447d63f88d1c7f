"""Pure tests for issue 9: the form starts what it shows (points 2, 3), one amount for the form
and the charge (point 6), the same words everywhere (point 7)."""

from html.parser import HTMLParser

import pytest
from kubernetes.client import ApiClient
from kubespawner.objects import make_pod


from ptjaas_spawner.catalog import ChoiceError, resolve_choice  # noqa: E402
from ptjaas_spawner.form import options_from_formdata, render_form  # noqa: E402
from ptjaas_spawner.quota.budget import (  # noqa: E402
    Amount, Charge, Ledger, QuotaPolicy, availability, decide, pod_amount, size_amount, summary)
from ptjaas_spawner.sizes import spawner_settings  # noqa: E402

SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": "500m", "cpu_limit": 1,
              "mem_guarantee": "1Gi", "mem_limit": "2Gi"},
    "gpu-1": {"display_name": "1 GPU", "cpu_guarantee": 1, "cpu_limit": 4, "mem_guarantee": "4Gi",
              "mem_limit": "8Gi", "gpu": 1},
}
IMAGES = {
    "pytorch": {"display_name": "PyTorch (CUDA)", "sizes": ["gpu-1"],
                "versions": {"2": {"image": "pt:2"}}},
    "python": {"display_name": "Python", "versions": {
        "2024.05": {"image": "py:2024.05", "deprecated": "ends in June"},
        "2025.01": {"image": "py:2025.01", "default": True}}},
}
LAST = {"image": "python", "version": "2024.05", "size": "small", "image_ref": "py:2024.05",
        "image_digest": "py@sha256:0123"}


class Parsed(HTMLParser):
    def __init__(self, text):
        super().__init__()
        self.inputs = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "input":
            self.inputs.append(dict(attrs))

    def checked(self, name):
        return [i["value"] for i in self.inputs if i.get("name") == name and "checked" in i]

    def hidden(self, name):
        return next(i["value"] for i in self.inputs if i.get("name") == name)


def test_preselected_pair_can_start_when_the_gpus_are_full():
    full = {"gpu-1": (False, "0 of 4 vision GPUs free")}
    page = Parsed(render_form(IMAGES, SIZES, [], availability=full))
    # PyTorch (CUDA) runs only on the GPU size, which cannot start: Python + Small is offered
    assert page.checked("image") == ["python"] and page.checked("size") == ["small"]
    c = resolve_choice(IMAGES, SIZES, [], options_from_formdata({
        "choice": ["new"], "image": ["python"], "version--python": ["2025.01"], "size": ["small"]}),
        availability=full)
    assert (c.image, c.size) == ("python", "small")
    # nothing fits at all: said so, no size pre-selected
    none = {"gpu-1": (False, "full"), "small": (False, "full")}
    text = render_form(IMAGES, SIZES, [], availability=none)
    assert "None of your sizes can be started right now" in text and Parsed(text).checked("size") == []


def test_sizes_carry_the_images_they_run_with_and_messages_use_display_names():
    page = Parsed(render_form(IMAGES, SIZES, []))
    runs = {i["value"]: i["data-ptjaas-images"] for i in page.inputs if i.get("name") == "size"}
    assert runs == {"small": '["python"]', "gpu-1": '["pytorch", "python"]'}
    with pytest.raises(ChoiceError) as e:
        resolve_choice(IMAGES, SIZES, [], {"image": "pytorch", "size": "small"})
    assert "'PyTorch (CUDA)' cannot run on size 'Small'" in str(e.value)
    assert "1 GPU" in str(e.value) and "gpu-1" not in str(e.value) and "pytorch" not in str(e.value)
    with pytest.raises(ChoiceError) as e:
        resolve_choice(IMAGES, SIZES, [], {"size": "gpu-1"}, availability={"gpu-1": (False, "full")})
    assert str(e.value).startswith("Size '1 GPU' cannot be started now")


def test_refused_post_is_shown_again_with_the_users_choices():
    refused = {"image": "pytorch", "version": "2", "size": "small", "refused": True, "choice": "new"}
    page = Parsed(render_form(IMAGES, SIZES, [], last=LAST, selected=refused))
    assert page.checked("image") == ["pytorch"] and page.checked("size") == ["small"]
    assert page.checked("choice") == ["new"]


def test_same_as_last_never_starts_something_else_than_the_page_shows():
    text = render_form(IMAGES, SIZES, [], last=LAST)
    page = Parsed(text)
    assert page.checked("choice") == ["last"]
    shown = {f: [page.hidden(f)] for f in ("shown-image", "shown-version", "shown-size")}
    assert shown == {"shown-image": ["pytorch"], "shown-version": ["2"], "shown-size": ["gpu-1"]}
    post = {"choice": ["last"], "image": ["pytorch"], "version--python": ["2025.01"],
            "version--pytorch": ["2"], "size": ["gpu-1"], **shown}
    # untouched fields: same as last time (the deprecated 2024.05 on Small)
    c = resolve_choice(IMAGES, SIZES, [], options_from_formdata(post), last=LAST)
    assert (c.version, c.size) == ("2024.05", "small")
    # without JavaScript "same as last time" stays checked while the user picks another
    # version and size: what they picked starts
    picked = dict(post, **{"image": ["python"], "size": ["small"]})
    c = resolve_choice(IMAGES, SIZES, [], options_from_formdata(picked), last=LAST)
    assert (c.image, c.version, c.size) == ("python", "2025.01", "small")
    # the API: same_as_last with other explicit choices is refused, with a message
    with pytest.raises(ChoiceError, match="not both"):
        resolve_choice(IMAGES, SIZES, [], {"same_as_last": True, "size": "gpu-1"}, last=LAST)


def test_form_fields_are_strict_and_bounded():
    with pytest.raises(ChoiceError, match="Unknown form field"):
        options_from_formdata({"choice": ["new"], "profile": ["x"]})
    with pytest.raises(ChoiceError, match="too long") as e:
        options_from_formdata({"image": ["p" * 10_000]})
    assert len(str(e.value)) < 200


def test_last_line_warns_when_deprecated_and_hides_the_digest():
    text = render_form(IMAGES, SIZES, [], last=LAST)
    last_line = text[text.index("Same as last time"):text.index('value="new"')]
    assert "This version is deprecated: ends in June" in last_line
    assert "<details" in last_line and last_line.index("<details") < last_line.index("py@sha256:0123")
    ok = render_form(IMAGES, SIZES, [], last=dict(LAST, version="2025.01"))
    assert "This version is deprecated" not in ok


def test_resources_shown_as_guarantee_to_limit():
    text = render_form(IMAGES, SIZES, [])
    assert "CPU 0.5 \u2192 1, memory 1Gi \u2192 2Gi" in text
    assert "CPU 1 \u2192 4, memory 4Gi \u2192 8Gi, 1 GPU" in text
    # a guarantee of 0 is shown as what the pod gets (and the quota counts): the limit
    zero = {"z": dict(SIZES["small"], cpu_guarantee=0)}
    assert "CPU 1 \u2192 1, memory 1Gi \u2192 2Gi" in render_form(IMAGES, zero, [])


def _pod(size):
    """The pod KubeSpawner itself makes for a size, as API JSON."""
    settings = spawner_settings(size)
    pod = make_pod(name="p", cmd=["jupyterhub-singleuser"], port=8888, image="x",
                   cpu_guarantee=settings["cpu_guarantee"], cpu_limit=settings["cpu_limit"],
                   mem_guarantee=settings["mem_guarantee"], mem_limit=settings["mem_limit"],
                   extra_resource_limits=settings["extra_resource_limits"])
    return ApiClient().sanitize_for_serialization(pod)


@pytest.mark.parametrize("size", [
    SIZES["small"], SIZES["gpu-1"],
    dict(SIZES["small"], cpu_guarantee=0),  # no request: Kubernetes makes it the limit
    dict(SIZES["small"], cpu_guarantee=0, mem_guarantee=0),
    dict(SIZES["gpu-1"], cpu_guarantee="0m", gpu=2),
])
def test_form_and_charge_count_a_size_alike(size):
    assert size_amount(size) == pod_amount(_pod(size))


def test_a_size_the_form_says_fits_is_not_refused_at_the_charge():
    pol = QuotaPolicy.from_config({"cpu": 1.5})
    led = Ledger()
    led.add(Charge("ann", "other", Amount(cpu=1), None))
    no_guarantee = dict(SIZES["small"], cpu_guarantee=0)  # pod requests its limit: 1 CPU
    verdict = availability(pol, led, "ann", [], {"s": size_amount(no_guarantee)})["s"][0]
    assert verdict == decide(pol, led, "ann", [], pod_amount(_pod(no_guarantee))).allowed == False  # noqa: E712


def test_quota_summary_line():
    pol = QuotaPolicy.from_config({"servers": 2, "gpus": 1}, groups={"vision": {"gpus": 4}})
    led = Ledger()
    led.add(Charge("ann", "", Amount(cpu=1), "vision"))
    led.add(Charge("bob", "", Amount(gpus=1), "vision"))
    # the form of ann's default server does not count that server itself
    assert summary(pol, led, "ann", ["vision"]) == (
        "you: 0 of 2 servers, 0 of 1 GPUs; team vision: 3 of 4 GPUs free")
    assert summary(pol, led, "ann", ["vision"], "second") == (
        "you: 1 of 2 servers, 0 of 1 GPUs; team vision: 3 of 4 GPUs free")
    assert summary(QuotaPolicy.from_config(None), led, "ann", []) == ""
    text = render_form(IMAGES, SIZES, [], summary="you: 1 of 2 servers")
    assert text.index("you: 1 of 2 servers") < text.index('name="image"')
