"""Tiny random stand-ins for every hero model, built in code (seeded) and saved in the real layouts.

Sizes: CLIP text width 32 (cross-attention 32), UNet channels (16, 32), VAE ×2 downsampling
(so a 32² image has 16² latents), ControlNet conditioning ×2 to match, IP-Adapter-FaceID 512 → 512
→ 16 tokens × 32, ArcFace ONNX 112² → 512. Everything goes through ``save_pretrained``/safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CROSS_DIM = 32
UNET_CHANNELS = (16, 32)
VAE_CHANNELS = (16, 32)
ID_DIM = 512
ID_TOKENS = 16
MAX_TOKENS = 77


def tiny_tokenizer():
    """A byte-level CLIP tokenizer with no merges: every character is one token (514 tokens)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab.update({c + "</w>": len(alphabet) + i for i, c in enumerate(alphabet)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


def tiny_text_encoder(vocab_size: int, bos: int, eos: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(vocab_size=vocab_size, hidden_size=CROSS_DIM, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=CROSS_DIM,
                            bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    return CLIPTextModel(config)


def tiny_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=UNET_CHANNELS,
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=CROSS_DIM,
                                attention_head_dim=8, norm_num_groups=8)


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=VAE_CHANNELS, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=8, sample_size=32)


def tiny_controlnet(unet):
    """A ControlNet from the tiny UNet with ×2 conditioning downsampling; its zero-initialised
    output convolutions get small random weights so that the control image changes the residuals."""
    from diffusers import ControlNetModel

    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    zero_init = list(net.controlnet_down_blocks) + [net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]
    for conv in zero_init:
        torch.nn.init.normal_(conv.weight, std=0.05)
    return net


def tiny_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False)


def tiny_ip_adapter(unet) -> dict[str, dict[str, torch.Tensor]]:
    """IP-Adapter-FaceID weights for the tiny ``unet`` in the original (h94) naming."""
    return ip_adapter_weights(unet, ID_DIM, ID_TOKENS)


def ip_adapter_weights(unet, hidden: int, tokens: int) -> dict[str, dict[str, torch.Tensor]]:
    """Random IP-Adapter-FaceID weights for ``unet`` in the h94 naming: ``image_proj`` proj.0 (ID_DIM →
    hidden), proj.2 (hidden → tokens·D), norm (D); ``ip_adapter`` ``{k}.to_k_ip/.to_v_ip.weight`` (inner, D)
    for the k-th cross-attention processor, k = 1, 3, 5, … (D: the UNet's cross-attention width)."""
    cross = int(unet.config.cross_attention_dim)
    image_proj = {
        "proj.0.weight": torch.randn(hidden, ID_DIM) * ID_DIM**-0.5,
        "proj.0.bias": torch.zeros(hidden),
        "proj.2.weight": torch.randn(tokens * cross, hidden) * hidden**-0.5,
        "proj.2.bias": torch.zeros(tokens * cross),
        "norm.weight": torch.ones(cross),
        "norm.bias": torch.zeros(cross),
    }
    layers, key = {}, 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            inner = unet.get_submodule(name.removesuffix(".processor")).to_k.out_features
            layers[f"{key}.to_k_ip.weight"] = torch.randn(inner, cross) * cross**-0.5
            layers[f"{key}.to_v_ip.weight"] = torch.randn(inner, cross) * cross**-0.5
            key += 2
    return {"image_proj": image_proj, "ip_adapter": layers}


def tiny_arcface_onnx(path: Path, seed: int) -> None:
    """A valid ArcFace-shaped ONNX model: (N, 3, 112, 112) → (N, 512), via 16×16 average pooling
    and one dense layer; insightface's model router recognises it as a recognition model."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array((rng.standard_normal((147, ID_DIM)) / 12).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(ID_DIM, np.float32), "b")
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w", "b"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", ID_DIM])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_model_index(folder: Path) -> None:
    """The ``model_index.json`` a StableDiffusionPipeline folder has (the registry probes for it)."""
    index = {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def tiny_marigold_normals(folder: Path, seed: int = 0) -> Path:
    """A tiny random Marigold normals pipeline saved in ``folder`` (diffusers `MarigoldNormalsPipeline`
    layout, safetensors): a UNet on 8 input channels (image latent ⊕ normals latent), the tiny VAE
    (×2, so processing resolutions must be even), the tiny CLIP text encoder/tokenizer for the empty
    prompt, and a v-prediction DDIM scheduler with trailing timesteps as prs-eth/marigold-normals-v1-1
    has; 2 default denoising steps at a default processing resolution of 32."""
    from diffusers import DDIMScheduler, MarigoldNormalsPipeline, UNet2DConditionModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        tokenizer = tiny_tokenizer()
        unet = UNet2DConditionModel(sample_size=16, in_channels=8, out_channels=4, block_out_channels=UNET_CHANNELS,
                                    layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=CROSS_DIM,
                                    attention_head_dim=8, norm_num_groups=8)
        scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction",
                                  timestep_spacing="trailing", rescale_betas_zero_snr=False)
        pipe = MarigoldNormalsPipeline(unet=unet, vae=tiny_vae(), scheduler=scheduler,
                                       text_encoder=tiny_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id),
                                       tokenizer=tokenizer, prediction_type="normals", use_full_z_range=True,
                                       default_denoising_steps=2, default_processing_resolution=32)
        pipe.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]  # diffusers' lazy import hides it
    return folder
