"""Fetching the original files of the real datasets: download, resume, verify, or explain what to fetch.

Every original file is a :class:`Resource` (declared by its dataset's module in
:mod:`vaetransfer.data.real`) and lives at ``resources/downloads/<dataset>/<filename>``. A user
behind a firewall puts the files there by hand; the workflow then uses them as they are.

- :func:`fetch` downloads one resource with the standard library only: into ``<filename>.part``,
  resumed with an HTTP ``Range`` request after an interruption, retried with exponential backoff,
  a progress bar on stderr, Google Drive's "can't scan this file for viruses" confirmation page
  answered, and renamed into place only once verified. When the file cannot be fetched it raises
  :class:`MissingResource`, whose message says what to download by hand and where to put it.
- :func:`verify` checks a file against its resource's checksum; a mismatching file is moved aside to
  ``<filename>.corrupt`` (never processed) and :class:`ChecksumError` names both checksums and the
  URL. A resource without a published checksum is trusted on first use: the sha256 of the first
  copy is recorded in ``<filename>.sha256`` next to it and later copies must match it.
- :func:`apply_overrides` points resources at a mirror (config ``datasets.<name>.files``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import http.client
import http.cookiejar
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

#: Checksum algorithms a :class:`Resource` may name: hashlib's, plus git's blob id (the sha1 of
#: ``b"blob <size>\0" + content``, what GitHub publishes for dSprites).
CHECKSUM_ALGORITHMS = ("sha256", "md5", "sha1", "gitblob")

#: Where the original files live, relative to the working directory of the workflow.
DOWNLOADS_DIR = Path("resources/downloads")

_CHUNK = 1 << 20
_USER_AGENT = "vaetransfer-downloader/1 (+https://arxiv.org/abs/2304.10767)"
# HTTP statuses worth retrying: the server or a proxy is busy, not "this file does not exist".
_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Resource:
    """One original file of a real dataset.

    ``checksum``: ``"<algorithm>:<hex>"`` (an algorithm of :data:`CHECKSUM_ALGORITHMS`), or None
    when no checksum is published (Symsol_reduced): then the sha256 of the first download is
    recorded next to the file and later copies are verified against it (trust on first use).
    ``size``: bytes, when published. ``gdrive``: served by Google Drive, which asks for a
    confirmation step before large files. ``licence``: shown with every message about the file.
    """

    dataset: str
    filename: str
    url: str
    checksum: str | None
    size: int | None = None
    gdrive: bool = False
    licence: str = ""

    def __post_init__(self):
        if self.checksum is not None:
            parse_checksum(self.checksum)

    def destination(self, downloads_dir: str | os.PathLike = DOWNLOADS_DIR) -> Path:
        """``<downloads_dir>/<dataset>/<filename>``: where the file must be."""
        return Path(downloads_dir) / self.dataset / self.filename


class DownloadError(RuntimeError):
    """Base class of the errors of this module."""


class ChecksumError(DownloadError):
    """A file does not match its checksum; it has been moved aside (``<filename>.corrupt``)."""


class MissingResource(DownloadError):
    """A file is not on disk and could not be downloaded; the message says what to do by hand."""


class _Retriable(Exception):
    """A transient failure inside one download attempt."""


# ----------------------------------------------------------------------------- checksums


def parse_checksum(checksum: str) -> tuple[str, str]:
    """``"<algorithm>:<hex>"`` -> (algorithm, lower-case hex); ValueError for anything else."""
    algorithm, sep, digest = str(checksum).partition(":")
    if not sep or algorithm not in CHECKSUM_ALGORITHMS or not re.fullmatch(r"[0-9a-fA-F]+", digest):
        raise ValueError(
            f"bad checksum {checksum!r}: expected '<algorithm>:<hex>' with algorithm one of "
            f"{list(CHECKSUM_ALGORITHMS)}"
        )
    return algorithm, digest.lower()


def checksum_of(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of the file at ``path`` (read in 1 MiB chunks).

    ``gitblob`` is the id ``git hash-object`` prints: sha1 of ``b"blob <size>\\0"`` + content.
    """
    path = Path(path)
    if algorithm == "gitblob":
        digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    elif algorithm in CHECKSUM_ALGORITHMS:
        digest = hashlib.new(algorithm)
    else:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; known: {list(CHECKSUM_ALGORITHMS)}")
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_path(resource: Resource, directory: str | os.PathLike) -> Path:
    """The trust-on-first-use record of a resource without a published checksum."""
    return Path(directory) / f"{resource.filename}.sha256"


