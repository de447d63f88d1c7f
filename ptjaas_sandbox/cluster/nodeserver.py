"""The node agent's HTTPS endpoint for container logs (a kubelet's ``/containerLogs``), which a real
kube-apiserver calls for ``pods/log`` (the address and port the Node's status gives). The embedded
API server reads the same logs in-process."""

import ssl

from tornado import web
from tornado.httpserver import HTTPServer

from . import errors, podlogs


class ContainerLogs(web.RequestHandler):
    def initialize(self, kubelet, streams):
        self.kubelet = kubelet
        self.streams = streams
        self.cut_watch = False

    async def get(self, namespace, name, container):
        pod = next((p for p in self.kubelet.cache.values()
                    if p["metadata"]["namespace"] == namespace and p["metadata"]["name"] == name), None)
        self.set_header("Content-Type", "text/plain")
        if pod is None:
            self.set_status(404)
            return self.finish(f'pod "{name}" not found on this node')
        # plain, previous or follow, with the names of the API's pods/log query (the API server passes them on)
        self.request.query_arguments["container"] = [container.encode()]
        uid = pod["metadata"]["uid"]
        try:
            await podlogs.serve(self, pod, self.kubelet, lambda: self.kubelet.cache.get(uid), self.streams)
        except errors.ApiError as e:
            self.set_status(e.code)
            return self.finish(e.message)


def serve_logs(kubelet, cert_file, key_file, port, host="127.0.0.1"):
    """Listen for the API server's log requests; returns the server (``stop_logs`` it)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    streams = set()   # followed logs, cut by stop_logs
    app = web.Application([(r"/containerLogs/([^/]+)/([^/]+)/([^/]+)", ContainerLogs, {"kubelet": kubelet, "streams": streams})])
    server = HTTPServer(app, ssl_options=context)
    server.listen(port, host)
    server.streams = streams
    return server


def stop_logs(server):
    server.stop()
    for handler in list(server.streams):
        handler.cut_watch = True
