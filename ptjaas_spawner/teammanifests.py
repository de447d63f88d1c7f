"""Kubernetes objects for team namespaces, from the Helm values. Pure: plain data in and out.

Per team namespace (``c.PtjaasSpawner.team_namespaces``, see ``teams``):

- the ``Namespace``;
- a ``ResourceQuota`` equal to the team's pooled budget (``quota_groups[team]``, summed when
  several teams share a namespace) and a ``LimitRange`` (default requests for containers that
  set none, so the quota can count them; at most one member's GPU budget per container);
- the hub's ``Role`` + ``RoleBinding``: the verbs z2jh's hub Role has in the hub's own
  namespace (chart 4.x ``templates/hub/rbac.yaml``) plus what ptjaas needs there (growing home
  claims, the culler's snapshots). Nothing cluster-wide.
- a ``NetworkPolicy`` equivalent to z2jh's singleuser policy (``templates/singleuser/netpol.yaml``)
  rendered with the values' ``singleuser.networkPolicy``, the hub and proxy being in the hub's
  namespace rather than the pod's own.

``helm_values_overlay`` gives the matching additions to the hub's and the proxy's network
policies (their default rules only reach pods of their own namespace).
"""

from __future__ import annotations

import copy

from . import connections
from .errors import SettingError
from .quantity import format_quantity, parse_bytes, parse_cpu
from .quota.budget import QuotaConfigError, QuotaPolicy
from .quota.resourcequota import quota_manifest
from .teams import TeamConfigError, expand_team_namespaces

PART_OF = {"app.kubernetes.io/part-of": "ptjaas", "app.kubernetes.io/managed-by": "ptjaas"}
TEAM_NAMESPACE_LABEL = "ptjaas.io/team-namespace"
TEAMS_ANNOTATION = "ptjaas.io/teams"

# z2jh chart 4.x, templates/hub/rbac.yaml: the hub's Role in its own namespace
Z2JH_HUB_RULES = [
    {"apiGroups": [""], "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
     "verbs": ["get", "watch", "list", "create", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "watch", "list"]},
]
# what ptjaas's hub adds in a namespace it runs servers in (same as helm-values/manifests/rbac-hub.yaml)
PTJAAS_HUB_RULES = [
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["patch"]},
    {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshots"],
     "verbs": ["create", "get", "list", "delete"]},
]

# z2jh chart 4.x defaults for singleuser.networkPolicy and singleuser.cloudMetadata
Z2JH_SINGLEUSER_NETPOL = {
    "enabled": True,
    "ingress": [],
    "egress": [],
    "egressAllowRules": {
        "cloudMetadataServer": False,
        "dnsPortsCloudMetadataServer": True,
        "dnsPortsKubeSystemNamespace": True,
        "dnsPortsPrivateIPs": True,
        "nonPrivateIPs": True,
        "privateIPs": False,
    },
    "interNamespaceAccessLabels": "ignore",
    "allowedIngressPorts": [],
}
Z2JH_CLOUD_METADATA_IP = "169.254.169.254"
PRIVATE_CIDRS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


class ValuesError(SettingError):
    """The Helm values cannot give team manifests; the message names the key."""


def _deep_merge(base, override):
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = _deep_merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else copy.deepcopy(v)
    return out


class Site:
    """What the manifests need to know about the z2jh release."""

    def __init__(self, hub_namespace="ptjaas", release="ptjaas", service_account="hub", app_label="jupyterhub"):
        self.hub_namespace = hub_namespace
        self.release = release
        self.service_account = service_account
        self.app_label = app_label

    def match_labels(self, component):
        """z2jh's ``jupyterhub.matchLabels`` for a component."""
        return {"component": component, "app": self.app_label, "release": self.release}

    def in_hub_namespace(self, pod_labels):
        return {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.hub_namespace}},
            "podSelector": {"matchLabels": pod_labels},
        }


def _spawner_config(values) -> dict:
    return ((values.get("hub") or {}).get("config") or {}).get("PtjaasSpawner") or {}


def teams_by_namespace(values) -> dict:
    """``{namespace: [groups]}`` from the values' ``hub.config.PtjaasSpawner.team_namespaces``."""
    where = "hub.config.PtjaasSpawner.team_namespaces"
    try:
        expanded = expand_team_namespaces(_spawner_config(values).get("team_namespaces"), where)
    except TeamConfigError as e:
        raise ValuesError(str(e)) from None
    out = {}
    for group, namespace in sorted(expanded.items()):
        out.setdefault(namespace, []).append(group)
    return out


def _policy(values) -> QuotaPolicy:
    cfg = _spawner_config(values)
    try:
        return QuotaPolicy.from_config(
            cfg.get("quota_default"), cfg.get("quota_users"), cfg.get("quota_groups"),
            prefix="hub.config.PtjaasSpawner",
        )
    except QuotaConfigError as e:
        raise ValuesError(str(e)) from None


