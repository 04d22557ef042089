"""Opt-in download of a Dataverse data set by DOI, with checksums, resume and atomic files.

The paper's data live on Harvard Dataverse (doi:10.7910/DVN/I8LULX, 348 files, 16.3 GB; see
``data-format.md``). Dataverse's native API gives the file list with ids, sizes and checksums:

- ``GET {server}/api/datasets/:persistentId/?persistentId=doi:...`` -> JSON
  ``{"status": "OK", "data": {"latestVersion": {"files": [...]}}}``; each file entry carries
  ``directoryLabel`` (folder inside the data set, may be absent) and ``dataFile`` with ``id``,
  ``filename``, ``filesize``, ``md5`` or ``checksum`` ``{type, value}`` (MD5, SHA-1, SHA-256 or
  SHA-512, as configured by the installation);
- ``GET {server}/api/access/datafile/{id}`` -> the file's bytes (often a redirect to S3, which
  ``requests`` follows).

Tabular files (CSV, TSV, Stata, ...) are "ingested" by Dataverse: the access URL then serves a
derived tab-separated archival copy, while the listed checksum is that of the ORIGINAL upload. For
those entries (``dataFile.originalFileFormat`` present or ``tabularData`` true) this module asks
for ``?format=original`` and saves the file under ``originalFileName``, so the checksum can be
verified and the bytes are exactly what the authors deposited. Other files are requested plainly
(``format=original`` is only defined for tabular files).

Guarantees:

- every file is verified against its checksum (files without one are checked for size, with a
  warning); a file that is already present and verified is not downloaded again;
- a download writes ``<name>.part`` and resumes it with an HTTP ``Range`` request after an
  interruption (within ``retries``, or on the next call); the final name appears only after the
  checksum passes (atomic rename), so a reader never sees a half-written file;
- a checksum mismatch moves the bytes aside as ``<name>.corrupt`` (``.corrupt.1``, ... if that
  exists): never used, never deleted, and reported; rerunning downloads the file afresh;
- an HTML page served instead of a file (an error, login or maintenance page) is recognised and
  reported instead of being saved as data;
- an unknown DOI raises :class:`DatasetNotFoundError` naming the DOI and the server.

Failures of single files do not stop the others (a 16 GB download should not restart because one
file failed); :func:`fetch_dataset` raises :class:`DownloadError` at the end, listing every failed
file, unless ``strict=False``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import itertools
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import requests

from nlp4neuro import __version__
from nlp4neuro.errors import ConfigError
from nlp4neuro.provenance import atomic_output

logger = logging.getLogger(__name__)

# Dataverse checksum type names -> hashlib names.
_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}
_HTML_STARTS = (b"<!doctype", b"<html")
# Network failures worth a retry (connection reset, truncated body, timeout).
_TRANSIENT = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class DownloadError(RuntimeError):
    """A download failed; the message names the URL or DOI, what was expected and what was found.

    Attributes:
        source: the URL, DOI or file the error is about.
        report: the :class:`FetchReport` of the whole call when raised by :func:`fetch_dataset`
            after trying every file, else None.
    """

    def __init__(self, source: str, expected: str, found: str, report: FetchReport | None = None):
        self.source = source
        self.expected = expected
        self.found = found
        self.report = report
        super().__init__(f"{source}: expected {expected}, found {found}")


class DatasetNotFoundError(DownloadError):
    """The DOI names no data set on the server (HTTP 404 or JSON status ERROR)."""


# --------------------------------------------------------------------------------------------
# File list
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file of a Dataverse data set.

    Attributes:
        file_id: Dataverse database id (the ``{id}`` of the access URL).
        path: POSIX path inside the data set, ``directoryLabel/filename``.
        size: size in bytes of the bytes that will be downloaded, or None if not listed.
        checksum_type: hashlib name (``md5``, ``sha1``, ...) or None if the listing has none.
        checksum: hex digest, lower case, or None.
        original: True for an ingested tabular file, fetched with ``?format=original``.
    """

    file_id: int
    path: str
    size: int | None
    checksum_type: str | None
    checksum: str | None
    original: bool = False


