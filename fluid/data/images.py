"""Image cells: safe path resolution inside an image root, zip references, and decoding to RGB.

An image cell of the canonical frame is an absolute path (``str``), raw ``bytes``, a ``PIL.Image.Image``, a
zip reference ``"zip://<absolute zip path>::<member>"`` (GLAMI-1M read straight from its archive) or
``None``. :func:`load_image` turns any of them into an RGB ``PIL.Image.Image`` or raises
:class:`~fluid.data.errors.BadImageError` with the path and the reason — never a warning, never a crash of
another kind.

Decoding costs memory in proportion to what the encoders need, not to the pixel count a file claims: an image
whose longer side is over :data:`MAX_DECODED_SIDE` is downscaled to it while it is decoded (JPEG at a reduced
DCT scale by libjpeg, the rest right after decoding, before any mode conversion), and an image that would need
more than :data:`MAX_DECODED_PIXELS` decoded pixels is refused from its header, before any pixel is decoded.
Images at or below :data:`MAX_DECODED_SIDE` are decoded exactly as before (same pixels).
"""

from __future__ import annotations

import ctypes
import io
import math
import os
import posixpath
import re
import stat
import threading
import warnings
import zipfile
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps

from fluid.data.errors import BadImageError

__all__ = [
    "MAX_PIXELS", "MAX_DECODED_PIXELS", "MAX_DECODED_SIDE", "MAX_FILE_BYTES", "SAFE_FORMATS", "load_image", "to_rgb",
    "zip_ref", "parse_zip_ref", "is_zip_ref", "resolve_image_path", "check_image_file", "PathProblem",
    "release_decoding_memory", "TRIM_AFTER_BYTES",
]

#: Largest accepted image, in pixels (same default as ``PIL.Image.MAX_IMAGE_PIXELS``). Larger images raise
#: ``BadImageError`` (kind ``"too large"``) before any pixel is decoded — a decompression-bomb guard.
MAX_PIXELS = 89_478_485
#: Most pixels decoded for one image (the per-image memory budget; ``fluid serve --max-image-pixels``). An image
#: over it is refused from its header (``BadImageError``, kind ``"too large"``) before decoding, except a JPEG
#: that libjpeg can decode at a reduced scale (1/2, 1/4, 1/8) within it. Decoding and downscaling cost, per
#: pixel: 1 byte (greyscale), 2 (1-bit), 4 (RGB, CMYK, 32-bit), 8 (with alpha: the downscale works on a
#: premultiplied copy), 9 (palette with transparency).
MAX_DECODED_PIXELS = 40_000_000
#: Images whose longer side is over this many pixels are downscaled to it while decoding (aspect ratio kept;
#: Lanczos). Every image encoder FLUID ships resizes to at most 384 px, so the encoder's own processor then
#: resizes as it always did; images at or below this size are returned exactly as before.
MAX_DECODED_SIDE = 1024
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
    :class:`PathProblem` (``"image-outside-root"``). This check is lexical and touches no file; symbolic links
    are checked by :func:`check_image_file` (which the readers call unless ``check_images=False``) and by
    :func:`load_image`: a link that leads outside the root is refused, one that stays inside is followed.
    The path returned is the lexical one (a link inside the root keeps its own name). Without a root, absolute
    paths are kept and relative ones resolve against the working directory (in-memory frames only). An empty
    cell raises ``PathProblem("image-empty")``.
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


def _real_root(image_root: str | os.PathLike) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(image_root)))


