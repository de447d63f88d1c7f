"""settings_schema checked by jsonschema (schemacheck): each problem on its setting, in words an
admin reads, in the order of the keys; None is "not set". Table tests."""

import pytest

from ptjaas_spawner.schemacheck import problems
from ptjaas_spawner.settings_schema import CULLER, SPAWNER

SIZE = {"cpu_guarantee": "500m", "cpu_limit": 1, "mem_guarantee": "1Gi", "mem_limit": "2Gi"}


@pytest.mark.parametrize("settings, expected", [
    ({"sizes": {"s": SIZE}, "shared_volumes": ()}, []),
    ({"sizes": {"s": dict(SIZE, gpu=None, groups=None)}}, []),                    # null: not set
    ({"sizes": {"s": dict(SIZE, gpu=True)}},
     [(("sizes", "s", "gpu"), "must be a whole number of GPUs >= 0, not True")]),  # a bool is no number
    ({"sizes": {"s": dict(SIZE, cpu_limit=None)}}, [(("sizes", "s"), "a size needs cpu_limit")]),
    ({"sizes": {"s": dict(SIZE, mem_limit="2 GB")}},
     [(("sizes", "s", "mem_limit"), "not a quantity: '2 GB' (quantities must match the regular expression "
                                    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$')")]),
    ({"sizes": {"s": dict(SIZE, groups="vision")}},
     [(("sizes", "s", "groups"), "must be a list of group names, not 'vision'")]),
    ({"sizes": ["s"]}, [(("sizes",), "must be a dict of size key -> size, not ['s']")]),
    ({"images": {"i": {"versions": {"1": {"image": "py 1"}}}}},
     [(("images", "i", "versions", "1"), "a version needs 'image' (a tag or digest reference)")]),
    ({"images": {"i": {"versions": {}}}}, [(("images", "i"), "an image needs at least one version in 'versions'")]),
    ({"home_volume_access_modes": ["ReadWriteSometimes"]},
     [(("home_volume_access_modes",), "must be a non-empty list of ReadOnlyMany, ReadWriteMany, ReadWriteOnce, "
                                      "ReadWriteOncePod, not ['ReadWriteSometimes']")]),
    ({"shared_volumes": [{"claim": "data", "mount_path": "data"}]},
     [(("shared_volumes", 0), "a shared volume needs an absolute 'mount_path'")]),
    ({"home_mount_path": "x" * 200},
     [(("home_mount_path",), "must be an absolute path, not '" + "x" * 76 + "...")]),   # bounded
    # every problem, in the order of the keys
    ({"sizes": {"a": dict(SIZE, colour="red"), "b": dict(SIZE, gpu=-1)}},
     [(("sizes", "a", "colour"), "unknown key; known: cpu_guarantee, cpu_limit, cull_idle_timeout, cull_max_age, "
       "description, display_name, gpu, gpu_resource, groups, kernel_idle_timeout, mem_guarantee, mem_limit, "
       "node_selector, tolerations"),
      (("sizes", "b", "gpu"), "must be a whole number of GPUs >= 0, not -1")]),
])
def test_spawner_settings_problems_name_the_setting(settings, expected):
    assert problems(settings, SPAWNER) == expected


def test_culler_values_problems_use_the_rule_in_words():
    assert problems({"hookTimeout": "1m", "snapshotKeep": 0, "beforeCullHooks": ["usage", 3]}, CULLER) == [
        ((("hookTimeout",)), "must be a number, not '1m'"),
        (("snapshotKeep",), "must be >= 1, not 0"),
        (("beforeCullHooks", 1), "must be a string, not 3")]
    assert problems(None, CULLER) == []


def test_a_value_of_several_forms_names_each_form():
    schema = {"type": "object", "properties": {"opens": {"oneOf": [
        {"type": "string", "enum": ["lab", "vscode"]},
        {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}]}}}
    assert problems({"opens": "emacs"}, schema) == [
        (("opens",), "must be one of lab, vscode or a mapping, not 'emacs'")]
    assert problems({"opens": {"name": 3}}, schema) == [(("opens", "name"), "must be a string, not 3")]
    assert problems({"opens": {}}, schema) == [(("opens",), "needs 'name'")]
    assert problems({"opens": "lab"}, schema) == problems({"opens": {"name": "x"}}, schema) == []
