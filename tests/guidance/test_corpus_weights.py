"""Error corpus, weight files: every way `run.py convert-panohead` can fail, `run.py convert-weights` refusals (bad, hostile, self-referential
and "billion laughs" pickles; outputs that cannot or must not be written), the same checkpoints given
to a fit as `models.panohead`, and pickled LPIPS weights without `models.allow_pickle` (see tests/corpus.py)."""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch

from guidance.panohead.convert import save_safetensors
from guidance.panohead.tiny import TINY_KWARGS, tiny_generator
from guidance.panohead.unpickle import NetworkWeights
from tests import panohead_pickles as pk
from tests.corpus import EXAMPLE, PREVIEW, Case, run_case
from tests.helpers import REPO_ROOT

LOW_RESOLUTION = ("low resolution",)  # the example photo's documented intake warning
CHEAP_GAN = ("init.kind=gan_inversion", "init.gan.projection_steps=2", "init.gan.tuning_steps=1", "init.gan.w_avg_samples=10",
             "init.gan.neural_rendering_resolution=16", "init.gan.mesh_resolution=40", "init.gan.sdf_resolution=32",
             "init.gan.normal_views=2", "init.gan.normal_size=32")


def convert(make_source: Callable[[Path], bytes] | None, out: str = "out.safetensors", source: str = "src.pkl"):
    """convert-panohead SOURCE OUT, SOURCE holding make_source's bytes (None: not created)."""
    def build(folder: Path) -> list[str]:
        if make_source is not None:
            (folder / source).write_bytes(make_source(folder))
        return ["convert-panohead", source, out]

    return build


def output_case(prepare: Callable[[Path], str], source: str = "src.safetensors"):
    """A good checkpoint, and an output that `prepare` sets up and names."""
    def build(folder: Path) -> list[str]:
        (folder / source).write_bytes(good())
        return ["convert-panohead", source, prepare(folder)]

    return build


_GOOD: list[bytes] = []


def good() -> bytes:
    if not _GOOD:
        _GOOD.append(pk.persistence_pickle())
    return _GOOD[0]


def folder_output(folder: Path) -> str:
    (folder / "dir.safetensors").mkdir()
    return "dir.safetensors"


def output_under_a_file(folder: Path) -> str:
    (folder / "file").write_text("not a folder")
    return "file/sub/out.safetensors"


def link_to_source(folder: Path) -> str:
    (folder / "link.safetensors").symlink_to("src.safetensors")
    return "link.safetensors"


def source_folder(folder: Path) -> list[str]:
    (folder / "src.pkl").mkdir()
    return ["convert-panohead", "src.pkl", "out.safetensors"]


def existing_output_kept(folder: Path) -> list[str]:
    (folder / "src.pkl").write_bytes(good()[:-1])
    (folder / "out.safetensors").write_bytes(b"an earlier conversion")
    return ["convert-panohead", "src.pkl", "out.safetensors"]


def fit_with_panohead(make: Callable[[Path], bytes], name: str = "panohead.pkl"):
    def build(folder: Path) -> list[str]:
        (folder / name).write_bytes(make(folder))
        return ["--image", str(EXAMPLE), "--config", PREVIEW, "--out", str(folder / "out"), *CHEAP_GAN,
                f"models.panohead={folder / name}"]

    return build


def pickled_lpips(folder: Path) -> list[str]:
    checkpoint = folder / "tiny.safetensors"
    save_safetensors(NetworkWeights("TriPlaneGenerator", TINY_KWARGS, tiny_generator().state_dict()), checkpoint)
    torch.save({"features.0.weight": pk.SystemCall(f"touch {folder / 'ran'}")}, folder / "lpips.pt")
    return ["--image", str(EXAMPLE), "--config", PREVIEW, "--out", str(folder / "out"), *CHEAP_GAN,
            f"models.panohead={checkpoint}", f"init.gan.lpips_weights={folder / 'lpips.pt'}", "models.allow_pickle=[]"]


PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(32)


def convert_weights_of(make: Callable[[Path], None], dst: str = "out"):
    """convert-weights SRC DST, SRC a pickle file `make` writes (src.bin) or a folder it fills (src/)."""
    def build(folder: Path) -> list[str]:
        make(folder)
        return ["convert-weights", "src.bin" if (folder / "src.bin").exists() else "src", dst]

    return build


def system_call_bin(folder: Path) -> None:
    torch.save({"image_proj": {"w": pk.SystemCall(f"touch {folder / 'ran'}")}, "ip_adapter": {}}, folder / "src.bin")


def weights_folder(folder: Path) -> None:
    (folder / "src" / "unet").mkdir(parents=True)
    torch.save({"w": torch.ones(2)}, folder / "src" / "unet" / "diffusion_pytorch_model.bin")

