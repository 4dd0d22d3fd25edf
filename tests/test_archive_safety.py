"""Crafted archives, served from a local HTTP server: extraction never leaves ``--root``.

Each bad archive starts with a harmless member, so "nothing extracted" shows that every
member is checked before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from torchvision.datasets.voc import DATASET_YEAR_DICT

import wsl.data.download as download
from tests.http_server import serve_files
from wsl.data.bad_input import DataError
from wsl.data.download import Archive, fetch, main

TRAINVAL_TAR = DATASET_YEAR_DICT["2007"]["filename"]
HARMLESS = "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt"
VICTIM_TEXT = b"outside the root\n"
Member = tuple[tarfile.TarInfo, bytes]


def _file(name: str, data: bytes = b"pwned\n", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def _link(name: str, target: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


def _device(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3  # /dev/null's numbers
    return info, b""


def _tar(members: list[Member], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for info, data in [_file(HARMLESS, b"000005\n"), *members]:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


@pytest.fixture
def files() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A loopback server of the (mutable) dict ``path -> bytes``; yields its URL and the dict."""
    served: dict[str, bytes] = {}
    with serve_files(served) as url:
        yield url, served


def _outside(tmp_path: Path, root: Path) -> dict[str, object]:
    """What lies under ``tmp_path`` but not in ``root``: each path's content or link target."""
    return {
        str(p.relative_to(tmp_path)): p.readlink() if p.is_symlink() else p.read_bytes()
        for p in tmp_path.rglob("*")
        if p != root and root not in p.parents and not p.is_dir()
    }


def _serve(files: tuple[str, dict[str, bytes]], name: str, data: bytes) -> Archive:
    url, served = files
    served[f"/{name}"] = data
    return Archive(f"{url}/{name}", name, hashlib.md5(data).hexdigest(), "VOCdevkit")


# (case, members given the folder holding the root, what the message says about the member)
BAD: list[tuple[str, Callable[[Path], list[Member]], str]] = [
    ("traversal", lambda _: [_file("../victim.txt")], "'../victim.txt' would be written outside"),
    (
        "absolute path",
        lambda top: [_file(f"{top}/absolute.txt")],
        "absolute.txt' has an absolute path",
    ),
    (
        "symlink outside",
        lambda _: [
            _link("VOCdevkit/out", "../..", tarfile.SYMTYPE),
            _file("VOCdevkit/out/victim.txt"),
        ],
        "'VOCdevkit/out' is a symbolic link to '../..', outside",
    ),
    (
        "absolute symlink",
        lambda top: [_link("VOCdevkit/out", str(top / "victim.txt"), tarfile.SYMTYPE)],
        "'VOCdevkit/out' is a symbolic link to the absolute path",
    ),
    (
        "hard link outside",
        lambda _: [
            _link("VOCdevkit/hard", "../victim.txt", tarfile.LNKTYPE),
            _file("VOCdevkit/hard"),
        ],
        "'VOCdevkit/hard' is a hard link to '../victim.txt', outside",
    ),
    (
        "symlink chain",  # each member alone looks inside; together they climb out
        lambda _: [
            _link("VOCdevkit/here", ".", tarfile.SYMTYPE),
            _file("VOCdevkit/here/../../victim.txt"),
        ],
        "'VOCdevkit/here/../../victim.txt' would be written through the symlink 'VOCdevkit/here'",
    ),
    (
        "link through a symlink",
        lambda _: [
            _link("VOCdevkit/a", "b/../..", tarfile.SYMTYPE),
            _link("VOCdevkit/b", ".", tarfile.SYMTYPE),
            _file("VOCdevkit/a/victim.txt"),
        ],
        "'VOCdevkit/a' links through the symlink 'VOCdevkit/b'",
    ),
    ("device", lambda _: [_device("VOCdevkit/null")], "'VOCdevkit/null' is a device"),
]


