"""Our implementation of the PanoHead generator (tri-grid EG3D), loading the official checkpoint
without executing it (`unpickle`), its one-time safetensors conversion (`convert`) and the
perceptual loss used for GAN inversion (`perceptual`)."""

from guidance.panohead.camera import camera_label, world_scale
from guidance.panohead.convert import convert_checkpoint, read_weights
from guidance.panohead.errors import CheckpointError, PickleLimitError
from guidance.panohead.generator import GeneratorConfig, PanoHeadGenerator
from guidance.panohead.keys import generator_from_weights, load_generator, load_state
from guidance.panohead.unpickle import NetworkWeights, UnsafePickleError, extract_network, load_restricted

__all__ = [
    "CheckpointError",
    "GeneratorConfig",
    "NetworkWeights",
    "PanoHeadGenerator",
    "PickleLimitError",
    "UnsafePickleError",
    "camera_label",
    "convert_checkpoint",
    "extract_network",
    "generator_from_weights",
    "load_generator",
    "load_restricted",
    "load_state",
    "read_weights",
    "world_scale",
]
