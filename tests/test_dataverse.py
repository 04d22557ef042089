"""Tests for nlp4neuro.dataverse against a tiny Dataverse imitation served on 127.0.0.1
(tests/fixtures_dataverse.py). Nothing here touches the real internet."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from pathlib import Path

import pytest
from fixtures_dataverse import DOI, FakeDataverse, ServedFile

from nlp4neuro.config import section
from nlp4neuro.dataverse import (
    DatasetNotFoundError,
    DownloadError,
    fetch_dataset,
    list_files,
    normalise_doi,
    paper_include_patterns,
    publish,
    select_files,
    write_manifest,
)
from nlp4neuro.errors import ConfigError

# Retries as configured by default; the tests shorten only the timeout and the back-off.
RETRIES = section("download")["retries"]


def _payload(n: int, seed: int) -> bytes:
    return bytes((seed * 31 + 7 * i) % 256 for i in range(n))


def _fetch(fake: FakeDataverse, out: Path, **kwargs):
    kwargs.setdefault("chunk_bytes", 64)
    kwargs.setdefault("backoff_s", 0.0)
    kwargs.setdefault("timeout_s", 10.0)
    kwargs.setdefault("retries", RETRIES)
    return fetch_dataset(DOI, out, server=fake.url, **kwargs)


def _leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------
# happy path, interrupted transfer, skip-verified
# --------------------------------------------------------------------------------------------


def test_download_resume_and_skip_on_second_run(serve, tmp_path):
    good = ServedFile(1, "raw_data_f9/plane_0", "F.npy", _payload(300, 1))
    flaky = ServedFile(2, "raw_data_f9/plane_0", "stat.npy", _payload(1000, 2), "interrupt_once")
    top = ServedFile(3, None, "README.txt", b"hello\n")
    fake = serve([good, flaky, top])
    out = tmp_path / "dv"

    report = _fetch(fake, out)

    assert report.ok
    assert sorted(report.downloaded) == sorted(
        ["raw_data_f9/plane_0/F.npy", "raw_data_f9/plane_0/stat.npy", "README.txt"]
    )
    assert report.resumed == ["raw_data_f9/plane_0/stat.npy"]
    assert (out / "raw_data_f9/plane_0/F.npy").read_bytes() == good.content
    assert (out / "raw_data_f9/plane_0/stat.npy").read_bytes() == flaky.content
    assert (out / "README.txt").read_bytes() == b"hello\n"
    # the flaky file: one cut GET without Range, then one GET resuming where the bytes stopped
    flaky_gets = [r for r in fake.file_requests() if r[0].endswith("/2")]
    assert len(flaky_gets) == 2 and flaky_gets[0][1] is None
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", flaky_gets[1][1]).group(1))
    assert 0 < resumed_at <= 500  # the server sent 500 of 1000 bytes before closing
    assert report.bytes_downloaded == 300 + 1000 + 6
    assert _leftovers(out) == sorted(
        ["README.txt", "raw_data_f9/plane_0/F.npy", "raw_data_f9/plane_0/stat.npy"]
    )

    n_before = len(fake.requests)
    again = _fetch(fake, out)
    assert again.ok and again.downloaded == []
    assert sorted(again.skipped) == sorted(report.downloaded)
    # only the listing was requested: no file was downloaded again
    assert len(fake.requests) == n_before + 1
    assert again.bytes_downloaded == 0


def test_include_patterns_select_files(serve, tmp_path):
    files = [
        ServedFile(1, "raw_data_f9/plane_0", "F.npy", b"a" * 10),
        ServedFile(2, "raw_data_f10/plane_0", "F.npy", b"b" * 10),
        ServedFile(3, "exp1-4_data/fish9/data", "fish9_neural_data_matched.npy", b"c" * 10),
    ]
    fake = serve(files)
    report = _fetch(fake, tmp_path, include=paper_include_patterns([9], ["raw"]))
    assert report.downloaded == ["raw_data_f9/plane_0/F.npy"]
    assert [r for r in fake.file_requests()] == [("/api/access/datafile/1", None)]
    with pytest.raises(DownloadError, match=r"files matching \['nothing\*'\].*none of its 3"):
        _fetch(fake, tmp_path, include=["nothing*"])


def test_tabular_file_is_fetched_in_original_format(serve, tmp_path):
    table = ServedFile(7, "raw_data_f9", "stimulus_df.csv", b"start,stop\n0,1\n", "tabular")
    fake = serve([table])
    report = _fetch(fake, tmp_path)
    assert report.ok
    assert (tmp_path / "raw_data_f9/stimulus_df.csv").read_bytes() == table.content
    assert fake.file_requests() == [("/api/access/datafile/7?format=original", None)]


def test_manifest_lists_files_and_checksums(serve, tmp_path):
    content = _payload(50, 3)
    fake = serve([ServedFile(4, "d", "x.bin", content)])
    report = _fetch(fake, tmp_path / "dv")
    path = write_manifest(report, tmp_path / "dv" / "manifest.json")
    manifest = json.loads(path.read_text())
    assert manifest["doi"] == DOI
    assert manifest["version"]["version"] == "1.0"
    assert manifest["files"]["d/x.bin"] == {
        "id": 4,
        "size": 50,
        "checksum_type": "md5",
        "checksum": hashlib.md5(content).hexdigest(),
    }


# --------------------------------------------------------------------------------------------
# failures: corrupt bytes, HTML pages, exhausted retries, unknown DOI
# --------------------------------------------------------------------------------------------


def test_corrupt_file_is_kept_aside_and_reported(serve, tmp_path):
    good = ServedFile(1, "a", "good.npy", _payload(200, 5))
    bad = ServedFile(2, "a", "bad.npy", _payload(200, 6), "corrupt")
    fake = serve([good, bad])
    out = tmp_path / "dv"

    with pytest.raises(
        DownloadError, match=r"a/bad.npy: md5 mismatch.*moved to bad.npy.corrupt"
    ) as info:
        _fetch(fake, out)
    report = info.value.report
    assert report.downloaded == ["a/good.npy"]  # one bad file does not stop the others
    assert report.corrupt == {"a/bad.npy": "a/bad.npy.corrupt"}
    assert "md5 mismatch" in report.failed["a/bad.npy"]
    assert not (out / "a/bad.npy").exists()
    corrupt = (out / "a/bad.npy.corrupt").read_bytes()
    assert corrupt != bad.content and corrupt[3:] == bad.content[3:]  # the served bytes
    assert _leftovers(out) == ["a/bad.npy.corrupt", "a/good.npy"]

    # A second try downloads afresh and never overwrites the earlier .corrupt.
    report2 = _fetch(fake, out, strict=False)
    assert report2.corrupt == {"a/bad.npy": "a/bad.npy.corrupt.1"}
    assert report2.skipped == ["a/good.npy"]
    assert (out / "a/bad.npy.corrupt").read_bytes() == corrupt


def test_existing_file_that_fails_verification_is_replaced(serve, tmp_path):
    content = _payload(120, 8)
    fake = serve([ServedFile(1, "p", "F.npy", content)])
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "F.npy").write_bytes(b"edited by hand")
    report = _fetch(fake, tmp_path)
    assert report.downloaded == ["p/F.npy"]
    assert (tmp_path / "p/F.npy").read_bytes() == content
    assert (tmp_path / "p/F.npy.corrupt").read_bytes() == b"edited by hand"


@pytest.mark.parametrize("behaviour", ["html", "html_body"])
def test_html_error_page_is_not_saved(serve, tmp_path, behaviour):
    fake = serve([ServedFile(1, "raw", "F.npy", _payload(100, 9), behaviour)])
    with pytest.raises(DownloadError, match=r"raw/F.npy: an HTML page"):
        _fetch(fake, tmp_path)
    assert _leftovers(tmp_path) == []  # neither the page nor a .part


def test_exhausted_retries_keep_part_and_next_run_resumes(serve, tmp_path):
    f = ServedFile(1, "raw", "F.npy", _payload(800, 10), "interrupt_always")
    fake = serve([f])
    with pytest.raises(DownloadError, match=r"interrupted 2 time\(s\).*next run resumes"):
        _fetch(fake, tmp_path, retries=1)
    assert not (tmp_path / "raw/F.npy").exists()  # never a half-written final file
    part = tmp_path / "raw/F.npy.part"
    kept = part.stat().st_size
    assert 0 < kept < 800
    assert f.content.startswith(part.read_bytes())

    f.behaviour = "ok"
    report = _fetch(fake, tmp_path)
    assert report.resumed == ["raw/F.npy"]
    assert fake.file_requests()[-1] == ("/api/access/datafile/1", f"bytes={kept}-")
    assert (tmp_path / "raw/F.npy").read_bytes() == f.content
    assert _leftovers(tmp_path) == ["raw/F.npy"]


def test_server_ignoring_range_restarts_from_zero(serve, tmp_path):
    f = ServedFile(1, "raw", "F.npy", _payload(600, 11), "ignore_range")
    fake = serve([f])
    report = _fetch(fake, tmp_path)
    assert report.ok and report.resumed == []  # a 200 answer to Range rewrote the .part
    assert fake.file_requests()[1][1] is not None  # Range was asked for
    assert (tmp_path / "raw/F.npy").read_bytes() == f.content


def test_complete_part_from_earlier_run_is_verified_without_download(serve, tmp_path):
    f = ServedFile(1, "raw", "F.npy", _payload(64, 12))
    fake = serve([f])
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/F.npy.part").write_bytes(f.content)
    report = _fetch(fake, tmp_path)
    assert report.downloaded == ["raw/F.npy"] and fake.file_requests() == []
    assert _leftovers(tmp_path) == ["raw/F.npy"]


def test_server_busy_is_retried_and_forbidden_is_not(serve, tmp_path):
    busy = ServedFile(1, "raw", "F.npy", _payload(90, 13), "unavailable_once")
    closed = ServedFile(2, "raw", "stat.npy", _payload(90, 14), "forbidden")
    fake = serve([busy, closed])
    report = _fetch(fake, tmp_path, strict=False)
    assert report.downloaded == ["raw/F.npy"] and busy.n_gets == 2
    assert (tmp_path / "raw/F.npy").read_bytes() == busy.content
    assert closed.n_gets == 1  # an HTTP error that retrying cannot mend is asked once
    assert report.failed["raw/stat.npy"].startswith("HTTP 403 from ")
    assert _leftovers(tmp_path) == ["raw/F.npy"]


def test_part_larger_than_listed_is_set_aside(serve, tmp_path):
    f = ServedFile(1, "raw", "F.npy", _payload(40, 15))
    fake = serve([f])
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw/F.npy.part").write_bytes(b"x" * 41)
    report = _fetch(fake, tmp_path, strict=False)
    assert "larger than the listed 40 bytes" in report.failed["raw/F.npy"]
    assert report.corrupt == {"raw/F.npy": "raw/F.npy.corrupt"}
    assert fake.file_requests() == []
    # the next run starts afresh and keeps the bytes set aside
    assert _fetch(fake, tmp_path).downloaded == ["raw/F.npy"]
    assert _leftovers(tmp_path) == ["raw/F.npy", "raw/F.npy.corrupt"]


def test_listing_with_repeated_paths_is_refused(serve):
    fake = serve([ServedFile(1, "raw", "F.npy", b"a"), ServedFile(2, "raw", "F.npy", b"b")])
    with pytest.raises(DownloadError, match=r"unique file paths.*raw/F.npy for file ids 1 and 2"):
        list_files(DOI, server=fake.url, timeout_s=10.0)


def test_unreachable_server_is_named(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(DownloadError, match=rf"doi:{DOI} on {url}: expected a reachable"):
        list_files(DOI, server=url, timeout_s=2.0)


def test_unknown_doi_names_the_doi(serve, tmp_path):
    fake = serve([])
    with pytest.raises(DatasetNotFoundError, match=r"doi:10\.5072/FK2/NOPE on http://127") as e:
        fetch_dataset(
            "doi:10.5072/FK2/NOPE", tmp_path, server=fake.url, timeout_s=10.0, retries=RETRIES
        )
    assert "HTTP 404" in str(e.value) and "not found" in str(e.value)


# --------------------------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------------------------


def test_normalise_doi():
    assert normalise_doi("doi:10.7910/DVN/I8LULX") == "10.7910/DVN/I8LULX"
    assert normalise_doi("https://doi.org/10.7910/DVN/I8LULX") == "10.7910/DVN/I8LULX"
    with pytest.raises(ConfigError, match=r"download\.doi"):
        normalise_doi("I8LULX")


def test_paper_include_patterns_match_the_published_layout(serve):
    paths = [
        "raw_data_f9/plane_0/F.npy",
        "raw_data_f9/plane_5/stat.npy",
        "raw_data_f9/plane_5/tail_df.h5",
        "raw_data_f9/plane_0/stimulus_df.tab",
        "raw_data_f9/plane_0/other.npy",
        "raw_data_f19/plane_0/F.npy",
        "exp1-4_data/fish9/data/fish9_neural_data_matched.npy",
        "exp1-4_data/fish9/data/fish9_neural_data_full.npy",
        "exp1-4_data/fish11/data/functional_types_df.h5",
        "exp1-4_data/fish11/images/plane_0.jpg",
        "top/raw_data_f9/plane_1/F.npy",
    ]
    fake = serve(
        [ServedFile(i, str(Path(p).parent), Path(p).name, b"x") for i, p in enumerate(paths)]
    )
    files, _ = list_files(DOI, server=fake.url, timeout_s=10.0)

    def chosen(fish, groups):
        return [f.path for f in select_files(files, paper_include_patterns(fish, groups))]

    assert chosen([9], ["raw"]) == [
        "raw_data_f9/plane_0/F.npy",
        "raw_data_f9/plane_5/stat.npy",
        "raw_data_f9/plane_5/tail_df.h5",
        "raw_data_f9/plane_0/stimulus_df.tab",
        "top/raw_data_f9/plane_1/F.npy",
    ]
    assert chosen([9], ["prepared"]) == ["exp1-4_data/fish9/data/fish9_neural_data_matched.npy"]
    assert chosen([11], ["annotations"]) == [
        "exp1-4_data/fish11/data/functional_types_df.h5",
        "exp1-4_data/fish11/images/plane_0.jpg",
    ]
    with pytest.raises(ConfigError, match=r"download.groups.*\['spikes'\]"):
        paper_include_patterns([9], ["spikes"])


def test_publish_links_verified_files_into_the_fish_folders(serve, tmp_path):
    content = _payload(70, 16)
    fake = serve([ServedFile(1, "raw_data_f9/plane_0", "F.npy", content)])
    report = _fetch(fake, tmp_path / "staging")
    published = publish(report, tmp_path / "out")
    target = tmp_path / "out" / "raw_data_f9" / "plane_0" / "F.npy"
    assert target.read_bytes() == content
    assert target.stat().st_ino == (tmp_path / "staging/raw_data_f9/plane_0/F.npy").stat().st_ino
    assert published.out_dir == str(tmp_path / "out") and published.files == report.files
    # Snakemake deletes the published folder before a rerun; the staging copy is untouched
    target.unlink()
    again = publish(_fetch(fake, tmp_path / "staging"), tmp_path / "out")
    assert target.read_bytes() == content
    assert again.skipped == ["raw_data_f9/plane_0/F.npy"]
    assert len(fake.file_requests()) == 1
