"""Download GLAMI-1M's official archive: ``fluid data fetch glami-1m --to DIR`` (see docs/data.md).

The archive is streamed to ``DIR/GLAMI-1M-dataset.zip.part``; a rerun resumes it with an HTTP ``Range``
request (a server that ignores ``Range`` and answers 200 restarts the file from zero; a 416 on a part file
that is already complete goes straight to verification). The finished part is verified — the size the
server announced, the SHA-256 when one is known, the zip opens, both split CSVs are there (their CRCs
checked, their header has GLAMI's columns) with an ``images/`` folder — and only then renamed to
``DIR/GLAMI-1M-dataset.zip``, which :func:`~fluid.data.glami.find_glami` must recognise.

What stays on disk when something fails:

* the transfer stops (network error, timeout, the connection closed early): the ``.part`` is kept and the
  same call resumes it;
* the finished bytes fail verification (wrong size, wrong SHA-256, not a zip, not the GLAMI-1M layout): the
  ``.part`` is removed — its bytes are wrong, so resuming it could only give the same wrong file — and no
  final file is written.

Only the standard library does HTTP (``urllib``); nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from fluid.data.glami import GLAMI_DIR, GLAMI_ZIP, find_glami, glami_csv_name
from fluid.progress import progress_bar

__all__ = ["GLAMI_URL", "GLAMI_SHA256", "DATASETS", "FetchError", "FetchResult", "fetch_glami",
           "check_glami_zip", "part_path", "human_size"]

#: The official archive (228×298 images, about 11 GB) on the Hugging Face hub; ``--url`` points elsewhere.
GLAMI_URL = "https://huggingface.co/datasets/glami/glami-1m/resolve/main/GLAMI-1M-dataset.zip"
#: SHA-256 of the official archive. None: it has not been checked against a real download here, and a wrong
#: constant would reject every good copy — pass ``sha256=`` (``--sha256``) to check a hash you trust.
GLAMI_SHA256: str | None = None
#: Datasets ``fluid data fetch`` knows.
DATASETS = ("glami-1m",)

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout,
                   TimeoutError, ssl.SSLError)


class FetchError(OSError):
    """A download that failed or a file that failed verification; the message (one line) names the URL or
    the file and says what to do."""


@dataclass(frozen=True)
class FetchResult:
    """``path``: the verified archive. ``downloaded``: False when a good copy was already there (nothing was
    fetched). ``resumed_from``: bytes of an earlier ``.part`` that were kept (0: from the start).
    ``sha256``: the archive's SHA-256 (None when an existing copy was accepted without hashing)."""

    path: Path
    downloaded: bool
    size: int
    sha256: str | None = None
    resumed_from: int = 0
    existing: str = ""  # what was already there when nothing was downloaded: "zip" or "dir"


def part_path(to: str | os.PathLike) -> Path:
    """Where the download is streamed to: ``DIR/GLAMI-1M-dataset.zip.part``."""
    return Path(to) / f"{GLAMI_ZIP}.part"


def _normalise_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    digest = value.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"--sha256 must be 64 hexadecimal digits, got {value!r}")
    return digest


# ---------------------------------------------------------------------------------------------- verification

