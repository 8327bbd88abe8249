"""`--resume` redoes a stage when anything it reads changed: config, subject files, reference maps, init inputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from fitter.cli import main
from fitter.config import Config, InitConfig
from fitter.pipeline import stage_hashes, stage_input_files
from guidance.models.config import ModelsConfig
from tests.helpers import EXAMPLE

SUBJECT = {"input_sha256": "ab" * 32, "settings": {"intake": {"crop_size": 1024}}, "files": {"mask.png": "cd" * 32}}


def hashes(cfg: Config, subject_dir: Path, subject: dict = SUBJECT) -> dict[str, str]:
    return stage_hashes(cfg, subject, stage_input_files(cfg, subject_dir))


def changed(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return [stage for stage in a if a[stage] != b[stage]]


def test_a_changed_reference_map_redoes_geometry_onwards_but_not_init(tmp_path):
    cfg = dataclasses.replace(Config(), reference=dataclasses.replace(Config().reference, source="none"))
    before = hashes(cfg, tmp_path)
    (tmp_path / "normal.png").write_bytes(b"first")  # put in subject/ by hand
    with_map = hashes(cfg, tmp_path)
    (tmp_path / "normal.png").write_bytes(b"second")  # same path, new contents
    assert changed(before, with_map) == changed(with_map, hashes(cfg, tmp_path)) == ["reference", "geometry", "texture", "rig", "export"]


def test_reference_settings_redo_geometry_onwards_but_not_init(tmp_path):
    cfg = Config()
    other = dataclasses.replace(cfg, reference=dataclasses.replace(cfg.reference, steps=cfg.reference.steps + 1))
    assert changed(hashes(cfg, tmp_path), hashes(other, tmp_path)) == ["reference", "geometry", "texture", "rig", "export"]


def test_subject_files_and_intake_settings_redo_every_stage(tmp_path):
    before = hashes(Config(), tmp_path)
    other_files = SUBJECT | {"files": {"mask.png": "ef" * 32}}
    other_settings = SUBJECT | {"settings": {"intake": {"crop_size": 512}}}
    every = ["prior", "reference", "init", "geometry", "texture", "rig", "export"]
    assert changed(before, hashes(Config(), tmp_path, other_files)) == every
    assert changed(before, hashes(Config(), tmp_path, other_settings)) == every


def test_user_mesh_contents_and_gan_checkpoint_redo_init(tmp_path):
    mesh = tmp_path / "head.obj"
    mesh.write_text("v 0 0 0\n")
    cfg = dataclasses.replace(Config(), init=InitConfig(kind="mesh", mesh_path=str(mesh)))
    before = hashes(cfg, tmp_path)
    mesh.write_text("v 0 0 1\n")
    assert changed(before, hashes(cfg, tmp_path))[0] == "init"
    other_gan = dataclasses.replace(cfg, models=ModelsConfig(panohead=str(tmp_path / "other")))
    assert changed(before, hashes(other_gan, tmp_path))[0] == "init"


def test_multiview_folder_contents_redo_init(tmp_path):
    views = tmp_path / "views"
    views.mkdir()
    (views / "000.png").write_bytes(b"a")
    cfg = dataclasses.replace(Config(), init=InitConfig(kind="multiview", views_dir=str(views)))
    before = hashes(cfg, tmp_path)
    (views / "001.png").write_bytes(b"b")
    assert changed(before, hashes(cfg, tmp_path))[0] == "init"


def test_texture_settings_leave_init_and_geometry(tmp_path):
    cfg = Config()
    other = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, texture=dataclasses.replace(cfg.fit.texture, resolution=512)))
    assert changed(hashes(cfg, tmp_path), hashes(other, tmp_path)) == ["texture", "rig", "export"]


def test_rig_settings_redo_only_the_rig_and_the_export(tmp_path):
    cfg = Config()
    other = dataclasses.replace(cfg, rig=dataclasses.replace(cfg.rig, texture_size=1024))
    assert changed(hashes(cfg, tmp_path), hashes(other, tmp_path)) == ["rig", "export"]


def test_prompt_option_is_the_config_prompt(tmp_path):
    """--prompt reaches the guidance (the config's prompt), config.yaml and the subject record."""
    out = tmp_path / "run"
    assert main(["--image", EXAMPLE, "--config", "configs/preview.yaml", "--out", str(out), "--stop-after", "intake",
                 "--prompt", "a bronze bust"]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["prompt"] == "a bronze bust"
    assert "a bronze bust" in (out / "subject" / "subject.json").read_text()


def test_a_copied_run_folder_keeps_its_hashes(tmp_path):
    for folder in (tmp_path / "a", tmp_path / "b"):
        folder.mkdir()
        (folder / "depth.png").write_bytes(b"same")
    assert hashes(Config(), tmp_path / "a") == hashes(Config(), tmp_path / "b")
