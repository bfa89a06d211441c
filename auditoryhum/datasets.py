"""Dataset downloads from Zenodo: resumable, verified before unpacking, safe to rerun.

``tau2019.sh`` and ``tau2021.sh`` (and the ADVANCE step of ``auditoryhum_tests.sh``) call
``python3 -m auditoryhum.datasets <dataset>``. For every archive part of the dataset's Zenodo
record this module

1. downloads ``<part>`` into ``<part>.part``, resuming from where an earlier run stopped
   (HTTP Range requests; a dropped connection is retried and resumed);
2. checks the complete file before it gets its final name: its size against the server's
   (Content-Length / Content-Range) and the record's, its MD5 against the record's when the
   Zenodo API gives one, and the CRC of every member (``zipfile.testzip``);
3. only when every part has passed, extracts the dataset's WAV files straight into the
   destination folder, each through a hidden temporary file that is renamed into place.

A part that fails is named in the error and nothing is unpacked, moved or deleted; a rerun
resumes the unfinished parts and skips the verified ones (a hidden ``.<part>.verified`` stamp)
and the WAV files already in place. Archives are kept, as in the published scripts.

Only the standard library is used, so the downloaders run with any ``python3`` before the
toolkit's dependencies are installed.

Environment overrides (for mirrors and tests):

``BASE_URL``
    folder URL holding the parts (default ``https://zenodo.org/records/<record>/files``).
``ZENODO_API``
    URL of the record's JSON description (sizes and MD5 checksums of its files). Default
    ``https://zenodo.org/api/records/<record>`` unless ``BASE_URL`` is set; empty: no checksums.
"""

import argparse
import hashlib
import http.client
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from auditoryhum.console import note, set_quiet, warn
from auditoryhum.errors import UserError
from auditoryhum.io.atomic import atomic_write, remove_stale_partials

CHUNK = 1 << 20
ATTEMPTS = 5  # per part and run; an attempt that received bytes does not count against it
TIMEOUT_S = 60


@dataclass(frozen=True)
class Dataset:
    """A Zenodo record whose zip parts hold the dataset's WAV files."""

    title: str
    record: int
    parts: Tuple[str, ...]
    # Members taken: ``<audio_folder><name>.wav`` exactly (None: every .wav member, flattened
    # to its file name, as ``7z e`` does for ADVANCE).
    audio_folder: Optional[str]


def _numbered(stem: str, count: int) -> Tuple[str, ...]:
    return tuple(f"{stem}.audio.{i}.zip" for i in range(1, count + 1))


DATASETS: Dict[str, Dataset] = {
    "tau2019": Dataset(
        "TAU Urban Acoustic Scenes 2019 development audio",
        2589280,
        _numbered("TAU-urban-acoustic-scenes-2019-development", 21),
        "TAU-urban-acoustic-scenes-2019-development/audio/",
    ),
    "tau2021": Dataset(
        "TAU Urban Audio-Visual Scenes 2021 development audio",
        4477542,
        _numbered("TAU-urban-audio-visual-scenes-2021-development", 8),
        "TAU-urban-audio-visual-scenes-2021-development/audio/",
    ),
    "advance": Dataset("ADVANCE sound", 3828124, ("ADVANCE_sound.zip",), None),
}


class PartError(UserError):
    """One archive part could not be downloaded or failed its integrity check."""


class ServerUnreachable(PartError):
    """No connection to the server at all: the other parts would fail the same way."""


@dataclass(frozen=True)
class Expected:
    """What the record says about a part (either may be unknown)."""

    size: Optional[int] = None
    md5: Optional[str] = None


# --------------------------------------------------------------------------- record metadata


def default_urls(dataset: Dataset, environ=os.environ) -> Tuple[str, Optional[str]]:
    """``(base_url, api_url)`` after the ``BASE_URL`` / ``ZENODO_API`` overrides."""
    base = environ.get("BASE_URL") or f"https://zenodo.org/records/{dataset.record}/files"
    if "ZENODO_API" in environ:
        api = environ["ZENODO_API"] or None
    else:
        api = None if environ.get("BASE_URL") else f"https://zenodo.org/api/records/{dataset.record}"
    return base.rstrip("/"), api


