"""The PDFs' fonts: DejaVu Sans and Serif (regular and bold) taken at run time from the files the
``matplotlib`` distribution installs (``mpl-data/fonts/ttf``), so no font file lives in this
repository. matplotlib itself is never imported (only its package folder is located).

A full DejaVu file takes about 65 ms for fpdf2 to parse on every PDF; a subset to the scripts an
invoice prints (Latin with its extensions, Greek, Cyrillic, punctuation including the narrow no-break
space babel uses, currency and letterlike symbols, arrows) about 5 ms. Each font is therefore subset
once with fontTools (about 0.2 s) and the result written to a cache directory under a name holding
the source file's SHA-256, so a changed matplotlib font makes a new subset. The cache directory is
``<data_dir>/cache/erp-fonts`` in the server (set by the plugin's ``on_startup``); a process that
never configured one (a script, the benchmark) uses a private temporary directory removed at exit.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import io
import os
import shutil
import tempfile
import threading
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

FAMILIES = {
    "sans": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    "serif": ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"),
}
UNICODES = (
    "U+0000-024F,U+0370-03FF,U+0400-04FF,U+1E00-1EFF,U+2000-206F,U+20A0-20CF,U+2100-214F,U+2190-2199,"
    "U+2212,U+2215,U+FFFD"
)
#: Part of every cached file's name: a change of the subset's rule makes new files.
SUBSET_VERSION = hashlib.sha256(UNICODES.encode()).hexdigest()[:8]

_lock = threading.Lock()
_cache_dir: Path | None = None
_paths: dict[str, Path] = {}


class FontsMissing(RuntimeError):
    """matplotlib (whose DejaVu files the PDFs embed) is not installed."""


def source_dir() -> Path:
    """matplotlib's ``mpl-data/fonts/ttf`` folder, found without importing matplotlib (slow)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise FontsMissing("the ERP's PDFs need the DejaVu fonts of the matplotlib package: pip install matplotlib")
    return Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"


def configure(cache_dir: Path | None) -> None:
    """Keep the subsets in ``cache_dir`` (made if missing); ``None``: a per-process temporary folder."""
    global _cache_dir
    with _lock:
        if _cache_dir != cache_dir:
            _cache_dir = cache_dir
            _paths.clear()


def _temporary_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="inopsio-erp-fonts-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _subset(data: bytes) -> bytes:
    options = subset.Options()
    options.layout_features = ["*"]
    options.glyph_names = True
    options.notdef_outline = True
    options.name_IDs = ["*"]
    options.drop_tables = [*options.drop_tables, "FFTM"]  # FontForge's timestamps: nothing to subset
    font = TTFont(io.BytesIO(data))
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=subset.parse_unicodes(UNICODES))
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def font_path(name: str) -> Path:
    """The subset of matplotlib's ``name`` (e.g. ``DejaVuSans.ttf``), made on first use."""
    global _cache_dir
    with _lock:
        path = _paths.get(name)
        if path is not None:
            return path
        data = (source_dir() / name).read_bytes()
        digest = hashlib.sha256(data).hexdigest()[:16]
        if _cache_dir is None:
            _cache_dir = _temporary_dir()
        _cache_dir.mkdir(parents=True, exist_ok=True)
        path = _cache_dir / f"{Path(name).stem}-{digest}-{SUBSET_VERSION}.ttf"
        if not path.exists():
            # Written under a private name, then renamed: another process never reads half a file.
            fd, tmp = tempfile.mkstemp(dir=_cache_dir, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_subset(data))
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        _paths[name] = path
        return path


def family(kind: str) -> tuple[Path, Path]:
    """The (regular, bold) files of ``sans`` or ``serif``."""
    regular, bold = FAMILIES[kind]
    return font_path(regular), font_path(bold)
