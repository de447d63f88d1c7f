"""Pure tests: the spawn form's HTML and the parsing of posted data."""

from html.parser import HTMLParser

from ptjaas_spawner.form import options_from_formdata, render_form

from tests.test_catalog import IMAGES, SIZES


class Inputs(HTMLParser):
    def __init__(self, html):
        super().__init__()
        self.inputs, self.labels, self.options = [], set(), []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("input", "select") and a.get("type") != "hidden":
            self.inputs.append(a)
        elif tag == "label":
            self.labels.add(a.get("for"))
        elif tag == "option":
            self.options.append(a)


def test_form_shows_only_entitled_choices_with_labels():
    plain = Inputs(render_form(IMAGES, SIZES, []))
    power = Inputs(render_form(IMAGES, SIZES, ["power", "gpu-users"]))
    values = lambda p, n: [i["value"] for i in p.inputs if i.get("name") == n]  # noqa: E731
    assert values(plain, "image") == ["python"] and values(plain, "size") == ["small"]
    assert values(power, "image") == ["python", "cuda", "secret"]
    assert values(power, "size") == ["small", "large", "gpu"]
    for p in (plain, power):  # every control has a label
        assert all(i["id"] in p.labels for i in p.inputs)
    selected = [o["value"] for o in plain.options if "selected" in o]
    assert selected == ["2025.01"]


def test_form_escapes_and_shows_notes():
    images = {"x": {"display_name": "<b>X</b> {{evil}}", "versions": {
        "1": {"image": "x:1", "deprecated": "use 2", "notes": "old"}, "2": {"image": "x:2"}}}}
    html = render_form(images, SIZES, [])
    assert "<b>X" not in html and "{{" not in html
    assert "deprecated: use 2" in html and "1: old" in html


def test_unavailable_sizes_disabled_with_note():
    html = render_form(IMAGES, SIZES, ["power"], availability={"small": (False, "budget used up")})
    p = Inputs(html)
    small = next(i for i in p.inputs if i.get("value") == "small")
    large = next(i for i in p.inputs if i.get("value") == "large")
    assert "disabled" in small and "checked" in large
    assert "budget used up" in html


def test_same_as_last_offered_or_explained():
    last = {"image": "python", "version": "2024.05", "size": "small", "image_digest": "sha256:abc"}
    html = render_form(IMAGES, SIZES, [], last=last)
    assert 'value="last"' in html and "sha256:abc" in html
    gone = dict(IMAGES, python={**IMAGES["python"], "versions": {"2025.01": {"image": "py:2025.01"}}})
    html = render_form(gone, SIZES, [], last=last)
    assert 'value="last"' not in html and "has been removed" in html


def test_options_from_formdata():
    shown = {"shown-image": ["python"], "shown-version": ["2025.01"], "shown-size": ["small"]}
    same = {"choice": ["last"], "image": ["python"], "version--python": ["2025.01"], "size": ["small"]}
    assert options_from_formdata({**same, **shown}) == {"same_as_last": True}
    # without JavaScript, picking a field is what switches "same as last time" off
    assert options_from_formdata({**same, **shown, "size": ["large"]}) == {
        "image": "python", "version": "2025.01", "size": "large"}
    # no record of what was shown: the fields go along, and must agree with last time
    assert options_from_formdata({"choice": ["last"], "image": ["python"]}) == {
        "same_as_last": True, "image": "python"}
    assert options_from_formdata({"choice": ["new"], "image": ["python"], "version--python": ["2024.05"],
                                  "version--cuda": ["12"], "size": ["small"]}) == {
        "image": "python", "version": "2024.05", "size": "small"}
    assert options_from_formdata({}) == {}


def test_a_site_replaces_a_template_part_or_the_whole_form_and_values_stay_escaped(tmp_path):
    (tmp_path / "form").mkdir()
    (tmp_path / "form" / "sizes.html").write_text(
        '<ul class="site-sizes">{% for s in sizes %}<li>{{ s.name }}</li>{% endfor %}</ul>')
    html = render_form(IMAGES, SIZES, ["power"], template_paths=[str(tmp_path)])
    assert '<ul class="site-sizes"><li>Small</li><li>Large</li>' in html
    assert 'type="radio" name="size"' not in html and 'type="radio" name="image"' in html  # the rest: ptjaas's
    evil = {"x": {"display_name": "<b>X</b> {{evil}}", "versions": {"1": {"image": "x:1"}}}}
    text = render_form(evil, SIZES, [], template_text="<p>{{ images[0].name }}</p>")
    assert text == "<p>&lt;b&gt;X&lt;/b&gt; &#123;&#123;evil&#125;&#125;</p>"


def test_the_form_says_where_the_home_lives():
    known = {"claim": "claim-alice", "namespace": "team-vision", "size": "10Gi", "wanted": "20Gi", "exists": True}
    html = render_form(IMAGES, SIZES, [], home=known)
    assert ('<p class="ptjaas-home">Your home: claim-alice in namespace team-vision, 10Gi '
            "(grown to 20Gi at this start where its storage class allows)</p>") in html
    new = dict(known, size=None, wanted="10Gi", exists=False)
    assert "A new 10Gi home volume, claim-alice, will be made in namespace team-vision when your server starts." \
        in render_form(IMAGES, SIZES, [], home=new)
    unknown = dict(known, size=None, exists=None, claim="<b>x</b>")  # the claim could not be read: no guess
    html = render_form(IMAGES, SIZES, [], home=unknown)
    assert "Your home: &lt;b&gt;x&lt;/b&gt; in namespace team-vision</p>" in html
    assert 'class="ptjaas-home"' not in render_form(IMAGES, SIZES, [])


def test_the_preview_says_what_start_starts():
    import html as htmllib
    import json

    html = render_form(IMAGES, SIZES, ["power", "gpu-users"], selected={"image": "python", "size": "large"})
    preview = html[html.index('id="ptjaas-preview"'):]
    preview = htmllib.unescape(preview[:preview.index("</div>")])
    assert 'aria-live="polite"' in html
    assert "Python 2025.01 (py:2025.01)" in preview and "Opens the default interface" in preview
    assert "Size Large: CPU" in preview and "no GPU" in preview
    gpu = render_form(IMAGES, SIZES, ["gpu-users"], selected={"image": "cuda", "size": "gpu"})
    assert "<li data-part=\"gpus\">1 GPU</li>" in gpu and "CUDA 12 (cuda:12)" in gpu
    # "same as last time" checked: the preview is the last choice; each field carries its part
    last = {"image": "python", "version": "2024.05", "size": "small"}
    html = render_form(IMAGES, SIZES, [], last=last)
    attr = html[html.index("data-ptjaas-preview=") + len('data-ptjaas-preview="'):]
    assert json.loads(htmllib.unescape(attr[:attr.index('"')]))["image"].startswith("Python 2024.05")
    assert 'data-ptjaas-preview-size="Size Small: CPU' in html