def normalise_doi(doi: str) -> str:
    """``10.x/y`` from ``doi:10.x/y``, ``https://doi.org/10.x/y`` or ``10.x/y``."""
    doi = str(doi).strip()
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "doi:"):
        if doi.lower().startswith(prefix):
            doi = doi[len(prefix) :]
    if not doi.startswith("10.") or "/" not in doi:
        raise ConfigError("download.doi", "a DOI such as 10.7910/DVN/I8LULX", doi)
    return doi


def _safe_relative_path(directory: str | None, filename: str, doi: str) -> str:
    """``directory/filename`` as a relative POSIX path that cannot escape the download folder."""
    parts = PurePosixPath(directory or "") / filename
    if parts.is_absolute() or any(p in ("..", "") for p in parts.parts) or not filename:
        raise DownloadError(f"doi:{doi}", "relative file paths inside the data set", str(parts))
    return parts.as_posix()


def _remote_file(entry: Mapping[str, Any], doi: str) -> RemoteFile:
    data = entry.get("dataFile")
    if not isinstance(data, Mapping) or "id" not in data:
        raise DownloadError(f"doi:{doi}", "file entries with dataFile.id", json.dumps(entry)[:200])
    original = bool(data.get("originalFileFormat")) or bool(data.get("tabularData"))
    if original:
        name = data.get("originalFileName") or data.get("filename") or entry.get("label")
        # filesize is the archival .tab copy's; only originalFileSize describes what we fetch.
        size = data.get("originalFileSize")
    else:
        name = data.get("filename") or entry.get("label")
        size = data.get("filesize")
    checksum = data.get("checksum") if isinstance(data.get("checksum"), Mapping) else None
    if checksum and checksum.get("type") in _HASHES and checksum.get("value"):
        algo, digest = _HASHES[checksum["type"]], str(checksum["value"]).lower()
    elif data.get("md5"):
        algo, digest = "md5", str(data["md5"]).lower()
    else:
        algo, digest = None, None
    return RemoteFile(
        file_id=int(data["id"]),
        path=_safe_relative_path(entry.get("directoryLabel"), str(name), doi),
        size=int(size) if size is not None else None,
        checksum_type=algo,
        checksum=digest,
        original=original,
    )


def list_files(
    doi: str,
    *,
    server: str,
    timeout_s: float,
    session: requests.Session | None = None,
) -> tuple[list[RemoteFile], dict[str, Any]]:
    """The files of the latest published version of a data set, via the native API.

    Args:
        doi: the data set's DOI (any form `normalise_doi` accepts).
        server: Dataverse installation base URL (config ``download.server``).
        timeout_s: connect/read timeout of the request in seconds (``download.timeout_s``).
        session: a ``requests.Session`` to use.

    Returns:
        (files in listing order, version info: ``version`` "major.minor", ``version_state``,
        ``persistent_url``).

    Raises:
        DatasetNotFoundError: HTTP 404 or a JSON ``status`` of ``ERROR``.
        DownloadError: another HTTP error or a response that is not the expected JSON.
    """
    doi = normalise_doi(doi)
    where = f"doi:{doi} on {server}"
    payload = _dataset_json(session or _new_session(), doi, server, timeout_s, where)
    version = payload.get("data", {}).get("latestVersion")
    if not isinstance(version, Mapping) or not isinstance(version.get("files"), list):
        raise DownloadError(where, "data.latestVersion.files in the JSON", f"keys {list(payload)}")
    files = [_remote_file(entry, doi) for entry in version["files"]]
    _check_unique_paths(files, where)
    info = {
        "version": f"{version.get('versionNumber', '?')}.{version.get('versionMinorNumber', '?')}",
        "version_state": version.get("versionState", ""),
        "persistent_url": payload.get("data", {}).get("persistentUrl", f"https://doi.org/{doi}"),
    }
    return files, info


