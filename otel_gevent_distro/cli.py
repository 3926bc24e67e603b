"""The ``otel-gevent-distro`` command.

``otel-gevent-distro sitecustomize-path`` prints the folder to put first on
``PYTHONPATH`` so that plain ``python app.py`` or ``gunicorn ...`` start with
the distro; ``otel-gevent-distro doctor`` checks the set-up of this
environment (:mod:`otel_gevent_distro.doctor`).

The command is the top of the package: it imports the doctor and start-up's
launch module, and nothing imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from otel_gevent_distro.startup.launch import sitecustomize_path
from otel_gevent_distro.version import __version__


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-gevent-distro",
        description="The otel-gevent-distro command: where the sitecustomize folder is, and a check of this set-up.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("sitecustomize-path", help="print the folder to put first on PYTHONPATH")
    doctor = commands.add_parser("doctor", help="check the set-up in this environment; exit 1 on a problem")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument(
        "--via",
        choices=("auto", "instrument", "sitecustomize"),
        default="auto",
        help="launch path to check (auto: sitecustomize when its folder is on PYTHONPATH)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "sitecustomize-path":
        print(sitecustomize_path())
        return 0
    if args.command == "doctor":
        from otel_gevent_distro.doctor import run_doctor

        return run_doctor(as_json=args.json, via=args.via)
    return 2


if __name__ == "__main__":
    sys.exit(main())
