"""Download PASCAL VOC 2007 and 2012 and VOC 2007's region proposals, verified and extracted.

``python -m wsl.data.download voc2007 --root DIR`` leaves ``DIR/VOCdevkit/VOC2007/...``
(trainval and test) and ``DIR/selective_search_data/voc_2007_{trainval,test}.mat``;
``python -m wsl.data.download voc2012 --root DIR`` leaves ``DIR/VOCdevkit/VOC2012/...``
(trainval only) beside ``DIR/VOCdevkit/VOC2007``, which it leaves as it is, so that one root
holds both years (for 07+12 training). The VOC 2012 test set is not publicly downloadable:
its images come from the evaluation server after registration and its annotations were never
published, so there is nothing to download for it here. Both years go through the same code
(:func:`_download_voc`), and each checks that ``VOCdevkit/VOC<year>`` has ``JPEGImages``,
``Annotations`` and ``ImageSets/Main`` once its archives are extracted.
``python -m wsl.data.download voc2007-edgeboxes --root DIR`` leaves WSDDN's EdgeBoxes
``DIR/edgeboxes/EdgeBoxesVOC2007{trainval,test}.mat`` and ``DIR/edgeboxes/``
:data:`~wsl.data.manifest.MANIFEST_NAME`.

Nothing half-done ever looks done:

- a file is streamed to ``<name>.part`` beside its final name, checked, and only then
  renamed (``os.replace``) to ``<name>``. An interrupted download keeps its ``.part`` and
  the next run continues it (an HTTP ``Range`` request; a server that ignores it sends
  the whole file again). A failed check deletes the ``.part`` and raises
  :class:`~wsl.data.bad_input.DataError`.
- an archive's check is its MD5. A present archive with the right MD5 is kept, one with a
  wrong MD5 (say, truncated) is downloaded again.
- the EdgeBoxes files have no published checksum, so their structure is checked
  (:func:`check_edgeboxes`) and the SHA-256 and size of what arrived are written to the
  manifest; a present file is compared with the manifest (here and whenever the proposals
  are loaded), so a file that changed after its download is noticed.
- extraction writes the marker file ``<name>.extracted`` (holding the archive's MD5) after the
  archive is fully extracted. A marker is used rather than extracting into a temporary folder
  and moving it into place because the trainval and test tars both fill ``VOCdevkit/VOC2007``.
  An interrupted extraction leaves no marker and is redone on the next run; an archive whose
  marker is present is neither downloaded nor extracted again (so the archives may be deleted
  once extracted).

Extraction stays inside ``--root``: every member is checked (:func:`_check_members`) before
anything is written, and one bad member (an absolute path, ``../``, a link leading outside, a
device) refuses the whole archive with a :class:`~wsl.data.bad_input.DataError`. Python's
``filter="data"`` (PEP 706) then extracts it; setuid, setgid and sticky bits, group and other
write bits and ownership are not written.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from torchvision.datasets.utils import USER_AGENT, calculate_md5, check_integrity
from torchvision.datasets.voc import DATASET_YEAR_DICT
from tqdm import tqdm

from wsl.data.bad_input import DataError
from wsl.data.manifest import check_file, record_file
from wsl.data.proposal_mat import read_proposal_mat
from wsl.runtime.atomic import atomic_path

VOC_BASE_URL = DATASET_YEAR_DICT["2007"]["url"].rsplit("/", 1)[0]
VOC2012_BASE_URL = DATASET_YEAR_DICT["2012"]["url"].rsplit("/", 1)[0]
# What VOCdevkit/VOC<year> holds once a year's archives are extracted.
VOC_LAYOUT = ("JPEGImages", "Annotations", "ImageSets/Main")
# From rbgirshick/fast-rcnn, data/scripts/fetch_selective_search_data.sh.
PROPOSALS_BASE_URL = "https://dl.dropboxusercontent.com/s/orrt7o6bp6ae0tc"
PROPOSALS_FILENAME = "selective_search_data.tgz"
PROPOSALS_MD5 = "7078c1db87a7851b31966b96774cd9b9"
# From hbilen/WSDDN, pascal/setup_voc07_eb.m (its README's link for the test file lacks the
# "data/" part, which the code and the later ports have).
EDGEBOXES_BASE_URL = "https://groups.inf.ed.ac.uk/hbilen-data/data/WSDDN"
EDGEBOXES_FILENAMES = ("EdgeBoxesVOC2007trainval.mat", "EdgeBoxesVOC2007test.mat")
EDGEBOXES_DIR = "edgeboxes"

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
    archives = [_voc_archive("2007", voc_base_url), _voc_archive("2007-test", voc_base_url)]
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


def voc2012_archives(voc_base_url: str = VOC2012_BASE_URL) -> list[Archive]:
    """The VOC 2012 trainval tar (the test set is not publicly downloadable).

    A base URL replaces everything before the file name of the original URL (for mirrors).
    """
    return [_voc_archive("2012", voc_base_url)]


def _voc_archive(key: str, voc_base_url: str) -> Archive:
    """The archive ``DATASET_YEAR_DICT[key]`` of torchvision, fetched from ``voc_base_url``."""
    entry = DATASET_YEAR_DICT[key]
    return Archive(
        url=f"{voc_base_url.rstrip('/')}/{entry['filename']}",
        filename=entry["filename"],
        md5=entry["md5"],
        extracts_to=entry["base_dir"],
    )


def _stream(url: str, part: Path, desc: str) -> None:
    """Download ``url`` into ``part``, continuing what an earlier run left there.

    Raises :class:`DataError` (keeping ``part`` for the next run) when the transfer fails or
    ends before the announced length.
    """
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            if response.status != 206:  # the server sends the whole file
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length else None
            with (
                open(part, "ab" if have else "wb") as out,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=desc,
                ) as progress,
            ):
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    progress.update(len(chunk))
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing after the kept part: start again
            part.unlink()
            _stream(url, part, desc)
            return
        raise DataError(url, f"download failed ({err}); check the URL") from err
    except (OSError, http.client.HTTPException) as err:
        raise DataError(
            url, f"download failed ({err}); run again to continue from {part.name}"
        ) from err
    if total is not None and part.stat().st_size != total:
        raise DataError(
            url,
            f"download ended after {part.stat().st_size} of {total} bytes; run again to "
            f"continue from {part.name}",
        )


def _download(archive: Archive, path: Path) -> None:
    """Stream ``archive.url`` to ``<path>.part``, check its MD5, then rename it to ``path``."""
    part = path.with_name(path.name + ".part")
    _stream(archive.url, part, archive.filename)
    actual = calculate_md5(part)
    if actual != archive.md5:
        part.unlink()
        raise DataError(
            archive.url,
            f"downloaded {archive.filename} has MD5 {actual}, expected {archive.md5}; "
            "the download was corrupted or the server sent another file: run again or "
            "use another mirror",
        )
    os.replace(part, path)


def _refused(path: Path, member: tarfile.TarInfo, reason: str) -> DataError:
    """The one-line error for an archive refused because of ``member``."""
    return DataError(
        path,
        f"member {member.name!r} {reason}: refused, nothing extracted; the archive or mirror is "
        "not trustworthy: delete the archive and use another mirror",
    )


def _filter_reason(err: tarfile.FilterError, root: Path) -> str:
    """Why ``tarfile.data_filter`` refused a member, in words naming ``root``."""
    member = err.tarinfo
    kind = "symbolic" if member.issym() else "hard"
    if isinstance(err, tarfile.OutsideDestinationError):
        return f"would be written outside {root}"
    if isinstance(err, tarfile.LinkOutsideDestinationError):
        return f"is a {kind} link to {member.linkname!r}, outside {root}"
    if isinstance(err, tarfile.AbsoluteLinkError):
        return f"is a {kind} link to the absolute path {member.linkname!r}"
    if isinstance(err, tarfile.SpecialFileError):
        return "is a device, FIFO or other special file"
    return str(err)


def _symlink_on_way(
    dest: str, relpath: str, symlinks: Mapping[str, tarfile.TarInfo], *, last: bool
) -> tarfile.TarInfo | None:
    """The first symlink of the archive that ``relpath`` (below ``dest``) passes through.

    ``symlinks`` maps where each symlink member will be (a real path) to it; the last
    component of ``relpath`` counts only when ``last``. Walks the real path as the kernel
    will once those symlinks exist, which ``tarfile.data_filter`` cannot see beforehand.
    """
    current = dest
    parts = [part for part in relpath.split("/") if part not in ("", ".")]
    for i, part in enumerate(parts):
        step = os.path.join(current, part)
        if step in symlinks and (last or i < len(parts) - 1):
            return symlinks[step]
        current = os.path.realpath(step)
    return None


def _check_members(path: Path, members: Sequence[tarfile.TarInfo], root: Path) -> None:
    """Raise :class:`DataError` unless every member of the tar ``path`` stays inside ``root``.

    Refused: a member with an absolute path, one ``tarfile.data_filter`` rejects (written or
    linking outside ``root``, a device, FIFO or other special file; see the ``tarfile`` docs,
    "Extraction filters"), and one written or linking through a symlink of the same archive
    (the filter checks those only once the symlink is on disk, after extraction began). A
    folder inside ``root`` that is a symlink to elsewhere counts as outside.
    """
    dest = os.path.realpath(root)
    for member in members:
        if member.name.startswith(("/", os.sep)):
            raise _refused(path, member, "has an absolute path")
        try:
            tarfile.data_filter(member, dest)
        except tarfile.FilterError as err:
            raise _refused(path, member, _filter_reason(err, root)) from err
    symlinks = {  # where each symlink will be, parents resolved
        os.path.join(
            os.path.realpath(os.path.join(dest, os.path.dirname(m.name))), os.path.basename(m.name)
        ): m
        for m in members
        if m.issym()
    }
    for member in members:
        via = _symlink_on_way(dest, member.name, symlinks, last=True)
        if via is not None and via is not member:
            raise _refused(path, member, f"would be written through the symlink {via.name!r}")
        if member.issym() or member.islnk():
            start = os.path.dirname(member.name) if member.issym() else ""
            via = _symlink_on_way(dest, f"{start}/{member.linkname}", symlinks, last=False)
            if via is not None:
                raise _refused(path, member, f"links through the symlink {via.name!r}")


def _extract(path: Path, root: Path) -> None:
    """Extract the tar ``path`` into ``root`` once :func:`_check_members` accepts all of it.

    ``filter="data"`` checks each member again as it is written, and drops setuid, setgid
    and sticky bits, group and other write bits and ownership: those are not written.
    """
    try:
        with tarfile.open(path) as tar:  # plain or gzip, detected
            members = tar.getmembers()
            _check_members(path, members, root)
            tar.extractall(root, members, filter="data")
    except tarfile.FilterError as err:  # the disk changed between the check and the write
        raise DataError(
            path,
            f"member {err.tarinfo.name!r} refused while extracting ({err}); what was extracted "
            f"before it is inside {root}",
        ) from err
    except (tarfile.TarError, EOFError) as err:
        raise DataError(path, f"cannot be extracted ({err}); delete it and run again") from err


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
    _extract(path, root)
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
    return _download_voc(
        root,
        "VOCdevkit/VOC2007",
        voc2007_archives(voc_base_url, proposals_base_url, proposals),
        known=voc2007_archives(),
        md5_overrides=md5_overrides,
    )


def download_voc2012(
    root: str | Path,
    voc_base_url: str = VOC2012_BASE_URL,
    md5_overrides: Mapping[str, str] | None = None,
) -> list[Path]:
    """Fetch the VOC 2012 trainval tar (:func:`voc2012_archives`) into ``root``.

    Returns ``[root / "VOCdevkit/VOC2012"]``; a ``VOCdevkit/VOC2007`` already in ``root`` is
    left as it is. ``md5_overrides`` is as for :func:`download_voc2007`.
    """
    return _download_voc(
        root,
        "VOCdevkit/VOC2012",
        voc2012_archives(voc_base_url),
        known=voc2012_archives(),
        md5_overrides=md5_overrides,
    )


def _download_voc(
    root: str | Path,
    devkit: str,
    archives: Sequence[Archive],
    known: Sequence[Archive],
    md5_overrides: Mapping[str, str] | None,
) -> list[Path]:
    """Fetch ``archives`` into ``root`` with ``md5_overrides``; return what they extract to.

    An override must name one of the ``known`` archives (a :class:`ValueError` otherwise, before
    anything is downloaded). Once all are extracted, ``root / devkit`` must hold
    :data:`VOC_LAYOUT` (a :class:`DataError` naming the first missing folder otherwise).
    """
    overrides = dict(md5_overrides or {})
    names = [archive.filename for archive in known]
    unknown = set(overrides) - set(names)
    if unknown:
        raise ValueError(f"MD5 given for unknown archive(s) {sorted(unknown)}; known: {names}")
    paths = [
        fetch(replace(archive, md5=overrides.get(archive.filename, archive.md5)), root)
        for archive in archives
    ]
    folder = Path(root) / devkit
    for sub in VOC_LAYOUT:
        if not (folder / sub).is_dir():
            extracted = ", ".join(a.filename for a in archives if a.extracts_to == devkit)
            raise DataError(
                folder,
                f"has no {sub} after extracting {extracted}; is it the right archive? Delete "
                "it and its .extracted marker and run again",
            )
    return paths


def check_edgeboxes(path: Path) -> int:
    """Check the structure of a WSDDN EdgeBoxes ``.mat``; return its number of images.

    As ``setup_voc07_eb.m`` reads it: cells ``boxes`` (1-based ``[y1 x1 y2 x2]``),
    ``boxScores`` (one per box) and ``images`` (string ids), one entry per image.
    Raises :class:`DataError` naming ``path`` and the first problem.
    """
    mat = read_proposal_mat(path, "yxyx")  # cell counts agree, one score per box
    if mat.image_ids is None or mat.numeric_ids:
        raise DataError(path, "has no 'images' cell of string ids (as '000005')")
    if len(set(mat.image_ids)) != len(mat.image_ids):
        raise DataError(path, "'images' lists some image id more than once")
    for image_id, entry in zip(mat.image_ids, mat.proposals, strict=True):
        if entry.scores is None:
            raise DataError(path, "has no 'boxScores' (one score per box)")
        x1, y1, x2, y2 = entry.boxes.T
        if not ((x1 >= 0) & (y1 >= 0) & (x1 <= x2) & (y1 <= y2)).all():
            raise DataError(
                path, f"boxes of image {image_id} are not 1-based [y1 x1 y2 x2] with y1<=y2, x1<=x2"
            )
    return len(mat.proposals)


def download_edgeboxes(root: str | Path, base_url: str = EDGEBOXES_BASE_URL) -> list[Path]:
    """Fetch WSDDN's EdgeBoxes files into ``root/edgeboxes``; return their paths.

    A present file is compared with the manifest (a :class:`DataError` if it changed) or,
    when the manifest does not list it, checked and recorded; nothing is downloaded again.
    """
    folder = Path(root) / EDGEBOXES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename in EDGEBOXES_FILENAMES:
        url = f"{base_url.rstrip('/')}/{filename}"
        path = folder / filename
        if path.is_file():
            if check_file(path):  # listed in the manifest and unchanged
                paths.append(path)
                continue
            check_edgeboxes(path)  # put there by other means: check it and record it
        else:
            part = path.with_name(filename + ".part")
            _stream(url, part, filename)
            try:
                check_edgeboxes(part)
            except DataError as err:
                part.unlink()
                raise DataError(
                    url, f"the downloaded file is damaged ({err.problem}); run again"
                ) from err
            os.replace(part, path)
        record_file(path, url)
        paths.append(path)
    return paths


def _md5_override(text: str) -> tuple[str, str]:
    """Parse ``FILENAME=HEX`` from the command line."""
    name, sep, md5 = text.partition("=")
    if not sep or not name or len(md5) != 32:
        raise argparse.ArgumentTypeError(f"expected FILENAME=MD5 (32 hex digits), got {text!r}")
    return name, md5.lower()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m wsl.data.download voc2007|voc2012|voc2007-edgeboxes --root DIR``.

    Returns the exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m wsl.data.download", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument(
        "dataset",
        choices=["voc2007", "voc2012", "voc2007-edgeboxes"],
        help="voc2007: the trainval and test images, annotations and selective search; "
        "voc2012: the trainval images and annotations, into ROOT/VOCdevkit/VOC2012 beside "
        "VOC2007 (the VOC 2012 test set is not publicly downloadable: its images come from the "
        "evaluation server after registration and it has no public annotations); "
        f"voc2007-edgeboxes: WSDDN's EdgeBoxes proposals (into ROOT/{EDGEBOXES_DIR})",
    )
    parser.add_argument("--root", required=True, type=Path, help="folder to download into")
    parser.add_argument(
        "--voc-base-url",
        help=f"URL of the folder holding the VOC tars (default: {VOC_BASE_URL} for voc2007, "
        f"{VOC2012_BASE_URL} for voc2012)",
    )
    parser.add_argument(
        "--proposals-base-url",
        default=PROPOSALS_BASE_URL,
        help=f"URL of the folder holding {PROPOSALS_FILENAME} (voc2007 only)",
    )
    parser.add_argument(
        "--edgeboxes-base-url",
        default=EDGEBOXES_BASE_URL,
        help=f"URL of the folder holding {' and '.join(EDGEBOXES_FILENAMES)}",
    )
    parser.add_argument(
        "--no-proposals",
        dest="proposals",
        action="store_false",
        help="skip the selective-search proposals (voc2007 only)",
    )
    parser.add_argument(
        "--md5",
        type=_md5_override,
        action="append",
        default=[],
        metavar="FILENAME=HEX",
        help="expect this MD5 for an archive instead of the known one (voc2007 and voc2012; "
        "for tests and private mirrors; never needed for the real data)",
    )
    args = parser.parse_args(argv)
    if args.dataset == "voc2012" and (
        args.proposals_base_url != PROPOSALS_BASE_URL or not args.proposals
    ):
        parser.error("--proposals-base-url and --no-proposals apply to voc2007 only")
    try:
        if args.dataset == "voc2007-edgeboxes":
            paths = download_edgeboxes(args.root, args.edgeboxes_base_url)
        elif args.dataset == "voc2012":
            paths = download_voc2012(
                args.root, args.voc_base_url or VOC2012_BASE_URL, dict(args.md5)
            )
        else:
            paths = download_voc2007(
                args.root,
                args.voc_base_url or VOC_BASE_URL,
                args.proposals_base_url,
                args.proposals,
                dict(args.md5),
            )
    except ValueError as err:  # DataError, or an MD5 given for an unknown archive
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
