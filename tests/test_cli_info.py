"""`xpnet info`: versions, the selected backend and where data is looked for; `--version`
and `xpnet gradcheck --help`."""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import backend
from xpnet.cli import main

ROOT = Path(__file__).resolve().parents[1]


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


def test_info_reports_each_optional_package_and_what_a_missing_one_costs(capsys):
    from xpnet.cli.info import OPTIONAL

    assert main(["info"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert {"torch", "dask", "matplotlib", "graphviz", "mlxtend"} <= set(OPTIONAL)
    for name, gives in OPTIONAL.items():
        try:
            expected = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            expected = f"not installed ({gives})"
        assert lines[name].strip() == expected
    dot = shutil.which("dot")
    assert lines["dot"].strip() == dot if dot else lines["dot"].startswith("not found")


def test_info_shows_an_invalid_device_and_everything_else_then_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("XPNET_DEVICE", "tpu")
    assert main(["info"]) == 2
    out, err = capsys.readouterr()
    assert "invalid: unknown device 'tpu'" in out
    assert "data cache" in out  # printed in full before the failure
    assert err.startswith("xpnet info: error: XPNET_DEVICE: unknown device 'tpu'")


def test_info_takes_an_empty_device_variable_as_unset(monkeypatch, capsys):
    monkeypatch.setenv("XPNET_DEVICE", "")
    assert main(["info"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["device"].strip() == "cpu"
    assert lines["XPNET_DEVICE"].strip() == "(empty: the default, cpu)"


@pytest.mark.parametrize("device", ["cuda", "cuda:99"])
def test_info_shows_an_unusable_device_and_why_then_exits_2(monkeypatch, capsys, device):
    monkeypatch.setenv("XPNET_DEVICE", device)
    try:
        backend.selected()
    except backend.BackendUnavailableError as exc:
        why = str(exc)
    else:
        pytest.skip(f"{device} is usable here")
    assert main(["info"]) == 2
    out, err = capsys.readouterr()
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["device"].strip() == f"{backend.parse_device(device)} unavailable ({why})"
    assert err == f"xpnet info: error: XPNET_DEVICE: {why}\n"


def test_version_prints_the_package_version(capsys):
    from xpnet import __version__

    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out.strip() == f"xpnet {__version__}"


def test_the_command_the_module_and_the_package_metadata_give_one_version():
    try:
        installed = importlib.metadata.version("xpnet")
    except importlib.metadata.PackageNotFoundError:  # a checkout on PYTHONPATH: no command
        pytest.skip("xpnet is not installed (pip install -e .): no xpnet command, no metadata")
    script = shutil.which("xpnet", path=os.path.dirname(sys.executable)) or "xpnet"
    outputs = [
        subprocess.run(
            [*command, "--version"], capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()
        for command in ([script], [sys.executable, "-m", "xpnet"])
    ]
    assert outputs == [f"xpnet {xpnet.__version__}"] * 2
    assert installed == xpnet.__version__


def test_the_version_is_written_once_in_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    version = project["tool"]["setuptools"]["dynamic"]["version"]
    assert version == {"attr": "xpnet.__version__"}


def test_info_reports_the_python_version_and_an_unset_data_variable(monkeypatch, capsys):
    import platform

    monkeypatch.delenv("XPNET_DATA", raising=False)
    assert main(["info"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["python"].strip() == platform.python_version()
    assert lines["XPNET_DATA"].strip() == "(not set)"


def option_helps(text):
    """``{option: its help}`` from ``--help`` output, whitespace normalized."""
    blocks = re.split(r"\n  (?=-)", text.split("options:", 1)[1])
    return {block.split()[0].rstrip(","): " ".join(block.split()) for block in blocks[1:]}


def gradcheck_help(capsys):
    with pytest.raises(SystemExit):
        main(["gradcheck", "--help"])
    return option_helps(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("option", "default"),
    [("--input-size", "784"), ("--output-size", "10"), ("--activation", "relu"),
     ("--dtype", "float64"), ("--seed", "0"), ("--batch-size", "3")],
)  # fmt: skip
def test_gradcheck_help_gives_the_default_of_each_option(capsys, option, default):
    assert f"default {default}" in gradcheck_help(capsys)[option]


def test_gradcheck_help_gives_the_steps_h_defaults_to_per_dtype(capsys):
    from xpnet.gradcheck import DEFAULTS

    text = gradcheck_help(capsys)["--h"]
    assert "central-difference step" in text
    for dtype, defaults in DEFAULTS.items():
        assert f"{defaults['h']:g} for {dtype}" in text
