"""Static files under content-hashed names: ``/static/<namespace>/<name>.<hash><ext>``.

Every file of the kernel's static folder and of each plugin's (``register_web_assets``) is hashed
once at start-up. Templates ask ``asset_url("shell/shell.js")`` for the hashed address, which the
browser may cache for a year (``immutable``): a changed file gets a new name. The plain name keeps
working with a short cache, for places that cannot know the hash (RapiDoc's script tag).
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path
from typing import Any

from litestar import Request, get
from litestar.params import FromPath
from litestar.response import File

from inopsio.errors import Problem
from inopsio.tenancy.resolution import TENANCY_OPT

IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=300"


class AssetManifest:
    """Logical names (``crm/board.js``) to hashed URLs, and served paths to files."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self.files: dict[str, tuple[Path, bool]] = {}  # served path -> (file, hashed)

    def add_folder(self, namespace: str, folder: Path) -> None:
        folder = folder.resolve()
        for file in sorted(folder.rglob("*")):
            if not file.is_file() or file.name.startswith("."):
                continue
            relative = file.relative_to(folder).as_posix()
            logical = f"{namespace}/{relative}"
            digest = hashlib.sha256(file.read_bytes()).hexdigest()[:12]
            stem, dot, suffix = file.name.partition(".")
            hashed_name = f"{stem}.{digest}{dot}{suffix}" if dot else f"{stem}.{digest}"
            parent = file.parent.relative_to(folder).as_posix()
            hashed = f"{namespace}/{parent}/{hashed_name}" if parent != "." else f"{namespace}/{hashed_name}"
            self.urls[logical] = f"/static/{hashed}"
            self.files[hashed] = (file, True)
            self.files[logical] = (file, False)

    def url(self, logical: str) -> str:
        """The hashed URL of ``logical``; an unknown name is a template bug, reported plainly."""
        try:
            return self.urls[logical]
        except KeyError:
            raise LookupError(
                f"no static file {logical!r} (is `npm ci` done, is the plugin's folder registered?)"
            ) from None


@get("/static/{path:path}", opt={TENANCY_OPT: "none"}, include_in_schema=False, sync_to_thread=False)
def serve_static(request: Request[Any, Any, Any], path: FromPath[str]) -> File:
    manifest: AssetManifest = request.app.state.kernel.web.assets
    found = manifest.files.get(path.lstrip("/"))
    if found is None:
        raise Problem(404, "not-found", "There is nothing at this address.")
    file, hashed = found
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type in ("application/javascript", "image/svg+xml"):
        media_type += "; charset=utf-8"
    return File(
        path=file,
        media_type=media_type,
        content_disposition_type="inline",
        headers={"Cache-Control": IMMUTABLE if hashed else SHORT},
    )
