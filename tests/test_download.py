"""The download core (vaetransfer.data.download) against a local HTTP server on 127.0.0.1, and the
real `download` + `prepare_dataset` rules through Snakemake (dSprites, served from that server)."""

from __future__ import annotations

import hashlib
import http.server
import re
import shutil
import socket
import subprocess
import threading

import numpy as np
import pytest

from vaetransfer.data import download
from vaetransfer.data.download import ChecksumError, MissingResource, Resource

from .conftest import REPO, run_snakemake


# --------------------------------------------------------------------------- a local file server


class FileServer:
    """Serves ``files`` (URL path -> bytes) with Range support; knobs to misbehave."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, dict]] = []
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before the first response is cut
        self.gdrive: dict[str, str] = {}  # path -> style of the confirmation page ("form", "link", "cookie")
        self.ignore_range = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path, _, query = self.path.partition("?")
                server.requests.append((self.path, dict(self.headers)))
                if path in server.gdrive and "confirm=" not in query:
                    return self._confirmation_page(path, server.gdrive[path])
                if path in server.gdrive and server.gdrive[path] == "cookie" and "download_warning_1=tok1" not in (self.headers.get("Cookie") or ""):
                    return self._send(403, b"no cookie", "text/plain")
                if path not in server.files:
                    return self._send(404, b"not found", "text/plain")
                data = server.files[path]
                start = 0
                rng = self.headers.get("Range")
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        return self._send(416, b"", "text/plain")
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                cut = server.cut_after.pop(path, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def _confirmation_page(self, path, style):
                if style == "form":
                    page = (
                        "<html><body>Google Drive can't scan this file for viruses."
                        f'<form id="download-form" action="{path}" method="get">'
                        '<input type="submit" id="uc-download-link" value="Download anyway"/>'
                        '<input type="hidden" name="id" value="abc"><input type="hidden" name="export" value="download">'
                        '<input type="hidden" name="confirm" value="t">'
                        '<input type="hidden" name="uuid" value="0f-1"></form></body></html>'
                    )
                    return self._send(200, page.encode(), "text/html; charset=utf-8")
                if style == "link":
                    page = f'<html><a id="uc-download-link" href="{path}?id=abc&amp;export=download&amp;confirm=Xy_z">Download</a></html>'
                    return self._send(200, page.encode(), "text/html; charset=utf-8")
                if style == "none":
                    return self._send(200, b"<html>Too many users have viewed or downloaded this file recently.</html>", "text/html")
                self.send_response(200)
                self.send_header("Set-Cookie", "download_warning_1=tok1; Path=/")
                body = b"<html>virus scan warning</html>"
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _send(self, status, body, ctype):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"


@pytest.fixture
def server():
    srv = FileServer()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


def _payload(n=300_000, seed=0) -> bytes:
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _resource(server, data, name="blob.bin", checksum="sha256", **kw) -> Resource:
    server.files[f"/{name}"] = data
    if checksum == "sha256":
        checksum = "sha256:" + hashlib.sha256(data).hexdigest()
    return Resource("toy", name, server.url(f"/{name}"), checksum, **kw)


# --------------------------------------------------------------------------- checksums


def test_checksum_algorithms(tmp_path):
    path = tmp_path / "f.bin"
    data = _payload(5000)
    path.write_bytes(data)
    assert download.checksum_of(path, "sha256") == hashlib.sha256(data).hexdigest()
    assert download.checksum_of(path, "md5") == hashlib.md5(data).hexdigest()
    assert download.checksum_of(path, "sha1") == hashlib.sha1(data).hexdigest()
    blob = download.checksum_of(path, "gitblob")
    assert blob == hashlib.sha1(b"blob 5000\0" + data).hexdigest()
    git = shutil.which("git")
    if git:
        assert blob == subprocess.run([git, "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    with pytest.raises(ValueError, match="algorithm"):
        download.parse_checksum("crc32:abcd")
    with pytest.raises(ValueError, match="bad checksum"):
        Resource("toy", "f", "http://x", "sha256:not-hex")


# --------------------------------------------------------------------------- fetch


def test_fetch_verifies_and_keeps_an_existing_file(server, tmp_path):
    data = _payload()
    res = _resource(server, data)
    path = download.fetch(res, tmp_path, progress=False)
    assert path == tmp_path / "toy" / "blob.bin" and path.read_bytes() == data
    assert not (tmp_path / "toy" / "blob.bin.part").exists()
    n = len(server.requests)
    # Already there (downloaded, or placed by hand): verified, not downloaded again.
    assert download.fetch(res, tmp_path, progress=False) == path and len(server.requests) == n


def test_fetch_resumes_a_partial_download(server, tmp_path):
    data = _payload()
    res = _resource(server, data)
    part = tmp_path / "toy" / "blob.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:123_456])  # a download killed earlier
    download.fetch(res, tmp_path, progress=False)
    assert (tmp_path / "toy" / "blob.bin").read_bytes() == data
    assert server.requests[0][1].get("Range") == "bytes=123456-"


def test_fetch_retries_a_cut_connection_and_resumes(server, tmp_path):
    data = _payload()
    res = _resource(server, data)
    server.cut_after["/blob.bin"] = 100_000
    download.fetch(res, tmp_path, progress=False, backoff=0)
    assert (tmp_path / "toy" / "blob.bin").read_bytes() == data
    assert len(server.requests) == 2
    assert "Range" not in server.requests[0][1]
    assert server.requests[1][1].get("Range") == "bytes=100000-"


def test_fetch_starts_over_when_the_server_ignores_range(server, tmp_path):
    data = _payload()
    res = _resource(server, data)
    server.ignore_range = True
    part = tmp_path / "toy" / "blob.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 5000)
    download.fetch(res, tmp_path, progress=False)
    assert (tmp_path / "toy" / "blob.bin").read_bytes() == data


def test_checksum_mismatch_moves_the_file_aside(server, tmp_path):
    data = _payload()
    res = _resource(server, data)
    server.files["/blob.bin"] = data[:-1] + b"\0"  # the server now sends a damaged copy
    with pytest.raises(ChecksumError) as info:
        download.fetch(res, tmp_path, progress=False)
    message = str(info.value)
    actual = hashlib.sha256(server.files["/blob.bin"]).hexdigest()
    assert res.checksum in message and f"sha256:{actual}" in message and res.url in message
    assert "blob.bin" in message
    folder = tmp_path / "toy"
    assert not (folder / "blob.bin").exists() and not (folder / "blob.bin.part").exists()
    assert (folder / "blob.bin.corrupt").read_bytes() == server.files["/blob.bin"]


def test_a_bad_file_placed_by_hand_is_moved_aside(tmp_path):
    res = Resource("toy", "blob.bin", "http://127.0.0.1:9/blob.bin", "md5:" + "0" * 32)
    path = tmp_path / "toy" / "blob.bin"
    path.parent.mkdir()
    path.write_bytes(b"hello")
    with pytest.raises(ChecksumError, match="md5:5d41402abc4b2a76b9719d911017c592"):
        download.verify(path, res)
    assert not path.exists() and (tmp_path / "toy" / "blob.bin.corrupt").exists()


def _refused_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}/dsprites.npz"


def test_offline_names_the_file_its_url_checksum_and_destination(tmp_path):
    res = Resource("dsprites", "dsprites.npz", _refused_url(), "gitblob:" + "d9" * 20, licence="Apache-2.0")
    with pytest.raises(MissingResource) as info:
        download.fetch(res, tmp_path / "resources/downloads", progress=False, retries=1, backoff=0)
    message = str(info.value)
    for needle in ("dsprites.npz", res.url, res.checksum, "Apache-2.0", "after 2 attempts"):
        assert needle in message
    assert str(tmp_path / "resources/downloads/dsprites/dsprites.npz") in message
    assert not (tmp_path / "resources/downloads/dsprites/dsprites.npz").exists()


def test_http_404_is_not_retried(server, tmp_path):
    res = Resource("toy", "gone.bin", server.url("/gone.bin"), "sha256:" + "0" * 64)
    with pytest.raises(MissingResource, match="HTTP 404"):
        download.fetch(res, tmp_path, progress=False, retries=3, backoff=5)
    assert len(server.requests) == 1


def test_trust_on_first_use_without_a_published_checksum(server, tmp_path):
    data = _payload()
    res = _resource(server, data, checksum=None)
    path = download.fetch(res, tmp_path, progress=False)
    record = tmp_path / "toy" / "blob.bin.sha256"
    assert record.read_text().split()[0] == hashlib.sha256(data).hexdigest()
    assert download.verify(path, res) == "sha256:" + hashlib.sha256(data).hexdigest()
    # A different file later (upstream changed, or damaged): refused against the record.
    path.unlink()
    server.files["/blob.bin"] = _payload(seed=1)
    with pytest.raises(ChecksumError, match="recorded in"):
        download.fetch(res, tmp_path, progress=False)
    assert not path.exists() and (tmp_path / "toy" / "blob.bin.corrupt").exists()


@pytest.mark.parametrize("style", ["form", "link", "cookie"])
def test_google_drive_confirmation(server, tmp_path, style):
    data = _payload()
    res = _resource(server, data, gdrive=True)
    server.gdrive["/blob.bin"] = style
    path = download.fetch(res, tmp_path, progress=False, retries=0)
    assert path.read_bytes() == data
    assert len(server.requests) == 2 and "confirm=" in server.requests[1][0]


def test_google_drive_quota_page_is_reported(server, tmp_path):
    res = Resource("toy", "q.bin", server.url("/q.bin"), None, gdrive=True)
    server.gdrive["/q.bin"] = "none"  # a page without any confirmation: "quota exceeded"
    with pytest.raises(MissingResource, match="Google Drive"):
        download.fetch(res, tmp_path, progress=False, retries=0)


def test_overrides_replace_url_and_checksum_and_name_bad_keys():
    base = (Resource("dsprites", "a.npz", "https://example.org/a.npz", "gitblob:" + "a" * 40),)
    (mirror,) = download.apply_overrides("dsprites", base, {"a.npz": {"url": "http://127.0.0.1/a", "checksum": "md5:" + "b" * 32}})
    assert mirror.url == "http://127.0.0.1/a" and mirror.checksum == "md5:" + "b" * 32
    assert download.apply_overrides("dsprites", base, None) == base
    with pytest.raises(ValueError, match=r"datasets\.dsprites\.files\.b\.npz.*not a file"):
        download.apply_overrides("dsprites", base, {"b.npz": {"url": "x"}})
    with pytest.raises(ValueError, match=r"datasets\.dsprites\.files\.a\.npz\.checksum"):
        download.apply_overrides("dsprites", base, {"a.npz": {"checksum": "sha512:00"}})


# --------------------------------------------------------------------------- through Snakemake


def _dsprites_fixture(directory):
    """The dSprites fixture builder of tests/fixtures_real_a.py, or a skip naming what is missing."""
    try:
        from vaetransfer.data.real import dataset_module

        module = dataset_module("dsprites")
        from .fixtures_real_a import make_dsprites_files
    except ImportError as err:
        pytest.skip(f"dSprites module or fixture builder not importable yet: {err}")
    return module, make_dsprites_files(directory)


def _download_config(workdir, url, checksum):
    import yaml

    tiny = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    filename = url.rsplit("/", 1)[1]
    tiny["datasets"]["dsprites"] = {"source": "download", "files": {filename: {"url": url, "checksum": checksum}}}
    path = workdir / "download.yaml"
    path.write_text(yaml.safe_dump(tiny))
    return ["--configfile", str(path)]


@pytest.fixture
def served_dsprites(server, workdir, tmp_path_factory):
    """dSprites served on 127.0.0.1: (config args, the file's bytes, its filename)."""
    module, files = _dsprites_fixture(tmp_path_factory.mktemp("dsprites_src"))
    (filename, path), = files.items()
    data = path.read_bytes()
    server.files[f"/mirror/{filename}"] = data
    checksum = "gitblob:" + download.checksum_of(path, "gitblob")
    return _download_config(workdir, server.url(f"/mirror/{filename}"), checksum), data, filename


def test_workflow_downloads_verifies_and_preprocesses(served_dsprites, workdir, server):
    config, data, filename = served_dsprites
    run_snakemake(*config, "--cores", "1", "results/data/dsprites/meta.json", cwd=workdir)
    assert (workdir / "resources/downloads/dsprites" / filename).read_bytes() == data
    from vaetransfer.data.store import load_images, load_meta

    meta = load_meta(workdir / "results/data/dsprites")
    assert meta["n"] == 48 and meta["channels"] == 1 and load_images(workdir / "results/data/dsprites").shape == (48, 64, 64, 1)
    assert "verified" in (workdir / "results/logs/download/dsprites" / f"{filename}.log").read_text()
    # Nothing left to do: the downloaded file's mtime does not make anything rerun.
    proc = run_snakemake(*config, "-n", "results/data/dsprites/meta.json", cwd=workdir)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_workflow_uses_files_placed_by_hand(served_dsprites, workdir, server):
    config, data, filename = served_dsprites
    placed = workdir / "resources/downloads/dsprites" / filename
    placed.parent.mkdir(parents=True)
    placed.write_bytes(data)
    proc = run_snakemake("results/data/dsprites/meta.json", "-n", "--quiet", "rules", *config, cwd=workdir)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    assert "download" not in counts and counts["prepare_dataset"] == "1"
    server.files.clear()  # offline
    run_snakemake(*config, "--cores", "1", "results/data/dsprites/meta.json", cwd=workdir)
    assert (workdir / "results/data/dsprites/meta.json").exists() and not server.requests


def test_workflow_refuses_a_corrupt_download(served_dsprites, workdir, server):
    config, data, filename = served_dsprites
    server.files[f"/mirror/{filename}"] = data[:-10] + b"\0" * 10
    proc = run_snakemake(*config, "--cores", "1", "results/data/dsprites/meta.json", cwd=workdir, check=False)
    assert proc.returncode != 0
    log = (workdir / "results/logs/download/dsprites" / f"{filename}.log").read_text()
    assert "failed its checksum" in log and "expected: gitblob:" in log
    folder = workdir / "resources/downloads/dsprites"
    assert not (folder / filename).exists() and (folder / f"{filename}.corrupt").exists()
    out_dir = workdir / "results/data/dsprites"
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_workflow_refuses_a_corrupt_file_placed_by_hand(served_dsprites, workdir):
    config, data, filename = served_dsprites
    placed = workdir / "resources/downloads/dsprites" / filename
    placed.parent.mkdir(parents=True)
    placed.write_bytes(data[:-1] + b"\1")
    proc = run_snakemake(*config, "--cores", "1", "results/data/dsprites/meta.json", cwd=workdir, check=False)
    assert proc.returncode != 0
    log = (workdir / "results/logs/prepare_dataset/dsprites.log").read_text()
    assert "failed its checksum" in log
    assert not placed.exists() and placed.with_name(filename + ".corrupt").exists()
    out_dir = workdir / "results/data/dsprites"
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_config_override_of_an_unknown_file_is_refused(workdir):
    config = _download_config(workdir, "http://127.0.0.1:9/not_a_dsprites_file.npz", "md5:" + "0" * 32)
    proc = run_snakemake(*config, "-n", cwd=workdir, check=False)
    assert proc.returncode != 0
    assert "datasets.dsprites.files.not_a_dsprites_file.npz" in proc.stdout + proc.stderr


def test_build_dataset_without_the_files_says_what_to_fetch(tmp_path):
    from vaetransfer.data.generate import build_dataset

    with pytest.raises(MissingResource) as info:
        build_dataset("symsol", {"source": "download"}, tmp_path / "out", files=None)
    message = str(info.value)
    assert "symsol_reduced.zip" in message and "https://data.kent.ac.uk/436/1/symsol_reduced.zip" in message
    assert "none published" in message and "resources/downloads/symsol/symsol_reduced.zip" in message
    assert not (tmp_path / "out").exists()


def _fixture_files(name, directory):
    from . import fixtures_real_a, fixtures_real_b

    builder = getattr(fixtures_real_a, f"make_{name}_files", None) or getattr(fixtures_real_b, f"make_{name}_files")
    return builder(directory)


@pytest.mark.parametrize("name, channels", [
    ("dsprites", 1), ("cars3d", 3), ("smallnorb", 1), ("symsol", 1), ("celeba", 3),
])
def test_every_real_dataset_goes_through_download_verify_preprocess(name, channels, server, workdir, tmp_path):
    """Each dataset's fixture, in its real file format, served on 127.0.0.1 and fetched by the
    download rule (Symsol without a published checksum: its sha256 is recorded on first download),
    verified and preprocessed by prepare_dataset into the store layout."""
    import yaml

    from vaetransfer.data.real import resources
    from vaetransfer.data.store import load_factors, load_images, load_meta

    files = _fixture_files(name, tmp_path / "src")
    assert set(files) == {r.filename for r in resources(name)}  # the fixture is the real file list
    overrides = {}
    for filename, path in files.items():
        server.files[f"/{name}/{filename}"] = path.read_bytes()
        entry = {"url": server.url(f"/{name}/{filename}")}
        if next(r for r in resources(name) if r.filename == filename).checksum is not None:
            entry["checksum"] = "sha256:" + download.checksum_of(path, "sha256")
        overrides[filename] = entry
    config = {
        "datasets": {name: {"source": "download", "files": overrides}},
        "training": {"sweeps": [{"objective": "beta_vae", "values": [1], "datasets": [name]}], "seeds": [0],
                     "steps": 2, "checkpoint_steps": [2]},
        "similarity": {"metrics": ["cka"], "n_examples": 4, "families": ["learning_dynamics"]},
        "figures": {},
    }
    (workdir / "real.yaml").write_text(yaml.safe_dump(config))
    run_snakemake("--configfile", "real.yaml", "--cores", "1", f"results/data/{name}/meta.json", cwd=workdir)
    for filename, path in files.items():
        assert (workdir / "resources/downloads" / name / filename).read_bytes() == path.read_bytes()
    if name == "symsol":
        assert (workdir / "resources/downloads/symsol/symsol_reduced.zip.sha256").exists()
    out = workdir / "results/data" / name
    meta, images, factors = load_meta(out), load_images(out), load_factors(out)
    assert images.dtype == np.uint8 and images.shape == (meta["n"], 64, 64, channels) and meta["n"] > 0
    assert meta["channels"] == channels and len(factors) == meta["n"] and images.max() > 0
    for factor, entry in meta["factors"].items():
        if entry["size"] > 0:  # discrete: class indices (or grid indices) within the factor's size
            assert factors[factor].nunique() <= entry["size"]
