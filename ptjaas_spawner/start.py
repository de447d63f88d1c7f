"""A server's start and stop, top to bottom: the one place that says what happens in which order.

JupyterHub calls ``PtjaasSpawner.start()`` and ``stop()``; both come straight here. Each step is a
call to a collaborator that takes what the step needs (the start plan, ``startplan.StartPlan``)
and returns what it made:

``start_server``
  1. who asked (for the audit record) and whether this is a new named server's first start;
  2. ``_start_in_flight``: the start as the quota knows it (``STARTING`` for KubeSpawner's own
     stop of a leftover pod; the server counted as "starting" for the outage reconcile):

     a. the watches run (``reflectors.ensure_running``: a watch that gave up restarts; the
        API server unreachable fails at once);
     b. ``plan_start``: the snapshots asked for, the team namespace (``teams_mixin``), the
        user's choice against the catalog and the quota's verdict (``form_mixin``, ``quota``),
        the size applied to KubeSpawner's traits (``apply_choice``), the home claim found or
        created (``home_mixin.ensure_home_claim``: ``plan.home``, the claim's one owner during
        a start), the snapshot views created;
     c. a new home claim's volume provisioned before the pod is made;
     d. KubeSpawner's start of the pod (its ``get_pod_manifest`` reads the plan; the quota is
        charged on the final manifest in ``create_pod``), beside the watches of the home claim
        and of the scheduling (``startplan.run_watched``);
     e. on failure: the quota share released, the pod and a home claim this start made deleted
        (``_clean_up_failed_start``), an unreachable API server said in plain words; on success
        the choice and the home remembered (``_remember_started``);
  3. on failure, the error a user reads (a team namespace that is not set up:
     ``team_namespace_not_ready``), the audit record of a quota refusal, the snapshot views
     deleted, a refused new named server's hub entry removed; on success the audit record.

``poll_server``: the quota ledger rebuilt once per hub process, KubeSpawner's poll believed only
on evidence (a watch that runs), the run's accounting following it.

``stop_server``: KubeSpawner's stop of the pod, then (unless the stop is part of a start) the
quota share released, the audit record, the snapshot views deleted, the token forgotten by the
log redaction.
"""

from __future__ import annotations

import asyncio

from tornado import web

from . import reflectors, redact, registrydigest, startfailure
from .datamixin import task_requester
from .newserver import is_refusal
from .podwatch import watch_scheduling
from .quota.mixin import QuotaExceeded
from .sizes import spawner_settings
from .startplan import STARTING, StartPlan, in_start, run_watched
from .teams_mixin import team_namespace_not_ready


async def start_server(spawner, start_pod):
    """The whole start. ``start_pod``: KubeSpawner's start of the pod (a coroutine function,
    returning the server's URL)."""
    # who, read once as the start begins (JupyterHub hands the spawner the request that started
    # it): the audit record is made from what the start holds, with no database load
    requester = getattr(getattr(spawner, "handler", None), "current_user", None)
    who = (spawner.user.name, getattr(requester, "name", None))
    new_server = spawner._is_new_named_server()  # (newserver.py)
    try:
        url = await _start_in_flight(spawner, start_pod)
    except asyncio.CancelledError:
        await spawner.snapshot_views_cleanup()
        raise
    except Exception as e:
        refused = team_namespace_not_ready(spawner, e)
        await _after_failed_start(spawner, refused or e, who, new_server)
        if refused is not None:
            raise refused from None
        raise
    spawner.audit_started(*who)
    return url


async def _start_in_flight(spawner, start_pod):
    starting = STARTING.set(True)  # KubeSpawner's stop() of a leftover pod is no stop
    spawner.quota_start_began()  # a pod list without this server's pod says nothing of it yet
    try:
        return await _start_steps(spawner, start_pod)
    finally:
        spawner.quota_start_ended()
        STARTING.reset(starting)


