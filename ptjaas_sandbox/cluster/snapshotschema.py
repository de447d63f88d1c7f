"""What kube-apiserver checks on writes of the snapshot CRDs (their OpenAPI schemas and CEL rules,
as ``shared/schemas/snapshot`` has them) for the embedded server. Pure: objects in, (field, message) causes or table cells out; the
messages are the real server's. (Their printer columns: ``tables.py``.)"""

GROUP = "snapshot.storage.k8s.io"
# kube-apiserver adds this cause when schema errors kept it from evaluating the CEL rules
CEL_SKIPPED = ("<nil>", "Invalid value: null: some validation rules were not checked because the object was "
                        "invalid; correct the existing errors to complete validation")
POLICIES = ("Delete", "Retain")


def _required(obj, fields, prefix=""):
    return [(prefix + f, "Required value") for f in fields if not isinstance(obj, dict) or f not in obj]


def _policy(value, field):
    if value is not None and value not in POLICIES:
        return [(field, f'Unsupported value: "{value}": supported values: "Delete", "Retain"')]
    return []


def _exactly_one(source, a, b, field):
    if isinstance(source, dict) and (a in source) == (b in source):
        return [(field, f"Invalid value: exactly one of {a} and {b} must be set")]
    return []


def _snapshot(obj):
    spec = obj.get("spec")
    schema = _required(obj, ["spec"]) or _required(spec, ["source"], "spec.")
    if schema:
        return schema + [CEL_SKIPPED]
    causes = _exactly_one(spec["source"], "volumeSnapshotContentName", "persistentVolumeClaimName", "spec.source")
    if spec.get("volumeSnapshotClassName") == "":
        causes.append(("spec.volumeSnapshotClassName",
                       'Invalid value: "": volumeSnapshotClassName must not be the empty string when set'))
    return causes


def _content(obj):
    spec = obj.get("spec")
    schema = _required(obj, ["spec"]) or (_policy(spec.get("deletionPolicy"), "spec.deletionPolicy")
                                          + _required(spec, ["deletionPolicy", "driver", "source", "volumeSnapshotRef"], "spec."))
    if schema:
        return schema + [CEL_SKIPPED]
    ref = spec["volumeSnapshotRef"]
    causes = []
    if not (isinstance(ref, dict) and "name" in ref and "namespace" in ref):
        causes.append(("spec.volumeSnapshotRef",
                       "Invalid value: both spec.volumeSnapshotRef.name and spec.volumeSnapshotRef.namespace must be set"))
    return causes + _exactly_one(spec["source"], "volumeHandle", "snapshotHandle", "spec.source")


def _class(obj):
    return _policy(obj.get("deletionPolicy"), "deletionPolicy") + _required(obj, ["deletionPolicy", "driver"])


CHECKS = {"volumesnapshots": _snapshot, "volumesnapshotcontents": _content, "volumesnapshotclasses": _class}

# (CEL transition rules) fields that may not change, or go, once set: plural -> [(path, field)]
_IMMUTABLE = {
    "volumesnapshots": [(("spec", "source"), "persistentVolumeClaimName"),
                        (("spec", "source"), "volumeSnapshotContentName")],
    "volumesnapshotcontents": [(("spec", "source"), "volumeHandle"), (("spec", "source"), "snapshotHandle"),
                               (("spec",), "sourceVolumeMode")],
}


def _at(obj, path):
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, dict) else {}


def update_causes(plural, old, new):
    """The causes of refusing an update of ``old`` to ``new`` (immutable sources)."""
    causes = []
    for path, field in _IMMUTABLE.get(plural, []):
        before, after = _at(old, path), _at(new, path)
        if field not in before:
            continue
        where = ".".join(path)
        if field not in after:
            causes.append((where, f"Invalid value: {field} is required once set"))
        elif after[field] != before[field]:
            causes.append((f"{where}.{field}", f'Invalid value: "{after[field]}": {field} is immutable'))
    return causes
