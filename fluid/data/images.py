"""Image cells: safe path resolution inside an image root, zip references, and decoding to RGB.

An image cell of the canonical frame is an absolute path (``str``), raw ``bytes``, a ``PIL.Image.Image``, a
zip reference ``"zip://<absolute zip path>::<member>"`` (GLAMI-1M read straight from its archive) or
``None``. :func:`load_image` turns any of them into an RGB ``PIL.Image.Image`` or raises
:class:`~fluid.data.errors.BadImageError` with the path and the reason — never a warning, never a crash of
another kind.
"""

from __future__ import annotations

import io
import math
import os
import posixpath
import re
import threading
import warnings
import zipfile
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from fluid.data.errors import BadImageError

__all__ = [
    "MAX_PIXELS", "MAX_FILE_BYTES", "SAFE_FORMATS", "load_image", "to_rgb", "zip_ref", "parse_zip_ref",
    "is_zip_ref", "resolve_image_path", "PathProblem",
]

#: Largest accepted image, in pixels (same default as ``PIL.Image.MAX_IMAGE_PIXELS``). Larger images raise
#: ``BadImageError`` (kind ``"too large"``) before any pixel is decoded — a decompression-bomb guard.
MAX_PIXELS = 89_478_485
#: Largest accepted encoded file / zip member, in bytes.
MAX_FILE_BYTES = 256 * 1024 * 1024

Image.init()
#: Formats :func:`load_image` decodes. Formats that run external programs (EPS/PS via Ghostscript) or are
#: rarely product images are refused.
SAFE_FORMATS = tuple(
    f for f in ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "PPM", "TGA", "ICO", "AVIF")
    if f in Image.OPEN
)

_ZIP_PREFIX = "zip://"
_ZIP_SEP = "::"
_WIN_DRIVE = re.compile(r"^[A-Za-z]:")


# ---------------------------------------------------------------------------------------------------------
# zip references


def zip_ref(zip_path: str | os.PathLike, member: str) -> str:
    """A small picklable reference to ``member`` inside the archive ``zip_path``."""
    return f"{_ZIP_PREFIX}{os.path.abspath(os.fspath(zip_path))}{_ZIP_SEP}{member}"


def is_zip_ref(cell: Any) -> bool:
    return isinstance(cell, str) and cell.startswith(_ZIP_PREFIX)


def parse_zip_ref(ref: str) -> tuple[str, str]:
    """``"zip://<zip>::<member>"`` → ``(zip path, member)``."""
    if not is_zip_ref(ref) or _ZIP_SEP not in ref:
        raise ValueError(f"not a zip reference: {ref!r} (expected 'zip://<zip path>::<member>')")
    zip_path, member = ref[len(_ZIP_PREFIX):].rsplit(_ZIP_SEP, 1)
    return zip_path, member


_zip_lock = threading.Lock()
_zip_cache: dict[tuple[int, str], zipfile.ZipFile] = {}


def _open_zip(zip_path: str) -> zipfile.ZipFile:
    # One handle per (process, archive): opening a 1M-member archive reads its whole central directory, and
    # a handle inherited through fork() shares the file offset with the parent, so it must not be reused.
    key = (os.getpid(), zip_path)
    zf = _zip_cache.get(key)
    if zf is None:
        with _zip_lock:
            zf = _zip_cache.get(key)
            if zf is None:
                zf = zipfile.ZipFile(zip_path)
                _zip_cache[key] = zf
    return zf


def _read_zip_member(ref: str) -> bytes:
    zip_path, member = parse_zip_ref(ref)
    try:
        zf = _open_zip(zip_path)
    except FileNotFoundError:
        raise BadImageError(ref, f"zip archive not found: {zip_path}", "missing") from None
    except (OSError, zipfile.BadZipFile) as e:
        raise BadImageError(ref, f"cannot open zip archive: {e}", "unreadable") from None
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise BadImageError(ref, "no such member in the archive", "missing") from None
    if info.file_size == 0:
        raise BadImageError(ref, "0 bytes", "empty")
    if info.file_size > MAX_FILE_BYTES:
        raise BadImageError(ref, f"{info.file_size} bytes > MAX_FILE_BYTES={MAX_FILE_BYTES}", "too large")
    try:
        return zf.read(info)
    except Exception as e:  # noqa: BLE001 - CRC errors, truncated archives, ...
        raise BadImageError(ref, f"{type(e).__name__}: {e}", "unreadable") from None


# ---------------------------------------------------------------------------------------------------------
# path resolution