def parse_record(record: dict) -> Dict[str, Expected]:
    """Sizes and MD5s by file name from a Zenodo record's JSON (current and legacy layouts)."""
    files = record.get("files", [])
    if isinstance(files, dict):  # InvenioRDM: {"entries": {name: {...}} or [...]}
        files = files.get("entries", [])
        if isinstance(files, dict):
            files = list(files.values())
    out = {}
    for entry in files if isinstance(files, list) else []:
        if not isinstance(entry, dict):
            continue
        name = entry.get("key") or entry.get("filename")
        if not name:
            continue
        size = entry.get("size", entry.get("filesize"))
        checksum = str(entry.get("checksum") or "")
        algorithm, _, digest = checksum.rpartition(":")
        md5 = digest.lower() if digest and algorithm in ("", "md5") else None
        out[name] = Expected(int(size) if size is not None else None, md5)
    return out


def fetch_record(api_url: Optional[str]) -> Dict[str, Expected]:
    """The record's file sizes and MD5s, or ``{}`` (with a note) when they cannot be had."""
    if not api_url:
        return {}
    try:
        with urllib.request.urlopen(api_url, timeout=TIMEOUT_S) as resp:
            return parse_record(json.loads(resp.read().decode("utf-8")))
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        note(f"no checksums from {api_url} ({exc}); checking sizes and zip CRCs only")
        return {}


# --------------------------------------------------------------------------- download