def corrupt_path(resource: Resource, directory: str | os.PathLike) -> Path:
    """Where a file that failed its checksum is moved to."""
    return Path(directory) / f"{resource.filename}.corrupt"


def verify(path: str | os.PathLike, resource: Resource, record_dir: str | os.PathLike | None = None) -> str:
    """Check the file at ``path`` against ``resource``; return its ``"<algorithm>:<hex>"``.

    On a mismatch the file is moved to ``<filename>.corrupt`` beside it (replacing an older one)
    and :class:`ChecksumError` is raised naming the file, both checksums and the URL. Without a
    published checksum, the first file verified has its sha256 recorded in
    ``<record_dir>/<filename>.sha256`` (default: beside the file) and later ones must match it.
    """
    path = Path(path)
    directory = path.parent
    record = record_path(resource, record_dir if record_dir is not None else directory)
    if resource.checksum is not None:
        algorithm, expected = parse_checksum(resource.checksum)
        source = "published"
    elif record.exists():
        algorithm, expected = "sha256", record.read_text().split()[0].lower()
        source = f"recorded in {record} when the file was first fetched (no checksum is published)"
    else:
        algorithm, expected, source = "sha256", None, None
    actual = checksum_of(path, algorithm)
    if expected is None:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(f"{actual}  {resource.filename}\n")
        print(
            f"{resource.dataset}/{resource.filename}: no checksum is published; recorded its sha256 "
            f"{actual} in {record} (trust on first use: later copies are verified against it)",
            file=sys.stderr,
        )
        return f"sha256:{actual}"
    if actual != expected:
        aside = corrupt_path(resource, directory)
        os.replace(path, aside)
        hint = (
            f"delete {record} if the file really changed upstream"
            if resource.checksum is None
            else "download it again, or put a good copy there by hand"
        )
        raise ChecksumError(
            f"{resource.dataset}/{resource.filename} failed its checksum and was moved aside to {aside} "
            f"(it will not be processed).\n"
            f"  expected: {algorithm}:{expected} ({source})\n"
            f"  actual:   {algorithm}:{actual}\n"
            f"  URL:      {resource.url}\n"
            f"  file:     {resource.destination(directory.parent)}\n"
            f"Remove the .corrupt file when done; {hint}."
        )
    return f"{algorithm}:{actual}"


# ----------------------------------------------------------------------------- overrides (mirrors)


def check_overrides(dataset: str, overrides: Mapping[str, Any] | None, resources: Iterable[Resource]) -> None:
    """ValueError naming ``datasets.<dataset>.files.<filename>`` for an override that is not one of
    the dataset's files or has a malformed checksum."""
    known = [r.filename for r in resources]
    for filename, entry in (overrides or {}).items():
        key = f"datasets.{dataset}.files.{filename}"
        if filename not in known:
            raise ValueError(f"{key}: {filename!r} is not a file of dataset {dataset!r}; its files: {known}")
        unknown = sorted(set(entry or {}) - {"url", "checksum"})
        if unknown:
            raise ValueError(f"{key}: unknown keys {unknown}; allowed: url, checksum")
        if "checksum" in (entry or {}):
            try:
                parse_checksum(entry["checksum"])
            except ValueError as err:
                raise ValueError(f"{key}.checksum: {err}") from None