async def _start_steps(spawner, start_pod):
    spawner._notes = []  # before any await: the progress page of this start reads these
    redact.remember(spawner.api_token, owner=id(spawner))
    reflectors.Watchdog.ensure(spawner, spawner.reflector_check_interval)
    spawner.start_plan = plan = None
    try:
        await reflectors.ensure_running(spawner)  # a watch that gave up during an outage restarts
        plan = spawner.start_plan = await plan_start(spawner)
        spawner.accounting_check_start(plan)  # over a time budget: refused before the pod (accounting)
        await spawner.wait_for_new_home_volume(plan.home)
        url = await run_watched(start_pod(), [spawner.watch_home_claim(plan.home), watch_scheduling(spawner)])
    except asyncio.CancelledError:
        spawner.quota_release()
        raise
    except Exception as e:
        spawner.quota_release()
        if plan is not None:
            await _clean_up_failed_start(spawner, plan)
        if reflectors.is_unreachable(e):
            spawner.log.error("Start of %s failed, Kubernetes API unreachable: %s", spawner._log_name, e)
            raise startfailure.StartFailed(startfailure.API_UNREACHABLE, 503) from None
        raise
    _remember_started(spawner, plan)
    spawner.accounting_started(plan)  # the run begins (accounting); it ends in stop_server or at a poll
    return url


async def plan_start(spawner) -> StartPlan:
    """Everything before the pod, resolved once: the team namespace, the user's choice
    (checked against the quota's verdict per size, applied to KubeSpawner's traits), the home
    claim, the snapshots to open. A refused choice changes nothing (the last valid options stay
    the server's defaults)."""
    spawner._notes = []
    spawner.take_snapshot_request()  # the 'snapshots' option: opened read-only at this start
    placement = spawner.team_placement()
    try:
        plan = await _plan_choice_and_home(spawner)
    except BaseException:
        if not spawner.home_claim_remembered():
            spawner.restore_team_placement(placement)  # no home was made: nothing is placed
        raise
    try:
        # the home's snapshots asked for, and the datasets' (from the datasets page): read-only
        plan.snapshot_views = await spawner.snapshot_views_prepare(await spawner.dataset_views_wanted())
    except BaseException:
        await spawner.delete_home_of_failed_start(plan.home, pod_sent=False)
        raise
    return plan


async def _plan_choice_and_home(spawner) -> StartPlan:
    plan = StartPlan()
    try:
        plan.placement = await spawner.place_in_team_namespace()
    except web.HTTPError:
        spawner.save_user_options(spawner.last_options())
        raise
    try:
        asked = spawner.dataset_option(spawner.user_options)  # {name: "rw"|"ro"}: its shape (datasets/)
        asked = asked or await spawner.repeat_last_datasets(spawner.user_options)  # "same as last time"
    except web.HTTPError:
        spawner.save_user_options(spawner.last_options())
        raise
    if not spawner.images and not spawner.sizes:
        # no catalog: KubeSpawner's own settings (and profile_list, if any) apply as they are
        await spawner.load_kubespawner_options()
    else:
        decisions, plan.availability = await spawner.quota_verdicts()
        options = spawner.user_options or {}
        try:
            plan.choice = spawner.resolve_choice(options, plan.availability)
        except web.HTTPError:
            spawner.count_choice_refusal(decisions, options.get("size"))
            # JupyterHub saved the refused options as the server's defaults: put back the last
            # valid ones so a refused request changes nothing
            spawner.save_user_options(spawner.last_options())
            raise
        apply_choice(spawner, plan.choice)
        # an image of one's own: its tag resolved to the registry's digest, if asked (audit fields)
        plan.registry_digest = await registrydigest.pin(spawner, plan.choice, spawner.custom_images)
    try:
        plan.datasets = await spawner.resolve_datasets(asked)  # the team's, allowed, not in use elsewhere
    except web.HTTPError:
        spawner.save_user_options(spawner.last_options())
        raise
    if asked:  # on the running server, as apply_choice's (the database keeps what was asked)
        spawner.user_options = dict(spawner.user_options or {}, datasets=dict(asked))
    plan.home = await spawner.ensure_home_claim()
    return plan


