"""Team dataset volumes, self-service (issue #23): a dataset is a plain PVC in the team's
namespace, labelled ``ptjaas.io/dataset=<name>`` and ``ptjaas.io/team=<team>``.

- ``policy``: pure rules (names, sizes, write rules, classes, claim and mount manifests);
- ``handlers``: ``/hub/api/ptjaas/datasets/<team>`` and the page ``/hub/ptjaas/datasets``;
- ``mixin``: the spawner's settings (``dataset_classes``) and the mount at a start.
"""
