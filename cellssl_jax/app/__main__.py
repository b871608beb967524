"""The lab's page: label the suggested cells, classify, review and export, in a browser.

    python -m cellssl_jax.app FOLDER [--port 8765] [--state DIR] [--features KIND]

Starts a local web server on 127.0.0.1 and prints the page's URL with a random access token
(as Jupyter does): open it in a browser on this machine. The folder's labels, corrections and
undo history live in FOLDER/.cellssl/ (or --state DIR), written before the page shows a label
as done. Screens: classes (a preset or your own), label (keys 1-9, 0 = not a cell / unsure,
arrows/space to move, z to undo), classify (features, then `classify`'s default on every cell),
review (grouped by predicted class, least sure first; hover + key or click to correct),
export (the files `classify --out` writes, plus the labels as class folders and labels.csv).
docs/APP.md has the details.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

from cellssl_jax.app.server import create_app, open_context
from cellssl_jax.app.state import StateError, open_state
from cellssl_jax.cache import cache_root
from cellssl_jax.cli import add_cache_flag, add_encoder_flag, add_features_flag
from cellssl_jax.data.images import is_hidden
from cellssl_jax.feature_kinds import DEFAULT_KIND
from cellssl_jax.logs import fail, logging_to

PROG = "python -m cellssl_jax.app"
DEFAULT_PORT = 8765
PORT_TRIES = 10  # as Jupyter: a busy default port moves to the next free one
log = logging.getLogger("cellssl_jax.app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="the folder of cells (flat or class folders)")
    parser.add_argument("--state", type=Path, default=None,
                        help="where labels and thumbnails live (default FOLDER/.cellssl)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port (default {DEFAULT_PORT}, or the next free one; 0: any)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default 127.0.0.1: this machine only)")
    add_features_flag(parser, help="what cells are compared and classified on, as classify "
                                   f"(default {DEFAULT_KIND})")
    add_encoder_flag(parser)
    parser.add_argument("--per_class_budget", type=int, default=10,
                        help="cells to propose per class on the label screen (default 10)")
    add_cache_flag(parser)
    return parser


def bind(host: str, port: int | None) -> socket.socket:
    """A listening socket: `port`, or the default / the next free one after it."""
    ports = [port] if port is not None else range(DEFAULT_PORT, DEFAULT_PORT + PORT_TRIES)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for p in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, p))
        except OSError as err:
            sock.close()
            last = err
            continue
        sock.listen(128)
        sock.set_inheritable(True)
        return sock
    raise ValueError(f"cannot listen on {host} port {ports[0]}"
                     f"{'-' + str(ports[-1]) if len(ports) > 1 else ''} ({last}); "
                     "choose another with --port")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    folder = args.folder.absolute()  # absolute: the export's command line works from anywhere
    if not folder.is_dir():
        fail(PROG, f"the folder {folder} does not exist or is not a folder")
    if args.per_class_budget < 1:
        fail(PROG, "--per_class_budget must be >= 1")
    if args.port is not None and not 0 <= args.port <= 65535:
        fail(PROG, f"--port must be between 0 and 65535, got {args.port}")
    state_dir = args.state.absolute() if args.state is not None else folder / ".cellssl"
    inside = state_dir.resolve().is_relative_to(folder.resolve())
    if inside and not is_hidden(state_dir.resolve(), folder.resolve()):
        fail(PROG, f"--state {state_dir} lies inside {folder} and would be read as cells; "
                   "give a hidden folder (.name) or one outside it")
    try:
        store, lock = open_state(state_dir)
    except StateError as err:
        fail(PROG, str(err))
    try:
        with logging_to(state_dir / "app.log"):
            serve(args, folder, state_dir, store, lock)
    finally:
        store.close()
        lock.release()


def serve(args: argparse.Namespace, folder: Path, state_dir: Path, store, lock) -> None:
    """Scan the folder, start the worker on the features, listen, print the URL, serve."""
    import uvicorn

    try:
        sock = bind(args.host, args.port)
        ctx = open_context(folder, state_dir, store, args.features, args.encoder,
                           cache_root(not args.no_cache), args.per_class_budget)
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        fail(PROG, str(err))
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={ctx.token}"
    lock.note(f"pid {os.getpid()}, http://{shown}:{port}/")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone who can reach this machine and has the token "
                    "can see and label these cells", args.host)
    log.info("%d cells in %s; state in %s", len(ctx.cells), folder, state_dir)
    print(f"The page for {folder} ({len(ctx.cells)} cells) is at:\n\n    {url}\n\n"
          "Open it in a browser on this machine; Ctrl-C stops the server.", flush=True)
    config = uvicorn.Config(create_app(ctx), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
