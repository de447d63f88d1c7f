"""``ptjaas migrate-home``: copy a user's home claim from the hub's namespace into a team namespace.

    ptjaas migrate-home --user alice --hub-namespace jhub --team-namespace jhub-team-vision
    ptjaas migrate-home --user alice --hub-namespace jhub --team-namespace jhub-team-vision --yes

Without --yes it only checks and prints what it would do (a dry run). It refuses while the
user's server runs (any pod of theirs, or any pod mounting the claim), when the claim is not
proven to be the user's, or when a claim of that name exists in the team namespace already.
The old claim is kept (labelled ptjaas.io/migrated=true, with when and where to) until you
delete it. Runs with your kubeconfig ($KUBECONFIG): it needs pods and claims (and, with
--snapshot-class, VolumeSnapshots) in both namespaces. See docs/teams.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import datetime, timezone

from . import homemigration as hm
from .kube import Kube, service_api_client


class MigrationKube(Kube):
    """The one Kubernetes client, plus the two calls only this admin's command makes (with the
    admin's kubeconfig, never the hub's account): read a namespace, read a pod's log."""

    async def read_namespace(self, name: str) -> dict | None:
        return await self._maybe((await self.core()).read_namespace, name)

    async def pod_log(self, name: str, namespace: str) -> str:
        try:
            return await (await self.core()).read_namespaced_pod_log(name, namespace)
        except Exception as e:  # noqa: BLE001 - the log is a courtesy in an error message
            return f"(no log: {e})"

    async def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        """Remove what this run made (gone already, or replaced since: nothing to do)."""
        if kind == "pod":
            await self.delete_pod(name, uid, namespace=namespace)
        elif kind == "claim":
            await self.delete_claim(name, {"uid": uid} if uid else None, namespace=namespace)
        else:
            await self.delete_snapshot(name, namespace=namespace)


