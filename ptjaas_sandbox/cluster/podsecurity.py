"""Pod Security Admission, as kube-apiserver enforces it (pure).

A namespace labelled ``pod-security.kubernetes.io/enforce: baseline|restricted`` (with
``pod-security.kubernetes.io/enforce-version``: ``latest`` or ``v1.N``) refuses a new pod that
breaks the Pod Security Standards of that level (``warn``: admits it with a ``Warning`` header;
a bad label value is a 422 on the namespace), with the real server's message:
``pods "x" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "h"), ...``.
Checks run in the real admission plugin's order (the baseline checks, then at ``restricted`` the
restricted ones, a restricted check replacing its baseline twin); each reason is followed by its
detail in parentheses, and reasons are joined by ", ". ``privileged`` (or no label) admits anything.
Not checked (nothing here can use them): AppArmor, SELinux, procMount, sysctls, Windows host
processes, host probes.
"""

import re

PREFIX = "pod-security.kubernetes.io/"
MODES = ("enforce", "audit", "warn")
LEVELS = ("privileged", "baseline", "restricted")
VERSION = re.compile(r"^(latest|v1\.(0|[1-9][0-9]{0,3}))$")

# capabilities the baseline level lets a container add (as the standard lists them)
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
GOOD_SECCOMP = ("RuntimeDefault", "Localhost")
RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret", "image"}
VOLUME_TYPES = ("hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs",
                "rbd", "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte",
                "azureDisk", "portworxVolume", "photonPersistentDisk", "scaleIO", "storageos")


def policy(namespace, mode="enforce"):
    """The "level:version" a namespace's labels ask for in ``mode`` (enforce, warn), None where
    anything goes (no label, or privileged); as the admission plugin reads them."""
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    level = labels.get(f"{PREFIX}{mode}")
    if level is None or level == "privileged":
        return None
    if level not in LEVELS:   # refused when the namespace was written; enforced as the strictest
        level = "restricted"
    version = labels.get(f"{PREFIX}{mode}-version", "latest")
    return f"{level}:{version if VERSION.match(str(version)) else 'latest'}"


def label_causes(labels):
    """[(field, message)] for namespace labels the admission plugin refuses (a 422 Invalid)."""
    causes = []
    for mode in MODES:
        key = f"{PREFIX}{mode}"
        if key in (labels or {}) and labels[key] not in LEVELS:
            causes.append((f"metadata.labels[{key}]",
                           f'Invalid value: "{labels[key]}": must be one of privileged, baseline, restricted'))
        if f"{key}-version" in (labels or {}) and not VERSION.match(str(labels[f"{key}-version"])):
            causes.append((f"metadata.labels[{key}-version]",
                           f'Invalid value: "{labels[key + "-version"]}": must be "latest" or "v1.x"'))
    return causes


def violations(level, pod):
    """The reasons (with details) ``pod`` breaks ``level`` ("baseline" or "restricted"), in order."""
    spec = pod.get("spec") or {}
    checks = list(_BASELINE)
    if level == "restricted":
        # a restricted check replaces its baseline twin
        checks = [c for c in checks if c not in (_capabilities_baseline, _host_path_volumes, _seccomp_baseline)]
        checks += _RESTRICTED
    found = []
    for check in checks:
        result = check(spec)
        if result:
            found.append(result)
    return found


def message(level_version, pod, prefix="violates"):
    """The refusal's message (after ``pods "x" is forbidden: ``), or None when the pod is admitted;
    with ``prefix="would violate"``, the warning of a ``warn`` label."""
    found = violations(level_version.split(":")[0], pod)
    if not found:
        return None
    return f'{prefix} PodSecurity "{level_version}": ' + ", ".join(f"{reason} ({detail})" for reason, detail in found)


# --- helpers --------------------------------------------------------------------------------
def _containers(spec):
    return [c for kind in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(kind) or []]


def _sc(obj):
    return obj.get("securityContext") or {}


def _plural(singular, plural, n):
    return singular if n == 1 else plural


def _quote(items):
    return ", ".join(f'"{i}"' for i in items)


def _containers_phrase(names):
    return f"{_plural('container', 'containers', len(names))} {_quote(names)}"


# --- baseline -------------------------------------------------------------------------------
def _capabilities_baseline(spec):
    names, caps = [], []
    for c in _containers(spec):
        bad = [str(a) for a in (_sc(c).get("capabilities") or {}).get("add") or [] if a not in BASELINE_CAPABILITIES]
        if bad:
            names.append(c.get("name"))
            caps += [a for a in bad if a not in caps]
    if names:
        return ("non-default capabilities",
                f"{_containers_phrase(names)} must not include {_quote(sorted(caps))} in securityContext.capabilities.add")
    return None


def _host_namespaces(spec):
    used = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    return ("host namespaces", ", ".join(used)) if used else None


def _host_path_volumes(spec):
    names = [v.get("name") for v in spec.get("volumes") or [] if "hostPath" in v]
    return ("hostPath volumes", f"{_plural('volume', 'volumes', len(names))} {_quote(names)}") if names else None


