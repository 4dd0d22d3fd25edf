"""Download PASCAL VOC 2007 and Fast R-CNN's selective-search proposals, verified and extracted.

``python -m wsl.data.download voc2007 --root DIR`` leaves ``DIR/VOCdevkit/VOC2007/...``
(trainval and test) and ``DIR/selective_search_data/voc_2007_{trainval,test}.mat``.

Nothing half-done ever looks done:

- an archive is streamed to ``<name>.part`` beside its final name, its MD5 checked, and only
  then renamed (``os.replace``) to ``<name>``; a wrong MD5 deletes the ``.part`` and raises
  :class:`~wsl.data.bad_input.DataError`. A present archive with the right MD5 is kept, one
  with a wrong MD5 (say, truncated) is downloaded again.
- extraction writes the marker file ``<name>.extracted`` (holding the archive's MD5) after the
  archive is fully extracted. A marker is used rather than extracting into a temporary folder
  and moving it into place because the trainval and test tars both fill ``VOCdevkit/VOC2007``.
  An interrupted extraction leaves no marker and is redone on the next run; an archive whose
  marker is present is neither downloaded nor extracted again (so the archives may be deleted
  once extracted).
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from torchvision.datasets.utils import USER_AGENT, calculate_md5, check_integrity, extract_archive
from torchvision.datasets.voc import DATASET_YEAR_DICT
from tqdm import tqdm

from wsl.atomic import atomic_path
from wsl.data.bad_input import DataError

VOC_BASE_URL = DATASET_YEAR_DICT["2007"]["url"].rsplit("/", 1)[0]
# From rbgirshick/fast-rcnn, data/scripts/fetch_selective_search_data.sh.
PROPOSALS_BASE_URL = "https://dl.dropboxusercontent.com/s/orrt7o6bp6ae0tc"
PROPOSALS_FILENAME = "selective_search_data.tgz"
PROPOSALS_MD5 = "7078c1db87a7851b31966b96774cd9b9"

_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60  # per blocking socket operation, not for the whole download


@dataclass(frozen=True)
class Archive:
    """One archive to fetch: where from, its file name and MD5, and what it extracts to.

    ``extracts_to`` is a path relative to the download root that exists once extracted.
    """

    url: str
    filename: str
    md5: str
    extracts_to: str


def voc2007_archives(
    voc_base_url: str = VOC_BASE_URL,
    proposals_base_url: str = PROPOSALS_BASE_URL,
    proposals: bool = True,
) -> list[Archive]:
    """The VOC 2007 trainval and test tars and, if ``proposals``, the selective-search archive.

    A base URL replaces everything before the file name of the original URL (for mirrors).
    """
    archives = [
        Archive(
            url=f"{voc_base_url.rstrip('/')}/{entry['filename']}",
            filename=entry["filename"],
            md5=entry["md5"],
            extracts_to=entry["base_dir"],
        )
        for entry in (DATASET_YEAR_DICT["2007"], DATASET_YEAR_DICT["2007-test"])
    ]
    if proposals:
        archives.append(
            Archive(
                url=f"{proposals_base_url.rstrip('/')}/{PROPOSALS_FILENAME}",
                filename=PROPOSALS_FILENAME,
                md5=PROPOSALS_MD5,
                extracts_to="selective_search_data",
            )
        )
    return archives


def _download(archive: Archive, path: Path) -> None:
    """Stream ``archive.url`` to ``<path>.part``, check its MD5, then rename it to ``path``."""
    part = path.with_name(path.name + ".part")
    request = urllib.request.Request(archive.url, headers={"User-Agent": USER_AGENT})
    try:
        with (
            urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response,
            open(part, "wb") as out,
        ):
            size = response.headers.get("Content-Length")
            with tqdm(
                total=int(size) if size else None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=archive.filename,
            ) as progress:
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    progress.update(len(chunk))
        actual = calculate_md5(part)
        if actual != archive.md5:
            raise DataError(
                archive.url,
                f"downloaded {archive.filename} has MD5 {actual}, expected {archive.md5}; "
                "the download was corrupted or the server sent another file: run again or "
                "use another mirror",
            )
        os.replace(part, path)
    except OSError as err:
        raise DataError(
            archive.url, f"download failed ({err}); check the URL and your connection"
        ) from err
    finally:
        part.unlink(missing_ok=True)


def fetch(archive: Archive, root: str | Path) -> Path:
    """Download (unless present with the right MD5), verify and extract ``archive`` into ``root``.

    Idempotent: does nothing when ``<filename>.extracted`` says this MD5 was extracted.
    Returns ``root / archive.extracts_to``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / archive.filename
    marker = root / f"{archive.filename}.extracted"
    target = root / archive.extracts_to
    if marker.is_file() and marker.read_text().strip() == archive.md5:
        return target
    if not check_integrity(path, archive.md5):
        _download(archive, path)
    try:
        extract_archive(path, root)
    except (tarfile.TarError, EOFError) as err:
        raise DataError(path, f"cannot be extracted ({err}); delete it and run again") from err
    if not target.exists():
        raise DataError(path, f"does not contain {archive.extracts_to}; is it the right archive?")
    with atomic_path(marker) as tmp:
        tmp.write_text(archive.md5 + "\n")
    return target


