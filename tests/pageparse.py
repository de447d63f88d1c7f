"""Reading what a hub serves as a client would: Prometheus text through prometheus_client's own
parser, HTML through html.parser (never text cut with split)."""

from html.parser import HTMLParser

from prometheus_client.parser import text_string_to_metric_families


def metric(text, name, **labels):
    """The value of the sample ``name`` with exactly ``labels`` in Prometheus text, or None."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


class _Page(HTMLParser):
    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.elements = []                 # (tag, attrs) of every start tag, in order
        self.tables = {}                   # table id -> rows -> cell texts
        self._table = self._row = self._cell = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html, table_id):
    """The rows (lists of cell texts, white space folded) of the table with ``id=table_id``."""
    return _Page(html).tables.get(table_id, [])


def element(html, tag, **attrs):
    """The attributes of the first ``tag`` element having ``attrs`` (e.g. ``value="gpu"``), or None."""
    for found, found_attrs in _Page(html).elements:
        if found == tag and all(found_attrs.get(k) == v for k, v in attrs.items()):
            return found_attrs
    return None