@pytest.mark.parametrize(("members", "says"), [case[1:] for case in BAD], ids=[c[0] for c in BAD])
@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_bad_archive_is_refused_and_writes_nothing(
    files: tuple[str, dict[str, bytes]],
    tmp_path: Path,
    members: Callable[[Path], list[Member]],
    says: str,
    mode: str,
) -> None:
    root = tmp_path / "root"
    (tmp_path / "victim.txt").write_bytes(VICTIM_TEXT)
    before = _outside(tmp_path, root)
    archive = _serve(files, "evil.tgz", _tar(members(tmp_path), mode))

    with pytest.raises(DataError) as error:
        fetch(archive, root)
    message = str(error.value)
    assert message.startswith(f"{root / 'evil.tgz'}: member ")
    assert says in message and "refused, nothing extracted" in message
    assert "\n" not in message
    assert _outside(tmp_path, root) == before
    assert [p.name for p in root.iterdir()] == ["evil.tgz"]  # downloaded, nothing extracted


def test_setuid_and_group_write_bits_are_not_written(
    files: tuple[str, dict[str, bytes]], tmp_path: Path
) -> None:
    script = "VOCdevkit/VOC2007/run.sh"
    archive = _serve(files, "modes.tar", _tar([_file(script, b"#!/bin/sh\n", mode=0o7777)]))

    assert fetch(archive, tmp_path) == tmp_path / "VOCdevkit"
    assert stat.S_IMODE((tmp_path / script).stat().st_mode) == 0o755
    assert (tmp_path / HARMLESS).read_text() == "000005\n"
    assert (tmp_path / "modes.tar.extracted").is_file()


def test_symlink_inside_root_is_kept(files: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    link = _link("VOCdevkit/VOC2007/list.txt", "ImageSets/Main/trainval.txt", tarfile.SYMTYPE)
    archive = _serve(files, "links.tar", _tar([link]))

    fetch(archive, tmp_path)
    assert (tmp_path / "VOCdevkit/VOC2007/list.txt").read_text() == "000005\n"


def test_data_filter_still_guards_extraction(
    files: tuple[str, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the check first (as if the disk changed after it), ``filter="data"`` refuses."""
    monkeypatch.setattr(download, "_check_members", lambda *args: None)
    root = tmp_path / "root"
    (tmp_path / "victim.txt").write_bytes(VICTIM_TEXT)
    archive = _serve(files, "evil.tar", _tar([_file("../victim.txt")]))

    with pytest.raises(DataError, match=re.escape("'../victim.txt' refused while extracting")):
        fetch(archive, root)
    assert (tmp_path / "victim.txt").read_bytes() == VICTIM_TEXT
    assert not (root / "evil.tar.extracted").exists()


def test_not_a_tar_is_a_data_error(files: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    archive = _serve(files, "junk.tar", b"not a tar at all\n" * 100)

    with pytest.raises(DataError, match=re.escape("junk.tar: cannot be extracted")):
        fetch(archive, tmp_path)
    assert not (tmp_path / "junk.tar.extracted").exists()


def test_cli_refuses_with_one_line_naming_the_archive(
    files: tuple[str, dict[str, bytes]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, served = files
    root = tmp_path / "root"
    (tmp_path / "victim.txt").write_bytes(VICTIM_TEXT)
    data = _tar([_file("../victim.txt")])
    served[f"/voc/{TRAINVAL_TAR}"] = data
    md5 = hashlib.md5(data).hexdigest()

    argv = ["voc2007", f"--root={root}", f"--voc-base-url={url}/voc", "--no-proposals"]
    assert main([*argv, f"--md5={TRAINVAL_TAR}={md5}"]) == 1
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines == [
        f"error: {root / TRAINVAL_TAR}: member '../victim.txt' would be written outside {root}: "
        "refused, nothing extracted; the archive or mirror is not trustworthy: delete the "
        "archive and use another mirror"
    ]
    assert out == ""
    assert (tmp_path / "victim.txt").read_bytes() == VICTIM_TEXT
    assert not (root / "VOCdevkit").exists()
