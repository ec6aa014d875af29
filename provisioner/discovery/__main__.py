"""``python -m provisioner.discovery``: run or use the discovery service.

``serve`` is what ``lab up`` starts in the background; ``new``, ``delete``,
``show`` and ``stop`` are the same operations the ``lab discovery`` commands use.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from provisioner.discovery.client import delete_token, fetch_token, new_token
from provisioner.discovery.daemon import run_service, stop_daemon
from provisioner.discovery.protocol import DEFAULT_PORT, DEFAULT_SIZE, parse_listen
from provisioner.discovery.server import DEFAULT_WATCH_TIMEOUT
from provisioner.errors import LabError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m provisioner.discovery",
        description="etcd discovery service (the protocol of discovery.etcd.io)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve tokens in the foreground")
    serve.add_argument(
        "--listen",
        default=f"127.0.0.1:{DEFAULT_PORT}",
        help="HOST:PORT to listen on (default: %(default)s; ':PORT' for all interfaces)",
    )
    serve.add_argument("--state-dir", type=Path, required=True, help="where tokens are kept")
    serve.add_argument(
        "--public-url", help="prefix of the URLs /new hands out (default: the URL used to ask)"
    )
    serve.add_argument(
        "--watch-timeout",
        type=float,
        default=DEFAULT_WATCH_TIMEOUT,
        help="seconds a watch waits before ending empty, as etcd does (default: %(default)s)",
    )
    serve.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")

    new = commands.add_parser("new", help="create a token and print its discovery URL")
    new.add_argument("--server", default=f"http://127.0.0.1:{DEFAULT_PORT}", help="service URL")
    new.add_argument("--size", type=int, default=DEFAULT_SIZE, help="expected cluster size")

    delete = commands.add_parser("delete", help="delete a token")
    delete.add_argument("url", help="discovery URL of the token")

    show = commands.add_parser("show", help="print a token's size and members")
    show.add_argument("url", help="discovery URL of the token")

    stop = commands.add_parser("stop", help="stop the background service of a state directory")
    stop.add_argument("--state-dir", type=Path, required=True)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        logging.basicConfig(
            level=args.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        run_service(
            parse_listen(args.listen),
            args.state_dir,
            args.public_url,
            watch_timeout=args.watch_timeout,
        )
    elif args.command == "new":
        print(new_token(args.server, args.size))
    elif args.command == "delete":
        if not delete_token(args.url):
            print(f"{args.url}: no such token", file=sys.stderr)
    elif args.command == "show":
        state = fetch_token(args.url)
        print(f"size {state.size}, {len(state.members)} registered")
        for member in state.members:
            print(f"{member.id} {member.value}")
    elif args.command == "stop" and not stop_daemon(args.state_dir):
        print(f"no discovery service running for {args.state_dir}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except LabError as error:
        print(f"error: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