def _gpu_resource(values) -> str:
    resources = {s.get("gpu_resource") or "nvidia.com/gpu"
                 for s in (_spawner_config(values).get("sizes") or {}).values()
                 if isinstance(s, dict) and s.get("gpu")}
    if len(resources) > 1:
        raise ValuesError(
            f"hub.config.PtjaasSpawner.sizes use several GPU resources ({', '.join(sorted(resources))}); "
            "a team ResourceQuota counts one: give --gpu-resource"
        )
    return resources.pop() if resources else "nvidia.com/gpu"


def _smallest_size(values):
    sizes = [s for s in (_spawner_config(values).get("sizes") or {}).values() if isinstance(s, dict)]
    if not sizes:
        return None
    return min(sizes, key=lambda s: (parse_cpu(s.get("cpu_guarantee") or 0), parse_bytes(s.get("mem_guarantee") or 0)))


def namespace_object(namespace, groups, site: Site) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": {**PART_OF, TEAM_NAMESPACE_LABEL: "true"},
            # group names need not be valid label values: an annotation
            "annotations": {TEAMS_ANNOTATION: ",".join(groups), "ptjaas.io/hub-namespace": site.hub_namespace},
        },
    }


def resource_quota(namespace, groups, policy: QuotaPolicy, gpu_resource) -> dict | None:
    """The namespace's quota: the teams' pools summed, per resource every one of them limits."""
    pools = [policy.pools[g] for g in groups if g in policy.pools]
    if not pools or len(pools) < len(groups):
        return None  # a team without a pool is unlimited: no quota
    total = {}
    for r in ("gpus", "cpu", "memory", "servers"):
        values = [p.get(r) for p in pools]
        if all(v is not None for v in values):
            total[r] = sum(values)
    if not total:
        return None
    manifest = quota_manifest("ptjaas-team", namespace, total, gpu_resource)
    manifest["metadata"]["labels"] = dict(PART_OF)
    return manifest


def limit_range(namespace, groups, policy: QuotaPolicy, gpu_resource, smallest_size) -> dict | None:
    """Default requests (the catalog's smallest size) for containers that set none, so that a
    ResourceQuota on requests can count them; a container may hold at most one member's GPU
    budget (``per_user`` of the team, else the team's pool)."""
    container = {"type": "Container"}
    if smallest_size is not None:
        cpu = parse_cpu(smallest_size.get("cpu_guarantee") or 0)
        mem = parse_bytes(smallest_size.get("mem_guarantee") or 0)
        request = {}
        if cpu:
            request["cpu"] = format_quantity(round(cpu, 3), "cpu")
        if mem:
            request["memory"] = format_quantity(mem, "memory")
        if request:
            # no default *limit*: one smaller than a container's own request would refuse it
            container["defaultRequest"] = request
    gpu_caps = []
    for g in groups:
        cap = (policy.per_user.get(g) or {}).get("gpus")
        if cap is None:
            cap = (policy.pools.get(g) or {}).get("gpus")
        gpu_caps.append(cap)
    if gpu_caps and all(c is not None for c in gpu_caps):
        container["max"] = {gpu_resource: str(max(gpu_caps))}
        # the API server defaults a missing default limit to ``max`` (and the request to the
        # limit): without this, every container that asks for no GPU would get the cap
        container["default"] = {gpu_resource: "0"}
    if len(container) == 1:
        return None
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "ptjaas-team", "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {"limits": [container]},
    }


def hub_role(namespace) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "ptjaas-hub", "namespace": namespace, "labels": dict(PART_OF)},
        "rules": copy.deepcopy(Z2JH_HUB_RULES + PTJAAS_HUB_RULES),
    }


def hub_role_binding(namespace, site: Site) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "ptjaas-hub", "namespace": namespace, "labels": dict(PART_OF)},
        "subjects": [{"kind": "ServiceAccount", "name": site.service_account, "namespace": site.hub_namespace}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ptjaas-hub"},
    }


def _egress_allow_rules(netpol, metadata_ip) -> list:
    """z2jh's ``jupyterhub.networkPolicy.renderEgressRules``."""
    allow = netpol.get("egressAllowRules") or {}
    rules = []
    if allow.get("dnsPortsCloudMetadataServer") or allow.get("dnsPortsKubeSystemNamespace") or allow.get(
            "dnsPortsPrivateIPs"):
        to = []
        if allow.get("dnsPortsCloudMetadataServer"):
            to.append({"ipBlock": {"cidr": f"{metadata_ip}/32"}})
        if allow.get("dnsPortsKubeSystemNamespace"):
            to.append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}})
        if allow.get("dnsPortsPrivateIPs"):
            to += [{"ipBlock": {"cidr": c}} for c in PRIVATE_CIDRS]
        rules.append({"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}], "to": to})
    if allow.get("nonPrivateIPs"):
        rules.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_CIDRS + [f"{metadata_ip}/32"]}}]})
    if allow.get("privateIPs"):
        rules.append({"to": [{"ipBlock": {"cidr": c}} for c in PRIVATE_CIDRS]})
    if allow.get("cloudMetadataServer"):
        rules.append({"to": [{"ipBlock": {"cidr": f"{metadata_ip}/32"}}]})
    rules += copy.deepcopy(netpol.get("egress") or [])
    return rules


