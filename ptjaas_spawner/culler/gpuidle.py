"""Pure GPU-idle rule: a GPU server whose GPUs stayed under a utilisation threshold for its
size's idle timeout is idle, even while its kernel reports activity.

No I/O here: the PromQL query is built from a template, Prometheus's answer (the JSON of
``/api/v1/query``) is read into one number, and the decision takes plain data. The culler's
``PrometheusGpuProbe`` (``culler.prometheus``) does the HTTP.
"""

from __future__ import annotations

import dataclasses
import math
from string import Template
from typing import Any, Mapping

from .policy import CullPolicy, PolicyError, Verdict

#: NVIDIA DCGM exporter's per-GPU utilisation (0-100), labelled with the pod using the GPU
DEFAULT_QUERY = 'max_over_time(DCGM_FI_DEV_GPU_UTIL{namespace="$namespace",pod="$pod"}[${timeout}s])'
DEFAULT_THRESHOLD = 5.0
#: the placeholders a query template may use
PLACEHOLDERS = {"pod", "namespace", "timeout", "user", "server"}
#: longest query template accepted (it is sent in a URL)
MAX_QUERY = 2000


class PrometheusAnswerError(ValueError):
    """Prometheus answered, but not with a usable instant vector (error status, other shape)."""


def check_query_template(template: Any, setting: str = "gpu_idle_query") -> str:
    """The template if usable, else PolicyError naming ``setting``: a string of at most
    MAX_QUERY characters, ``$pod`` in it, and no placeholder other than PLACEHOLDERS."""
    if not isinstance(template, str) or not template.strip():
        raise PolicyError(f"culler {setting} must be a non-empty PromQL query template")
    if len(template) > MAX_QUERY:
        raise PolicyError(f"culler {setting} is longer than {MAX_QUERY} characters")
    t = Template(template)
    if not t.is_valid():
        raise PolicyError(f"culler {setting}: a '$' that is not a placeholder (write $$ for a literal '$')")
    used = set(t.get_identifiers())
    unknown = sorted(used - PLACEHOLDERS)
    if unknown:
        raise PolicyError(f"culler {setting}: unknown placeholder(s) {', '.join('$' + u for u in unknown)}; "
                          f"known: {', '.join('$' + p for p in sorted(PLACEHOLDERS))}")
    if "pod" not in used:
        raise PolicyError(f"culler {setting} must select the server's pod with $pod")
    return template


def check_threshold(value: Any, setting: str = "gpu_idle_threshold") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
        raise PolicyError(f"culler {setting} must be a utilisation in percent, > 0 and <= 100, not {value!r}")
    return float(value)


def _label_value(s: str) -> str:
    """A PromQL double-quoted string's content (backslash and quote escaped)."""
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def build_query(template: str, *, pod: str, namespace: str, timeout: int, user: str = "",
                server: str = "") -> str:
    values = {"pod": pod, "namespace": namespace, "user": user, "server": server}
    values = {k: _label_value(v) for k, v in values.items()}
    return Template(template).substitute(values, timeout=int(timeout))


def max_utilisation(answer: Any) -> float | None:
    """The highest value in a Prometheus ``/api/v1/query`` answer (all GPUs of the pod), or None
    when it holds no series (no data for that pod). Raises PrometheusAnswerError otherwise."""
    if not isinstance(answer, Mapping):
        raise PrometheusAnswerError("not a JSON object")
    if answer.get("status") != "success":
        raise PrometheusAnswerError(
            f"status {str(answer.get('status'))[:40]!r}: {str(answer.get('error') or '')[:200]}")
    data = answer.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        raise PrometheusAnswerError("not an instant vector (data.resultType must be 'vector')")
    values = []
    for series in data["result"]:
        try:
            v = float(series["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            raise PrometheusAnswerError("a series without a [time, value] sample") from None
        if math.isnan(v):
            continue  # no sample in the window for that GPU
        values.append(v)
    return max(values) if values else None


def fmt_duration(seconds: int) -> str:
    """``30 min``, ``2 h``, ``1 h 30 min``, ``45 s``: a timeout as an admin reads it."""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    parts = [f"{h} h" if h else "", f"{m} min" if m else "", f"{s} s" if s else ""]
    return " ".join(p for p in parts if p) or "0 s"


def gpu_idle_window(policy: CullPolicy, v: Verdict) -> int | None:
    """Seconds of GPU history to look at for a server the idle rules keep, or None when the rule
    does not apply: not kept for its activity, no GPU in its size, no idle timeout, or younger
    than its timeout (the window would reach back before it started)."""
    if v.cull or v.kind != "keep":
        return None
    if not policy.gpus(v.size):
        return None
    idle_limit, _ = policy.limits(v.size, v.image)
    if not idle_limit or v.age is None or v.age < idle_limit:
        return None
    return idle_limit


def decide_gpu_idle(v: Verdict, window: int, utilisation: float | None, threshold: float) -> Verdict:
    """The verdict after the GPU rule: culled (kind ``gpu-idle``) when the highest utilisation
    over the window is under ``threshold``; unchanged when it is not or is unknown (None)."""
    if utilisation is None or utilisation >= threshold:
        return v
    return dataclasses.replace(
        v, cull=True, kind="gpu-idle",
        reason=f"GPU idle: under {threshold:g} % for {fmt_duration(window)} (at most {utilisation:g} %; "
               f"size {v.size})")