def _dataset_json(
    session: requests.Session, doi: str, server: str, timeout_s: float, where: str
) -> Mapping[str, Any]:
    """The native API's JSON answer about the data set, or the error that says what went wrong."""
    url = f"{server.rstrip('/')}/api/datasets/:persistentId/"
    try:
        response = session.get(url, params={"persistentId": f"doi:{doi}"}, timeout=timeout_s)
    except requests.exceptions.RequestException as err:
        raise DownloadError(
            where, "a reachable Dataverse server", f"{type(err).__name__}: {err}"
        ) from err
    try:
        payload = response.json()
    except ValueError:
        payload = None
    is_json = isinstance(payload, Mapping)
    if response.status_code == 404 or (is_json and payload.get("status") == "ERROR"):
        message = payload.get("message", "") if is_json else ""
        raise DatasetNotFoundError(
            where,
            "an existing, published data set",
            f"HTTP {response.status_code}" + (f" ({message})" if message else ""),
        )
    if response.status_code != 200 or not is_json:
        body = response.text[:200].replace("\n", " ")
        raise DownloadError(
            where, "HTTP 200 with the data set's JSON", f"HTTP {response.status_code}: {body!r}"
        )
    return payload


def _check_unique_paths(files: list[RemoteFile], where: str) -> None:
    seen: dict[str, int] = {}
    for f in files:
        if f.path in seen:
            raise DownloadError(
                where, "unique file paths", f"{f.path} for file ids {seen[f.path]} and {f.file_id}"
            )
        seen[f.path] = f.file_id


def select_files(files: Iterable[RemoteFile], include: Sequence[str]) -> list[RemoteFile]:
    """Files whose data-set path matches a glob in `include` (fnmatch: ``*`` also matches ``/``)."""
    patterns = list(include)
    return [f for f in files if any(fnmatch.fnmatchcase(f.path, p) for p in patterns)]


_GROUPS = {
    # The raw suite2p layout that nlp4neuro.ingest reads (stimulus_df.tab only exists for 9, 10).
    "raw": (
        "raw_data_f{n}/plane_*/F.npy",
        "raw_data_f{n}/plane_*/stat.npy",
        "raw_data_f{n}/plane_*/tail_df.h5",
        "raw_data_f{n}/*stimulus_df.*",
    ),
    # The reference-normalised matrices the paper's models were trained on (ingest_prepared).
    "prepared": (
        "exp1-4_data/fish{n}/data/fish{n}_neural_data_matched.npy",
        "exp1-4_data/fish{n}/data/fish{n}_tail_data_matched.npy",
    ),
    # Neuron coordinates/regions (fish 11-13) and the plane mean images used as map backgrounds.
    "annotations": (
        "exp1-4_data/fish{n}/*functional_types_df.h5",
        "exp1-4_data/fish{n}/images/*",
    ),
}


def paper_include_patterns(fish: Sequence[int | str], groups: Sequence[str]) -> list[str]:
    """Glob patterns selecting the given fish and file groups of the paper's data set.

    Groups: ``raw`` (``raw_data_f{N}/plane_*/{F.npy, stat.npy, tail_df.h5}`` and the stimulus
    table), ``prepared`` (``exp1-4_data/fish{N}/data/fish{N}_{neural,tail}_data_matched.npy``),
    ``annotations`` (``functional_types_df.h5`` and ``images/plane_*.jpg``). Each pattern is
    also given with a leading ``*/`` so a data set that nests everything in one top folder works.

    Raises:
        ConfigError: an unknown group or an empty fish list.
    """
    if not fish:
        raise ConfigError("fish", "at least one fish id", list(fish))
    unknown = [g for g in groups if g not in _GROUPS]
    if unknown or not groups:
        raise ConfigError("download.groups", f"a non-empty subset of {list(_GROUPS)}", list(groups))
    patterns: list[str] = []
    for n in fish:
        for group in groups:
            for pattern in _GROUPS[group]:
                filled = pattern.format(n=n)
                patterns += [filled, f"*/{filled}"]
    return list(dict.fromkeys(patterns))


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


