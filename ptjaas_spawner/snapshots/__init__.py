"""Point-in-time homes: snapshots of users' home volumes.

- :mod:`.policy` — pure decisions (names, ownership, rate limit, pruning, mount paths);
- :mod:`.kube` — the Kubernetes calls;
- :mod:`.views` — ``SnapshotViews``, the spawner's settings and snapshots opened read-only;
- :mod:`.ops` — list / take / restore for the page and the REST API;
- :mod:`.handlers` — ``/hub/ptjaas/snapshots`` and ``/hub/api/ptjaas/snapshots/<user>``;
- :mod:`.scheduler` — scheduled snapshots per group, a hub-managed service.
"""
