"""The IP-Adapter loader leans on diffusers' private `_load_ip_adapter_weights` (no public loader for a
bare UNet): it must exist with the expected signature in the pinned release and work on the tiny UNet."""

from __future__ import annotations

import inspect
import tomllib
from importlib import metadata

import pytest
import torch
from diffusers import UNet2DConditionModel

from common.errors import UserError
from fitter.config import REPO_ROOT
from guidance.models import tiny_builders as tb
from guidance.models.ip_adapter import (
    LOADER,
    LOADER_PARAMETERS,
    TESTED_DIFFUSERS,
    attach_ip_adapter,
    has_ip_adapter,
    identity_embedding_dim,
    num_identity_tokens,
)


def test_tested_release_is_the_pinned_and_installed_one():
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"diffusers=={TESTED_DIFFUSERS}" in dependencies
    assert metadata.version("diffusers") == TESTED_DIFFUSERS


def test_private_loader_exists_with_the_expected_signature():
    method = getattr(UNet2DConditionModel, LOADER)
    parameters = inspect.signature(method).parameters
    assert tuple(parameters) == ("self", *LOADER_PARAMETERS)
    assert parameters["low_cpu_mem_usage"].default is not inspect.Parameter.empty


def test_private_loader_attaches_the_tiny_adapter():
    torch.manual_seed(0)
    unet = tb.tiny_unet().eval()
    state = tb.tiny_ip_adapter(unet)
    attach_ip_adapter(unet, state, scale=0.5)
    assert has_ip_adapter(unet) and num_identity_tokens(unet) == tb.ID_TOKENS and identity_embedding_dim(unet) == tb.ID_DIM
    processors = [p for p in unet.attn_processors.values() if hasattr(p, "to_k_ip")]
    assert len(processors) == len(state["ip_adapter"]) // 2 and all(p.scale == [0.5] for p in processors)
    assert torch.equal(processors[0].to_k_ip[0].weight, state["ip_adapter"]["1.to_k_ip.weight"])
    z, text = torch.randn(1, 4, 16, 16), torch.randn(1, 77, tb.CROSS_DIM)
    with torch.no_grad():
        out = unet(z, torch.tensor([10]), text, added_cond_kwargs={"image_embeds": [torch.randn(1, 1, tb.ID_DIM)]}).sample
    assert out.shape == z.shape and torch.isfinite(out).all()


def test_missing_private_loader_names_the_tested_release(monkeypatch):
    unet = tb.tiny_unet()
    owner = next(c for c in type(unet).__mro__ if LOADER in vars(c))
    monkeypatch.delattr(owner, LOADER)
    with pytest.raises(UserError, match=rf"has no UNet2DConditionModel\.{LOADER}.*tested with diffusers {TESTED_DIFFUSERS}"):
        attach_ip_adapter(unet, tb.tiny_ip_adapter(tb.tiny_unet()))