@dataclass
class FetchReport:
    """What :func:`fetch_dataset` did, file by file (paths relative to ``out_dir``).

    ``files`` maps every selected path to ``{id, size, checksum_type, checksum}`` (the manifest);
    ``corrupt`` maps a path to where its bad bytes were moved; ``failed`` maps a path to the
    reason (HTML page, HTTP error, retries exhausted, ...).
    """

    doi: str
    server: str
    out_dir: str
    version: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    unverified: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0
    n_requests: int = 0

    @property
    def ok(self) -> bool:
        """True when every selected file is present and verified."""
        return not self.corrupt and not self.failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _FileFailed(Exception):
    """One file could not be fetched; the message is the reason for the report."""


def _new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = f"nlp4neuro/{__version__} (+python-requests)"
    return session


def _digest_file(path: Path, algo: str, chunk_bytes: int) -> hashlib._Hash:
    digest = hashlib.new(algo)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest


def _verify(path: Path, remote: RemoteFile, chunk_bytes: int) -> bool:
    """True if the file has the listed size and checksum (size only where there is none)."""
    if remote.size is not None and path.stat().st_size != remote.size:
        return False
    if remote.checksum_type is None:
        return True
    return _digest_file(path, remote.checksum_type, chunk_bytes).hexdigest() == remote.checksum


def _move_aside(path: Path) -> Path:
    """Rename `path` to ``<name>.corrupt`` (or ``.corrupt.<k>``), never overwriting anything."""
    target = path.with_name(path.name.removesuffix(".part") + ".corrupt")
    k = 0
    while target.exists():
        k += 1
        target = target.with_name(f"{path.name.removesuffix('.part')}.corrupt.{k}")
    os.replace(path, target)
    return target


def _looks_like_html(first_bytes: bytes) -> bool:
    return first_bytes.lstrip()[:16].lower().startswith(_HTML_STARTS)


@dataclass(frozen=True)
class _Transfer:
    timeout_s: float
    chunk_bytes: int
    retries: int
    backoff_s: float
    progress_every_s: float


@dataclass
class _Part:
    """The ``<name>.part`` file of one download; `resumed` once bytes were appended to it."""

    path: Path
    resumed: bool = False

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0


def _download_one(
    session: requests.Session,
    url: str,
    remote: RemoteFile,
    final: Path,
    report: FetchReport,
    opts: _Transfer,
) -> None:
    """Fetch `remote` into ``final.part`` (resuming), verify, rename to `final`.

    Raises _FileFailed with the reason; a checksum mismatch also moves the bytes aside.
    """
    part = _Part(final.with_name(final.name + ".part"))
    _fill_part(session, url, remote, part, report, opts)
    if not _verify(part.path, remote, opts.chunk_bytes):
        moved = _set_aside(part.path, remote, report)
        raise _FileFailed(
            f"{remote.checksum_type or 'size'} mismatch (listed {remote.checksum or remote.size}); "
            f"bytes moved to {moved.name}"
        )
    os.replace(part.path, final)  # atomic: the final name only ever holds verified bytes
    if part.resumed:
        report.resumed.append(remote.path)


def _set_aside(path: Path, remote: RemoteFile, report: FetchReport) -> Path:
    """Move bad bytes to ``.corrupt`` (see `_move_aside`) and record where in the report."""
    moved = _move_aside(path)
    report.corrupt[remote.path] = str(moved.relative_to(Path(report.out_dir)))
    return moved