def check_glami_zip(path: str | os.PathLike) -> str:
    """Check that ``path`` is a GLAMI-1M archive in the official layout: it opens as a zip, holds both split
    CSVs (``GLAMI-1M-train.csv``, ``GLAMI-1M-test.csv``) in one folder — ``GLAMI-1M-dataset/`` officially —
    beside an ``images/`` folder, the CSVs' CRCs check out and their header has ``item_id``, ``image_id`` and
    ``name``. Returns the folder prefix inside the archive; raises ``ValueError`` saying what is wrong."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as error:
        raise ValueError(f"not a zip archive ({error})") from None
    with zf:
        names = set(zf.namelist())
        csvs = [glami_csv_name(s) for s in ("train", "test")]
        prefixes = [f"{GLAMI_DIR}/", ""] + sorted({n[: n.rindex("/") + 1] for n in names
                                                   if n.count("/") == 1 and n.endswith(tuple(csvs))})
        prefix = next((p for p in prefixes if all(p + c in names for c in csvs)), None)
        if prefix is None:
            found = [n for n in names if n.endswith(tuple(csvs))]
            raise ValueError(f"not the GLAMI-1M layout: expected {GLAMI_DIR}/{csvs[0]} and {GLAMI_DIR}/{csvs[1]}"
                             f", found {sorted(found) or 'neither'}")
        if not any(n.startswith(f"{prefix}images/") for n in names):
            raise ValueError(f"not the GLAMI-1M layout: no {prefix}images/ folder in the archive")
        for csv in csvs:
            try:
                with zf.open(prefix + csv) as f:
                    header = f.readline().decode("utf-8-sig", errors="replace").strip()
                    while f.read(CHUNK_BYTES):  # reading to the end checks the member's CRC
                        pass
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
                raise ValueError(f"{prefix}{csv} is damaged in the archive ({error})") from None
            columns = [c.strip().strip('"') for c in header.split(",")]
            missing = [c for c in ("item_id", "image_id", "name") if c not in columns]
            if missing:
                raise ValueError(f"{prefix}{csv} lacks the column(s) {', '.join(missing)} (header: {header[:120]!r})")
    return prefix


def _sha256_file(f: IO[bytes], upto: int | None = None) -> Any:
    digest = hashlib.sha256()
    f.seek(0)
    left = upto
    while left is None or left > 0:
        block = f.read(CHUNK_BYTES if left is None else min(CHUNK_BYTES, left))
        if not block:
            break
        digest.update(block)
        if left is not None:
            left -= len(block)
    return digest


def _existing_copy(final: Path, sha256: str | None) -> str | None:
    """None when ``final`` is a good archive (and matches ``sha256`` when given), else what is wrong."""
    try:
        check_glami_zip(final)
    except ValueError as error:
        return str(error)
    if sha256 is not None:
        with open(final, "rb") as f:
            actual = _sha256_file(f).hexdigest()
        if actual != sha256:
            return f"its SHA-256 is {actual}, expected {sha256}"
    return None


def _forget_cached_zip(path: Path) -> None:
    """Drop this process's cached handle on ``path`` (``fluid.data.images`` keeps one per archive), so a
    replaced archive is not read through a handle on the old file. Not closed: a reader still holding it
    finishes on the old file, which goes away with the last reference."""
    from fluid.data import images

    with images._zip_lock:
        for key in [k for k in images._zip_cache if k[1] == os.path.abspath(path)]:
            images._zip_cache.pop(key)


# ---------------------------------------------------------------------------------------------- HTTP

@dataclass
class _Response:
    status: int
    start: int  # the byte offset the body starts at
    total: int | None  # the whole file's size, when the server said
    body: Any = None  # a readable response (None: no body to read)


def _open(url: str, start: int, timeout: float) -> _Response:
    """GET ``url`` from byte ``start`` (a ``Range`` request when > 0)."""
    from fluid.version import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"fluid/{__version__}",
                                                   "Accept-Encoding": "identity"})
    if start > 0:
        request.add_header("Range", f"bytes={start}-")  # add_header: kept across redirects
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416:
            match = _CONTENT_RANGE.match(error.headers.get("Content-Range", "") or "")
            total = int(match.group(3)) if match and match.group(3) != "*" else None
            error.close()
            return _Response(416, start, total)
        error.close()
        hint = " (check --url)" if error.code in (404, 410) else \
            " (the server refused; check --url or download the file by hand into --to)" if error.code in (401, 403) \
            else "; try again later (a rerun resumes)"
        raise FetchError(f"{url}: HTTP {error.code} {error.reason}{hint}") from None
    status = response.status
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "") or "")
        if not match or match.group(1) is None:
            response.close()
            raise FetchError(f"{url}: a partial answer without a usable Content-Range "
                             f"({response.headers.get('Content-Range')!r})")
        first = int(match.group(1))
        total = int(match.group(3)) if match.group(3) != "*" else None
        return _Response(206, first, total, response)
    if status == 200:
        return _Response(200, 0, length, response)
    response.close()
    raise FetchError(f"{url}: unexpected HTTP {status} {response.reason}")


def _chunks(response: Any) -> Iterator[bytes]:
    """The body as it arrives (``read1``: what the socket has, at most CHUNK_BYTES), so that bytes received
    before a stall or a dropped connection are written and kept."""
    read = getattr(response, "read1", response.read)
    while True:
        block = read(CHUNK_BYTES)
        if not block:
            return
        yield block


def human_size(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[IO[bytes]]:
    """``path`` opened for appending and reading, with an exclusive lock (POSIX) so that two fetches into
    the same folder do not write the same part file."""
    f = open(path, "a+b")
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise FetchError(f"{path} is being written by another download (another `fluid data fetch` "
                                 f"into the same folder?); wait for it or stop it") from None
        yield f
    finally:
        f.close()


# ---------------------------------------------------------------------------------------------- fetch

def fetch_glami(
    to: str | os.PathLike,
    *,
    url: str = GLAMI_URL,
    sha256: str | None = GLAMI_SHA256,
    force: bool = False,
    progress: bool = False,
    console: Any = None,
    timeout: float = TIMEOUT_S,
    on_start: Callable[[int, int | None], None] | None = None,
) -> FetchResult:
    """Download GLAMI-1M's archive into folder ``to`` (created if missing) as ``to/GLAMI-1M-dataset.zip``.

    A good copy already in ``to`` (the zip in the official layout, matching ``sha256`` when given, or the
    extracted ``GLAMI-1M-dataset/`` folder) is kept: nothing is downloaded and the result says
    ``downloaded=False``. An existing zip that fails the check raises :class:`FetchError` unless ``force``,
    which downloads again and replaces it once the new copy is verified. ``progress`` shows a rich bar on
    ``console`` (bytes, speed, ETA). ``on_start(resumed_from, total)`` is called once the server has answered,
    before the first byte is written (``total``: the archive's size, None when the server did not say).
    Resuming, verification and what stays on disk: see the module docstring.
    Raises :class:`FetchError` (network, verification, a locked part file), ``ValueError`` (a malformed
    ``sha256``) and ``OSError`` (the disk).
    """
    sha256 = _normalise_sha256(sha256)
    folder = Path(to)
    if folder.exists() and not folder.is_dir():
        raise FetchError(f"--to {folder} is a file, not a folder")
    final = folder / GLAMI_ZIP
    part = part_path(folder)
    if not force:
        if final.is_file():
            problem = _existing_copy(final, sha256)
            if problem is not None:
                raise FetchError(f"{final} already exists but is not a usable GLAMI-1M archive ({problem}); "
                                 f"rerun with --force to download it again")
            return FetchResult(final, downloaded=False, size=final.stat().st_size, existing="zip")
        extracted = find_glami(folder, strict=False) if folder.is_dir() else None
        if extracted is not None and extracted.kind == "dir" and all(
                (extracted.root / glami_csv_name(s)).is_file() for s in ("train", "test")):
            return FetchResult(extracted.root, downloaded=False, size=0, existing="dir")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    acquired = False
    try:
        with _locked(part) as f:
            acquired = True
            done, total, resumed_from, digest = _download(url, f, part, timeout, progress, console, on_start)
            actual = digest.hexdigest()
            problem = _verify(f, part, done, total, actual, sha256)
            if problem is not None:
                f.truncate(0)
    except BaseException:
        # a failure before any byte arrived leaves nothing behind (a part file with bytes is kept: resumable)
        if acquired:
            _remove_if_empty(part, folder if created else None)
        raise
    if problem is not None:
        part.unlink(missing_ok=True)
        _remove_if_empty(part, folder if created else None)
        raise FetchError(f"the download from {url} is not a good GLAMI-1M archive: {problem}; the partial file "
                         f"was removed and no {GLAMI_ZIP} written (check --url / --sha256, then rerun)")
    _forget_cached_zip(final)
    os.replace(part, final)
    location = find_glami(final, strict=False)
    if location is None or location.kind != "zip":  # pragma: no cover - check_glami_zip is stricter
        raise FetchError(f"{final} was downloaded and verified but is not recognised as GLAMI-1M")
    return FetchResult(final, downloaded=True, size=done, sha256=actual, resumed_from=resumed_from)


def _remove_if_empty(part: Path, folder: Path | None) -> None:
    """Remove an empty part file, and ``folder`` (one this call created) when nothing else is in it."""
    with contextlib.suppress(OSError):
        if part.is_file() and part.stat().st_size == 0:
            part.unlink()
        if folder is not None and not part.exists():
            folder.rmdir()  # fails (suppressed) when anything else is there


def _verify(f: IO[bytes], part: Path, done: int, total: int | None, actual: str, sha256: str | None) -> str | None:
    """None when the finished part file is good, else what is wrong with it."""
    if total is not None and done != total:
        return f"{done} bytes, the server announced {total}"
    if sha256 is not None and actual != sha256:
        return f"SHA-256 {actual}, expected {sha256}"
    f.flush()
    os.fsync(f.fileno())
    try:
        check_glami_zip(part)
    except ValueError as error:
        return str(error)
    return None


def _download(url: str, f: IO[bytes], part: Path, timeout: float, progress: bool, console: Any,
              on_start: Callable[[int, int | None], None] | None) -> tuple[int, int | None, int, Any]:
    """Stream ``url`` into the open part file ``f``, resuming what it holds. Returns (bytes in the part file,
    the size the server announced or None, bytes kept from an earlier run, the SHA-256 object of the whole
    file). Network errors raise :class:`FetchError` with the part file kept."""
    f.seek(0, os.SEEK_END)
    start = f.tell()
    try:
        response = _open(url, start, timeout)
        if response.status == 416:
            if start > 0 and response.total == start:  # the part file is already complete
                if on_start is not None:
                    on_start(start, start)
                return start, start, start, _sha256_file(f)
            f.truncate(0)  # a part file the server does not recognise (longer than the file): start again
            start = 0
            response = _open(url, 0, timeout)
        if response.status == 200 or response.start != start:
            if response.start != 0:
                response.body.close()
                raise FetchError(f"{url}: the server resumed at byte {response.start}, not {start}")
            f.truncate(0)  # 200: the server ignored Range and sends the whole file
            start = 0
    except _NETWORK_ERRORS as error:
        raise FetchError(f"cannot download {url}: {_reason(error)}; check the connection and rerun "
                         f"(a rerun resumes{' from ' + human_size(start) if start else ''})") from None
    total = response.total
    if total is not None:
        free = shutil.disk_usage(part.parent).free
        if total - start > free:
            response.body.close()
            raise FetchError(f"not enough disk space in {part.parent}: {human_size(total - start)} to download, "
                             f"{human_size(free)} free")
    if on_start is not None:
        on_start(start, total)
    digest = _sha256_file(f, start) if start else hashlib.sha256()
    f.seek(0, os.SEEK_END)
    done = start
    try:
        with response.body, progress_bar("GLAMI-1M", total, enabled=progress, unit="bytes", completed=start,
                                             console=console) as advance:
            for block in _chunks(response.body):
                f.write(block)
                digest.update(block)
                done += len(block)
                advance(len(block))
    except _NETWORK_ERRORS as error:
        f.flush()
        raise FetchError(f"download from {url} stopped after {human_size(done)}{_of(total)} ({_reason(error)}); "
                         f"rerun the same command to resume from {part}") from None
    f.flush()
    if total is not None and done < total:
        raise FetchError(f"download from {url} stopped after {human_size(done)}{_of(total)} (the connection closed "
                         f"early); rerun the same command to resume from {part}")
    return done, total, start, digest


def _of(total: int | None) -> str:
    return f" of {human_size(total)}" if total is not None else ""


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError):
        if not isinstance(error.reason, BaseException):
            return str(error.reason)
        error = error.reason
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
