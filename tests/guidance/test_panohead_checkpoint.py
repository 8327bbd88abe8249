"""Reading the PanoHead checkpoint: restricted unpickling, key mapping, safetensors conversion, and
every way a file or an output location can be wrong (one ValueError/UserError line each, bounded work)."""

from __future__ import annotations

import errno
import os
import pickle
import time

import numpy as np
import pytest
import torch

from common.errors import MissingModelError
from guidance.panohead import (
    PanoHeadGenerator,
    UnsafePickleError,
    convert_checkpoint,
    generator_from_weights,
    load_generator,
    load_restricted,
    read_weights,
)
from guidance.panohead.camera import average_label
from guidance.panohead.convert import save_safetensors
from guidance.panohead.errors import CheckpointError, OutputLocationError, PickleLimitError
from guidance.panohead.keys import our_key
from guidance.panohead.pickle_vm import PickleLimits
from guidance.panohead.tiny import TINY_KWARGS, tiny_generator
from guidance.panohead.unpickle import (
    NetworkWeights,
    PersistentRecord,
    _rebuild_tensor,
    _Storage,
    extract_network,
    flatten_state,
    plain,
)
from tests import panohead_pickles as pk

pytestmark = pytest.mark.usefixtures("one_thread")

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


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


def test_official_key_names_map_onto_our_modules():
    ours = tiny_generator().state_dict()
    for key in OFFICIAL_KEYS:
        assert our_key(key) in ours, key
    assert our_key("G_ema.t_mapping.fc0.weight") is None
    assert our_key("G_ema.backbone.synthesis.b8.conv0.resample_filter") is None


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_persistence_pickle_yields_tensors_and_hyperparameters(protocol):
    generator = tiny_generator()
    data = load_restricted(pk.persistence_pickle(generator, protocol))
    assert isinstance(data["G_ema"], PersistentRecord) and data["G_ema"].class_name == "TriPlaneGenerator"
    weights = extract_network(data)
    assert weights.init_kwargs["rendering_kwargs"]["triplane_depth"] == 3
    assert "backbone.synthesis.b8.conv0.resample_filter" in weights.state
    loaded = generator_from_weights(weights)
    assert torch.equal(render(loaded), render(generator))


def test_numpy_values_and_views_survive():
    kwargs = pk.tiny_kwargs()
    kwargs["rendering_kwargs"]["box_warp"] = np.float32(1.0)
    record = pk.g_ema(kwargs)
    base = torch.arange(12.0)
    record.meta["state"]["_buffers"]["view"] = base[2:8].view(2, 3)
    record.meta["state"]["_buffers"]["array"] = torch.from_numpy(np.arange(4, dtype=np.int64))
    weights = extract_network(load_restricted(pk.dumps(pk.snapshot(record))))
    assert weights.init_kwargs["rendering_kwargs"]["box_warp"] == 1.0 and type(weights.init_kwargs["rendering_kwargs"]["box_warp"]) is float
    assert torch.equal(weights.state["view"], base[2:8].view(2, 3)) and weights.state["view"].is_contiguous()
    assert torch.equal(weights.state["array"], torch.arange(4))
    assert load_restricted(pickle.dumps({"a": np.arange(3.0), "s": {"x", "y"}, "f": frozenset([1])}, protocol=2))["s"] == {"x", "y"}


def test_safetensors_conversion_round_trip(tmp_path):
    generator = tiny_generator(seed=3)
    pkl = tmp_path / "panohead.pkl"
    pkl.write_bytes(pk.persistence_pickle(generator))
    out = tmp_path / "sub" / "panohead.safetensors"
    convert_checkpoint(pkl, out)
    assert read_weights(out).init_kwargs == read_weights(pkl).init_kwargs
    assert torch.equal(render(load_generator(out)), render(generator))
    assert sorted(p.name for p in out.parent.iterdir()) == ["panohead.safetensors"]  # no temporary left


def test_checkpoint_that_does_not_fit_is_a_clear_error():
    weights = extract_network(load_restricted(pk.persistence_pickle()))
    del weights.state["decoder.net.0.weight"]
    with pytest.raises(ValueError, match="missing.*decoder.net.0.weight"):
        generator_from_weights(weights)