class PathProblem(Exception):
    """Raised by :func:`resolve_image_path`; ``reason`` is a :data:`~fluid.data.report.REASONS` key."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


def resolve_image_path(cell: str, image_root: str | os.PathLike | None) -> str:
    """Resolve an image path cell to an absolute path.

    Backslashes are accepted as separators (``imgs\\a.jpg``). With an ``image_root``, the result must lie
    inside it: absolute paths outside the root, ``..`` escaping it, Windows drive/UNC paths and URLs raise
    :class:`PathProblem` (``"image-outside-root"``); the check is lexical, so symlinks inside the root are
    followed. Without a root, absolute paths are kept and relative ones resolve against the working
    directory (in-memory frames only). An empty cell raises ``PathProblem("image-empty")``.
    """
    raw = cell.strip()
    if not raw:
        raise PathProblem("image-empty", "empty image path")
    if "\x00" in raw:
        raise PathProblem("image-invalid", f"NUL byte in image path {raw!r}")
    if "://" in raw or raw.startswith("data:"):
        raise PathProblem("image-outside-root", f"{raw!r} is a URL; URLs are never fetched")
    p = raw.replace("\\", "/")
    windows_abs = bool(_WIN_DRIVE.match(p)) or p.startswith("//")
    if image_root is None:
        if windows_abs and os.sep == "/":
            return p  # cannot exist here; reported as missing by the existence check
        return os.path.abspath(p)
    root = os.path.abspath(os.fspath(image_root))
    if windows_abs:
        raise PathProblem("image-outside-root", f"{raw!r} is an absolute Windows path outside the image root {root}")
    if p.startswith("/"):
        norm = posixpath.normpath(p)
        root_posix = root.replace(os.sep, "/")
        if norm == root_posix or norm.startswith(root_posix.rstrip("/") + "/"):
            return os.path.normpath(norm)
        raise PathProblem("image-outside-root", f"{raw!r} is an absolute path outside the image root {root}")
    norm = posixpath.normpath(p)
    if norm == ".." or norm.startswith("../"):
        raise PathProblem("image-outside-root", f"{raw!r} escapes the image root {root} with '..'")
    return os.path.join(root, *norm.split("/"))


# ---------------------------------------------------------------------------------------------------------
# decoding


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: CMYK, palette (with transparency), L/LA/RGBA (alpha composited on white),
    16-bit and 32-bit integer / float greyscale (scaled to 8 bits)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        else:
            hi = float(a.max()) if a.size else 0.0
            if mode == "F" and hi <= 1.0:
                scale = 255.0
            elif hi > 255.0:
                scale = 255.0 / (65535.0 if hi <= 65535.0 else hi)
            else:
                scale = 1.0
        a8 = np.clip(a * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a8).convert("RGB")
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
        if mode == "RGB":
            return im
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB")


def _check_pixels(size: tuple[int, int], name: str, limit: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise BadImageError(name, f"invalid size {w}x{h}", "unreadable")
    if w * h > limit:
        raise BadImageError(
            name, f"decompression-bomb guard: {w}x{h} = {w * h} pixels > limit {limit}", "too large"
        )


def _decode(data: bytes, name: str, limit: int) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=SAFE_FORMATS)
        except Image.DecompressionBombError as e:
            raise BadImageError(name, f"decompression-bomb guard: {e}", "too large") from None
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds
            raise BadImageError(name, _reason(e), "unreadable") from None
        _check_pixels(im.size, name, limit)
        try:
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_rgb(im)
        except BadImageError:
            raise
        except Exception as e:  # noqa: BLE001
            raise BadImageError(name, _reason(e), "unreadable") from None


_OBJECT_REPR = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


def _reason(e: BaseException) -> str:
    """The exception's message, without object addresses (Pillow names its buffer, ``<_io.BytesIO object at
    0x7f...>``), so the same broken file gives the same reason in every run and in the feature cache."""
    msg = _OBJECT_REPR.sub(r"<\1>", str(e).strip())
    return msg if msg else type(e).__name__


def _is_missing(cell: Any) -> bool:
    if cell is None:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return isinstance(cell, str) and not cell.strip()


def load_image(cell: Any, image_root: str | os.PathLike | None = None, *, max_pixels: int | None = None) -> Image.Image:
    """Decode an image cell to an RGB ``PIL.Image.Image``.

    Args:
        cell: a path (``str``/``PathLike``; relative paths resolve inside ``image_root``, or against the
            working directory when there is none), ``bytes``, a ``PIL.Image.Image``, or a
            ``"zip://<zip>::<member>"`` reference.
        image_root: folder for relative paths (paths escaping it are refused).
        max_pixels: decompression-bomb limit; default :data:`MAX_PIXELS` (read at call time).

    Raises:
        BadImageError: missing cell or file, 0-byte file, truncated/corrupt data, unsupported format, an
            image over ``max_pixels``, or a path outside ``image_root``; the message names the path and the
            reason.
    """
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    if _is_missing(cell):
        raise BadImageError("<none>", "no image given", "missing")
    if isinstance(cell, Image.Image):
        _check_pixels(cell.size, "<PIL image>", limit)
        try:
            cell.load()
            out = to_rgb(cell)
        except Exception as e:  # noqa: BLE001
            raise BadImageError("<PIL image>", _reason(e), "unreadable") from None
        return out.copy() if out is cell else out
    if isinstance(cell, (bytes, bytearray, memoryview)):
        data = bytes(cell)
        if not data:
            raise BadImageError("<bytes>", "0 bytes", "empty")
        return _decode(data, "<bytes>", limit)
    if isinstance(cell, os.PathLike):
        cell = os.fspath(cell)
    if not isinstance(cell, str):
        raise BadImageError(repr(cell)[:80], f"unsupported image cell type {type(cell).__name__}", "invalid")
    if is_zip_ref(cell):
        return _decode(_read_zip_member(cell), cell, limit)
    if image_root is not None and not os.path.isabs(cell):
        try:
            path = resolve_image_path(cell, image_root)
        except PathProblem as p:
            raise BadImageError(cell, p.detail, "outside root" if p.reason == "image-outside-root" else "invalid") from None
    else:
        path = os.path.abspath(cell)
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise BadImageError(path, "0 bytes", "empty")
        if size > MAX_FILE_BYTES:
            raise BadImageError(path, f"{size} bytes > MAX_FILE_BYTES={MAX_FILE_BYTES}", "too large")
        with open(path, "rb") as f:
            data = f.read()
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(path, "no such file", "missing") from None
    except OSError as e:
        raise BadImageError(path, e.strerror or _reason(e), "unreadable") from None
    return _decode(data, path, limit)
