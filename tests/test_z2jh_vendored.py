"""The one vendored copy of z2jh's hub config (``ptjaas_spawner/vendor/z2jh``): used where the
chart is not beside the project, and the same files as that chart where it is."""

from ptjaas_spawner import z2jhconfig


def test_without_the_chart_the_vendored_copy_is_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PTJAAS_SHARED_DIR", str(tmp_path))  # no charts/ there
    hub_files, _, source = z2jhconfig.chart_sources()
    assert hub_files == z2jhconfig.VENDOR_DIR and source == "ptjaas_spawner/vendor/z2jh"
    # z2jh's own mapping, from the vendored file: the chart's default storage is dynamic
    config = z2jhconfig.chart_config({"singleuser": {"storage": {"homeMountPath": "/home/x"}}})
    assert config.KubeSpawner.storage_pvc_ensure is True
    assert [m["mountPath"] for m in config.KubeSpawner.volume_mounts.values()] == ["/home/x"]


def test_the_vendored_copy_is_the_charts_own(shared_dir):
    chart = shared_dir / "charts" / "jupyterhub"
    for name in z2jhconfig.CHART_FILES:
        assert (z2jhconfig.VENDOR_DIR / name).read_text() == (chart / "files" / "hub" / name).read_text(), name
    assert (z2jhconfig.VENDOR_DIR / "values.yaml").read_text() == (chart / "values.yaml").read_text()
