"""A small Prometheus HTTP API for tests: ``/api/v1/query`` answers ``max_over_time`` of recorded
NVIDIA DCGM exporter series (``DCGM_FI_DEV_GPU_UTIL``, one series per GPU, labelled with the pod
using it, as the exporter's Kubernetes mapping labels them), in Prometheus's own answer shape.

``series[pod] = {"0": [(seconds_ago, value), ...], "1": [...]}``: samples per GPU index. A query
``max_over_time(DCGM_FI_DEV_GPU_UTIL{namespace="ns",pod="p"}[30s])`` gets, per GPU of pod ``p``
with a sample in the last 30 s, the highest of those samples. ``fail`` = an HTTP status to answer
instead (with Prometheus's error body). Queries received are kept in ``queries``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

QUERY = re.compile(r'^max_over_time\(DCGM_FI_DEV_GPU_UTIL\{(?P<matchers>[^}]*)\}\[(?P<window>\d+)s\]\)$')
MATCHER = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class PrometheusStub:
    def __init__(self, namespace: str = "default"):
        self.namespace = namespace
        self.series: dict[str, dict[str, list[tuple[float, float]]]] = {}
        self.queries: list[str] = []
        self.fail: int | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                query = (parse_qs(url.query).get("query") or [""])[0]
                stub.queries.append(query)
                if url.path != "/api/v1/query":
                    return self.answer(404, {"status": "error", "errorType": "not_found", "error": "no such path"})
                if stub.fail:
                    return self.answer(stub.fail, {"status": "error", "errorType": "internal", "error": "stub failure"})
                m = QUERY.match(query)
                if not m:
                    return self.answer(400, {"status": "error", "errorType": "bad_data",
                                             "error": f"parse error in {query[:100]!r}"})
                labels = dict(MATCHER.findall(m["matchers"]))
                window, now = int(m["window"]), time.time()
                result = []
                if labels.get("namespace", stub.namespace) == stub.namespace:
                    for gpu, samples in stub.series.get(labels.get("pod"), {}).items():
                        inside = [v for ago, v in samples if ago <= window]
                        if inside:
                            result.append({"metric": {"gpu": gpu, "UUID": f"GPU-{gpu}", "pod": labels["pod"],
                                                      "namespace": stub.namespace, "container": "notebook"},
                                           "value": [now, repr(float(max(inside)))]})
                self.answer(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

            def answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
