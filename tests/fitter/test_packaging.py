"""The CPU install must pull neither torchvision nor a CUDA torch; extras carry the GPU-only pieces."""

from __future__ import annotations

import tomllib

from fitter.config import REPO_ROOT


def project() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {r.split("==")[0].split(">")[0].split("<")[0].split("[")[0].strip().lower() for r in requirements}


def test_base_install_has_no_torchvision_and_pins_cpu_torch():
    deps = project()["dependencies"]
    assert "torch==2.13.0" in deps and "mediapipe==0.10.21" in deps
    assert not names(deps) & {"torchvision", "controlnet-aux", "timm", "nvdiffrast", "diffrp-nvdiffrast"}
    assert all("==" in d for d in deps), "every runtime dependency is pinned"


def test_extras_and_packages():
    proj = project()
    extras = proj["optional-dependencies"]
    assert {"dev", "gpu", "annotators"} <= set(extras)
    assert "controlnet-aux" in names(extras["annotators"]) and "torchvision" in names(extras["annotators"])
    assert "pytest" in names(extras["dev"])
    assert proj["requires-python"] == ">=3.11"
    include = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {"fitter*", "guidance*", "representations*"} <= set(include)


def test_readme_has_exactly_two_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    assert readme.count("<!-- main-command -->") == 1 and readme.count("<!-- test-command -->") == 1
    assert "configs/preview.yaml" in readme and "pytest" in readme
