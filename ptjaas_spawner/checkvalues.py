"""``ptjaas check-values -f values.yaml [-f more.yaml ...] [--chart DIR]``: check Helm values offline,
before ``helm upgrade``.

It checks ptjaas's own settings (``hub.config.PtjaasSpawner`` / ``PtjaasAuthenticator`` and the
other ``hub.config`` classes ptjaas knows, ``custom.ptjaas``, the ``cull`` values ptjaas's culler
reads) with the same checks the hub runs at start-up (fragments 50 and 99, the spawner's own
catalog checks, the quota parser), and names each problem by its values path::

    hub.config.PtjaasSpawner.sizes.gpu-1.gpu: must be a whole number of GPUs >= 0, not -1

Exit status 0 when all is well, 1 otherwise (for CI pipelines). z2jh's own keys are Helm's job
(the chart's values schema): with ``--chart DIR`` and ``helm`` on PATH it also runs
``helm template`` on the same files.

``check_values`` is pure (plain values in, problems out); the command reads the files.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping

from . import fragmentcheck, helmvalues, schemacheck, z2jhconfig
from .settings_schema import CULLER, Z2JH_CULL

_SETTING = re.compile(r"^(?:c\.)?([A-Z][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?)((?:\[[^\]]+\])*)(.*)$", re.S)


def values_path(setting: str) -> str:
    """``PtjaasSpawner.sizes['gpu-1']['gpu']`` -> ``hub.config.PtjaasSpawner.sizes.gpu-1.gpu``;
    a values path (``singleuser.storage.type``) is returned as it is."""
    m = _SETTING.match(setting)
    if not m or m.group(3):
        return setting
    path = "hub.config." + m.group(1)
    for part in re.findall(r"\[([^\]]+)\]", m.group(2)):
        try:
            key = ast.literal_eval(part)
        except (ValueError, SyntaxError):
            key = part
        path += f"[{key}]" if isinstance(key, int) else f".{key}"
    return path


def _split_message(text: str) -> tuple[str, str]:
    """``"c.PtjaasSpawner.quota_default['gpus'] is invalid: ..."`` -> (path, rest)."""
    m = re.match(r"^(c\.[A-Z]\S*?)(?::)? (.*)$", text, re.S)
    if not m:
        return "hub.config.PtjaasSpawner", text
    return values_path(m.group(1)), m.group(2)


def schema_problems(path: str, value, schema) -> list[tuple[str, str]]:
    """Problems of a mapping of values against one of ``settings_schema``'s schemas (checked by
    ``jsonschema``, worded by ``schemacheck``), each named by its values path."""
    return [(path + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in where), message)
            for where, message in schemacheck.problems(value, schema)]


def _z2jh_spawner_config(values, hub_config):
    """``hub.config`` over what z2jh's own hub config sets on ``KubeSpawner`` from the values
    (``singleuser.storage`` among them), for the storage check: the chart's file is run
    (``z2jhconfig.chart_config``), not imitated."""
    config = {section: dict(cfg) for section, cfg in hub_config.items() if isinstance(cfg, Mapping)}
    z2jh = dict(z2jhconfig.chart_config(values).get("KubeSpawner") or {})
    config["KubeSpawner"] = {**z2jh, **config.get("KubeSpawner", {})}
    return config


def check_values(values: Mapping) -> list[tuple[str, str]]:
    """Every problem ptjaas (its hub config fragments and spawner) would have with these merged
    Helm values, as ``[(values path, message)]``."""
    from .culler.config import CullerValuesError, culler_from_values, service_config
    from .culler.policy import PolicyError

    problems: list[tuple[str, str]] = []
    if not isinstance(values, Mapping):
        return [("(top level)", "Helm values must be a mapping")]
    hub_config = ((values.get("hub") or {}).get("config")) or {}
    if not isinstance(hub_config, Mapping):
        return [("hub.config", "must be a mapping of Configurable class name -> settings")]
    for section, cfg in hub_config.items():
        if not section[:1].isupper():
            problems.append((f"hub.config.{section}", "hub.config sections must be Configurable class names "
                             "(e.g. JupyterHub); z2jh's hub refuses to start"))
        elif not isinstance(cfg, Mapping):
            problems.append((f"hub.config.{section}", f"must be a mapping of settings, not {type(cfg).__name__}"))
    sections = {s: c for s, c in hub_config.items() if s[:1].isupper() and isinstance(c, Mapping)}

    # what fragment 99 checks at hub start-up, with the same functions
    typed = fragmentcheck.check_config(sections)
    problems += [(values_path(s), m) for s, m in typed]
    problems += [(values_path(s), m) for s, m in fragmentcheck.check_spawner_selected(sections)]
    problems += [(values_path(s), m) for s, m in
                 fragmentcheck.check_storage_not_fighting(_z2jh_spawner_config(values, sections))]
    spawner = sections.get("PtjaasSpawner") or {}
    bad_spawner = {s for s, _ in typed if s.startswith("PtjaasSpawner")}
    catalog = []
    if not bad_spawner:
        catalog = [(values_path(s), m) for s, m in fragmentcheck.check_spawner_catalog(sections)]
        problems += catalog
        # the quota settings, as the spawner parses them
        from .quota.budget import QuotaConfigError, QuotaPolicy
        try:
            QuotaPolicy.from_config(spawner.get("quota_default"), spawner.get("quota_users"),
                                    spawner.get("quota_groups"))
        except QuotaConfigError as e:
            problems.append(_split_message(str(e)))

    # what fragment 50 reads to start the culler
    def get(key, default=None):
        return helmvalues.lookup(values, key, default)

    culler_problems = schema_problems("custom.ptjaas.culler", get("custom.ptjaas.culler"), CULLER)
    culler_problems += schema_problems("cull", get("cull"), Z2JH_CULL)
    problems += culler_problems
    if not culler_problems:
        try:
            kwargs = culler_from_values(get)
            if kwargs is not None and not (bad_spawner or catalog):
                service_config(spawner.get("sizes"), spawner.get("images"), **kwargs)
        except CullerValuesError as e:
            problems.append(("custom.ptjaas.culler", str(e)))
        except (PolicyError, TypeError, ValueError) as e:
            message = str(e)
            problems.append(_split_message(message) if message.startswith("c.") else
                            ("custom.ptjaas.culler", message))
    return problems


def load_values_files(paths) -> tuple[dict, list[tuple[str, str]]]:
    """Merge values files as ``helm -f a -f b`` does; problems reading them are returned."""
    values: dict = {}
    problems = []
    for path in paths:
        try:
            values = helmvalues.deep_merge(values, helmvalues.read_file(path))
        except helmvalues.ValuesFileError as e:
            problems.append((e.path, e.problem))
    return values, problems


def helm_template(chart, paths, helm=None) -> list[tuple[str, str]]:
    """Run ``helm template`` on the chart with the files; its complaints as problems."""
    helm = helm or shutil.which("helm")
    if helm is None:
        return [("--chart", "helm is not on PATH (install helm, or leave out --chart)")]
    cmd = [helm, "template", "ptjaas", os.fspath(chart)]
    for p in paths:
        cmd += ["-f", os.fspath(p)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return [("helm template", str(e))]
    if proc.returncode == 0:
        return []
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()] or [f"exit status {proc.returncode}"]
    return [("helm template", line) for line in lines]


def cmd_check_values(args) -> int:
    import logging

    logging.getLogger().setLevel(logging.WARNING)   # importing the hub's classes logs at INFO
    problems = []
    values, read_problems = load_values_files(args.values)
    problems += read_problems
    if not read_problems:
        problems += check_values(values)
        if args.chart:
            problems += helm_template(args.chart, args.values)
    for path, message in problems:
        print(f"{path}: {message}")
    files = ", ".join(args.values)
    if problems:
        print(f"ptjaas check-values: {len(problems)} problem(s) in {files}", file=sys.stderr)
        return 1
    checked = "ptjaas settings" + (" and helm template" if args.chart else "")
    print(f"ptjaas check-values: OK ({checked}: {files})", file=sys.stderr)
    return 0


def add_command(sub):
    p = sub.add_parser("check-values", help="check Helm values files offline before helm upgrade (exit 0/1)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("-f", "--values", action="append", required=True, metavar="VALUES_YAML",
                   help="a Helm values file, as for helm -f (repeat; later files win)")
    p.add_argument("--chart", help="also run `helm template` with the z2jh chart in this directory (needs helm)")
    p.set_defaults(func=cmd_check_values)
