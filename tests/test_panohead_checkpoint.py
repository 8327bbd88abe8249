"""Reading the PanoHead checkpoint: restricted unpickling, key mapping, safetensors conversion."""

from __future__ import annotations

import builtins
import os
import pickle
import sys
import types
from collections import OrderedDict

import pytest
import torch
from torch import nn

from guidance.panohead import PanoHeadGenerator, UnsafePickleError, convert_checkpoint, generator_from_weights, load_generator, load_restricted, read_weights
from guidance.panohead.camera import average_label
from guidance.panohead.keys import our_key
from guidance.panohead.tiny import TINY_KWARGS, tiny_generator
from guidance.panohead.unpickle import PersistentRecord, extract_network


pytestmark = pytest.mark.usefixtures("one_thread")


class EasyDict(dict):
    """Plays dnnlib.util.EasyDict when pickling."""


def _never_called(meta):  # the persistence loader: must never run when we read the pickle
    raise AssertionError("the restricted unpickler called the persistence reconstruct function")


class Persistent:
    """Pickles as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``, as the library does."""

    def __init__(self, class_name: str, state: dict, module_src: str = "import os\nos.system('echo pwned')\n"):
        self.meta = dict(type="class", version=4, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self):
        return (_never_called, (self.meta,))


def install_fake_modules(monkeypatch) -> None:
    """Make `pickle` write the library's global names for our stand-ins."""
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _never_called
    _never_called.__module__, _never_called.__qualname__ = "torch_utils.persistence", "_reconstruct_persistent_obj"
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = EasyDict
    EasyDict.__module__ = "dnnlib.util"
    for name, module in (("torch_utils", types.ModuleType("torch_utils")), ("torch_utils.persistence", persistence),
                         ("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.util", util)):
        monkeypatch.setitem(sys.modules, name, module)


def as_persistent(module: nn.Module, extra_buffers: bool = True):
    """The module tree as persistence records; Sequential/Softplus stay ordinary torch objects."""
    children = OrderedDict((name, as_persistent(child, extra_buffers)) for name, child in module._modules.items())
    if isinstance(module, (nn.Sequential, nn.Softplus)):
        copy = type(module)()
        copy.__dict__["_modules"] = children
        return copy
    buffers = OrderedDict(module._buffers)
    if extra_buffers and hasattr(module, "affine"):
        buffers["resample_filter"] = torch.ones(4, 4) / 16  # the official layers carry their FIR filter
    state = {"_parameters": OrderedDict(module._parameters), "_buffers": buffers, "_modules": children,
             "_init_args": (), "_init_kwargs": EasyDict(), "training": False}
    return Persistent(type(module).__name__, state)


def persistence_pickle(generator: PanoHeadGenerator, monkeypatch) -> bytes:
    """A network-snapshot-style pickle {'G', 'D', 'G_ema', ...} around `generator`."""
    install_fake_modules(monkeypatch)
    top = as_persistent(generator)
    top.meta["class_name"] = "TriPlaneGenerator"
    top.meta["state"]["_init_kwargs"] = EasyDict(TINY_KWARGS, rendering_kwargs=EasyDict(TINY_KWARGS["rendering_kwargs"]))
    t_mapping = Persistent("MappingNetwork", {"_parameters": OrderedDict(w=nn.Parameter(torch.zeros(3, 16))), "_buffers": OrderedDict(), "_modules": OrderedDict()})
    top.meta["state"]["_modules"]["t_mapping"] = t_mapping
    data = {"G": top, "D": Persistent("MaskDualDiscriminatorV2", {}), "G_ema": top, "augment_pipe": None,
            "training_set_kwargs": EasyDict(resolution=64)}
    return pickle.dumps(data, protocol=4)


# Parameter names of the official TriPlaneGenerator (public PanoHead/EG3D source naming).
OFFICIAL_KEYS = [
    "G_ema.backbone.mapping.embed.weight", "G_ema.backbone.mapping.fc0.weight", "G_ema.backbone.mapping.fc1.bias",
    "G_ema.backbone.mapping.w_avg", "G_ema.backbone.synthesis.b4.const", "G_ema.backbone.synthesis.b4.conv1.affine.weight",
    "G_ema.backbone.synthesis.b8.conv0.weight", "G_ema.backbone.synthesis.b8.conv0.noise_const",
    "G_ema.backbone.synthesis.b8.conv0.noise_strength", "G_ema.backbone.synthesis.b32.torgb.affine.bias",
    "G_ema.decoder.net.0.weight", "G_ema.decoder.net.2.bias", "G_ema.superresolution.block0.conv0.affine.weight",
    "G_ema.superresolution.block1.torgb.weight", "G_ema.torgb.weight", "G_ema.bcg_synthesis.b4.const",
]