def singleuser_netpol_values(values) -> tuple[dict, str]:
    singleuser = values.get("singleuser") or {}
    netpol = _deep_merge(Z2JH_SINGLEUSER_NETPOL, singleuser.get("networkPolicy") or {})
    metadata_ip = (singleuser.get("cloudMetadata") or {}).get("ip") or Z2JH_CLOUD_METADATA_IP
    return netpol, metadata_ip


def network_policy(namespace, values, site: Site) -> dict | None:
    """z2jh's singleuser NetworkPolicy for a team namespace (None when the values turn it off)."""
    netpol, metadata_ip = singleuser_netpol_values(values)
    if not netpol.get("enabled"):
        return None
    ingress = []
    if netpol.get("allowedIngressPorts"):
        ingress.append({"ports": [{"port": p} for p in netpol["allowedIngressPorts"]]})
    access = {"hub.jupyter.org/network-access-singleuser": "true"}
    sources = [site.in_hub_namespace(access)]  # the hub and the proxy
    if netpol.get("interNamespaceAccessLabels") == "accept":
        sources = [
            {"podSelector": {"matchLabels": access}, "namespaceSelector": {"matchLabels": {}}},
            {"namespaceSelector": {"matchLabels": access}},
        ]
    ingress.append({"ports": [{"port": "notebook-port"}], "from": sources})
    ingress += copy.deepcopy(netpol.get("ingress") or [])
    egress = [
        {"to": [site.in_hub_namespace(site.match_labels("hub"))], "ports": [{"port": 8081}]},
        {"to": [site.in_hub_namespace(site.match_labels("proxy"))], "ports": [{"port": 8000}]},
        {"to": [site.in_hub_namespace(site.match_labels("autohttps"))], "ports": [{"port": 8080}, {"port": 8443}]},
    ]
    egress += _egress_allow_rules(netpol, metadata_ip)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "singleuser", "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {
            "podSelector": {"matchLabels": site.match_labels("singleuser-server")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def servers_service_account(namespace, values):
    """The servers' ServiceAccount (``singleuser.serviceAccountName``, or
    ``hub.config.KubeSpawner/PtjaasSpawner.service_account``), none when unset: its projected
    tokens are what a data connection's ``identity_token`` mounts (``connections``)."""
    hub_config = (values.get("hub") or {}).get("config") or {}
    name = ((hub_config.get("PtjaasSpawner") or {}).get("service_account")
            or (hub_config.get("KubeSpawner") or {}).get("service_account")
            or (values.get("singleuser") or {}).get("serviceAccountName"))
    return connections.service_account(name, namespace) if name else None


def team_objects(values, site: Site, only_teams=None, gpu_resource=None) -> list:
    """[(namespace, groups, [objects])] for every team namespace of the values (or the
    namespaces of ``only_teams``). Raises ValuesError naming the key."""
    by_ns = teams_by_namespace(values)
    if not by_ns:
        raise ValuesError("hub.config.PtjaasSpawner.team_namespaces is not set in these values: no team namespaces")
    if only_teams:
        known = {g for groups in by_ns.values() for g in groups}
        unknown = sorted(set(only_teams) - known)
        if unknown:
            raise ValuesError(f"--team {', '.join(unknown)}: not in hub.config.PtjaasSpawner.team_namespaces "
                              f"(teams: {', '.join(sorted(known))})")
        by_ns = {ns: g for ns, g in by_ns.items() if set(g) & set(only_teams)}
    policy = _policy(values)
    gpu_resource = gpu_resource or _gpu_resource(values)
    smallest = _smallest_size(values)
    out = []
    for namespace, groups in sorted(by_ns.items()):
        if namespace == site.hub_namespace:
            continue  # the hub's own namespace: z2jh's chart and rbac-hub.yaml cover it
        objects = [namespace_object(namespace, groups, site)]
        for obj in (
            resource_quota(namespace, groups, policy, gpu_resource),
            limit_range(namespace, groups, policy, gpu_resource, smallest),
            hub_role(namespace),
            hub_role_binding(namespace, site),
            network_policy(namespace, values, site),
            servers_service_account(namespace, values),
        ):
            if obj is not None:
                objects.append(obj)
        out.append((namespace, groups, objects))
    return out


def helm_values_overlay(namespaces, site: Site) -> dict:
    """Additions to the z2jh values so the hub and the proxy reach servers in the team
    namespaces, and the servers there reach the hub (z2jh's hub and proxy policies only allow
    pods of their own namespace). Lists in Helm values replace each other: merge these rules
    into your own ``hub.networkPolicy.ingress/egress`` and ``proxy.chp.networkPolicy.egress``."""
    servers = [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "podSelector": {"matchLabels": site.match_labels("singleuser-server")},
        }
        for ns in namespaces
    ]
    to_servers = [{"to": copy.deepcopy(servers), "ports": [{"port": 8888}]}]
    from_servers = [{"from": copy.deepcopy(servers), "ports": [{"port": "http"}]}]
    return {
        "hub": {"networkPolicy": {"ingress": from_servers, "egress": copy.deepcopy(to_servers)}},
        "proxy": {"chp": {"networkPolicy": {"egress": copy.deepcopy(to_servers)}}},
    }
