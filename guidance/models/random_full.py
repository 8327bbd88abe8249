"""The ``random-full`` preset: every hero model at its real published size, random, in the public layouts.

``models.preset=random-full`` builds (once, seeded, atomically, under a file lock) the public
repositories' file trees under ``$HEADFIT_CACHE/random-full/v1/hub/<owner>--<name>/`` with random
weights of the real shapes, then does what ``check-models`` asks of a user who has those folders
(`follow_check_models`): the project's own conversion (`guidance.models.convert.convert_weights`) of
the pickle-only ones, to ``<folder>-safetensors`` for the HumanNorm SD folders and to the
``.safetensors`` next to the IP-Adapter ``.bin``. The `ModelsConfig` it returns is that user's: the
converted folders, the raw ControlNetMediaPipeFace folder with subfolder ``diffusion_sd15`` and variant
``fp16``, no pickle allowed. Everything then loads through the real loaders, so load times, memory and
step times are those of the hero models (bench/hero_step.py).

Sizes (`FULL`): SD1.5 UNet (859.5M parameters), VAE 128/256/512/512 (83.7M), CLIP-L text
encoder (123.1M; 49408-row embedding, but the byte-level stand-in tokenizer of
`tiny_builders.tiny_tokenizer`: the real BPE vocabulary is not available offline, and token ids stay
below 514), ControlNet from the UNet (361.3M, conditioning 16/32/96/256), IP-Adapter-FaceID portrait
(512 → 1024 → 16×768 + LayerNorm, to_k_ip/to_v_ip on the 16 cross-attention layers, h94 naming).
The ArcFace ONNX stays the tiny 112² → 512 stand-in (`tiny_builders.tiny_arcface_onnx`), and the
root of ControlNetMediaPipeFace (an SD2.1 ControlNet the fit never loads) gets its config.json and
an empty placeholder weights file only. The SD-family folders share one set of random weights and
the two ControlNets another (hard links where the format is the same): about 21 GB on disk.

Layouts written (the subset of each public repository the fit reads):

- ``stable-diffusion-v1-5/stable-diffusion-v1-5``, ``SG161222/Realistic_Vision_V4.0_noVAE``:
  model_index.json, unet/ vae/ text_encoder/ (safetensors), tokenizer/, scheduler/ (PNDM, SD1.5's).
- ``xanderhuang/normal-adapted-sd1.5``, ``xanderhuang/depth-adapted-sd1.5``: the same with ``.bin``
  weights only (unet/ and vae/ ``diffusion_pytorch_model.bin``, text_encoder/ ``pytorch_model.bin``).
- ``stabilityai/sd-vae-ft-mse``: config.json + diffusion_pytorch_model.safetensors.
- ``lllyasviel/control_v11p_sd15_normalbae``, ``…_canny``: config.json + diffusion_pytorch_model.safetensors.
- ``CrucibleAI/ControlNetMediaPipeFace``: root config.json (SD2.1, cross-attention 1024) + placeholder;
  ``diffusion_sd15/`` config.json, diffusion_pytorch_model.bin, diffusion_pytorch_model.fp16.safetensors.
- ``h94/IP-Adapter-FaceID``: ip-adapter-faceid-portrait-v11_sd15.bin (torch.save of the two dicts).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from filelock import FileLock
from safetensors.torch import save_file

from guidance.models import tiny_builders as tb
from guidance.models.config import ModelsConfig
from guidance.models.convert import convert_weights
from guidance.models.sources import check_model, conversion_target, model_spec
from guidance.registry import headfit_cache

log = logging.getLogger("headfit")

VERSION = "v1"
SEED = 1234
ARCFACE = "arcface/tiny_arcface.onnx"
IP_WEIGHT = "ip-adapter-faceid-portrait-v11_sd15.bin"
PRESET_JSON = "preset.json"
"""In the cache: the `ModelsConfig` fields the conversions changed (relative folders)."""

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
REALISTIC_VISION = "SG161222/Realistic_Vision_V4.0_noVAE"
NORMAL_SD = "xanderhuang/normal-adapted-sd1.5"
DEPTH_SD = "xanderhuang/depth-adapted-sd1.5"
VAE_MSE = "stabilityai/sd-vae-ft-mse"
CN_LANDMARKS = "CrucibleAI/ControlNetMediaPipeFace"
CN_NORMAL = "lllyasviel/control_v11p_sd15_normalbae"
CN_CANNY = "lllyasviel/control_v11p_sd15_canny"
IP_ADAPTER = "h94/IP-Adapter-FaceID"
LANDMARKS_SUBFOLDER = "diffusion_sd15"

FIELDS: dict[str, str] = {
    "base": SD15, "texture_base": REALISTIC_VISION, "normal_sd": NORMAL_SD, "depth_sd": DEPTH_SD,
    "texture_vae": VAE_MSE, "controlnet_landmarks": CN_LANDMARKS, "controlnet_normal": CN_NORMAL,
    "controlnet_canny": CN_CANNY, "ip_adapter": IP_ADAPTER,
}
"""`ModelsConfig` field → the public repository it names."""
PRESET_FIELDS = frozenset({*FIELDS, "arcface"})
"""`ModelsConfig` fields the random-full preset replaces (`random_full_config`)."""


# ----------------------------------------------------------------------------- real-size builders
SD15_UNET: dict[str, Any] = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8,
)
"""stable-diffusion-v1-5 unet/config.json."""
SD15_VAE: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, act_fn="silu",
    norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
)
"""stable-diffusion-v1-5 vae/config.json."""
CLIP_L_TEXT: dict[str, Any] = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5,
)
"""openai/clip-vit-large-patch14's text model (stable-diffusion-v1-5 text_encoder/config.json)."""
SD15_SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1,
)
"""stable-diffusion-v1-5 scheduler/scheduler_config.json (PNDMScheduler)."""
SD21_CONTROLNET: dict[str, Any] = dict(cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)
"""How the SD2.1 ControlNet at the root of ControlNetMediaPipeFace differs from the SD1.5 one."""
IP_HIDDEN, IP_TOKENS, ID_DIM = 1024, 16, 512
"""IP-Adapter-FaceID portrait: ArcFace 512 → 1024 → 16 tokens."""