@pytest.mark.parametrize("change, fragment", [
    ({"z_dim": 10 ** 9}, "z_dim"),
    ({"mapping_kwargs": {"num_layers": 10 ** 6}}, "num_layers"),
    ({"img_resolution": "big"}, "img_resolution"),
    ({"rendering_kwargs": dict(TINY_KWARGS["rendering_kwargs"], box_warp="wide")}, "box_warp"),
    ({"rendering_kwargs": dict(TINY_KWARGS["rendering_kwargs"], superresolution_module="x.Unknown")}, "super-resolution"),
    ({"img_resolution": 96}, "power of two"),
    ({"w_dim": 32}, "does not fit"),  # a valid but different size: refused on the meta device, nothing allocated
])
def test_hyperparameters_are_checked_before_building(change, fragment):
    weights = NetworkWeights("TriPlaneGenerator", dict(TINY_KWARGS, **change), tiny_generator().state_dict())
    with pytest.raises(CheckpointError, match=fragment) as info:
        generator_from_weights(weights)
    one_line(info)


def test_code_running_pickles_are_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"
    for data in (pk.system_call(marker), pk.eval_call(marker)):
        with pytest.raises(UnsafePickleError, match="refusing to load global (posix|os|nt|builtins)") as info:
            load_restricted(data)
        assert isinstance(info.value, (ValueError, MissingModelError))
    with pytest.raises(UnsafePickleError):
        load_restricted(pk.code_inside_state(marker))
    assert not marker.exists()


def test_unknown_classes_are_refused():
    data = pickle.dumps(torch.nn.Linear(2, 2).__class__, protocol=4)  # a class reference outside torch.nn.modules data
    assert load_restricted(data).__name__ == "Linear"  # torch.nn.modules classes become inert records
    with pytest.raises(UnsafePickleError, match="collections.Counter"):
        load_restricted(pickle.dumps(__import__("collections").Counter(a=1)))


GOOD = None


def good_pickle() -> bytes:
    global GOOD
    if GOOD is None:
        GOOD = pk.persistence_pickle()
    return GOOD