def render(generator, seed: int = 1) -> torch.Tensor:
    c = average_label()[None]
    with torch.no_grad():
        ws = generator.mapping(torch.randn(1, 16, generator=torch.Generator().manual_seed(seed)), c)
        return generator.synthesis(ws, c)["image"]


def test_official_key_names_map_onto_our_modules():
    ours = tiny_generator().state_dict()
    for key in OFFICIAL_KEYS:
        assert our_key(key) in ours, key
    assert our_key("G_ema.t_mapping.fc0.weight") is None
    assert our_key("G_ema.backbone.synthesis.b8.conv0.resample_filter") is None


def test_persistence_pickle_yields_tensors_and_hyperparameters(monkeypatch):
    generator = tiny_generator()
    data = load_restricted(persistence_pickle(generator, monkeypatch))
    assert isinstance(data["G_ema"], PersistentRecord) and data["G_ema"].class_name == "TriPlaneGenerator"
    weights = extract_network(data)
    assert weights.init_kwargs["rendering_kwargs"]["triplane_depth"] == 3
    assert "backbone.synthesis.b8.conv0.resample_filter" in weights.state
    loaded = generator_from_weights(weights)
    assert torch.equal(render(loaded), render(generator))


def test_safetensors_conversion_round_trip(monkeypatch, tmp_path):
    generator = tiny_generator(seed=3)
    pkl = tmp_path / "panohead.pkl"
    pkl.write_bytes(persistence_pickle(generator, monkeypatch))
    out = tmp_path / "panohead.safetensors"
    convert_checkpoint(pkl, out)
    assert read_weights(out).init_kwargs == read_weights(pkl).init_kwargs
    assert torch.equal(render(load_generator(out)), render(generator))


def test_checkpoint_that_does_not_fit_is_a_clear_error(monkeypatch):
    weights = extract_network(load_restricted(persistence_pickle(tiny_generator(), monkeypatch)))
    del weights.state["decoder.net.0.weight"]
    with pytest.raises(ValueError, match="missing.*decoder.net.0.weight"):
        generator_from_weights(weights)


class SystemCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [SystemCall, EvalCall])
def test_code_running_pickles_are_refused_before_anything_runs(payload, tmp_path):
    marker = tmp_path / "ran"
    data = pickle.dumps({"G_ema": payload(marker)}, protocol=4)
    with pytest.raises(UnsafePickleError, match="refusing to load global (posix|os|nt|builtins)"):
        load_restricted(data)
    assert not marker.exists()


def test_code_hidden_inside_a_persistent_state_is_refused(monkeypatch, tmp_path):
    install_fake_modules(monkeypatch)
    marker = tmp_path / "ran"
    data = pickle.dumps({"G_ema": Persistent("TriPlaneGenerator", {"_parameters": {"w": SystemCall(marker)}})}, protocol=2)
    with pytest.raises(UnsafePickleError):
        load_restricted(data)
    assert not marker.exists()


def test_unknown_classes_are_refused():
    data = pickle.dumps(torch.nn.Linear(2, 2).__class__, protocol=4)  # a class reference outside torch.nn.modules data
    assert load_restricted(data).__name__ == "Linear"  # torch.nn.modules classes become inert records
    with pytest.raises(UnsafePickleError, match="collections.Counter"):
        load_restricted(pickle.dumps(__import__("collections").Counter(a=1)))


def test_run_py_convert_panohead(monkeypatch, tmp_path, capsys):
    from fitter.cli import main

    pkl = tmp_path / "panohead.pkl"
    pkl.write_bytes(persistence_pickle(tiny_generator(), monkeypatch))
    assert main(["convert-panohead", str(pkl), str(tmp_path / "out.safetensors")]) == 0
    assert read_weights(tmp_path / "out.safetensors").class_name == "TriPlaneGenerator"
    assert main(["convert-panohead", str(tmp_path / "missing.pkl"), str(tmp_path / "x.safetensors")]) == 2
    assert "cannot convert the PanoHead checkpoint" in capsys.readouterr().err