def download_voc2007(
    root: str | Path,
    voc_base_url: str = VOC_BASE_URL,
    proposals_base_url: str = PROPOSALS_BASE_URL,
    proposals: bool = True,
    md5_overrides: Mapping[str, str] | None = None,
) -> list[Path]:
    """Fetch every archive of :func:`voc2007_archives` into ``root``; return what they extract to.

    ``md5_overrides`` maps an archive's file name to the MD5 to expect instead of the known
    one (for tests and private mirrors serving other files; never needed for the real data).
    """
    overrides = dict(md5_overrides or {})
    known = [archive.filename for archive in voc2007_archives()]
    unknown = set(overrides) - set(known)
    if unknown:
        raise ValueError(f"MD5 given for unknown archive(s) {sorted(unknown)}; known: {known}")
    archives = voc2007_archives(voc_base_url, proposals_base_url, proposals)
    return [
        fetch(replace(archive, md5=overrides.get(archive.filename, archive.md5)), root)
        for archive in archives
    ]


def _md5_override(text: str) -> tuple[str, str]:
    """Parse ``FILENAME=HEX`` from the command line."""
    name, sep, md5 = text.partition("=")
    if not sep or not name or len(md5) != 32:
        raise argparse.ArgumentTypeError(f"expected FILENAME=MD5 (32 hex digits), got {text!r}")
    return name, md5.lower()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m wsl.data.download voc2007 --root DIR``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m wsl.data.download", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("dataset", choices=["voc2007"])
    parser.add_argument("--root", required=True, type=Path, help="folder to download into")
    parser.add_argument(
        "--voc-base-url", default=VOC_BASE_URL, help="URL of the folder holding the VOC tars"
    )
    parser.add_argument(
        "--proposals-base-url",
        default=PROPOSALS_BASE_URL,
        help=f"URL of the folder holding {PROPOSALS_FILENAME}",
    )
    parser.add_argument(
        "--no-proposals",
        dest="proposals",
        action="store_false",
        help="skip the selective-search proposals",
    )
    parser.add_argument(
        "--md5",
        type=_md5_override,
        action="append",
        default=[],
        metavar="FILENAME=HEX",
        help="expect this MD5 for an archive instead of the known one (for tests and private "
        "mirrors; never needed for the real data)",
    )
    args = parser.parse_args(argv)
    try:
        paths = download_voc2007(
            args.root, args.voc_base_url, args.proposals_base_url, args.proposals, dict(args.md5)
        )
    except ValueError as err:  # DataError, or an MD5 given for an unknown archive
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
