"""The embedded cluster's own controls for tests and benchmarks (``/_ptjaas/``): fault injection
(requests that fail, slow down or have their watches cut), request counts, store compaction."""

from tornado import web

from .httpbase import BaseHandler


class Faults:
    """Injected failures: requests matching (verb, resource, namespace, name) fail, slow down or get cut."""

    def __init__(self):
        self.rules = []

    def add(self, verb=None, resource=None, namespace=None, name=None, status=None, latency=0.0,
            times=None, cut_watch=False, message=None):
        rule = {"verb": verb, "resource": resource, "namespace": namespace, "name": name, "status": status,
                "latency": float(latency or 0), "times": times, "cut_watch": bool(cut_watch),
                "message": message or "injected fault"}
        self.rules.append(rule)
        return rule

    def clear(self):
        self.rules.clear()

    def match(self, verb, resource, namespace, name):
        for rule in list(self.rules):
            if all(rule[k] in (None, v) for k, v in (("verb", verb), ("resource", resource),
                                                    ("namespace", namespace), ("name", name))):
                if rule["times"] is not None:
                    rule["times"] -= 1
                    if rule["times"] <= 0:
                        self.rules.remove(rule)
                return rule
        return None


class ControlHandler(BaseHandler):
    """/_ptjaas/faults, /_ptjaas/stats, /_ptjaas/compact: test and benchmark controls."""

    def get(self, what):
        if what == "stats":
            stats = self.cluster.stats
            return self.write_json({"total": stats["total"],
                                    "by_verb_resource": {f"{k[0]} {k[1]}": v for k, v in stats.items() if k != "total"}})
        if what == "faults":
            return self.write_json({"faults": self.cluster.faults.rules})
        raise web.HTTPError(404)

    def post(self, what):
        if what == "faults":
            body = self.json_body()
            rule = self.cluster.faults.add(**body)
            if rule["cut_watch"]:
                self.cluster.cut_watches(rule)
            return self.write_json(rule, 201)
        if what == "compact":
            self.cluster.store.compact()
            return self.write_json({"compactedResourceVersion": str(self.cluster.store.compacted_rv)})
        raise web.HTTPError(404)

    def delete(self, what):
        if what == "faults":
            self.cluster.faults.clear()
            return self.write_json({"faults": []})
        if what == "stats":
            self.cluster.reset_request_stats()
            return self.write_json({"total": 0})
        raise web.HTTPError(404)
