"""Pure tests: the image catalog, sizes and config validation."""

import pytest

from ptjaas_spawner.catalog import ChoiceError, resolve_choice, visible_images
from ptjaas_spawner.configcheck import ConfigError, check_all, check_images, check_sizes
from ptjaas_spawner.quantity import parse_bytes, parse_cpu
from ptjaas_spawner.sizes import spawner_settings

SIZES = {
    "small": {"display_name": "Small", "cpu_guarantee": "500m", "cpu_limit": 1,
              "mem_guarantee": "1Gi", "mem_limit": "2Gi"},
    "large": {"display_name": "Large", "cpu_guarantee": 2, "cpu_limit": 4,
              "mem_guarantee": "8Gi", "mem_limit": "16Gi", "groups": ["power"]},
    "gpu": {"display_name": "GPU", "cpu_guarantee": 2, "cpu_limit": 8, "mem_guarantee": "8Gi",
            "mem_limit": "32Gi", "gpu": 1, "node_selector": {"gpu": "yes"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "groups": ["gpu-users"]},
}
IMAGES = {
    "python": {"display_name": "Python", "description": "Scientific Python",
               "versions": {"2024.05": {"image": "py:2024.05", "deprecated": "moves to 2025"},
                            "2025.01": {"image": "py:2025.01", "default": True, "notes": "new"}}},
    "cuda": {"display_name": "CUDA", "sizes": ["gpu"],
             "versions": {"12": {"image": "cuda:12"}}},
    "secret": {"display_name": "Secret", "groups": ["power"],
               "versions": {"1": {"image": "secret:1"}}},
}


def test_defaults_and_entitlements():
    c = resolve_choice(IMAGES, SIZES, [], {})
    assert (c.image, c.version, c.size, c.image_ref) == ("python", "2025.01", "small", "py:2025.01")
    assert visible_images(IMAGES, SIZES, []) == ["python"]
    assert visible_images(IMAGES, SIZES, ["gpu-users", "power"]) == ["python", "cuda", "secret"]


@pytest.mark.parametrize("options, words", [
    ({"image": "nope"}, ["'nope'", "not available", "Available images: Python."]),
    ({"image": "secret"}, ["'secret'", "not available"]),
    ({"image": "cuda"}, ["'cuda'", "not available"]),
    ({"image": "python", "version": "1999"}, ["'1999'", "does not exist", "2025.01"]),
    ({"image": "python", "size": "large"}, ["'large'", "not available to you", "with 'Python': Small."]),
    ({"image": "python", "size": "huge"}, ["'huge'", "not available"]),
    ({"image": "python", "cpu_limit": 64}, ["cpu_limit"]),
    ({"image": ["python"]}, ["must be a string"]),
    # strict: unknown keys (KubeSpawner's profile too), bounded values, booleans
    ({"image": "python", "profile": "big"}, ["Unknown server option(s): 'profile'"]),
    ({"size": "x" * 257}, ["'size' is too long (257 characters, at most 256)"]),
    ({"same_as_last": "yes"}, ["'same_as_last' must be true or false"]),
])
def test_forged_options_refused(options, words):
    with pytest.raises(ChoiceError) as e:
        resolve_choice(IMAGES, SIZES, [], options)
    for w in words:
        assert w in str(e.value)


def test_refusals_echo_only_a_short_escaped_prefix():
    huge = "<script>\n" + "A" * 5_000_000
    for options in ({"image": huge}, {"image": "python", "version": huge[:256]}, {huge: 1},
                    {"image": "python", "size": "\x1b[31m" + "b" * 200}):
        with pytest.raises(ChoiceError) as e:
            resolve_choice(IMAGES, SIZES, [], options)
        message = str(e.value)
        assert len(message) < 300 and "\n" not in message and "\x1b" not in message, message
    assert "'<script>\\nAAAA" in message or "\\x1b[31m" in message


def test_same_as_last_with_other_choices_is_refused():
    last = {"image": "python", "version": "2024.05", "size": "small", "image_ref": "py:2024.05"}
    groups = ["power"]
    # the same values as last time: fine
    c = resolve_choice(IMAGES, SIZES, groups, {"same_as_last": True, "image": "python", "size": "small"}, last=last)
    assert (c.version, c.size) == ("2024.05", "small")
    with pytest.raises(ChoiceError) as e:
        resolve_choice(IMAGES, SIZES, groups, {"same_as_last": True, "version": "2025.01", "size": "large"},
                       last=last)
    assert "also version '2025.01', size 'Large'" in str(e.value) and "not both" in str(e.value)


def test_image_restricted_to_sizes():
    groups = ["gpu-users"]
    assert resolve_choice(IMAGES, SIZES, groups, {"image": "cuda"}).size == "gpu"
    with pytest.raises(ChoiceError, match="cannot run on size 'Small'"):
        resolve_choice(IMAGES, SIZES, groups, {"image": "cuda", "size": "small"})


def test_deprecated_version_selectable_with_warning():
    c = resolve_choice(IMAGES, SIZES, [], {"image": "python", "version": "2024.05"})
    assert c.deprecated == "moves to 2025" and "deprecated" in c.notes[0]


def test_same_as_last_after_default_moved_and_after_removal():
    last = {"image": "python", "version": "2024.05", "size": "small", "image_ref": "py:2024.05"}
    c = resolve_choice(IMAGES, SIZES, [], {"same_as_last": True}, last=last)
    assert (c.version, c.image_ref) == ("2024.05", "py:2024.05")
    removed = dict(IMAGES, python={**IMAGES["python"], "versions": {
        "2025.01": IMAGES["python"]["versions"]["2025.01"]}})
    with pytest.raises(ChoiceError, match="has been removed.*choose a version"):
        resolve_choice(removed, SIZES, [], {"same_as_last": True}, last=last)
    with pytest.raises(ChoiceError, match="no previous start"):
        resolve_choice(IMAGES, SIZES, [], {"same_as_last": True}, last=None)


def test_availability_from_quota():
    avail = {"small": (False, "over your CPU budget")}
    with pytest.raises(ChoiceError, match="over your CPU budget"):
        resolve_choice(IMAGES, SIZES, ["power"], {"size": "small"}, availability=avail)
    assert resolve_choice(IMAGES, SIZES, ["power"], {}, availability=avail).size == "large"


def test_size_settings():
    s = spawner_settings(SIZES["gpu"])
    assert s["cpu_guarantee"] == 2.0 and s["mem_limit"] == 32 * 2**30
    assert s["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert s["node_selector"] == {"gpu": "yes"} and s["tolerations"][0]["key"] == "gpu"
    assert spawner_settings(SIZES["small"])["extra_resource_limits"] == {}
    assert parse_cpu("250m") == 0.25 and parse_bytes("1G") == 10**9
    with pytest.raises(ValueError, match="'lots'"):
        parse_bytes("lots")


@pytest.mark.parametrize("mutate, message", [
    (lambda s, i: s["gpu"].update(gpu_resource=""),
     "c.PtjaasSpawner.sizes['gpu']: a GPU size needs gpu_resource"),
    (lambda s, i: s["small"].pop("cpu_limit"), "c.PtjaasSpawner.sizes['small']: a size needs cpu_limit"),
    (lambda s, i: s["small"].pop("mem_guarantee"), "sizes['small']: a size needs mem_guarantee"),
    (lambda s, i: s["small"].update(colour="red"), "sizes['small']['colour']: unknown key; known:"),
    (lambda s, i: s["small"].update(mem_limit="lots"), "sizes['small']['mem_limit']: not a quantity"),
    (lambda s, i: s["small"].update(cull_idle_timeout="1h"), "['cull_idle_timeout']: must be a number"),
    (lambda s, i: i["python"]["versions"]["2024.05"].update(default=True),
     "images['python']: two or more default"),
    (lambda s, i: i["cuda"].update(versions={}), "images['cuda']: an image needs at least one version"),
    (lambda s, i: i["cuda"].update(sizes=["gpu-large"]),
     "images['cuda']['sizes']: unknown size(s) 'gpu-large'"),
    (lambda s, i: i["cuda"]["versions"]["12"].pop("image"),
     "images['cuda']['versions']['12']: a version needs 'image'"),
    (lambda s, i: i["cuda"].update(tag="x"), "images['cuda']['tag']: unknown key; known:"),
])
def test_config_errors_name_the_setting(mutate, message):
    import copy
    sizes, images = copy.deepcopy(SIZES), copy.deepcopy(IMAGES)
    check_all(images, sizes)
    mutate(sizes, images)
    with pytest.raises(ConfigError) as e:
        check_sizes(sizes)
        check_images(images, sizes)
    assert message in str(e.value)


def test_home_and_shared_config_errors():
    with pytest.raises(ConfigError, match=r"home_volume_size_by_group\['big'\]"):
        check_all(IMAGES, SIZES, home_volume_size_by_group={"big": "huge"})
    with pytest.raises(ConfigError, match=r"shared_volumes\[0\]: a shared volume needs 'claim'"):
        check_all(IMAGES, SIZES, shared_volumes=[{"mount_path": "/data"}])
    with pytest.raises(ConfigError, match="home_volume_access_modes"):
        check_all(IMAGES, SIZES, home_volume_access_modes=["ReadWriteSometimes"])