def _within(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or lies under it (both absolute and normalised; no file-system call)."""
    p, r = os.path.normcase(path), os.path.normcase(root)
    return p == r or p.startswith(r if r.endswith(os.sep) else r + os.sep)


def _leaves_root(cell: str, real: str, root: str) -> PathProblem:
    return PathProblem(
        "image-outside-root",
        f"{cell.strip()!r} leaves the image root {root} through a symbolic link (it resolves to {real})",
    )


def _check_real_path(cell: str, path: str, image_root: str | os.PathLike) -> None:
    """Refuse ``path`` (already lexically inside ``image_root``) when its real path — every symbolic link
    followed, the root's own included — lies outside the root's real path."""
    real = os.path.realpath(path)
    if not _within(real, _real_root(image_root)):
        raise _leaves_root(cell, real, os.path.abspath(os.fspath(image_root)))


def check_image_file(cell: str, path: str, image_root: str | os.PathLike | None, *,
                     real_dirs: dict[str, str] | None = None, real_root: str | None = None) -> None:
    """Check that the image file ``path`` (from :func:`resolve_image_path`) can be opened, as the readers do
    when ``check_images`` is true.

    Raises :class:`PathProblem`: ``"image-outside-root"`` when ``image_root`` is given and a symbolic link
    (the file itself or a folder on the way) leads outside the root's real path; ``"image-missing"`` when there
    is no such file, it is a directory, or not a regular file. Costs one ``lstat`` per file (plus a ``stat`` for
    a link); ``real_dirs`` caches the real path of each folder across calls (one catalogue read) and
    ``real_root`` is the root's real path when the caller already has it.
    """
    shown = cell.strip()
    root_real = None
    if image_root is not None:
        root_real = real_root or _real_root(image_root)
        folder, name = os.path.split(path)
        real_folder = real_dirs.get(folder) if real_dirs is not None else None
        if real_folder is None:
            real_folder = os.path.realpath(folder)
            if real_dirs is not None:
                real_dirs[folder] = real_folder
        real = os.path.join(real_folder, name) if name else real_folder
        if not _within(real, root_real):
            raise _leaves_root(cell, real, os.path.abspath(os.fspath(image_root)))
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            if root_real is not None:
                real = os.path.realpath(path)
                if not _within(real, root_real):
                    raise _leaves_root(cell, real, os.path.abspath(os.fspath(image_root)))
            st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise PathProblem("image-missing", f"{shown!r} not found (looked for {path})") from None
    except OSError as e:
        raise PathProblem("image-missing", f"{shown!r} cannot be opened: {e.strerror or _reason(e)} ({path})") from None
    if stat.S_ISDIR(st.st_mode):
        raise PathProblem("image-missing", f"{shown!r} is a directory, not an image file ({path})")
    if not stat.S_ISREG(st.st_mode):
        raise PathProblem("image-missing", f"{shown!r} is not a regular file ({path})")


# ---------------------------------------------------------------------------------------------------------
# decoding

#: :func:`release_decoding_memory` trims once decoding allocated this many bytes since the last trim.
TRIM_AFTER_BYTES = 64 * 1024 * 1024
# Bytes of decoded images (4 per pixel, full size and downscaled) since the last trim. No lock: threads racing on
# it can only lose a count or trim twice, and a lock held across a fork() would hang the child.
_freed_since_trim = 0
_malloc_trim: Any = False  # glibc's malloc_trim once looked up (None where there is none)


def _count_freed(pixels: int) -> None:
    global _freed_since_trim
    _freed_since_trim += 4 * pixels


def release_decoding_memory(min_bytes: int = TRIM_AFTER_BYTES) -> bool:
    """Give the memory freed by decoding back to the operating system, once :func:`load_image` has decoded
    ``min_bytes`` since the last time (counted at 4 bytes per pixel: the image as decoded, and its downscaled
    copy when there is one). Whatever of it the caller has dropped by then goes back; ``min_bytes=0`` trims now.

    glibc keeps the memory a thread frees in that thread's malloc arena: a server whose threads take turns
    decoding large images keeps every arena's peak (measured in BENCHMARKS.md, "Server memory per image"). Costs one
    ``malloc_trim(0)`` (milliseconds to tens of them on a large, fragmented heap) per ``min_bytes`` decoded; the
    HTTP server calls it after each image, and with ``min_bytes=0`` after a ``/predict/batch`` that held 64 MiB of
    decoded images. Returns whether it trimmed; a no-op without glibc.
    """
    global _freed_since_trim, _malloc_trim
    if _freed_since_trim < min_bytes:
        return False
    _freed_since_trim = 0
    if _malloc_trim is False:
        try:
            _malloc_trim = ctypes.CDLL(None).malloc_trim
            _malloc_trim.argtypes, _malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
            _malloc_trim = None
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True



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


def _fit_size(size: tuple[int, int], max_side: int) -> tuple[int, int] | None:
    """The size with the longer side ``max_side`` (aspect ratio kept, rounded), or None when ``size`` fits."""
    w, h = size
    longer = max(w, h)
    if longer <= max_side:
        return None
    if w >= h:
        return max_side, max(1, (h * max_side + longer // 2) // longer)
    return max(1, (w * max_side + longer // 2) // longer), max_side


def _check_budget(header: tuple[int, int], decoded: tuple[int, int], name: str, fmt: str | None,
                  budget: int) -> None:
    """Refuse, before decoding, an image that needs more than ``budget`` decoded pixels."""
    dw, dh = decoded
    if dw * dh <= budget:
        return
    w, h = header
    if (dw, dh) != (w, h):
        need = f"{w}x{h}: {dw}x{dh} = {dw * dh} pixels to decode at the smallest JPEG scale"
    else:
        need = f"{w}x{h} = {w * h} pixels to decode" + (f" (a {fmt} image is decoded in full)" if fmt else "")
    raise BadImageError(
        name, f"{need} > the per-image decoding budget of {budget} pixels; refused before decoding: downscale "
              "the image first", "too large")


#: EXIF orientation -> the transposition that shows the image upright (as ``ImageOps.exif_transpose``).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _downscale(im: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float] | None = None
               ) -> Image.Image:
    """``im`` resized to ``size`` (Lanczos; ``box``: the source region, from ``Image.draft``), in its own mode
    when Pillow resamples it (so a 1-byte-per-pixel image is not widened to RGB at full size first). 1-bit and
    palette images, which Pillow would resize with nearest-neighbour, are first converted as :func:`to_rgb`
    converts them."""
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("P", "PA"):
        im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    try:
        return im.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    except (ValueError, OSError):  # a mode Pillow cannot resample: convert first
        return to_rgb(im).resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


def _decode(data: bytes, name: str, limit: int, budget: int, max_side: int) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=SAFE_FORMATS)
        except Image.DecompressionBombError as e:
            raise BadImageError(name, f"decompression-bomb guard: {e}", "too large") from None
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds
            raise BadImageError(name, _reason(e), "unreadable") from None
        _check_pixels(im.size, name, limit)
        header = im.size
        target = _fit_size(header, max_side)
        box = None
        try:
            if target is not None and im.format in ("JPEG", "MPO"):
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below ``target``: the full-size pixels never exist
                drafted = im.draft("RGB", target)
                if drafted is not None:
                    box = drafted[1]
        except Exception as e:  # noqa: BLE001
            raise BadImageError(name, _reason(e), "unreadable") from None
        _check_budget(header, im.size, name, im.format, budget)
        try:
            im.load()
            decoded = im.size[0] * im.size[1]
            if target is None:  # exactly the decoding of an image that needs no downscaling
                _count_freed(decoded)
                im = ImageOps.exif_transpose(im)
                return to_rgb(im)
            method = _ORIENTATION.get(im.getexif().get(ExifTags.Base.Orientation, 1))
            im = _downscale(im, target, box)  # before the mode conversion and the transposition: small copies
            _count_freed(decoded + target[0] * target[1])
            if method is not None:
                im = im.transpose(method)
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


def load_image(cell: Any, image_root: str | os.PathLike | None = None, *, max_pixels: int | None = None,
               max_decoded_pixels: int | None = None, max_side: int | None = None) -> Image.Image:
    """Decode an image cell to an RGB ``PIL.Image.Image``, downscaled to at most ``max_side`` on its longer side.

    Args:
        cell: a path (``str``/``PathLike``; relative paths resolve inside ``image_root``, or against the
            working directory when there is none), ``bytes``, a ``PIL.Image.Image``, or a
            ``"zip://<zip>::<member>"`` reference.
        image_root: folder for relative paths. Paths escaping it are refused, lexically (``..``, absolute
            paths) or through a symbolic link whose real path lies outside the root's real path; links that stay
            inside are followed. An absolute path inside the root gets the same link check; one outside it is
            read as given (canonical frames hold absolute paths, already checked when the catalogue was read).
        max_pixels: decompression-bomb limit on the size the header claims, whatever the format; default
            :data:`MAX_PIXELS` (read at call time).
        max_decoded_pixels: most pixels decoded for this image; default :data:`MAX_DECODED_PIXELS` (read at call
            time). Checked from the header before decoding: a JPEG counts the pixels of the reduced scale
            libjpeg decodes it at (see ``max_side``), every other format its full size. Not applied to a
            ``PIL.Image.Image`` cell (already decoded).
        max_side: an image whose longer side is longer is downscaled to it (aspect ratio kept, Lanczos) — a JPEG
            while libjpeg decodes it (``Image.draft``: 1/2, 1/4 or 1/8 scale, never below the target), any other
            format right after decoding, before its mode conversion; default :data:`MAX_DECODED_SIDE` (read at
            call time). Images that fit are returned exactly as before. A ``PIL.Image.Image`` cell is downscaled
            too, so an image gives the same pixels whether it arrives as a file, bytes or a PIL image.

    Raises:
        BadImageError: missing cell or file, a directory or other non-regular file, 0-byte file,
            truncated/corrupt data, unsupported format, an image over ``max_pixels`` or ``max_decoded_pixels``
            (kind ``"too large"``; the message names its size and the limit), or a path outside ``image_root``
            (kind ``"outside root"``); the message names the path and the reason.
    """
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    budget = MAX_DECODED_PIXELS if max_decoded_pixels is None else int(max_decoded_pixels)
    side = MAX_DECODED_SIDE if max_side is None else int(max_side)
    if budget < 1 or side < 1:
        raise ValueError(f"max_decoded_pixels and max_side must be >= 1, got {budget} and {side}")
    if _is_missing(cell):
        raise BadImageError("<none>", "no image given", "missing")
    if isinstance(cell, Image.Image):
        _check_pixels(cell.size, "<PIL image>", limit)
        try:
            cell.load()
            target = _fit_size(cell.size, side)
            out = to_rgb(cell if target is None else _downscale(cell, target))
        except Exception as e:  # noqa: BLE001
            raise BadImageError("<PIL image>", _reason(e), "unreadable") from None
        return out.copy() if out is cell else out
    if isinstance(cell, (bytes, bytearray, memoryview)):
        data = bytes(cell)
        if not data:
            raise BadImageError("<bytes>", "0 bytes", "empty")
        return _decode(data, "<bytes>", limit, budget, side)
    if isinstance(cell, os.PathLike):
        cell = os.fspath(cell)
    if not isinstance(cell, str):
        raise BadImageError(repr(cell)[:80], f"unsupported image cell type {type(cell).__name__}", "invalid")
    if is_zip_ref(cell):
        return _decode(_read_zip_member(cell), cell, limit, budget, side)
    try:
        if image_root is not None and not os.path.isabs(cell):
            path = resolve_image_path(cell, image_root)
            _check_real_path(cell, path, image_root)
        else:
            path = os.path.abspath(cell)
            # A canonical frame's absolute path lies inside its root (checked lexically when it was read): the
            # links on the way must not lead out of it. An absolute path outside the root is not the root's.
            if image_root is not None and _within(path, os.path.abspath(os.fspath(image_root))):
                _check_real_path(cell, path, image_root)
    except PathProblem as p:
        raise BadImageError(cell, p.detail, "outside root" if p.reason == "image-outside-root" else "invalid") from None
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise BadImageError(path, "is a directory", "unreadable")
        if not stat.S_ISREG(st.st_mode):
            raise BadImageError(path, "not a regular file", "unreadable")
        size = st.st_size
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
    return _decode(data, path, limit, budget, side)
