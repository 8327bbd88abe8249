"""The report's 3D viewer bundle: a fit only looks it up (never npm); `run.py install-viewer` puts the
pinned bundle into the package-data folder, from the npm folder, running npm only when that lacks it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fitter.cli import main
from fitter.stages.export.report import viewer
from fitter.stages.export.report.viewer import MODEL_VIEWER_VERSION, NPM_BUNDLE, PACKAGE, copy_bundle, find_bundle, vendor_bundle

BUNDLE = b"/* model-viewer umd stand-in */\n"


@pytest.fixture
def places(tmp_path, monkeypatch):
    """An empty package-data folder and npm folder; npm itself cannot run."""
    monkeypatch.setattr(viewer, "VENDOR_DIR", tmp_path / "vendor")
    monkeypatch.setenv("HEADFIT_NPM_CACHE", str(tmp_path / "npm"))
    monkeypatch.setattr(viewer.shutil, "which", lambda name: None)

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(viewer.subprocess, "run", no_subprocess)
    return tmp_path


def fill_npm_folder(cache, version: str = MODEL_VIEWER_VERSION) -> None:
    package = cache / "node_modules" / PACKAGE
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": PACKAGE, "version": version}))
    (cache / NPM_BUNDLE).parent.mkdir(parents=True, exist_ok=True)
    (cache / NPM_BUNDLE).write_bytes(BUNDLE)


def test_without_bundle_the_report_says_which_command_installs_it(places):
    report = places / "report"
    problem = copy_bundle(report)
    assert problem is not None and "python run.py install-viewer" in problem and str(places / "npm") in problem
    assert not (report / "model-viewer.min.js").exists()
    fill_npm_folder(places / "npm", version="4.3.0")  # another version is no bundle
    assert find_bundle()[0] is None


def test_a_fit_copies_the_bundle_from_the_npm_folder_or_package_data(places):
    fill_npm_folder(places / "npm")
    assert copy_bundle(places / "report") is None and (places / "report" / "model-viewer.min.js").read_bytes() == BUNDLE
    vendor_bundle().parent.mkdir()
    vendor_bundle().write_bytes(b"vendored")
    assert find_bundle() == (vendor_bundle(), "")


def test_install_viewer_copies_into_package_data_without_npm_when_cached(places, capsys):
    fill_npm_folder(places / "npm")
    assert main(["install-viewer"]) == 0
    assert vendor_bundle().read_bytes() == BUNDLE and vendor_bundle().name == f"model-viewer-{MODEL_VIEWER_VERSION}-umd.min.js"
    assert capsys.readouterr().out.startswith("installed: ")
    assert main(["install-viewer"]) == 0 and capsys.readouterr().out.startswith("already installed: ")


def test_install_viewer_without_npm_is_one_line_exit_2(places, capsys):
    assert main(["install-viewer"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err == "error: cannot install the report's 3D viewer: npm is not installed"
    assert not vendor_bundle().exists()


def test_install_viewer_runs_the_pinned_npm_install_once_in_a_folder_of_its_own(places, monkeypatch):
    calls = []

    def fake_npm(cmd, **kwargs):
        calls.append(cmd)
        fill_npm_folder(Path(cmd[cmd.index("--prefix") + 1]))
        return viewer.subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(viewer.shutil, "which", lambda name: "/usr/bin/npm" if name == "npm" else None)
    monkeypatch.setattr(viewer.subprocess, "run", fake_npm)
    assert main(["install-viewer"]) == 0 and vendor_bundle().read_bytes() == BUNDLE
    assert main(["install-viewer"]) == 0 and len(calls) == 1
    prefix = calls[0][3]
    assert calls[0] == ["/usr/bin/npm", "install", "--prefix", prefix, "--no-audit", "--no-fund", "--no-save", f"{PACKAGE}@{MODEL_VIEWER_VERSION}"]
    assert not Path(prefix).exists() and not (places / "npm").exists()  # a temporary folder; the npm folder untouched


def test_failed_npm_install_is_one_line_exit_2(places, monkeypatch, capsys):
    monkeypatch.setattr(viewer.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(viewer.subprocess, "run", lambda cmd, **k: viewer.subprocess.CompletedProcess(cmd, 1, "", "npm ERR! network\nnpm ERR! code E404\n"))
    assert main(["install-viewer"]) == 2
    assert capsys.readouterr().err == f"error: cannot install the report's 3D viewer: npm install {PACKAGE}@{MODEL_VIEWER_VERSION} failed: npm ERR! code E404\n"


@pytest.mark.parametrize("command", ["check-models", "eval", "batch", "convert-panohead", "install-viewer", "build-head-model"])
def test_every_command_has_its_help(command, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0 and capsys.readouterr().out.startswith(f"usage: run.py {command} ")