def apply_overrides(dataset: str, resources: Iterable[Resource], overrides: Mapping[str, Any] | None) -> tuple[Resource, ...]:
    """``resources`` with the URL and/or checksum of each file named in ``overrides``
    (``{filename: {url: ..., checksum: "<algorithm>:<hex>"}}``) replaced."""
    resources = tuple(resources)
    check_overrides(dataset, overrides, resources)
    out = []
    for resource in resources:
        entry = dict((overrides or {}).get(resource.filename) or {})
        changes = {key: entry[key] for key in ("url", "checksum") if key in entry}
        if "checksum" in changes:
            changes["size"] = None  # a mirror's copy may be another build of the file
        out.append(dataclasses.replace(resource, **changes) if changes else resource)
    return tuple(out)


# ----------------------------------------------------------------------------- download


def missing_message(resource: Resource, downloads_dir: str | os.PathLike, reason: str) -> str:
    """What to fetch by hand, from where, how to check it, and where to put it."""
    dest = resource.destination(downloads_dir)
    if resource.checksum is None:
        checksum = (
            "none published; the sha256 of the first copy is recorded in "
            f"{record_path(resource, dest.parent)} and later copies are checked against it"
        )
    else:
        checksum = resource.checksum
    lines = [
        f"Could not download {resource.dataset}/{resource.filename}: {reason}",
        f"  file:     {resource.filename}",
        f"  URL:      {resource.url}",
        f"  checksum: {checksum}",
    ]
    if resource.size:
        lines.append(f"  size:     {resource.size:,} bytes")
    if resource.licence:
        lines.append(f"  licence:  {resource.licence}")
    if resource.gdrive:
        lines.append("  (Google Drive: if the download quota is exceeded, fetch it in a browser or with gdown)")
    lines += [
        "Download it yourself and put it at",
        f"  {dest}",
        f"  ({dest.resolve()})",
        "then run the workflow again: it is verified before use. A mirror can be configured with "
        f"datasets.{resource.dataset}.files (config/README.md).",
    ]
    return "\n".join(lines)


def fetch(
    resource: Resource,
    downloads_dir: str | os.PathLike = DOWNLOADS_DIR,
    url: str | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 2.0,
) -> Path:
    """Download ``resource`` to ``<downloads_dir>/<dataset>/<filename>``, verify it, return the path.

    A file already there is verified and kept (no download). The bytes go to ``<filename>.part``
    first; an interrupted download (broken connection, timeout, a killed job) is resumed from
    there with a ``Range`` request. Transient failures are retried ``retries`` times, waiting
    ``backoff * 2**k`` seconds. The ``.part`` file is verified before it is renamed into place: a
    mismatch moves it to ``<filename>.corrupt`` and raises :class:`ChecksumError`. A file that
    cannot be fetched (offline, 404, Drive quota) raises :class:`MissingResource`.
    """
    url = url or resource.url
    if url != resource.url:
        resource = dataclasses.replace(resource, url=url)
    dest = resource.destination(downloads_dir)
    if dest.exists():
        verify(dest, resource)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    cookies = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    reason = "unknown error"
    for attempt in range(retries + 1):
        if attempt:
            wait = backoff * 2 ** (attempt - 1)
            print(f"{resource.filename}: {reason}; retrying in {wait:g} s ({attempt}/{retries})", file=sys.stderr)
            time.sleep(wait)
        try:
            _download(opener, resource, part, progress, timeout)
            break
        except _Retriable as err:
            reason = str(err)
        except urllib.error.HTTPError as err:
            reason = f"HTTP {err.code} {err.reason} from {err.url or url}"
            if err.code not in _RETRY_STATUSES:
                raise MissingResource(missing_message(resource, downloads_dir, reason)) from err
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
            reason = f"{type(err).__name__}: {getattr(err, 'reason', None) or err}"
    else:
        raise MissingResource(
            missing_message(resource, downloads_dir, f"{reason} (after {retries + 1} attempt{'s' if retries else ''})")
        )
    verify(part, resource, record_dir=dest.parent)
    os.replace(part, dest)
    return dest