@pytest.mark.parametrize("name, make, fragment", [
    ("empty", lambda: b"", "is empty"),
    ("text", lambda: b"a text file\n", "not a network pickle"),
    ("png", lambda: b"\x89PNG\r\n\x1a\n" + bytes(64), "not a network pickle"),
    ("protocol 0", lambda: pickle.dumps({"G_ema": 1}, protocol=0), "not a network pickle"),
    ("header only", lambda: b"\x80\x04", "truncated"),
    ("cut at a third", lambda: good_pickle()[: len(good_pickle()) // 3], "truncated"),
    ("cut before STOP", lambda: good_pickle()[:-1], "truncated"),
    ("garbage opcodes", lambda: b"\x80\x04" + bytes(range(256)), "not a readable network pickle"),
    ("flipped bytes", lambda: good_pickle()[:200] + bytes(b ^ 0x5A for b in good_pickle()[200:400]) + good_pickle()[400:], ""),
    ("self-referential list", pk.self_referential_list, "no persistent network"),
    ("cyclic modules", pk.cyclic_modules, "contains itself"),
    ("cyclic hyper-parameters", pk.cyclic_kwargs, "contains itself"),
    ("not a network", lambda: pickle.dumps({"G_ema": [1, 2]}, protocol=4), "no persistent network"),
])
def test_malformed_checkpoints_are_one_line_errors(tmp_path, name, make, fragment):
    path = tmp_path / "bad.pkl"
    path.write_bytes(make())
    with pytest.raises(CheckpointError, match=fragment or None) as info:
        read_weights(path)
    one_line(info)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MissingModelError)


@pytest.mark.parametrize("make, fragment", [
    (pk.laughs_in_kwargs, "max_kwargs_items"),
    (pk.laughs_in_modules, "max_modules"),
    (pk.hash_bomb, "max_key_items"),
    (pk.set_bomb, "max_key_items"),
    (pk.memo_bomb, "max_memo"),
    (pk.blob_reuse, "tensor data"),
    (pk.deep_marks, "max_nesting"),
    (pk.expanded_tensor, "tensors add up to more than"),
], ids=lambda item: getattr(item, "__name__", None) or str(item))
def test_billion_laughs_are_refused_quickly(tmp_path, make, fragment):
    path = tmp_path / "laughs.pkl"
    path.write_bytes(make())
    start = time.perf_counter()
    with pytest.raises(PickleLimitError, match=fragment) as info:
        read_weights(path)
    assert time.perf_counter() - start < 5.0
    assert "PickleLimits" in one_line(info) or "file" in str(info.value)


def test_every_limit_is_enforced_and_named():
    cases = [
        (pk.long_run(1000), PickleLimits(max_opcodes=500), "max_opcodes"),
        (pk.persistence_pickle(), PickleLimits(max_file_bytes=100), "max_file_bytes"),
        (pickle.dumps(list(range(1000))), PickleLimits(max_elements=100), "max_elements"),
        (pickle.dumps([2 ** 20000]), PickleLimits(), "max_int_bytes"),
        (pickle.dumps(list(range(10))), PickleLimits(max_memo=0), "max_memo"),
    ]
    for data, limits, fragment in cases:
        with pytest.raises(PickleLimitError, match=fragment):
            load_restricted(data, limits)
    record = load_restricted(pk.persistence_pickle())["G_ema"]
    for limits, fragment in ((PickleLimits(max_depth=2), "max_depth"), (PickleLimits(max_tensors=10), "max_tensors"),
                             (PickleLimits(max_modules=5), "max_modules")):
        with pytest.raises(PickleLimitError, match=fragment):
            flatten_state(record, limits=limits)
    with pytest.raises(PickleLimitError, match="max_kwargs_items"):
        plain(record.init_kwargs, PickleLimits(max_kwargs_items=5))


def test_walks_refuse_cycles_and_depth():
    loop: dict = {}
    loop["again"] = [loop]
    with pytest.raises(CheckpointError, match=r"init_kwargs.again\[0\] contains itself"):
        plain(loop)
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(PickleLimitError, match="max_depth"):
        plain(deep)
    with pytest.raises(CheckpointError, match="not plain data"):
        plain({"device": torch.zeros(3)})


def test_a_tensor_must_stay_inside_its_storage():
    storage = _Storage(torch.arange(4.0))
    assert torch.equal(_rebuild_tensor(storage, 1, (3,), (1,)), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(CheckpointError, match="reaches past its storage"):
        _rebuild_tensor(storage, 2, (3,), (1,))
    with pytest.raises(CheckpointError, match="non-negative"):
        _rebuild_tensor(storage, 0, (2,), (-1,))


def test_converted_file_damage_is_one_line(tmp_path):
    out = tmp_path / "p.safetensors"
    save_safetensors(NetworkWeights("TriPlaneGenerator", TINY_KWARGS, tiny_generator().state_dict()), out)
    out.write_bytes(out.read_bytes()[:1000])
    with pytest.raises(MissingModelError, match="cannot read") as info:
        read_weights(out)
    assert isinstance(info.value, ValueError) and one_line(info)
    folder = tmp_path / "dir.pkl"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="is not a file"):
        read_weights(folder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_weights(tmp_path / "none.pkl")


def output_cases(tmp_path, source):
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    link = tmp_path / "link.safetensors"
    link.symlink_to(source)
    return [(source, "is the source"), (link, "is the source"), (folder, "is a folder"),
            (blocker / "sub" / "p.safetensors", "is not a folder"), (tmp_path / "p.pkl", "must end in .safetensors")]


def test_unusable_outputs_are_refused_before_reading(tmp_path):
    source = tmp_path / "src.safetensors"  # named like an output, so DST == SRC passes the suffix rule
    source.write_bytes(pk.persistence_pickle())
    before = source.read_bytes()
    for out, fragment in output_cases(tmp_path, source):
        with pytest.raises(OutputLocationError, match=fragment) as info:
            convert_checkpoint(source, out)
        assert isinstance(info.value, ValueError) and one_line(info)
    assert source.read_bytes() == before and not (tmp_path / "p.pkl").exists()


def test_a_failed_write_leaves_no_partial_output(tmp_path, monkeypatch):
    from common import atomic

    source = tmp_path / "src.pkl"
    source.write_bytes(pk.persistence_pickle())
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous conversion")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OutputLocationError, match="No space left") as info:
        convert_checkpoint(source, out)
    one_line(info)
    assert out.read_bytes() == b"previous conversion"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors", "src.pkl"]


def test_run_py_convert_panohead(tmp_path, capsys):
    from fitter.cli import main

    pkl = tmp_path / "panohead.pkl"
    pkl.write_bytes(pk.persistence_pickle())
    assert main(["convert-panohead", str(pkl), str(tmp_path / "out.safetensors")]) == 0
    assert read_weights(tmp_path / "out.safetensors").class_name == "TriPlaneGenerator"
    assert main(["convert-panohead", str(tmp_path / "missing.pkl"), str(tmp_path / "x.safetensors")]) == 2
    assert "cannot convert the PanoHead checkpoint" in capsys.readouterr().err
    pkl.write_bytes(pk.system_call(tmp_path / "ran"))
    assert main(["convert-panohead", str(pkl), str(tmp_path / "y.safetensors")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot convert") and "refusing to load global" in err[0]
    assert not (tmp_path / "ran").exists() and not (tmp_path / "y.safetensors").exists()


def test_generator_is_built_from_a_checkpoint():
    assert isinstance(generator_from_weights(extract_network(load_restricted(pk.persistence_pickle()))), PanoHeadGenerator)