async def _wait(what, probe, timeout):
    """Poll ``probe()`` (an API read every half second: this is an admin's one-off command)
    until it returns something true; MigrationError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise hm.MigrationError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.5)


async def _check(kube, args):
    hm.check_request(args.user, args.team_namespace, args.hub_namespace)
    claim = args.claim or hm.default_claim_name(args.user)
    if not claim:
        raise hm.MigrationError(f"give the claim's name with --claim (user name {args.user!r} is escaped in it)")
    old = await kube.read_claim(claim, args.hub_namespace)
    hm.check_source(old, args.user, claim, args.hub_namespace)
    if await kube.read_namespace(args.team_namespace) is None:
        raise hm.MigrationError(f"namespace {args.team_namespace} does not exist: make it with "
                                "`ptjaas team-manifests ... | kubectl apply -f -` first")
    plan = hm.plan_for(old, args.user, args.hub_namespace, args.team_namespace, args.snapshot_class)
    hm.check_target(await kube.read_claim(claim, args.team_namespace), plan)
    running = hm.servers_running(
        await kube.list_pods(namespace=args.hub_namespace) + await kube.list_pods(namespace=args.team_namespace), args.user, claim,
        args.hub_namespace)
    if running:
        raise hm.MigrationError(f"{args.user}'s server is running or the home is in use (pods {', '.join(running)}): "
                                f"stop it first (admin page, or DELETE /hub/api/users/{args.user}/server); "
                                "nothing was changed")
    return old, plan


async def _copy(kube, args, old, plan, say):
    """Steps 1-4 of the plan; on failure everything this run made is removed (the old claim
    was never written to)."""
    made = []  # (kind, namespace, name, uid) to remove at the end (or on failure)
    new_uid = None
    try:
        source = plan.claim
        if plan.snapshot_class:
            snap = hm.snapshot(plan)
            await kube.create_snapshot(snap, plan.hub_namespace)
            made.append(("snapshot", plan.hub_namespace, snap["metadata"]["name"], None))

            async def snapshot_ready():
                s = await kube.read_snapshot(snap["metadata"]["name"], plan.hub_namespace)
                status = (s or {}).get("status") or {}
                if status.get("error"):
                    raise hm.MigrationError(f"snapshot {snap['metadata']['name']} failed: {status['error'].get('message')}")
                return status.get("readyToUse")
            await _wait(f"snapshot {snap['metadata']['name']} to be ready", snapshot_ready, args.timeout)
            say(f"snapshot {plan.hub_namespace}/{snap['metadata']['name']} is ready")
            restored = await kube.create_claim(hm.restored_claim(old, plan), plan.hub_namespace)
            made.append(("claim", plan.hub_namespace, restored["metadata"]["name"], restored["metadata"]["uid"]))
            source = restored["metadata"]["name"]
        created = await kube.create_claim(hm.new_claim(old, plan), plan.team_namespace)
        new_uid = created["metadata"]["uid"]
        say(f"created claim {plan.target_ref}")
        sender = hm.copy_pod(plan, "send", source, args.image, args.uid, args.gid,
                             ["0.0.0.0", args.port, hm.MOUNT, args.timeout])
        await kube.create_pod(sender, plan.hub_namespace)
        made.append(("pod", plan.hub_namespace, sender["metadata"]["name"], None))

        async def sender_address():
            pod = await kube.read_pod(sender["metadata"]["name"], plan.hub_namespace)
            status = (pod or {}).get("status") or {}
            if status.get("phase") in ("Failed", "Succeeded"):
                log = await kube.pod_log(sender["metadata"]["name"], plan.hub_namespace)
                raise hm.MigrationError(f"the sender pod ended early ({status.get('phase')}): {log[-1000:]}")
            running = status.get("phase") == "Running" and all(
                c.get("ready") for c in status.get("containerStatuses") or [{}])
            return running and status.get("podIP")
        address = await _wait(f"pod {plan.hub_namespace}/{sender['metadata']['name']} to run", sender_address,
                              args.timeout)
        receiver = hm.copy_pod(plan, "receive", plan.claim, args.image, args.uid, args.gid,
                               [address, args.port, hm.MOUNT, args.timeout])
        await kube.create_pod(receiver, plan.team_namespace)
        made.append(("pod", plan.team_namespace, receiver["metadata"]["name"], None))

        async def received():
            pod = await kube.read_pod(receiver["metadata"]["name"], plan.team_namespace)
            phase = ((pod or {}).get("status") or {}).get("phase")
            if phase == "Failed":
                log = await kube.pod_log(receiver["metadata"]["name"], plan.team_namespace)
                raise hm.MigrationError(f"the copy failed: {log[-1000:]}")
            return phase == "Succeeded"
        await _wait("the copy", received, args.timeout)
        say(f"copied: {(await kube.pod_log(receiver['metadata']['name'], plan.team_namespace)).strip()}")
        await kube.patch_claim(plan.claim, hm.finished_patch(plan), plan.team_namespace)
        when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        await kube.patch_claim(plan.claim, hm.old_claim_patch(plan, when), plan.hub_namespace)
        say(f"marked {plan.target_ref} as {args.user}'s home; old claim {plan.source_ref} labelled "
            f"{hm.MIGRATED_LABEL}=true")
    except BaseException:
        if new_uid:
            # a partial copy this run made (never marked as the user's home): remove it
            made.append(("claim", plan.team_namespace, plan.claim, new_uid))
        raise
    finally:
        for kind, ns, name, uid in reversed(made):
            await kube.delete(kind, ns, name, uid)


async def run(args, out=sys.stdout):
    def say(text):
        print(text, file=out, flush=True)

    api_client = None
    try:
        api_client = await service_api_client(args.kubeconfig or os.environ.get("KUBECONFIG")
                                              or os.path.expanduser("~/.kube/config"))
        kube = MigrationKube(args.hub_namespace, api_client)
        old, plan = await _check(kube, args)
        say(f"Migrating the home of {args.user!r}: {plan.source_ref} -> {plan.target_ref}")
        for i, step in enumerate(plan.steps(), 1):
            say(f"  {i}. {step}")
        if not args.yes:
            say("Dry run: nothing was changed. Run again with --yes to migrate.")
            return 0
        await _copy(kube, args, old, plan, say)
        say(f"Done. {args.user}'s next start runs in {plan.team_namespace} with the copy. Once they have checked "
            f"their files, delete the old claim: kubectl -n {plan.hub_namespace} delete pvc {plan.claim}")
        return 0
    except hm.MigrationError as e:
        print(f"ptjaas migrate-home: {e}", file=sys.stderr)
        return 1
    finally:
        if api_client is not None:
            await api_client.close()


def cmd_migrate_home(args):
    return asyncio.run(run(args))


def add_migrate_home_command(sub):
    p = sub.add_parser("migrate-home", help="copy a user's home claim from the hub's namespace into a team namespace",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--user", required=True, help="the JupyterHub user name")
    p.add_argument("--team-namespace", required=True, help="the team namespace the home moves to")
    p.add_argument("--hub-namespace", required=True, help="the hub's namespace, where the home is now")
    p.add_argument("--claim", help="the home claim's name (default: claim-USER)")
    p.add_argument("--snapshot-class", help="take a VolumeSnapshot of this class and copy from a claim restored "
                                            "from it (a point-in-time copy; the home itself is only read by the "
                                            "snapshot); without it the copy pod reads the home directly")
    p.add_argument("--image", default="python:3.12-slim",
                   help="image of the copy pods, with python3 (default: python:3.12-slim)")
    p.add_argument("--uid", type=int, default=1000, help="user id the copy pods run as (default: 1000, jovyan)")
    p.add_argument("--gid", type=int, default=100, help="group id the copy pods run as (default: 100, users)")
    p.add_argument("--port", type=int, default=hm.PORT, help=f"port of the copy stream (default: {hm.PORT})")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for each step (default: 600)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--yes", action="store_true", help="migrate (without it: a dry run that changes nothing)")
    p.set_defaults(func=cmd_migrate_home)