def apply_choice(spawner, choice):
    """The resolved choice on the server: its record (the culler and the quota read it from the
    server model), the notes for the user, and the image, what it opens (``default_url``), a
    custom image's pull secret and the size on KubeSpawner's traits."""
    chosen = {"image": choice.image, "version": choice.version, "size": choice.size}
    if choice.custom:
        chosen["custom_image"] = choice.image_ref
    if choice.connections:
        chosen["connections"] = list(choice.connections)
    # on the running server only: the hub's database keeps what the user asked for (a new choice
    # on the form starts from it), and a session left dirty for the whole pod start would be
    # rolled back by the next hub request to end, expiring every user and server the hub holds
    spawner.user_options = {**chosen, **spawner.team_user_options()}
    spawner.notes_extend(choice.notes)
    for note in choice.notes:
        spawner.log.info("%s: %s", spawner._log_name, note)
    spawner.image = choice.image_ref
    default_url, pull_secrets = spawner.configured_opening
    spawner.default_url = choice.default_url or default_url  # the interface it opens (interfaces.py)
    spawner.image_pull_secrets = pull_secrets + ([choice.pull_secret] if choice.pull_secret else [])
    if spawner.sizes:
        size = spawner_settings(spawner.sizes[choice.size])
        spawner.cpu_guarantee = size["cpu_guarantee"]
        spawner.cpu_limit = size["cpu_limit"]
        spawner.mem_guarantee = size["mem_guarantee"]
        spawner.mem_limit = size["mem_limit"]
        spawner.extra_resource_limits = size["extra_resource_limits"]
        spawner.node_selector = size["node_selector"]
        spawner.tolerations = size["tolerations"]


async def create_pod(spawner, pod, create):
    """KubeSpawner's pod create (``create(pod)``, once per retry) with the quota charged on the
    final manifest first; the API server's quota 403 as a readable refusal."""
    plan = spawner.start_plan
    plan.charge = await spawner.quota_charge_pod(pod)
    plan.pod_sent = True  # from here on a failed start deletes its pod
    try:
        return await create(pod)
    except Exception as e:
        status = getattr(e, "status", None) or getattr(e, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500 and status != 409:
            plan.pod_sent = False  # refused (quota, forbidden, invalid): no pod was made
        refused = spawner.quota_refusal_of(e)
        if refused is not None:
            raise refused from None
        raise


async def _clean_up_failed_start(spawner, plan):
    """Leave nothing behind that a failed start made: its pod, and a home claim it created."""
    if plan.pod_sent:
        try:
            await spawner.stop(now=True)
        except Exception as e:
            spawner.log.error("Could not delete pod of %s after failed start (%s); retrying in the background",
                              spawner._log_name, e)
            reflectors.delete_pod_later(spawner)
    await spawner.delete_home_of_failed_start(plan.home, plan.pod_sent)


def _remember_started(spawner, plan):
    pod = spawner.pod_reflector.pods.get(f"{spawner.namespace}/{spawner.pod_name}") or {}
    if plan.choice is not None:
        spawner.remember_choice(plan.choice, pod)
        spawner.remember_datasets(plan.datasets)  # "same as last time" repeats them (datasets/)
    spawner.dataset_views_started()  # the dataset snapshots it opened wait no longer (datasets/)
    if plan.home is not None and pod:
        spawner.home_mounted(plan.home)  # a running pod mounts it: later starts need not read it


async def _after_failed_start(spawner, error, who, new_server):
    if isinstance(error, QuotaExceeded):
        spawner.audit_refused("refused-quota", getattr(error, "jupyterhub_message", str(error)), user=who[0],
                              by=who[1] or None, server=spawner.name)
    elif not isinstance(error, web.HTTPError):  # (option refusals are recorded where they are decided)
        await spawner.snapshot_views_cleanup()
    if new_server and is_refusal(error):
        spawner.forget_new_named_server_later()


async def poll_server(spawner, poll_pod):
    """The whole poll. ``poll_pod``: KubeSpawner's poll (None while the pod runs, else an exit
    status). The quota ledger is rebuilt at the first poll of a hub process; KubeSpawner's
    answer counts only on evidence (``watches``: a server is taken as running while the API
    server cannot be reached or the pods watch is down); outside a start, the run's accounting
    follows the answer."""
    await spawner.quota_rebuild_once()
    status = await spawner.poll_on_evidence(poll_pod)
    if not in_start():
        spawner.accounting_polled(status)
    return status


async def stop_server(spawner, stop_pod, now=False):
    """The whole stop. ``stop_pod``: KubeSpawner's stop of the pod. Inside a start (KubeSpawner
    replacing a leftover pod, or a failed start's clean-up) only the pod goes: the share of the
    server being started stays charged (a failed start releases it)."""
    inside_start = in_start()
    try:
        return await stop_pod(now=now)
    finally:
        if not inside_start:
            try:
                spawner.quota_release()
                spawner.accounting_stopped()
                spawner.audit("server-stop", server=spawner.name, by=task_requester())
                await spawner.snapshot_views_cleanup()
            finally:
                redact.forget(id(spawner))  # JupyterHub revokes the server's token at a stop