CASES = [
    # the command line
    Case("convert: no arguments", lambda folder: ["convert-panohead"], "arguments are required: checkpoint, out"),
    Case("convert: an extra argument", lambda folder: ["convert-panohead", "a.pkl", "b.safetensors", "c"], "unrecognized arguments: c"),
    # the source
    Case("convert: source missing", convert(None), "does not exist"),
    Case("convert: source is a folder", source_folder, "is not a file"),
    Case("convert: empty file", convert(lambda folder: b""), "is empty"),
    Case("convert: truncated pickle", convert(lambda folder: good()[: len(good()) // 2]), "truncated"),
    Case("convert: pickle cut before STOP", convert(lambda folder: good()[:-1]), "truncated"),
    Case("convert: a PNG", convert(lambda folder: PNG_HEAD), "not a network pickle"),
    Case("convert: a text file", convert(lambda folder: b"G_ema = generator()\n"), "not a network pickle"),
    Case("convert: not a network", convert(lambda folder: pickle.dumps({"G_ema": [1, 2, 3]}, protocol=4)), "no persistent network"),
    Case("convert: self-referential list", convert(lambda folder: pk.self_referential_list()), "no persistent network"),
    Case("convert: cyclic modules", convert(lambda folder: pk.cyclic_modules()), "contains itself"),
    Case("convert: cyclic hyper-parameters", convert(lambda folder: pk.cyclic_kwargs()), "contains itself"),
    Case("convert: os.system pickle", convert(lambda folder: pk.system_call(folder / "ran")), "refusing to load global"),
    Case("convert: eval pickle", convert(lambda folder: pk.eval_call(folder / "ran")), "refusing to load global builtins.eval"),
    Case("convert: code inside a network state", convert(lambda folder: pk.code_inside_state(folder / "ran")), "refusing to load global"),
    # billion laughs
    Case("convert: laughs in hyper-parameters", convert(lambda folder: pk.laughs_in_kwargs()), "max_kwargs_items", timeout=20),
    Case("convert: laughs in submodules", convert(lambda folder: pk.laughs_in_modules()), "max_modules", timeout=20),
    Case("convert: laughs in a dict key", convert(lambda folder: pk.hash_bomb()), "max_key_items", timeout=20),
    Case("convert: laughs in a set", convert(lambda folder: pk.set_bomb()), "max_key_items", timeout=20),
    Case("convert: huge memo index", convert(lambda folder: pk.memo_bomb()), "max_memo", timeout=20),
    Case("convert: one blob decoded many times", convert(lambda folder: pk.blob_reuse()), "tensor data", timeout=20),
    Case("convert: expanded tensor", convert(lambda folder: pk.expanded_tensor()), "tensors add up to more than", timeout=20),
    Case("convert: deep nesting", convert(lambda folder: pk.deep_marks()), "max_nesting", timeout=20),
    # the output
    Case("convert: output is the source", output_case(lambda folder: "src.safetensors"), "is the source checkpoint"),
    Case("convert: output links to the source", output_case(link_to_source), "is the source checkpoint"),
    Case("convert: output is a folder", output_case(folder_output), "is a folder"),
    Case("convert: output under a regular file", output_case(output_under_a_file), "is not a folder"),
    Case("convert: output not .safetensors", output_case(lambda folder: "out.pkl"), "must end in .safetensors"),
    Case("convert: failure keeps an existing output", existing_output_kept, "truncated"),
    # convert-weights (guidance/models/convert.py)
    Case("convert-weights: os.system pickle", convert_weights_of(system_call_bin), "not plain weights"),
    Case("convert-weights: into itself", convert_weights_of(weights_folder, "src"), "into itself"),
    Case("convert-weights: inside the source", convert_weights_of(weights_folder, "src/unet/out"), "must not be inside SRC"),
    # the same checkpoints in a fit
    Case("fit: os.system pickle as models.panohead", fit_with_panohead(lambda folder: pk.system_call(folder / "ran")),
         "refusing to load global", warnings=LOW_RESOLUTION, writes_nothing=False),
    Case("fit: cyclic modules as models.panohead", fit_with_panohead(lambda folder: pk.cyclic_modules()), "contains itself",
         warnings=LOW_RESOLUTION, writes_nothing=False),
    Case("fit: self-referential list as models.panohead", fit_with_panohead(lambda folder: pk.self_referential_list()),
         "no persistent network", warnings=LOW_RESOLUTION, writes_nothing=False),
    Case("fit: billion laughs as models.panohead", fit_with_panohead(lambda folder: pk.hash_bomb()), "max_key_items",
         warnings=LOW_RESOLUTION, writes_nothing=False),
    Case("fit: damaged conversion as models.panohead", fit_with_panohead(lambda folder: b"\x10\x00\x00\x00\x00\x00\x00\x00{}",
                                                                           "panohead.safetensors"),
         "cannot read", warnings=LOW_RESOLUTION, writes_nothing=False),
    Case("fit: pickled LPIPS weights without allow_pickle", pickled_lpips, "refusing to load pickle weights",
         warnings=LOW_RESOLUTION, writes_nothing=False),
]


CONVERT_WORK_S = 8.0
"""Seconds a refused conversion may take beyond starting `run.py` (a bomb runs until the case's timeout)."""


@functools.cache
def cli_startup_s() -> float:
    """Wall time of `run.py --help` here: the part of each case that is this machine's import speed."""
    start = time.perf_counter()
    subprocess.run([sys.executable, str(REPO_ROOT / "run.py"), "--help"], capture_output=True, check=True)
    return time.perf_counter() - start


@pytest.mark.parametrize("case", CASES, ids=str)
def test_weights_corpus(case: Case, tmp_path: Path):
    start = time.perf_counter()
    run_case(case, tmp_path)
    assert not (tmp_path / "ran").exists(), "code inside a pickle ran"
    if case.name.startswith("convert"):  # (a fit spends its first seconds on the intake)
        took = time.perf_counter() - start
        assert took < cli_startup_s() + CONVERT_WORK_S, f"{case.name} took {took:.1f} s (run.py starts in {cli_startup_s():.1f} s)"
        assert not [p for p in tmp_path.rglob("*.tmp*")], "a temporary output was left"


def test_cases_have_distinct_names():
    assert len({case.name for case in CASES}) == len(CASES)