def _download(opener, resource: Resource, part: Path, progress: bool, timeout: float) -> None:
    """One attempt: append to ``part`` from where it stops; raise _Retriable if cut short."""
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    if resource.size is not None and offset == resource.size:
        return  # complete, from an earlier attempt killed before the rename
    response = _open(opener, resource, offset, timeout, part)
    with response:
        status = response.status
        if offset and status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Retriable(f"server resumed at byte {start}, not {offset}; starting over")
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # 200: the server ignored Range, start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else resource.size
        written = offset
        with (
            open(part, mode) as fh,
            tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=resource.filename, file=sys.stderr, disable=not progress, mininterval=1.0,
            ) as bar,
        ):
            try:
                while chunk := response.read(_CHUNK):
                    fh.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as err:
                raise _Retriable(f"connection lost after {written:,} bytes ({type(err).__name__}: {err})") from err
    if total is not None and written < total:
        raise _Retriable(f"connection closed after {written:,} of {total:,} bytes")


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else None


def _request(url: str, offset: int) -> urllib.request.Request:
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.Request(url, headers=headers)


def _is_html(response) -> bool:
    return response.headers.get_content_type() == "text/html"


def _open(opener, resource: Resource, offset: int, timeout: float, part: Path):
    """The response carrying the file (from byte ``offset``), through Drive's confirmation page."""
    try:
        response = opener.open(_request(resource.url, offset), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the .part is longer than the file: start over
            part.unlink(missing_ok=True)
            raise _Retriable("server refused to resume (HTTP 416); starting over") from err
        raise
    if not (resource.gdrive and _is_html(response)):
        return response
    with response:
        final_url = response.geturl() or resource.url  # after Drive's redirects
        page = response.read(4 << 20).decode("utf-8", errors="replace")
    confirm_url = gdrive_confirm_url(final_url, page, opener)
    if confirm_url is None:
        raise urllib.error.URLError(
            "Google Drive answered with a web page instead of the file and no download "
            "confirmation in it (download quota exceeded, or the file is not shared)"
        )
    response = opener.open(_request(confirm_url, offset), timeout=timeout)
    if _is_html(response):
        response.close()
        raise urllib.error.URLError(
            "Google Drive answered the download confirmation with a web page again "
            "(download quota exceeded?)"
        )
    return response


def gdrive_confirm_url(url: str, page: str, opener=None) -> str | None:
    """The URL that answers Google Drive's "can't scan this file for viruses" page, or None.

    Handles the current page (a ``download-form`` GET form whose hidden inputs, ``confirm`` and
    ``uuid`` among them, make the query), the older one (a link carrying ``confirm=<token>``) and
    the oldest (a ``download_warning*`` cookie whose value is the token).
    """
    form = re.search(r"<form[^>]*id=[\"']download-form[\"'][^>]*>(.*?)</form>", page, flags=re.S | re.I)
    if form:
        action = re.search(r"action=[\"']([^\"']+)[\"']", form.group(0), flags=re.I)
        fields = {}
        for tag in re.findall(r"<input[^>]*>", form.group(1), flags=re.I):
            name = re.search(r"name=[\"']([^\"']+)[\"']", tag)
            value = re.search(r"value=[\"']([^\"']*)[\"']", tag)
            if name and "type=\"submit\"" not in tag.lower():
                fields[html.unescape(name.group(1))] = html.unescape(value.group(1)) if value else ""
        target = urllib.parse.urljoin(url, html.unescape(action.group(1))) if action else url
        return f"{target}?{urllib.parse.urlencode(fields)}"
    link = re.search(r"href=[\"']([^\"']*confirm=[0-9A-Za-z_-]+[^\"']*)[\"']", page)
    if link:
        return urllib.parse.urljoin(url, html.unescape(link.group(1)))
    token = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    if token is None and opener is not None:
        for handler in getattr(opener, "handlers", []):
            jar = getattr(handler, "cookiejar", None)
            for cookie in jar or []:
                if cookie.name.startswith("download_warning"):
                    token = re.match(r"(.*)", cookie.value)
    if token is None:
        return None
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "confirm"]
    query.append(("confirm", token.group(1)))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
