"""`xpnet info`: versions, the selected backend and where data is looked for."""

import numpy as np

from xpnet.cli import main


def test_info_reports_versions_device_and_data_places(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("XPNET_DEVICE", "cpu")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("XPNET_DATA", "/data/idx")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    lines = dict(line.rsplit(None, 1) for line in out.splitlines())
    assert lines["numpy"] == np.__version__
    assert lines["device"] == "cpu"
    assert lines["XPNET_DATA"] == "/data/idx"
    assert lines["data cache"] == str(tmp_path / "xpnet")


def test_info_shows_an_invalid_device_instead_of_failing(monkeypatch, capsys):
    monkeypatch.setenv("XPNET_DEVICE", "tpu")
    assert main(["info"]) == 0
    assert "invalid: unknown device 'tpu'" in capsys.readouterr().out


def test_version_prints_the_package_version(capsys):
    from xpnet import __version__

    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out.strip() == f"xpnet {__version__}"


def test_info_reports_the_python_version_and_an_unset_data_variable(monkeypatch, capsys):
    import platform

    monkeypatch.delenv("XPNET_DATA", raising=False)
    assert main(["info"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["python"].strip() == platform.python_version()
    assert lines["XPNET_DATA"].strip() == "(not set)"
