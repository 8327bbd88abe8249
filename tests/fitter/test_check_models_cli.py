"""`run.py check-models`, `run.py convert-weights` and a fit's model check on the public checkpoints'
real layouts in a Hugging Face cache: found / needs convert-weights (the printed command makes it found,
with no config edit) / missing, the role checks, and one-line errors (exit 2, no traceback)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch

from fitter.config import REPO_ROOT
from guidance.registry import converted_dir
from tests.checkpoint_layouts import (
    IP_ADAPTER,
    IP_BIN,
    LANDMARKS,
    NORMAL_SD,
    SystemCall,
    hub_snapshot,
    ip_adapter_bin,
    landmarks_repo,
    pickle_sd_folder,
)
from tests.helpers import run_cli

EXAMPLE = str(REPO_ROOT / "examples" / "astronaut.png")
GEOMETRY_ONLY = ["reference.source=none", "fit.texture.mode=projection"]
"""The hero config with only the geometry stage's models: the ISD base (models.normal_sd), the landmark
ControlNet, the IP-Adapter and ArcFace."""


@pytest.fixture
def hub(tmp_path, monkeypatch) -> list[str]:
    """The three public layouts in a Hugging Face cache; the overrides that point the hero config at it."""
    monkeypatch.setenv("HEADFIT_CACHE", str(tmp_path / "headfit"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf"
    landmarks_repo(hub_snapshot(cache, LANDMARKS))
    ip_adapter_bin(hub_snapshot(cache, IP_ADAPTER))
    pickle_sd_folder(hub_snapshot(cache, NORMAL_SD))
    (tmp_path / "arcface.onnx").write_bytes(b"onnx")  # check-models only looks for the file
    return [f"models.cache_dir={cache}", f"models.arcface={tmp_path / 'arcface.onnx'}", *GEOMETRY_ONLY]


def commands_in(text: str) -> list[str]:
    return [line.split("; run: ", 1)[1] for line in text.splitlines() if "needs convert-weights" in line]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_check_models_found_convert_then_found(hub, tmp_path, capsys):
    cache = tmp_path / "hf"
    code, out, _ = run_cli(["check-models", *hub], capsys)
    assert code == 2
    snapshot = cache / "models--CrucibleAI--ControlNetMediaPipeFace" / "snapshots"
    assert "models.controlnet_landmarks=CrucibleAI/ControlNetMediaPipeFace (subfolder diffusion_sd15, variant fp16)" in out
    assert f"found   {next(snapshot.iterdir()) / 'diffusion_sd15'}" in out
    assert f"found   {tmp_path / 'arcface.onnx'}" in out
    commands = commands_in(out)
    ip_snapshot = next((cache / "models--h94--IP-Adapter-FaceID" / "snapshots").iterdir())
    sd_snapshot = next((cache / "models--xanderhuang--normal-adapted-sd1.5" / "snapshots").iterdir())
    assert sorted(commands) == sorted([f"python run.py convert-weights {ip_snapshot / IP_BIN} {converted_dir(IP_ADAPTER)}",
                                       f"python run.py convert-weights {sd_snapshot} {converted_dir(NORMAL_SD)}"])

    code, _, err = run_cli(["--image", EXAMPLE, "--out", str(tmp_path / "out"), *hub], capsys)
    line = one_error_line(err)
    assert code == 2 and all(f"`{command}`" in line for command in commands) and not (tmp_path / "out").exists()

    for command in commands:
        words = shlex.split(command)
        code, out, _ = run_cli(words[2:], capsys)
        assert code == 0 and "wrote " in out and "converted " in out
    code, out, _ = run_cli(["check-models", *hub], capsys)
    assert code == 0, out
    assert "MISSING" not in out and "needs convert-weights" not in out and "MISMATCH" not in out
    assert f"found   {converted_dir(NORMAL_SD)}\n" in out
    assert f"found   {converted_dir(IP_ADAPTER) / 'ip-adapter-faceid-portrait-v11_sd15.safetensors'}" in out


def test_check_models_missing_and_allowed_pickles(hub, tmp_path, capsys):
    code, out, _ = run_cli(["check-models", *hub, "models.normal_sd=someone/absent", "models.allow_pickle=[ip_adapter]"], capsys)
    assert code == 2
    assert "MISSING looked in " in out and "(repo someone/absent, file model_index.json)" in out
    assert "pickle weights allowed by models.allow_pickle" in out and "needs convert-weights" not in out


def test_the_sd21_controlnet_stops_check_models_and_the_fit(hub, tmp_path, capsys):
    root = [*hub, "models.subfolders.controlnet_landmarks=", "models.variants.controlnet_landmarks=",
            "models.allow_pickle=[normal_sd,ip_adapter]"]
    code, out, _ = run_cli(["check-models", *root], capsys)
    assert code == 2
    mismatch = [line for line in out.splitlines() if line.startswith("MISMATCH ")]
    assert mismatch == ["MISMATCH landmark ControlNet models.controlnet_landmarks=CrucibleAI/ControlNetMediaPipeFace has "
                        "cross_attention_dim 64 but the ISD base UNet (models.normal_sd) has 32: use one made for that base model"]
    code, _, err = run_cli(["--image", EXAMPLE, "--out", str(tmp_path / "out"), *root], capsys)
    line = one_error_line(err)
    assert code == 2 and "models that do not fit their roles: landmark ControlNet" in line and not (tmp_path / "out").exists()


def test_convert_weights_errors_are_one_line(tmp_path, capsys):
    marker = tmp_path / "ran"
    torch.save({"w": SystemCall(f"touch {marker}")}, tmp_path / "evil.bin")
    code, _, err = run_cli(["convert-weights", str(tmp_path / "evil.bin"), str(tmp_path / "out")], capsys)
    assert code == 2 and "refusing to convert" in one_error_line(err) and not marker.exists()
    assert not (tmp_path / "out").exists()
    pickle_sd_folder(tmp_path / "sd")
    capsys.readouterr()  # transformers' progress bar while saving
    for dst, fragment in ((tmp_path / "sd", "into itself"), (tmp_path / "sd" / "unet" / "x", "inside SRC"),
                          (tmp_path / "evil.bin", "it is a file")):
        code, _, err = run_cli(["convert-weights", str(tmp_path / "sd"), str(dst)], capsys)
        assert code == 2 and fragment in one_error_line(err)
    code, _, err = run_cli(["convert-weights", str(tmp_path / "none"), str(tmp_path / "out")], capsys)
    assert code == 2 and "no such file or folder" in one_error_line(err)


def test_the_old_allow_pickle_form_is_one_line(capsys):
    code, _, err = run_cli(["check-models", "models.allow_pickle=true"], capsys)
    assert code == 2 and "models.allow_pickle is now a list" in one_error_line(err)


def test_convert_weights_has_its_help(capsys):
    with pytest.raises(SystemExit) as stopped:
        run_cli(["convert-weights", "--help"], capsys)
    assert stopped.value.code == 0 and capsys.readouterr().out.startswith("usage: run.py convert-weights ")


def test_a_plain_folder_needs_no_conversion(tmp_path, capsys):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    code, _, err = run_cli(["convert-weights", str(folder), str(tmp_path / "out")], capsys)
    assert code == 2 and "nothing to convert" in one_error_line(err)
    assert Path(tmp_path / "out").exists() is False
