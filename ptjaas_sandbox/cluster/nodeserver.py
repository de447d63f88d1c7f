"""The node agent's HTTPS endpoint for container logs (a kubelet's ``/containerLogs``), which a real
kube-apiserver calls for ``pods/log`` (the address and port the Node's status gives). The embedded
API server reads the same logs in-process."""

import ssl

from tornado import web
from tornado.httpserver import HTTPServer

from . import errors


class ContainerLogs(web.RequestHandler):
    def initialize(self, kubelet):
        self.kubelet = kubelet

    def get(self, namespace, name, container):
        pod = next((p for p in self.kubelet.cache.values()
                    if p["metadata"]["namespace"] == namespace and p["metadata"]["name"] == name), None)
        self.set_header("Content-Type", "text/plain")
        if pod is None:
            self.set_status(404)
            return self.finish(f'pod "{name}" not found on this node')
        tail = self.get_query_argument("tailLines", None)
        try:
            text = self.kubelet.read_log(pod, container, tail)
        except errors.ApiError as e:
            self.set_status(e.code)
            return self.finish(e.message)
        self.finish(text)


def serve_logs(kubelet, cert_file, key_file, port, host="127.0.0.1"):
    """Listen for the API server's log requests; returns the server (``stop()`` it)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    app = web.Application([(r"/containerLogs/([^/]+)/([^/]+)/([^/]+)", ContainerLogs, {"kubelet": kubelet})])
    server = HTTPServer(app, ssl_options=context)
    server.listen(port, host)
    return server