def _fill_part(
    session: requests.Session,
    url: str,
    remote: RemoteFile,
    part: _Part,
    report: FetchReport,
    opts: _Transfer,
) -> None:
    """Request until `part` is complete; after a network failure wait and resume with Range.

    Raises _FileFailed once `opts.retries` retries are spent (the ``.part`` stays for next time).
    """
    for attempt in itertools.count(1):
        try:
            _request_rest(session, url, remote, part, report, opts)
            return
        except _TRANSIENT as err:
            if attempt > opts.retries:
                raise _FileFailed(
                    f"transfer interrupted {attempt} time(s), last: {type(err).__name__}: "
                    f"{err}; {part.size} bytes kept in {part.path.name}, the next run resumes there"
                ) from err
            wait = opts.backoff_s * 2 ** (attempt - 1)
            logger.warning(
                "%s: %s at byte %d; retry %d/%d in %.1f s (resuming with Range)",
                remote.path, type(err).__name__, part.size, attempt, opts.retries, wait,
            )  # fmt: skip
            time.sleep(wait)


def _request_rest(
    session: requests.Session,
    url: str,
    remote: RemoteFile,
    part: _Part,
    report: FetchReport,
    opts: _Transfer,
) -> None:
    """One GET of the bytes `part` lacks, appended to it (or written afresh).

    Returns when the part is complete; raises a `_TRANSIENT` error when the transfer ended early
    (a retry resumes it) and _FileFailed when retrying cannot help.
    """
    offset = part.size
    if remote.size is not None and offset > remote.size:
        moved = _set_aside(part.path, remote, report)
        raise _FileFailed(
            f"partial file larger than the listed {remote.size} bytes; moved to {moved.name}"
        )
    if remote.size is not None and offset == remote.size:
        return  # a complete .part left by an earlier run: only verification is missing
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    params = {"format": "original"} if remote.original else None
    expect_html = PurePosixPath(remote.path).suffix.lower() in (".html", ".htm")
    report.n_requests += 1
    with session.get(
        url, params=params, headers=headers, stream=True, timeout=opts.timeout_s
    ) as response:
        if response.status_code == 416 and offset:
            return  # server says the range starts at the end: .part is complete
        mode, offset = _write_mode(response, offset, expect_html)
        part.resumed = part.resumed or offset > 0
        _stream(response, part.path, mode, offset, remote, report, opts, expect_html)
    if remote.size is not None and part.size != remote.size:
        raise requests.exceptions.ChunkedEncodingError(
            f"connection ended at byte {part.size} of {remote.size}"
        )


def _write_mode(response: requests.Response, offset: int, expect_html: bool) -> tuple[str, int]:
    """("ab", offset) to append an answered Range, ("wb", 0) to start over; else raise.

    Raises a retryable ConnectionError for 429/5xx, _FileFailed for other errors, an HTML page
    or a range that does not start at `offset`.
    """
    status = response.status_code
    if status in _RETRY_STATUS:
        raise requests.exceptions.ConnectionError(f"HTTP {status}")
    if status not in (200, 206):
        raise _FileFailed(f"HTTP {status} from {response.url}: {response.text[:200]!r}")
    content_type = response.headers.get("Content-Type", "")
    if content_type.lower().startswith("text/html") and not expect_html:
        raise _FileFailed(
            f"an HTML page (Content-Type {content_type}) instead of the file from "
            f"{response.url}; the server may be down or the file restricted"
        )
    if status != 206:
        return "wb", 0  # server ignored Range (or none was asked): start over
    content_range = response.headers.get("Content-Range", "")
    if _content_range_start(content_range) != offset:
        raise _FileFailed(
            f"a range starting at byte {offset}, got Content-Range {content_range or None!r}"
        )
    return "ab", offset


