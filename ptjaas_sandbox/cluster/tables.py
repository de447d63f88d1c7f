"""Server-side printing: ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` answers with a
``meta.k8s.io/v1 Table``, as kube-apiserver does for ``kubectl get``. The column definitions are
those a real kube-apiserver (1.36) serves, kept in ``table_columns.json``; the cells follow its
printers (``printers.py``). Pure: objects in, a Table out.
"""

import functools
import json
import os
from datetime import datetime, timezone

from .printers import PRINTERS, default


_NAME_COLUMN = {"name": "Name", "type": "string", "format": "name", "priority": 0,
                "description": "Name must be unique within a namespace."}
_AGE_COLUMN = {"name": "Age", "type": "string", "format": "", "priority": 0,
               "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}


@functools.lru_cache(maxsize=None)
def _columns():
    with open(os.path.join(os.path.dirname(__file__), "table_columns.json")) as f:
        return json.load(f)


def wants_table(accept):
    """The Table version asked for in an Accept header ("v1"/"v1beta1"), or None."""
    for part in (accept or "").split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return params["v"]
    return None


def table(rtype, objects, list_meta=None, version="v1", include="Metadata", now=None):
    now = now or datetime.now(timezone.utc)
    printer = PRINTERS.get(rtype.plural, default)
    columns = _columns().get(rtype.plural) or [_NAME_COLUMN, _AGE_COLUMN]
    rows = []
    for obj in objects:
        row = {"cells": printer(obj, now)}
        conditions = _row_conditions(rtype, obj)
        if conditions:
            row["conditions"] = conditions
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}",
                             "metadata": obj.get("metadata", {})}
        rows.append(row)
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{version}", "metadata": list_meta or {},
            "columnDefinitions": columns, "rows": rows}


def _row_conditions(rtype, obj):
    if rtype.plural != "pods":
        return None
    phase = (obj.get("status") or {}).get("phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return None