def _host_ports(spec):
    names, ports = [], set()
    for c in _containers(spec):
        used = {str(p["hostPort"]) for p in c.get("ports") or [] if p.get("hostPort")}
        if used:
            names.append(c.get("name"))
            ports |= used
    if names:
        return ("hostPort", f"{_containers_phrase(names)} {_plural('uses', 'use', len(names))} "
                            f"{_plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}")
    return None


def _privileged(spec):
    names = [c.get("name") for c in _containers(spec) if _sc(c).get("privileged")]
    if names:
        return ("privileged", f"{_containers_phrase(names)} must not set securityContext.privileged=true")
    return None


def _seccomp_baseline(spec):
    bad = []
    if (_sc(spec).get("seccompProfile") or {}).get("type") == "Unconfined":
        bad.append("pod")
    names = [c.get("name") for c in _containers(spec) if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined"]
    if names:
        bad.append(_containers_phrase(names))
    if bad:
        return ("seccompProfile", f'{" and ".join(bad)} must not set securityContext.seccompProfile.type to "Unconfined"')
    return None


_BASELINE = [_capabilities_baseline, _host_namespaces, _host_path_volumes, _host_ports, _privileged, _seccomp_baseline]


# --- restricted -----------------------------------------------------------------------------
def _allow_privilege_escalation(spec):
    names = [c.get("name") for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    if names:
        return ("allowPrivilegeEscalation != false",
                f"{_containers_phrase(names)} must set securityContext.allowPrivilegeEscalation=false")
    return None


def _capabilities_restricted(spec):
    no_drop, adds, added = [], [], []
    for c in _containers(spec):
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            no_drop.append(c.get("name"))
        bad = [str(a) for a in caps.get("add") or [] if a != "NET_BIND_SERVICE"]
        if bad:
            adds.append(c.get("name"))
            added += [a for a in bad if a not in added]
    parts = []
    if no_drop:
        parts.append(f'{_containers_phrase(no_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adds:
        parts.append(f"{_containers_phrase(adds)} must not include {_quote(sorted(added))} in securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(parts)) if parts else None


def _restricted_volumes(spec):
    names, types = [], set()
    for v in spec.get("volumes") or []:
        if any(k in v for k in RESTRICTED_VOLUME_TYPES):
            continue
        names.append(v.get("name"))
        types.add(next((t for t in VOLUME_TYPES if t in v), "unknown"))
    if names:
        return ("restricted volume types", f"{_plural('volume', 'volumes', len(names))} {_quote(names)} "
                f"{_plural('uses', 'use', len(names))} {_plural('restricted volume type', 'restricted volume types', len(types))} "
                f"{_quote(sorted(types))}")
    return None


def _explicit_then_implicit(spec, bad, good, reason, must_not, must):
    """The shape runAsNonRoot and seccompProfile share: the pod and the containers that set a bad
    value ("pod and container "c" must not ..."), else the containers that set nothing where the
    pod level does not cover them ("pod or container "c" must ...")."""
    setters, bad_values = [], set()
    pod_value = bad(_sc(spec))
    if pod_value is not None:
        setters.append("pod")
        bad_values.add(pod_value)
    pod_good = good(_sc(spec))
    explicit, implicit = [], []
    for c in _containers(spec):
        value = bad(_sc(c))
        if value is not None:
            explicit.append(c.get("name"))
            bad_values.add(value)
        elif not good(_sc(c)) and not pod_good:
            implicit.append(c.get("name"))
    if explicit:
        setters.append(_containers_phrase(explicit))
    if setters:
        return (reason, f"{' and '.join(setters)} {must_not(sorted(bad_values))}")
    if implicit:
        return (reason, f"pod or {_containers_phrase(implicit)} {must}")
    return None


def _run_as_non_root(spec):
    return _explicit_then_implicit(
        spec, lambda sc: False if sc.get("runAsNonRoot") is False else None, lambda sc: sc.get("runAsNonRoot") is True,
        "runAsNonRoot != true", lambda _: "must not set securityContext.runAsNonRoot=false",
        "must set securityContext.runAsNonRoot=true")


def _run_as_user(spec):
    setters = ["pod"] if _sc(spec).get("runAsUser") == 0 else []
    names = [c.get("name") for c in _containers(spec) if _sc(c).get("runAsUser") == 0]
    if names:
        setters.append(_containers_phrase(names))
    return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def _seccomp_restricted(spec):
    def kind(sc):
        return (sc.get("seccompProfile") or {}).get("type") if sc.get("seccompProfile") is not None else None
    return _explicit_then_implicit(
        spec, lambda sc: kind(sc) if sc.get("seccompProfile") is not None and kind(sc) not in GOOD_SECCOMP else None,
        lambda sc: kind(sc) in GOOD_SECCOMP, "seccompProfile",
        lambda values: f"must not set securityContext.seccompProfile.type to {_quote(values)}",
        'must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"')


_RESTRICTED = [_allow_privilege_escalation, _capabilities_restricted, _restricted_volumes, _run_as_non_root,
               _run_as_user, _seccomp_restricted]