def _content_range_start(value: str) -> int | None:
    """First byte of a ``Content-Range: bytes a-b/n`` header, or None."""
    try:
        unit, _, rest = value.partition(" ")
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def _stream(
    response: requests.Response,
    part: Path,
    mode: str,
    offset: int,
    remote: RemoteFile,
    report: FetchReport,
    opts: _Transfer,
    expect_html: bool,
) -> None:
    """Write the body to `part`, refusing an HTML page before anything is written; log progress."""
    chunks = response.iter_content(chunk_size=opts.chunk_bytes)
    first = next(chunks, b"")
    if offset == 0 and not expect_html and _looks_like_html(first):
        raise _FileFailed(
            f"an HTML page instead of the file from {response.url} (starts {first[:40]!r})"
        )
    written = offset
    last_log = time.monotonic()
    with open(part, mode) as handle:
        for chunk in itertools.chain([first], chunks):
            handle.write(chunk)
            written += len(chunk)
            report.bytes_downloaded += len(chunk)
            now = time.monotonic()
            if now - last_log >= opts.progress_every_s:
                last_log = now
                total = f" of {remote.size / 1e6:.1f} MB" if remote.size else ""
                logger.info("%s: %.1f MB%s", remote.path, written / 1e6, total)


def fetch_dataset(
    doi: str,
    out_dir: str | Path,
    *,
    server: str,
    timeout_s: float,
    retries: int,
    include: Sequence[str] = ("*",),
    chunk_bytes: int = 1 << 20,
    backoff_s: float = 2.0,
    progress_every_s: float = 30.0,
    strict: bool = True,
    session: requests.Session | None = None,
) -> FetchReport:
    """Download the files of a Dataverse data set that match `include` into `out_dir`.

    Files keep their data-set paths (``out_dir/directoryLabel/filename``). See the module
    docstring for the guarantees (checksums, resume, ``.corrupt`` files, HTML pages).

    Args:
        doi: the data set's DOI (``10.7910/DVN/I8LULX``, ``doi:...`` or a doi.org URL).
        out_dir: download folder (created).
        server: Dataverse installation base URL (config ``download.server``).
        timeout_s: connect/read timeout per request, seconds (``download.timeout_s``).
        retries: retries of one file after a network failure, each resuming with Range
            (``download.retries``).
        include: glob patterns on the data-set path ``directoryLabel/filename``; ``*``
            matches across ``/``. :func:`paper_include_patterns` builds them for the paper.
        chunk_bytes: bytes per read/write chunk.
        backoff_s: wait before the first retry, doubled for each further one.
        progress_every_s: seconds between progress lines of one large file.
        strict: raise DownloadError after trying every file if any failed or was corrupt.
        session: a ``requests.Session`` to use (tests count requests through it).

    Returns:
        FetchReport (``report.files`` is the manifest of the selected files).

    Raises:
        DatasetNotFoundError: unknown DOI. DownloadError: no file matches `include`, or (with
        `strict`) some file failed; ``err.report`` then holds the full report.
    """
    doi = normalise_doi(doi)
    opts = _transfer_options(timeout_s, chunk_bytes, retries, backoff_s, progress_every_s)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    session = session or _new_session()
    files, version = list_files(doi, server=server, timeout_s=timeout_s, session=session)
    selected = _selected(files, include, doi)
    report = FetchReport(doi=doi, server=server, out_dir=str(out), version=version, n_requests=1)
    logger.info(
        "doi:%s version %s: %d of %d files selected, %.1f MB", doi, version["version"],
        len(selected), len(files), sum(f.size or 0 for f in selected) / 1e6,
    )  # fmt: skip
    for i, remote in enumerate(selected, start=1):
        _fetch_file(session, remote, out, report, opts, f"[{i}/{len(selected)}]")
    _log_outcome(report)
    if strict and not report.ok:
        # Every corrupt file is also in `failed`, with the reason and where its bytes went.
        listing = "; ".join(f"{p}: {why}" for p, why in sorted(report.failed.items()))
        raise DownloadError(
            f"doi:{doi}", "every selected file downloaded and verified", listing, report=report
        )
    return report


