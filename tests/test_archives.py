"""Downloads resume and verify; extraction is safe and leaves nothing half-written."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from common.archives import ArchiveError, check_md5
from common.download import DownloadError, download
from extract_archive import extract_members


# --- extraction ------------------------------------------------------------
def make_tar(path: Path, members: list[tarfile.TarInfo], gz: bool = False) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for info in members:
            data = b"x" * info.size if info.isfile() else None
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name: str, size: int = 3) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def link_member(name: str, target: str, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    "bad_member, why",
    [
        (file_member("/etc/evil.txt"), "absolute path"),
        (file_member("data/../../evil.txt"), "'..'"),
        (link_member("data/link", "/etc/passwd"), "links outside"),
        (link_member("data/link", "../../outside"), "links outside"),
        (link_member("data/hard", "../outside", hard=True), "links outside"),
    ],
    ids=["absolute", "dotdot", "symlink-absolute", "symlink-relative", "hardlink"],
)
def test_unsafe_member_stops_extraction_naming_it(tmp_path, bad_member, why):
    archive = make_tar(tmp_path / "bad.tar", [file_member("data/ok.txt"), bad_member])
    out = tmp_path / "out"
    with pytest.raises(ArchiveError) as error:
        extract_members(archive, {"data": out / "data"}, workdir=out)
    assert bad_member.name in str(error.value) and why in str(error.value)
    assert str(archive) in str(error.value)
    assert leftovers(out) == []


def test_device_member_is_refused(tmp_path):
    device = tarfile.TarInfo("data/null")
    device.type = tarfile.CHRTYPE
    archive = make_tar(tmp_path / "dev.tar", [device])
    with pytest.raises(ArchiveError, match="data/null"):
        extract_members(archive, {"data": tmp_path / "out/data"})
    assert leftovers(tmp_path / "out") == []


def test_link_inside_destination_is_allowed(tmp_path):
    archive = make_tar(tmp_path / "ok.tar", [file_member("data/a.txt"), link_member("data/b.txt", "a.txt")])
    extract_members(archive, {"data": tmp_path / "out/data"})
    assert (tmp_path / "out/data/b.txt").read_bytes() == b"xxx"


@pytest.mark.parametrize("which", ["voc", "sbd"])
def test_truncated_archive_fails_naming_it(tmp_path, mini_archives, which):
    source = getattr(mini_archives, which)
    archive = tmp_path / source.name
    archive.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    out = tmp_path / "out"
    members = {"VOCdevkit": out / "voc"} if which == "voc" else {"benchmark_RELEASE": out / "sbd"}
    with pytest.raises(ArchiveError, match="corrupt or truncated") as error:
        extract_members(archive, members, workdir=out)
    assert str(archive) in str(error.value)
    assert leftovers(out) == []


def test_garbage_is_not_an_archive(tmp_path):
    archive = tmp_path / "VOCtrainval_11-May-2012.tar"
    archive.write_bytes(os.urandom(4096))
    with pytest.raises(ArchiveError, match="VOCtrainval_11-May-2012.tar"):
        extract_members(archive, {"VOCdevkit": tmp_path / "out/VOCdevkit"})


def test_missing_member_is_named_and_nothing_is_moved(tmp_path, mini_archives):
    out = tmp_path / "out"
    members = {
        "VOCdevkit/VOC2012/JPEGImages": out / "JPEGImages",
        "VOCdevkit/VOC2012/NoSuchFolder": out / "NoSuchFolder",
    }
    with pytest.raises(ArchiveError, match="VOCdevkit/VOC2012/NoSuchFolder"):
        extract_members(mini_archives.voc, members, workdir=out)
    assert leftovers(out) == []


def test_extracts_only_the_requested_members(tmp_path, mini_archives, extracted):
    out = tmp_path / "out"
    extract_members(
        mini_archives.sbd,
        {"benchmark_RELEASE/dataset/cls": out / "cls", "benchmark_RELEASE/dataset/train.txt": out / "train.txt"},
    )
    assert leftovers(out) == ["cls", "train.txt"]
    assert sorted(p.name for p in (out / "cls").iterdir()) == sorted(p.name for p in extracted.sbd_cls.iterdir())
    assert (out / "train.txt").read_bytes() == extracted.sbd_train.read_bytes()


def test_md5_mismatch_names_archive_and_key(mini_archives):
    with pytest.raises(ArchiveError) as error:
        check_md5(mini_archives.voc, "0" * 32, "data.voc.md5")
    assert str(mini_archives.voc) in str(error.value) and "data.voc.md5" in str(error.value)
    check_md5(mini_archives.voc, mini_archives.md5s[mini_archives.voc.name], "data.voc.md5")


# --- download --------------------------------------------------------------
PAYLOAD = os.urandom(300_000)
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


class RangeServer(ThreadingHTTPServer):
    """Serves PAYLOAD with Range support; can drop the connection mid-way."""

    cut_after: int | None = None
    honour_range = True
    requests: list


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server: RangeServer = self.server
        requested = self.headers.get("Range")
        server.requests.append(requested)
        start = 0
        if requested and server.honour_range:
            start = int(requested.removeprefix("bytes=").split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:
            self.wfile.write(body[: server.cut_after])
            server.cut_after = None
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = RangeServer(("127.0.0.1", 0), Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url_of(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/benchmark.tgz"


def test_download_verifies_md5_and_renames(tmp_path, server):
    dest = download(url_of(server), tmp_path / "benchmark.tgz", PAYLOAD_MD5, timeout=10)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "benchmark.tgz.part").exists()


def test_interrupted_download_is_not_complete_and_resumes(tmp_path, server):
    dest = tmp_path / "benchmark.tgz"
    server.cut_after = 100_000
    with pytest.raises(DownloadError, match="run again to resume"):
        download(url_of(server), dest, PAYLOAD_MD5, timeout=10)
    assert not dest.exists()
    part = tmp_path / "benchmark.tgz.part"
    assert 0 < part.stat().st_size < len(PAYLOAD)
    kept = part.stat().st_size
    download(url_of(server), dest, PAYLOAD_MD5, timeout=10)
    assert server.requests[-1] == f"bytes={kept}-"
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_complete_part_file_is_verified_not_refetched(tmp_path, server):
    (tmp_path / "benchmark.tgz.part").write_bytes(PAYLOAD)
    download(url_of(server), tmp_path / "benchmark.tgz", PAYLOAD_MD5, timeout=10)
    assert (tmp_path / "benchmark.tgz").read_bytes() == PAYLOAD


def test_server_without_range_support_starts_again(tmp_path, server):
    server.honour_range = False
    (tmp_path / "benchmark.tgz.part").write_bytes(b"stale bytes")
    download(url_of(server), tmp_path / "benchmark.tgz", PAYLOAD_MD5, timeout=10)
    assert (tmp_path / "benchmark.tgz").read_bytes() == PAYLOAD


def test_wrong_md5_leaves_no_file(tmp_path, server):
    dest = tmp_path / "benchmark.tgz"
    with pytest.raises(DownloadError, match="md5"):
        download(url_of(server), dest, "0" * 32, timeout=10)
    assert leftovers(tmp_path) == []


def test_unreachable_url_names_it(tmp_path, server):
    url = url_of(server)
    server.shutdown()
    server.server_close()
    with pytest.raises(DownloadError, match="127.0.0.1"):
        download(url, tmp_path / "benchmark.tgz", PAYLOAD_MD5, timeout=5)
    assert not (tmp_path / "benchmark.tgz").exists()
