"""The ptjaas sandbox: everything that lets ptjaas run on a laptop or a CI machine with no cluster.

- ``cluster``: an embedded Kubernetes (API server, controllers, node agent running pods as local
  processes);
- ``demo``, ``z2jhhub`` and ``devlogin``: ``ptjaas demo``, a real JupyterHub on this machine
  configured from the Helm values files and ``jupyterhub_config.d/`` exactly as z2jh's hub is;
- ``localhub``: the local hub config the tests' hubs use;
- ``devoidc``: a real local OpenID Connect provider (npm ``oidc-provider``) for the demo and tests;
- ``cli``: the ``ptjaas cluster`` and ``ptjaas demo`` commands.

The arrow points one way: the sandbox imports ``ptjaas_spawner``, never the reverse. A hub image
installs ``ptjaas_spawner`` only.
"""