def _log_outcome(report: FetchReport) -> None:
    logger.info(
        "doi:%s: %d downloaded (%d resumed), %d already present, %d corrupt, %d failed; %.1f MB",
        report.doi, len(report.downloaded), len(report.resumed), len(report.skipped),
        len(report.corrupt), len(report.failed), report.bytes_downloaded / 1e6,
    )  # fmt: skip


def _transfer_options(
    timeout_s: float, chunk_bytes: int, retries: int, backoff_s: float, progress_every_s: float
) -> _Transfer:
    """The checked transfer settings, or ConfigError naming the bad one."""
    for key, value in (("timeout_s", timeout_s), ("chunk_bytes", chunk_bytes)):
        if not (math.isfinite(float(value)) and value > 0):
            raise ConfigError(key, "a positive number", value)
    if int(retries) < 0 or float(backoff_s) < 0:
        raise ConfigError("retries/backoff_s", "values >= 0", (retries, backoff_s))
    return _Transfer(
        float(timeout_s), int(chunk_bytes), int(retries), float(backoff_s), float(progress_every_s)
    )


def _selected(files: list[RemoteFile], include: Sequence[str], doi: str) -> list[RemoteFile]:
    """`select_files`, or DownloadError naming the patterns and example paths if none match."""
    selected = select_files(files, include)
    if not selected:
        examples = ", ".join(f.path for f in files[:5])
        raise DownloadError(
            f"doi:{doi}",
            f"files matching {list(include)}",
            f"none of its {len(files)} files (e.g. {examples})",
        )
    return selected


def _fetch_file(
    session: requests.Session,
    remote: RemoteFile,
    out: Path,
    report: FetchReport,
    opts: _Transfer,
    counter: str,
) -> None:
    """One selected file: list it in the manifest, skip it if verified, else download it.

    A failure is recorded in `report.failed` (and logged), never raised.
    """
    report.files[remote.path] = {
        "id": remote.file_id,
        "size": remote.size,
        "checksum_type": remote.checksum_type,
        "checksum": remote.checksum,
    }
    if remote.checksum_type is None:
        report.unverified.append(remote.path)
        logger.warning("%s: no checksum listed; only the size can be checked", remote.path)
    final = out / remote.path
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        if _verify(final, remote, opts.chunk_bytes):
            report.skipped.append(remote.path)
            logger.info("%s %s: present and verified", counter, remote.path)
            return
        moved = _move_aside(final)
        logger.warning("%s: existing file fails verification; moved to %s", final, moved.name)
    size = f"{remote.size / 1e6:.1f} MB" if remote.size is not None else "size unknown"
    logger.info("%s %s (%s)", counter, remote.path, size)
    url = f"{report.server.rstrip('/')}/api/access/datafile/{remote.file_id}"
    try:
        _download_one(session, url, remote, final, report, opts)
    except _FileFailed as err:
        report.failed[remote.path] = str(err)
        logger.error("%s: %s", remote.path, err)
        return
    report.downloaded.append(remote.path)


def write_manifest(report: FetchReport, path: str | Path) -> Path:
    """Write the report as JSON (atomically): data set, version and one entry per file.

    Paths in ``files`` are relative to ``report.out_dir``; checksums are the server's.
    """
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    return path


def publish(report: FetchReport, out_dir: str | Path) -> FetchReport:
    """Hard-link every downloaded file from the report's folder into `out_dir`; return the report
    of `out_dir`.

    The workflow downloads into a staging folder that is no rule output, so Snakemake never
    deletes the partial or verified files there before a rerun (resume and skip keep working),
    and publishes the verified files into the folders the ingest reads. Links cost no disk; a
    file system without hard links gets copies.
    """
    staging, out = Path(report.out_dir), Path(out_dir)
    for relative in sorted(report.files):
        source, target = staging / relative, out / relative
        if target.exists() and os.path.samefile(source, target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.publish")
        temporary.unlink(missing_ok=True)
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copy2(source, temporary)
        os.replace(temporary, target)
    return dataclasses.replace(report, out_dir=str(out))