def _content_range_total(value: Optional[str]) -> Optional[int]:
    """Total size from ``Content-Range: bytes a-b/total`` or ``bytes */total``."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


class _Meter:
    """A one-line progress display on a terminal; silent in logs."""

    def __init__(self, label: str):
        self.label = label
        self.show = sys.stderr.isatty()
        self.last = 0.0
        self.start = time.monotonic()
        self.start_bytes: Optional[int] = None

    def update(self, have: int, total: Optional[int], final: bool = False) -> None:
        if not self.show:
            return
        now = time.monotonic()
        if self.start_bytes is None:
            self.start_bytes = have
        if not final and now - self.last < 0.5:
            return
        self.last = now
        rate = (have - self.start_bytes) / max(now - self.start, 1e-6) / 1e6
        share = f"{100.0 * have / total:5.1f}% of {total / 1e9:.2f} GB" if total else f"{have / 1e9:.2f} GB"
        print(f"\r{self.label}: {share}, {rate:.1f} MB/s", end="\n" if final else "", file=sys.stderr, flush=True)


def download(url: str, partial: Path, expected_size: Optional[int] = None, label: str = "") -> int:
    """Download ``url`` into ``partial``, resuming from its current length; returns the final size.

    Raises :class:`PartError` for a permanent failure (HTTP 4xx, a size that contradicts the
    record) or when ``ATTEMPTS`` consecutive attempts make no progress. The bytes received so
    far stay in ``partial`` for the next run.
    """
    meter = _Meter(label or partial.name)
    failures = 0
    reason = ""
    unreachable = False
    while failures < ATTEMPTS:
        have = start = partial.stat().st_size if partial.exists() else 0
        if expected_size is not None and have == expected_size:
            return have
        if expected_size is not None and have > expected_size:
            raise PartError(f"{partial} holds {have} bytes, more than the record's {expected_size}; delete it and rerun")
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
                if resp.status == 206:
                    content_range = resp.headers.get("Content-Range") or ""
                    if not content_range.startswith(f"bytes {have}-"):
                        raise PartError(f"asked {url} for the bytes from {have} on, got {content_range or 'no Content-Range'}")
                    total = _content_range_total(content_range)
                    mode = "ab"
                else:  # 200: the server sent the whole file (no Range support, or nothing to resume)
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    mode, have = "wb", 0
                if expected_size is not None and total is not None and total != expected_size:
                    raise PartError(f"the server's file has {total} bytes but the record lists {expected_size} ({url})")
                start = have
                with open(partial, mode) as out:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        have += len(block)
                        meter.update(have, total)
            size = partial.stat().st_size
            if total is None or size == total:
                meter.update(size, total, final=True)
                return size
            if size > total:
                raise PartError(f"{partial} holds {size} bytes, more than the server's {total}; delete it and rerun")
            reason = f"connection closed after {size} of {total} bytes"
            progressed = size > start
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # nothing left past our length: complete, or longer than the file
                total = _content_range_total(exc.headers.get("Content-Range"))
                if total is not None and have == total:
                    return have
                raise PartError(
                    f"{partial} ({have} bytes) does not fit the server's file ({total if total is not None else 'unknown'} bytes); "
                    "delete it and rerun"
                ) from None
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise PartError(f"HTTP {exc.code} {exc.reason} for {url}") from None
            reason, progressed, unreachable = f"HTTP {exc.code} {exc.reason}", False, False
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = str(getattr(exc, "reason", None) or exc)
            progressed = partial.exists() and partial.stat().st_size > start
            # URLError is raised before any response: no connection (DNS, refused, timeout).
            unreachable = isinstance(exc, urllib.error.URLError)
        if progressed:
            failures = 0  # a flaky connection that keeps delivering is resumed, not abandoned
        else:
            failures += 1
            if failures < ATTEMPTS:
                time.sleep(min(2 ** (failures - 1), 30))
    error = ServerUnreachable if unreachable else PartError
    raise error(f"download incomplete after {ATTEMPTS} attempts without progress ({reason}) from {url}; rerun to resume")


# --------------------------------------------------------------------------- integrity


def member_file_name(member: str, audio_folder: Optional[str]) -> Optional[str]:
    """The file name a zip member is extracted to, or ``None`` when it is not a dataset WAV."""
    if not member.lower().endswith(".wav") or member.endswith("/"):
        return None
    if audio_folder is None:
        name = member.rsplit("/", 1)[-1]
        if member.startswith("__MACOSX/") or name.startswith("._"):
            return None
        return name or None
    if not member.startswith(audio_folder):
        return None
    name = member[len(audio_folder):]
    return name if name and "/" not in name and name not in (".", "..") else None


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_archive(path: Path, expected: Expected, audio_folder: Optional[str]) -> int:
    """Check a complete archive; returns its number of dataset WAV members.

    Raises :class:`PartError` (without the part's name: the caller adds it) when the size or
    MD5 differs from the record, the zip is unreadable or truncated, a member's CRC is wrong,
    or it holds no WAV file where the dataset keeps them.
    """
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        raise PartError(f"size {size} bytes, the record lists {expected.size}")
    if expected.md5 is not None:
        md5 = _md5(path)
        if md5 != expected.md5:
            raise PartError(f"MD5 {md5} differs from the record's {expected.md5}")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = [m for m in archive.namelist() if member_file_name(m, audio_folder)]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise PartError(f"not a readable zip archive, truncated or corrupt ({exc})") from None
    if bad is not None:
        raise PartError(f"CRC check failed for member {bad}")
    if not names:
        where = f"under {audio_folder}" if audio_folder else "in it"
        raise PartError(f"holds no WAV files {where}")
    return len(names)


def _stamp_path(archive: Path) -> Path:
    return archive.with_name(f".{archive.name}.verified")


def _stamp_of(archive: Path) -> str:
    st = archive.stat()
    return f"{st.st_size} {st.st_mtime_ns}\n"


def is_verified(archive: Path) -> bool:
    """Whether ``archive`` passed :func:`check_archive` unchanged since (size and mtime)."""
    try:
        return _stamp_path(archive).read_text() == _stamp_of(archive)
    except OSError:
        return False


def _mark_verified(archive: Path) -> None:
    with atomic_write(_stamp_path(archive), "w") as f:
        f.write(_stamp_of(archive))


def obtain_part(part: str, dest: Path, base_url: str, expected: Expected, audio_folder: Optional[str], label: str) -> Path:
    """Make ``dest/part`` a complete, verified archive (download or resume as needed)."""
    archive = dest / part
    partial = dest / f"{part}.part"
    if archive.exists():
        if is_verified(archive):
            note(f"{label}: {part} already downloaded and verified")
            return archive
        # Not checked by us, e.g. left by the published script's wget: check it now.
        try:
            check_archive(archive, expected, audio_folder)
            _mark_verified(archive)
            note(f"{label}: {part} was already here and passed the integrity check")
            return archive
        except PartError as exc:
            if partial.exists():
                raise PartError(f"{archive} fails the integrity check ({exc}) and {partial} exists too; delete one and rerun") from None
            note(f"{label}: {part} is here but fails the integrity check ({exc}); resuming it as {partial.name}")
            os.replace(archive, partial)
    url = f"{base_url}/{part}"
    note(f"{label}: downloading {url}" + (" (resuming)" if partial.exists() else ""))
    download(url, partial, expected.size, label=f"{label} {part}")
    try:
        check_archive(partial, expected, audio_folder)
    except PartError as exc:
        raise PartError(f"{exc}; delete {partial} and rerun") from None
    os.replace(partial, archive)
    _mark_verified(archive)
    return archive


# --------------------------------------------------------------------------- extraction


@dataclass
class Extracted:
    """Counts of an unpacking run."""

    new: int = 0
    present: int = 0
    different: List[str] = field(default_factory=list)  # same name, another size: left alone


def extract_wavs(archives: List[Path], dest: Path, audio_folder: Optional[str]) -> Extracted:
    """Extract every dataset WAV of ``archives`` into ``dest``; existing files are never replaced.

    A file already in ``dest`` with the member's size counts as present; one with another
    size (e.g. already converted by ``util_resample.py``) is left as it is and listed.
    """
    plan = []  # (archive, member info, file name)
    origin: Dict[str, str] = {}
    for archive in archives:
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                name = member_file_name(info.filename, audio_folder)
                if name is None:
                    continue
                if name in origin:
                    raise UserError(
                        f"{archive.name}: {info.filename} and {origin[name]} would both be extracted as {dest / name}; "
                        "unpack this archive by hand"
                    )
                origin[name] = f"{archive.name}:{info.filename}"
                plan.append((archive, info, name))
    result = Extracted()
    todo = []
    for archive, info, name in plan:
        target = dest / name
        if target.exists():
            if target.stat().st_size == info.file_size:
                result.present += 1
            else:
                result.different.append(str(target))
            remove_stale_partials(target)
        else:
            todo.append((archive, info, name))
    needed = sum(info.file_size for _, info, _ in todo)
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise UserError(f"unpacking needs {needed / 1e9:.1f} GB in {dest} but only {free / 1e9:.1f} GB are free; free some space and rerun")
    current = None
    try:
        for archive, info, name in todo:
            if current is None or current.filename != str(archive):
                if current is not None:
                    current.close()
                current = zipfile.ZipFile(archive)
                note(f"unpacking {archive.name}")
            target = dest / name
            remove_stale_partials(target)
            with current.open(info) as src, atomic_write(target, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
            result.new += 1
    finally:
        if current is not None:
            current.close()
    return result


# --------------------------------------------------------------------------- the command


def fetch_dataset(key: str, dest: Path, environ=os.environ) -> Extracted:
    """Download, verify and unpack dataset ``key`` (a :data:`DATASETS` key) into ``dest``."""
    dataset = DATASETS[key]
    base_url, api_url = default_urls(dataset, environ)
    dest.mkdir(parents=True, exist_ok=True)
    record = fetch_record(api_url)
    count = len(dataset.parts)
    archives, failures = [], []
    for i, part in enumerate(dataset.parts, start=1):
        label = f"part {i}/{count}"
        try:
            archives.append(obtain_part(part, dest, base_url, record.get(part, Expected()), dataset.audio_folder, label))
        except PartError as exc:
            # Keep going: the other parts download now and the rerun only needs the failed ones.
            failures.append((i, part, str(exc)))
            warn(f"{label} {part} failed: {exc}")
            if isinstance(exc, ServerUnreachable):
                if i < count:
                    warn(f"the server does not answer; parts {i + 1}..{count} were not tried")
                break
    if failures:
        i, part, reason = failures[0]
        others = f" ({len(failures) - 1} more failed part(s) above)" if len(failures) > 1 else ""
        raise UserError(
            f"part {i}/{count} {part}: {reason}{others}. Nothing was unpacked or moved; "
            f"verified parts are kept and a rerun resumes the rest"
        )
    result = extract_wavs(archives, dest, dataset.audio_folder)
    if result.different:
        warn(
            f"{len(result.different)} WAV file(s) already in {dest} differ from the archive (e.g. {result.different[0]}, "
            "perhaps converted by util_resample.py) and were left as they are; delete them to unpack them again"
        )
    return result


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None, dataset: Optional[str] = None) -> int:
    """Command line: ``python3 -m auditoryhum.datasets DATASET``, or a wrapper fixing ``dataset``."""
    what = DATASETS[dataset].title if dataset else "a dataset"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"Download {what} from Zenodo (resumable, verified) and unpack its WAV files into a folder.",
        epilog="Environment: BASE_URL overrides the folder URL of the archives; ZENODO_API the record's JSON "
        "(sizes and MD5s; empty for none). Archives are kept; a rerun resumes and skips finished work.",
    )
    if dataset is None:
        parser.add_argument("dataset", choices=sorted(DATASETS), help="which dataset")
    parser.add_argument("--dest", default=".", help="folder that receives the archives and the WAV files (default: current folder)")
    parser.add_argument("--quiet", action="store_true", help="no notes or progress")
    args = parser.parse_args(argv)
    if dataset is not None:
        args.dataset = dataset
    prog = parser.prog
    set_quiet(args.quiet)
    try:
        result = fetch_dataset(args.dataset, Path(args.dest))
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; downloaded bytes are kept and a rerun resumes", file=sys.stderr)
        return 130
    except OSError as exc:
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    total = result.new + result.present + len(result.different)
    print(
        f"{args.dataset}: {len(DATASETS[args.dataset].parts)} archive(s) verified; {total} WAV files in {args.dest} "
        f"({result.new} unpacked now, {result.present + len(result.different)} already there)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python3 -m auditoryhum.datasets"))
