"""``fluid data fetch glami-1m`` / :func:`fluid.data.fetch.fetch_glami` against a local HTTP server (#26.3).

Nothing leaves the machine: the server runs on 127.0.0.1 in a thread and serves a small archive in GLAMI-1M's
official layout (``GLAMI-1M-dataset/`` with both split CSVs and ``images/``), built from the fixtures of
tests/data/conftest.py.
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rich.console import Console
from typer.testing import CliRunner

from fluid.cli import app
from fluid.data import find_glami, read_catalogue
from fluid.data.fetch import FetchError, check_glami_zip, fetch_glami, part_path
from fluid.data.glami import GLAMI_ZIP

runner = CliRunner()


class _State:
    """What the server serves and what it saw. ``honour_range``: answer ``Range`` with 206 (else 200 with the
    whole file). ``cut_after``: on the next request, send only this many body bytes, then close the
    connection (the ``Content-Length`` still announces the whole body). ``stall_after``: the same, but then
    the server goes silent for 2 s instead of closing. ``status``: answer every request with
    this error code."""

    def __init__(self, data: bytes):
        self.data = data
        self.honour_range = True
        self.cut_after: int | None = None
        self.status: int | None = None
        self.stall_after: int | None = None  # on the next request: send this many bytes, then go silent
        self.ranges: list[str | None] = []  # the Range header of every GET (None: no Range)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_GET(self):
        state: _State = self.server.state  # type: ignore[attr-defined]
        wanted = self.headers.get("Range")
        state.ranges.append(wanted)
        if state.status is not None:
            self.send_error(state.status)
            return
        data, start = state.data, 0
        if wanted and state.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.cut_after is not None:
            body, state.cut_after = body[: state.cut_after], None
            self.close_connection = True
        if state.stall_after is not None:
            head, state.stall_after = body[: state.stall_after], None
            self.wfile.write(head)
            self.wfile.flush()
            time.sleep(2)
            return
        self.wfile.write(body)


@pytest.fixture
def official_zip(tmp_path, make_glami) -> bytes:
    """The bytes of a small archive in the official layout: GLAMI-1M-dataset/{train,test CSV, images/*.jpg}."""
    root = make_glami(tmp_path / "src")
    path = make_glami.zip(root, tmp_path / "built.zip")
    names = zipfile.ZipFile(path).namelist()
    assert {"GLAMI-1M-dataset/GLAMI-1M-train.csv", "GLAMI-1M-dataset/GLAMI-1M-test.csv",
            "GLAMI-1M-dataset/images/0101.jpg"} <= set(names)
    return path.read_bytes()


@pytest.fixture
def server(official_zip):
    state = _State(official_zip)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/GLAMI-1M-dataset.zip"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ the library


def test_full_download_is_verified_renamed_and_readable(tmp_path, server):
    out = tmp_path / "new" / "glami"  # created
    result = fetch_glami(out, url=server.url)
    final = out / GLAMI_ZIP
    assert result.downloaded and result.path == final and result.resumed_from == 0
    assert final.read_bytes() == server.data and result.size == len(server.data)
    assert result.sha256 == hashlib.sha256(server.data).hexdigest()
    assert not part_path(out).exists() and server.ranges == [None]
    location = find_glami(out)
    assert location.kind == "zip" and location.root == final.resolve() and location.prefix == "GLAMI-1M-dataset/"
    train, test = read_catalogue(final), read_catalogue(out, split="test")
    assert len(train) == 4 and len(test) == 2 and train.frame["id"].tolist()[0] == "007"


def test_an_interrupted_transfer_is_resumed_with_range(tmp_path, server):
    cut = len(server.data) // 2
    server.cut_after = cut
    with pytest.raises(FetchError, match=r"stopped after .*rerun the same command to resume") as error:
        fetch_glami(tmp_path, url=server.url)
    assert server.url in str(error.value)
    part = part_path(tmp_path)
    assert part.read_bytes() == server.data[:cut] and not (tmp_path / GLAMI_ZIP).exists()

    result = fetch_glami(tmp_path, url=server.url)
    assert server.ranges == [None, f"bytes={cut}-"]
    assert result.downloaded and result.resumed_from == cut
    assert (tmp_path / GLAMI_ZIP).read_bytes() == server.data and not part.exists()
    assert result.sha256 == hashlib.sha256(server.data).hexdigest()  # hash covers the kept prefix too


def test_a_stalled_transfer_times_out_keeps_the_part_and_resumes(tmp_path, server):
    server.stall_after = 1000
    with pytest.raises(FetchError, match=r"stopped after 1.0 KB of .*TimeoutError.*rerun the same command"):
        fetch_glami(tmp_path, url=server.url, timeout=0.5)
    assert part_path(tmp_path).read_bytes() == server.data[:1000]
    assert fetch_glami(tmp_path, url=server.url).resumed_from == 1000
    assert server.ranges == [None, "bytes=1000-"] and (tmp_path / GLAMI_ZIP).read_bytes() == server.data


def test_a_server_that_ignores_range_restarts_from_zero(tmp_path, server):
    server.honour_range = False
    part_path(tmp_path).write_bytes(b"stale bytes that must not stay in front")
    result = fetch_glami(tmp_path, url=server.url)
    assert server.ranges == [f"bytes={len(b'stale bytes that must not stay in front')}-"]
    assert result.resumed_from == 0 and (tmp_path / GLAMI_ZIP).read_bytes() == server.data


def test_416_on_a_complete_part_file_goes_straight_to_verification(tmp_path, server):
    part_path(tmp_path).write_bytes(server.data)
    result = fetch_glami(tmp_path, url=server.url)
    assert server.ranges == [f"bytes={len(server.data)}-"]
    assert result.downloaded and result.resumed_from == len(server.data)
    assert (tmp_path / GLAMI_ZIP).read_bytes() == server.data


def test_416_on_a_part_file_longer_than_the_archive_starts_again(tmp_path, server):
    part_path(tmp_path).write_bytes(server.data + b"tail")
    fetch_glami(tmp_path, url=server.url)
    assert server.ranges == [f"bytes={len(server.data) + 4}-", None]
    assert (tmp_path / GLAMI_ZIP).read_bytes() == server.data


def test_the_right_sha256_passes_and_a_wrong_one_is_rejected(tmp_path, server):
    good = hashlib.sha256(server.data).hexdigest()
    assert fetch_glami(tmp_path / "a", url=server.url, sha256=good.upper()).sha256 == good
    with pytest.raises(FetchError, match=f"SHA-256 {good}, expected {'0' * 64}.*partial file was removed"):
        fetch_glami(tmp_path / "b", url=server.url, sha256="0" * 64)
    assert not (tmp_path / "b" / GLAMI_ZIP).exists() and not part_path(tmp_path / "b").exists()
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        fetch_glami(tmp_path / "c", url=server.url, sha256="abc")


@pytest.mark.parametrize("damage, message", [
    ("not-a-zip", "not a zip archive"),
    ("flipped-byte", r"GLAMI-1M-dataset/GLAMI-1M-train\.csv is damaged"),
    ("no-test-csv", r"not the GLAMI-1M layout: expected GLAMI-1M-dataset/GLAMI-1M-train\.csv and "
                    r"GLAMI-1M-dataset/GLAMI-1M-test\.csv"),
    ("no-images", r"no GLAMI-1M-dataset/images/ folder"),
])
def test_a_corrupt_archive_is_rejected_and_nothing_is_kept(tmp_path, server, damage, message):
    data = server.data
    if damage == "not-a-zip":
        server.data = b"<html>not found</html>" * 50
    else:
        buffer = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buffer, "w") as dst:
            for info in src.infolist():
                if (damage == "no-test-csv" and info.filename.endswith("test.csv")) or (
                        damage == "no-images" and "/images/" in info.filename):
                    continue
                member = src.read(info)
                if damage == "flipped-byte" and info.filename.endswith("train.csv"):  # long: not read at once
                    member += b"".join(b"%d,9%d,shirt %d,,cz,12,x,machine\n" % (i, i, i) for i in range(5000))
                    member += b"last,999,LASTROW,,cz,12,x,machine\n"
                dst.writestr(info, member)
        server.data = buffer.getvalue()
        if damage == "flipped-byte":  # members are stored: flip a byte at the end of the train CSV
            at = server.data.index(b"LASTROW")
            server.data = server.data[:at] + b"l" + server.data[at + 1:]
    with pytest.raises(FetchError, match=message):
        fetch_glami(tmp_path / "out", url=server.url)
    assert not (tmp_path / "out" / GLAMI_ZIP).exists() and not part_path(tmp_path / "out").exists()
    assert not (tmp_path / "out").exists()  # the folder this call created is gone again


def test_check_glami_zip_accepts_the_official_layout(tmp_path, official_zip):
    path = tmp_path / "x.zip"
    path.write_bytes(official_zip)
    assert check_glami_zip(path) == "GLAMI-1M-dataset/"


def test_a_good_copy_is_not_overwritten_and_a_corrupt_one_needs_force(tmp_path, server):
    final = tmp_path / GLAMI_ZIP
    final.write_bytes(server.data)
    before = final.stat().st_mtime_ns
    result = fetch_glami(tmp_path, url=server.url)
    assert not result.downloaded and result.existing == "zip" and result.path == final
    assert server.ranges == [] and final.stat().st_mtime_ns == before
    # a good copy that does not match the SHA-256 asked for is not "good"
    with pytest.raises(FetchError, match=r"already exists but is not a usable GLAMI-1M archive.*--force"):
        fetch_glami(tmp_path, url=server.url, sha256="1" * 64)

    final.write_bytes(b"half a download")
    with pytest.raises(FetchError, match=r"already exists but is not a usable GLAMI-1M archive \(not a zip"):
        fetch_glami(tmp_path, url=server.url)
    assert server.ranges == [] and final.read_bytes() == b"half a download"
    result = fetch_glami(tmp_path, url=server.url, force=True)
    assert result.downloaded and final.read_bytes() == server.data and server.ranges == [None]


def test_force_replaces_a_copy_that_was_read_in_this_process(tmp_path, server, official_zip):
    # the image reader keeps one open handle per archive: the replaced archive must not be read through it
    final = tmp_path / GLAMI_ZIP
    other = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(official_zip)) as src, zipfile.ZipFile(other, "w") as dst:
        for info in src.infolist():
            if info.filename.endswith("train.csv"):
                dst.writestr(info, src.read(info).replace(b"red shirt", b"old shirt"))
            else:
                dst.writestr(info, src.read(info))
    final.write_bytes(other.getvalue())
    assert "old shirt" in read_catalogue(final).frame["text"].iloc[0]
    fetch_glami(tmp_path, url=server.url, force=True)
    assert "red shirt" in read_catalogue(final).frame["text"].iloc[0]


def test_an_extracted_copy_counts_as_a_good_copy(tmp_path, server, make_glami):
    root = make_glami(tmp_path)
    result = fetch_glami(tmp_path, url=server.url)
    assert not result.downloaded and result.existing == "dir" and result.path == root.resolve()
    assert server.ranges == [] and not (tmp_path / GLAMI_ZIP).exists()


def test_http_and_network_errors_name_the_url_and_leave_nothing(tmp_path, server):
    server.status = 404
    with pytest.raises(FetchError, match=r"HTTP 404 .*check --url") as error:
        fetch_glami(tmp_path / "a", url=server.url)
    assert server.url in str(error.value) and not (tmp_path / "a").exists()
    server.status = 503
    with pytest.raises(FetchError, match=r"HTTP 503 .*try again later"):
        fetch_glami(tmp_path / "a", url=server.url)
    url = f"http://127.0.0.1:{_closed_port()}/GLAMI-1M-dataset.zip"
    with pytest.raises(FetchError, match=r"cannot download .*rerun") as error:
        fetch_glami(tmp_path / "a", url=url)
    assert url in str(error.value) and not (tmp_path / "a").exists()


def test_progress_bar_only_when_asked(tmp_path, server):
    shown = Console(file=io.StringIO(), force_terminal=True, width=120)
    fetch_glami(tmp_path / "a", url=server.url, progress=True, console=shown)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.file.getvalue())
    size = f"{len(server.data) / 1000:.1f}"
    # bytes done / total, speed (? when too quick to measure), ETA
    assert re.search(rf"GLAMI-1M ━+ {size}/{size} kB (\?|[\d.]+ [kM]?B/s) eta \d:\d\d:\d\d", text), text
    hidden = Console(file=io.StringIO(), force_terminal=True, width=120)
    fetch_glami(tmp_path / "b", url=server.url, progress=False, console=hidden)
    assert hidden.file.getvalue() == ""


# ------------------------------------------------------------------------------------------ the command


def _fetch(*args: str):
    return runner.invoke(app, ["data", "fetch", *args])


def test_cli_downloads_and_prints_the_next_command(tmp_path, server):
    out = tmp_path / "data"
    result = _fetch("glami-1m", "--to", str(out), "--url", server.url)
    assert result.exit_code == 0, result.output
    final = out / GLAMI_ZIP
    assert final.read_bytes() == server.data
    assert f"downloaded and verified {final}" in result.stdout
    assert hashlib.sha256(server.data).hexdigest() in result.stdout
    assert f"fluid experiment paper --data {final}" in result.stdout
    assert f"fluid train --data {final} --out" in result.stdout
    assert "━" not in result.stdout  # not a terminal: no progress bar

    again = _fetch("glami-1m", "--to", str(out), "--url", server.url)
    assert again.exit_code == 0 and "already holds a good copy" in again.stdout and str(final) in again.stdout
    assert server.ranges == [None]

    quiet = _fetch("glami-1m", "--to", str(out), "--url", server.url, "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == f"{final}\n"


def test_cli_resumes_after_an_interruption(tmp_path, server):
    server.cut_after = 100
    first = _fetch("glami-1m", "--to", str(tmp_path), "--url", server.url, "-q")
    assert first.exit_code == 2 and first.stdout == ""
    assert re.fullmatch(r"error: download from \S+ stopped after 100 B of .* rerun the same command to resume "
                        r"from \S+\.part\n", first.stderr), first.stderr
    second = _fetch("glami-1m", "--to", str(tmp_path), "--url", server.url)
    assert second.exit_code == 0, second.output
    assert "resuming at" in second.stdout and "resumed at 100 bytes" in second.stdout
    assert server.ranges == [None, "bytes=100-"] and (tmp_path / GLAMI_ZIP).read_bytes() == server.data


@pytest.mark.parametrize("case", ["unknown-dataset", "corrupt-existing", "bad-sha", "404"])
def test_cli_user_errors_are_one_line_with_exit_2(tmp_path, server, case):
    args = ["glami-1m", "--to", str(tmp_path), "--url", server.url]
    expected = {"unknown-dataset": "unknown dataset 'imagenet': choose from glami-1m",
                "corrupt-existing": "rerun with --force to download it again",
                "bad-sha": "--sha256 must be 64 hexadecimal digits",
                "404": f"{server.url}: HTTP 404"}[case]
    if case == "unknown-dataset":
        args[0] = "imagenet"
    elif case == "corrupt-existing":
        (tmp_path / GLAMI_ZIP).write_bytes(b"junk")
    elif case == "bad-sha":
        args += ["--sha256", "xyz"]
    else:
        server.status = 404
    result = _fetch(*args)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert not part_path(tmp_path).exists()


def test_the_fluid_executable_reports_a_rejected_download_on_one_line(tmp_path, server):
    server.data = b"not a zip at all" * 100
    result = subprocess.run([sys.executable, "-m", "fluid", "data", "fetch", "glami-1m", "--to",
                             str(tmp_path / "out"), "--url", server.url], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the download from ") and "not a zip archive" in lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    assert f"downloading GLAMI-1M ({len(server.data) / 1000:.1f} KB) from {server.url}" in result.stdout