def sd15_unet() -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**SD15_UNET)


def sd15_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(**SD15_VAE)


def clip_l_text_encoder(tokenizer: Any) -> Any:
    """CLIP-L's text transformer; the embedding keeps 49408 rows (shapes and FLOPs of the real one)
    while bos/eos/pad are the stand-in tokenizer's ids."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(**CLIP_L_TEXT, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.eos_token_id)
    return CLIPTextModel(config)


def sd15_scheduler() -> Any:
    from diffusers import PNDMScheduler

    return PNDMScheduler(**SD15_SCHEDULER)


def random_controlnet(unet: Any) -> Any:
    """``ControlNetModel.from_unet`` (conditioning 16/32/96/256) with small random zero-convolutions,
    so that the control image changes the residuals (as `tiny_builders.tiny_controlnet`)."""
    from diffusers import ControlNetModel

    net = ControlNetModel.from_unet(unet)
    for conv in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]:
        torch.nn.init.normal_(conv.weight, std=0.02)
    return net


def ip_adapter_portrait(unet: Any, hidden: int = IP_HIDDEN, tokens: int = IP_TOKENS) -> dict[str, dict[str, torch.Tensor]]:
    """IP-Adapter-FaceID portrait weights for ``unet`` (512 → hidden → tokens × D), h94 naming."""
    return tb.ip_adapter_weights(unet, hidden, tokens)


@dataclass(frozen=True)
class Builders:
    """What the layout writer builds each model with: the real sizes (`FULL`) or, in tests, tiny ones (`TINY`)."""

    unet: Callable[[], Any]
    vae: Callable[[], Any]
    tokenizer: Callable[[], Any]
    text_encoder: Callable[[Any], Any]
    scheduler: Callable[[], Any]
    controlnet: Callable[[Any], Any]
    ip_adapter: Callable[[Any], dict[str, dict[str, torch.Tensor]]]
    arcface: Callable[[Path, int], None]
    sd21_controlnet: dict[str, Any]


FULL = Builders(sd15_unet, sd15_vae, tb.tiny_tokenizer, clip_l_text_encoder, sd15_scheduler, random_controlnet,
                ip_adapter_portrait, tb.tiny_arcface_onnx, SD21_CONTROLNET)
TINY = Builders(tb.tiny_unet, tb.tiny_vae, tb.tiny_tokenizer,
                lambda tok: tb.tiny_text_encoder(len(tok), tok.bos_token_id, tok.eos_token_id), sd15_scheduler,
                tb.tiny_controlnet, ip_adapter_portrait, tb.tiny_arcface_onnx,
                dict(cross_attention_dim=2 * tb.CROSS_DIM, use_linear_projection=True))
"""Tiny models through the same writer (tests): the layouts and the conversion, in seconds."""


# ----------------------------------------------------------------------------- layouts
def repo_dir(root: Path, repo: str, kind: str = "hub") -> Path:
    """``root/<kind>/<owner>--<name>`` (kind ``hub``: the public layouts)."""
    return root / kind / repo.replace("/", "--")


def link_tree(src: Path, dst: Path) -> None:
    """An independent file tree at ``dst`` whose files are hard links to ``src``'s (copies where linking fails)."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def write_model_index(folder: Path) -> None:
    """SD1.5's model_index.json (no safety checker or feature extractor: the fit loads neither)."""
    index = {
        "_class_name": "StableDiffusionPipeline",
        "feature_extractor": [None, None],
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def save_clip_tokenizer(tokenizer: Any, folder: Path) -> None:
    """The four files of SD1.5's tokenizer/ (vocab.json, merges.txt, special_tokens_map.json,
    tokenizer_config.json) for ``tokenizer``'s vocabulary and merges (none for the byte-level stand-in)."""
    folder.mkdir(parents=True, exist_ok=True)
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"].get("merges") or []
    (folder / "vocab.json").write_text(json.dumps(tokenizer.get_vocab(), ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{' '.join(m) if isinstance(m, list) else m}\n" for m in merges))
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": tokenizer.model_max_length, "do_lower_case": True,
              "errors": "replace", "add_prefix_space": False, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def save_module(module: Any, folder: Path, weights: str, *, half: bool = False) -> None:
    """``module``'s config.json and its state dict as ``folder/weights`` (safetensors, or torch.save for ``.bin``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(module, "save_config"):
        module.save_config(folder)
    else:
        module.config.save_pretrained(folder)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in module.state_dict().items()}
    if weights.endswith(".safetensors"):
        save_file(state, str(folder / weights), metadata={"format": "pt"})
    else:
        torch.save(state, folder / weights)


class Progress:
    """Logs each part of the (minutes-long) first build with its time."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()

    def __call__(self, what: str) -> None:
        now = time.perf_counter()
        log.info("random-full: %s (%.0f s, %.0f s in all)", what, now - self.last, now - self.start)
        self.last = now


def write_layouts(root: Path, builders: Builders = FULL, seed: int = SEED) -> None:
    """Every public repository's tree under ``root/hub`` (see the module docstring), seeded."""
    step = Progress()
    torch.manual_seed(seed)
    sd15, normal, depth = repo_dir(root, SD15), repo_dir(root, NORMAL_SD), repo_dir(root, DEPTH_SD)
    for folder in (sd15, normal):
        write_model_index(folder)
    tokenizer = builders.tokenizer()
    text_encoder = builders.text_encoder(tokenizer)
    for folder in (sd15, normal):
        save_clip_tokenizer(tokenizer, folder / "tokenizer")
        builders.scheduler().save_pretrained(folder / "scheduler")
    save_module(text_encoder, sd15 / "text_encoder", "model.safetensors")
    save_module(text_encoder, normal / "text_encoder", "pytorch_model.bin")
    del text_encoder
    step("text encoder written")
    vae = builders.vae()
    save_module(vae, sd15 / "vae", "diffusion_pytorch_model.safetensors")
    save_module(vae, normal / "vae", "diffusion_pytorch_model.bin")
    del vae
    step("VAE written")
    unet = builders.unet()
    step(f"UNet built ({sum(p.numel() for p in unet.parameters()) / 1e6:.1f}M parameters)")
    save_module(unet, sd15 / "unet", "diffusion_pytorch_model.safetensors")
    save_module(unet, normal / "unet", "diffusion_pytorch_model.bin")
    step("UNet written")
    link_tree(sd15, repo_dir(root, REALISTIC_VISION))
    link_tree(normal, depth)
    link_tree(sd15 / "vae", repo_dir(root, VAE_MSE))
    ip_dir = repo_dir(root, IP_ADAPTER)
    ip_dir.mkdir(parents=True)
    torch.save(builders.ip_adapter(unet), ip_dir / IP_WEIGHT)
    controlnet = builders.controlnet(unet)
    del unet
    step(f"ControlNet built ({sum(p.numel() for p in controlnet.parameters()) / 1e6:.1f}M parameters)")
    cn_normal, landmarks = repo_dir(root, CN_NORMAL), repo_dir(root, CN_LANDMARKS)
    save_module(controlnet, cn_normal, "diffusion_pytorch_model.safetensors")
    link_tree(cn_normal, repo_dir(root, CN_CANNY))
    save_module(controlnet, landmarks / LANDMARKS_SUBFOLDER, "diffusion_pytorch_model.bin")
    save_module(controlnet, landmarks / LANDMARKS_SUBFOLDER, "diffusion_pytorch_model.fp16.safetensors", half=True)
    write_sd21_root(landmarks, controlnet, builders.sd21_controlnet)
    del controlnet
    step("ControlNets written")
    (root / ARCFACE).parent.mkdir(parents=True)
    builders.arcface(root / ARCFACE, seed)


def write_sd21_root(folder: Path, controlnet: Any, overrides: dict[str, Any]) -> None:
    """The repository root's SD2.1 ControlNet config (validated by building it on the meta device) and an
    empty placeholder weights file: the fit loads only ``diffusion_sd15/``."""
    from diffusers import ControlNetModel

    with torch.device("meta"):
        sd21 = ControlNetModel.from_config({**controlnet.config, **overrides})
    sd21.save_config(folder)
    save_file({}, str(folder / "diffusion_pytorch_model.safetensors"),
              metadata={"headfit": "random-full placeholder: the SD2.1 ControlNet's weights are not written"})


def hub_config(root: Path, changed: dict[str, str] | None = None) -> ModelsConfig:
    """The config of a user whose models are the folders under ``root/hub`` (``changed``: fields set to
    other folders under ``root``, relative to it): landmark ControlNet in ``diffusion_sd15``, variant fp16."""
    fields: dict[str, Any] = {name: str(repo_dir(root, repo)) for name, repo in FIELDS.items()}
    fields |= {name: str(root / folder) for name, folder in (changed or {}).items()}
    return ModelsConfig(subfolders={"controlnet_landmarks": LANDMARKS_SUBFOLDER}, variants={"controlnet_landmarks": "fp16"},
                        ip_adapter_weight=IP_WEIGHT, arcface=str(root / ARCFACE), **fields)


def follow_check_models(root: Path) -> dict[str, str]:
    """Do what check-models asks of a user with these folders: run the conversion it prints for each
    pickle-only model (`sources.conversion_target`: a folder's next to it as ``<folder>-safetensors``, which
    the config must then name; the IP-Adapter's ``.safetensors`` next to its ``.bin``, found with no change).
    Returns the fields to change, relative to ``root``; raises when a model is still not loadable after it."""
    step = Progress()
    models, changed = hub_config(root), {}
    for name in FIELDS:
        spec = model_spec(models, name)
        check = check_model(spec, models)
        if check.state == "convert":
            assert check.path is not None
            target, then = conversion_target(spec, check.location)
            convert_weights(check.path, target)
            if then:  # "set models.<field>=<folder>": the converted model's root (the target less the subfolder)
                folder = target.parents[len(Path(spec.subfolder).parts) - 1] if spec.subfolder else target
                changed[name] = folder.relative_to(root).as_posix()
            step(f"{spec.describe()} converted")
    models = hub_config(root, changed)
    for name in FIELDS:
        check = check_model(model_spec(models, name), models)
        if not check.ok:
            raise RuntimeError(f"random-full: {name} is not loadable after conversion: {check.line()}")
    return changed


def build_random_full(root: Path, builders: Builders = FULL, seed: int = SEED) -> None:
    """The layouts, their conversion, and ``preset.json`` (the fields the conversion changed)."""
    write_layouts(root, builders, seed)
    changed = follow_check_models(root)
    (root / PRESET_JSON).write_text(json.dumps({"changed": changed}, indent=2) + "\n")


# ----------------------------------------------------------------------------- cache and config
def random_full_root() -> Path:
    """``$HEADFIT_CACHE/random-full/v1`` (``~/.cache/headfit`` when HEADFIT_CACHE is unset)."""
    return headfit_cache() / "random-full" / VERSION


def ensure_random_full_models(root: Path | None = None, builders: Builders = FULL) -> Path:
    """Build the layouts once (minutes, ~21 GB): in a scratch folder renamed into place with a
    ``complete`` marker, under a file lock so that concurrent runs wait for one build."""
    root = root or random_full_root()
    if (root / "complete").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / f".{root.name}.lock")):
        if (root / "complete").is_file():
            return root
        log.info("random-full: building every hero model at its real size in %s (once; minutes, ~21 GB)", root)
        scratch = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-building-"))
        try:
            with torch.random.fork_rng():
                build_random_full(scratch, builders)
            (scratch / "complete").write_text(VERSION)
            if root.exists():  # a damaged earlier build (no `complete` marker)
                shutil.rmtree(root, ignore_errors=True)
            os.rename(scratch, root)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return root


def random_full_config(models: ModelsConfig, root: Path | None = None, builders: Builders = FULL) -> ModelsConfig:
    """``models`` with every hero model field pointing into the random-full layouts (built if needed), as
    a user's config reads after following check-models (`follow_check_models`); the preset's fields lose
    any subfolder/variant the user gave them."""
    root = ensure_random_full_models(root, builders)
    preset = hub_config(root, json.loads((root / PRESET_JSON).read_text())["changed"])
    fields = {name: getattr(preset, name) for name in (*FIELDS, "ip_adapter_weight", "arcface")}
    subfolders = {k: v for k, v in models.subfolders.items() if k not in PRESET_FIELDS} | preset.subfolders
    variants = {k: v for k, v in models.variants.items() if k not in PRESET_FIELDS} | preset.variants
    return dataclasses.replace(models, preset="real", subfolders=subfolders, variants=variants, **fields)
