"""The page's routes (Starlette): the static page, thumbnails, and a small JSON API over the state
store and the worker. Routes only: labels live in `state`, work in `work`, cells in `cells`.

Every route but the page's own scripts and styles needs the access token (`?token=` or the
`X-Token` header); an unknown cell name is a 404, never a path to open or write.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cellssl_jax.app.cells import SIZES, CellError, Cells
from cellssl_jax.app.state import PRESETS, UNSURE, StateStore
from cellssl_jax.app.work import Worker

STATIC = Path(__file__).parent / "static"
IMMUTABLE = "private, max-age=31536000, immutable"  # thumbnail URLs carry the file's version
# On every response: nothing from elsewhere (no CDN, offline by construction), no framing, no
# token in a Referer header, no content sniffing.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 b"img-src 'self'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every HTTP response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class Context:
    """What the routes work on: one folder's cells, state store and worker, and the token."""

    folder: Path
    state_dir: Path
    cells: Cells
    store: StateStore
    worker: Worker
    token: str


def open_context(folder: Path, state_dir: Path, store: StateStore, kind: str,
                 encoder: Path | None = None, cache: Path | None = None, per_class: int = 10,
                 token: str | None = None) -> Context:
    """Scan `folder` (ValueError when it has no images), start the worker on its features."""
    cells = Cells(folder, Path(state_dir) / "thumbs")
    if not len(cells):
        raise ValueError(f"no images in {folder}")
    worker = Worker(cells, store, state_dir, kind, encoder, cache, per_class)
    worker.submit("features")
    return Context(Path(folder), Path(state_dir), cells, store, worker,
                   token or secrets.token_urlsafe(24))


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(ctx: Context) -> Starlette:
    """The ASGI app of one folder."""

    def authorised(request: Request) -> bool:
        given = request.headers.get("x-token") or request.query_params.get("token") or ""
        return secrets.compare_digest(given.encode(), ctx.token.encode())

    def guarded(handler):
        async def route(request: Request) -> Response:
            if not authorised(request):
                return error(403, "missing or wrong access token: open the URL the server "
                                  "printed when it started (it ends in ?token=...)")
            try:
                return await handler(request)
            except CellError as err:
                return error(err.status, str(err))
            except ValueError as err:
                return error(400, str(err))
        return route

    async def body(request: Request) -> dict:
        try:
            data = await request.json()
        except ValueError:
            raise ValueError("the request body must be JSON") from None
        if not isinstance(data, dict):
            raise ValueError("the request body must be a JSON object")
        return data

    def summary() -> dict:
        labels = ctx.store.labels()
        per_class: dict[str, int] = {}
        for label in labels.values():
            per_class[label] = per_class.get(label, 0) + 1
        return {
            "version": ctx.store.version(),
            "classes": ctx.store.classes(),
            "per_class": per_class,
            "labelled": len(labels),
            "undo_depth": ctx.store.undo_depth(),
            "per_class_target": ctx.worker.per_class,
        }

    async def page(request: Request) -> Response:
        if not authorised(request):
            return HTMLResponse(
                "<h1>Access token needed</h1><p>Open the URL the server printed when it started "
                "(it ends in <code>?token=...</code>).</p>", status_code=403)
        return HTMLResponse((STATIC / "index.html").read_text(),
                            headers={"Cache-Control": "no-store"})

    async def state(request: Request) -> Response:
        data = await run_in_threadpool(summary)
        data.update(folder=str(ctx.folder), state=str(ctx.state_dir), cells=len(ctx.cells),
                    features=ctx.worker.kind, presets=PRESETS, unsure=UNSURE,
                    jobs=ctx.worker.status())
        return JSONResponse(data)

    async def version(request: Request) -> Response:
        data = {"version": await run_in_threadpool(ctx.store.version),
                "jobs": ctx.worker.status()}
        return JSONResponse(data)

    async def cells(request: Request) -> Response:
        """The label screen's cells (the proposals once features are ready, else the folder's
        order), each with its label; `v` versions the thumbnail URL."""
        labels = await run_in_threadpool(ctx.store.labels)
        proposed = bool(ctx.worker.queue_names)
        names = ctx.worker.queue_names if proposed else ctx.cells.names()
        return JSONResponse({
            "source": "proposals" if proposed else "folder",
            "cells": [{"f": n, "v": ctx.cells.by_name[n].version,
                       "why": ctx.worker.reasons.get(n, "")} for n in names],
            "labels": labels,
        })

    async def thumb(request: Request) -> Response:
        name = request.query_params.get("file")
        try:
            size = int(request.query_params.get("size", SIZES[0]))
        except ValueError:
            raise ValueError("size must be an integer") from None
        path = await run_in_threadpool(ctx.cells.thumbnail, name, size)
        etag = f'"{path.stem}"'
        headers = {"Cache-Control": IMMUTABLE, "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        data = await run_in_threadpool(path.read_bytes)
        return Response(data, media_type="image/jpeg", headers=headers)

    async def set_classes(request: Request) -> Response:
        data = await body(request)
        await run_in_threadpool(ctx.store.set_classes, data.get("classes"))
        if ctx.worker.features is not None:  # the budget follows the number of classes
            ctx.worker.submit("proposals")
        return JSONResponse(await run_in_threadpool(summary))

    async def label(request: Request) -> Response:
        """Label (or correct) one cell; answered after the label is committed to disk."""
        data = await body(request)
        kind = data.get("kind", "label")
        if kind not in ("label", "correction"):
            raise ValueError("kind must be 'label' or 'correction'")
        name = ctx.cells.check(data.get("file")).name
        value = data.get("label")
        if value is not None and not isinstance(value, str):
            raise ValueError("label must be a class name, the unsure mark or null")
        await run_in_threadpool(ctx.store.set_label, name, value, kind)
        if kind == "correction":  # corrections become labels: the classifier refits
            ctx.worker.submit("classify")
        result = await run_in_threadpool(summary)
        result.update(file=name, label=value)
        return JSONResponse(result)

    async def undo(request: Request) -> Response:
        step = await run_in_threadpool(ctx.store.undo)
        result = await run_in_threadpool(summary)
        result["undone"] = step
        return JSONResponse(result)

    async def start(request: Request) -> Response:
        name = request.path_params["job"]
        if name not in ("classify", "export", "more", "features"):
            return error(404, f"no job {name!r}")
        return JSONResponse(ctx.worker.submit(name).public())

    async def predictions(request: Request) -> Response:
        if ctx.worker.predictions is None:
            return error(409, "nothing classified yet: run classify first")
        labels = await run_in_threadpool(ctx.store.labels)
        return JSONResponse({**ctx.worker.predictions, "labels": labels})

    routes = [
        Route("/", page),
        Route("/api/state", guarded(state)),
        Route("/api/version", guarded(version)),
        Route("/api/cells", guarded(cells)),
        Route("/api/thumb", guarded(thumb)),
        Route("/api/classes", guarded(set_classes), methods=["POST"]),
        Route("/api/label", guarded(label), methods=["POST"]),
        Route("/api/undo", guarded(undo), methods=["POST"]),
        Route("/api/jobs/{job}", guarded(start), methods=["POST"]),
        Route("/api/predictions", guarded(predictions)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
