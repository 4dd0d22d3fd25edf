"""wsl.data.download against archives generated here and served from a local HTTP server."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from torchvision.datasets.voc import DATASET_YEAR_DICT

import wsl.data.download as download
from tests.http_server import serve_files
from wsl.data.bad_input import DataError
from wsl.data.download import (
    Archive,
    download_voc2012,
    fetch,
    main,
    voc2007_archives,
    voc2012_archives,
)

TRAINVAL_TAR = DATASET_YEAR_DICT["2007"]["filename"]
TEST_TAR = DATASET_YEAR_DICT["2007-test"]["filename"]
VOC2012_TAR = DATASET_YEAR_DICT["2012"]["filename"]
PROPOSALS_TGZ = "selective_search_data.tgz"
XML = "<annotation><filename>000005.jpg</filename></annotation>\n"
BOXES = np.array([[[1, 2, 30, 40], [5, 6, 7, 8]]], dtype=np.uint16)


def _tar(members: dict[str, bytes], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _mat(boxes: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"boxes": boxes, "images": np.array(["000005"], dtype=object)})
    return buffer.getvalue()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass
class Server:
    """Files served under ``/voc/`` and ``/ss/``, and the paths requested so far."""

    url: str
    files: dict[str, bytes]
    requests: list[str] = field(default_factory=list)

    def md5_args(self) -> list[str]:
        return [f"--md5={Path(name).name}={_md5(data)}" for name, data in self.files.items()]

    def cli(self, root: Path) -> list[str]:
        return [
            "voc2007",
            f"--root={root}",
            f"--voc-base-url={self.url}/voc",
            f"--proposals-base-url={self.url}/ss/",
            *self.md5_args(),
        ]


@pytest.fixture
def server() -> Iterator[Server]:
    jpeg = _jpeg()
    voc = "VOCdevkit/VOC2007"
    files = {
        f"/voc/{TRAINVAL_TAR}": _tar(
            {
                f"{voc}/ImageSets/Main/trainval.txt": b"000005\n",
                f"{voc}/JPEGImages/000005.jpg": jpeg,
                f"{voc}/Annotations/000005.xml": XML.encode(),
            }
        ),
        f"/voc/{TEST_TAR}": _tar({f"{voc}/ImageSets/Main/test.txt": b"000001\n"}),
        f"/ss/{PROPOSALS_TGZ}": _tar(
            {
                "selective_search_data/voc_2007_trainval.mat": _mat(BOXES),
                "selective_search_data/voc_2007_test.mat": _mat(BOXES + 1),
            },
            mode="w:gz",
        ),
    }
    served = Server(url="", files=files)

    with serve_files(served.files, served.requests) as url:
        served.url = url
        yield served


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


def test_default_urls_are_the_originals() -> None:
    archives = {archive.filename: archive for archive in voc2007_archives()}
    for key in ("2007", "2007-test"):
        entry = DATASET_YEAR_DICT[key]
        assert archives[entry["filename"]].url == entry["url"]
        assert archives[entry["filename"]].md5 == entry["md5"]
    assert archives[PROPOSALS_TGZ].url == (
        "https://dl.dropboxusercontent.com/s/orrt7o6bp6ae0tc/selective_search_data.tgz"
    )
    assert [a.filename for a in voc2007_archives(proposals=False)] == [TRAINVAL_TAR, TEST_TAR]


def test_cli_downloads_extracts_and_then_does_nothing(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(server.cli(tmp_path)) == 0
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    assert (voc / "ImageSets/Main/trainval.txt").read_text() == "000005\n"
    assert (voc / "ImageSets/Main/test.txt").read_text() == "000001\n"
    assert (voc / "Annotations/000005.xml").read_text() == XML
    assert Image.open(voc / "JPEGImages/000005.jpg").size == (8, 6)
    for split, boxes in (("trainval", BOXES), ("test", BOXES + 1)):
        mat = scipy.io.loadmat(tmp_path / "selective_search_data" / f"voc_2007_{split}.mat")
        np.testing.assert_array_equal(mat["boxes"], boxes)
    assert sorted(server.requests) == sorted(server.files)
    assert _leftovers(tmp_path) == []
    out, err = capsys.readouterr()
    assert out.split() == [str(voc), str(voc), str(tmp_path / "selective_search_data")]
    assert TRAINVAL_TAR in err and "100%" in err  # progress bar with the known size

    for name in (TRAINVAL_TAR, TEST_TAR, PROPOSALS_TGZ):  # extracted: archives may go
        (tmp_path / name).unlink()
    assert main(server.cli(tmp_path)) == 0
    assert len(server.requests) == len(server.files)
    assert (voc / "ImageSets/Main/trainval.txt").is_file()


def test_interrupted_extraction_is_redone_without_download(server: Server, tmp_path: Path) -> None:
    assert main([*server.cli(tmp_path), "--no-proposals"]) == 0
    assert len(server.requests) == 2
    trainval = tmp_path / "VOCdevkit/VOC2007/ImageSets/Main/trainval.txt"
    trainval.unlink()
    (tmp_path / f"{TRAINVAL_TAR}.extracted").unlink()

    assert main([*server.cli(tmp_path), "--no-proposals"]) == 0
    assert len(server.requests) == 2
    assert trainval.read_text() == "000005\n"


def test_corrupted_download_is_rejected_and_leaves_nothing(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = server.files[f"/ss/{PROPOSALS_TGZ}"]
    good_md5 = _md5(data)
    server.files[f"/ss/{PROPOSALS_TGZ}"] = data[:-100] + bytes(100)
    archive = Archive(f"{server.url}/ss/{PROPOSALS_TGZ}", PROPOSALS_TGZ, good_md5, "x")

    with pytest.raises(DataError) as error:
        fetch(archive, tmp_path)
    message = str(error.value)
    assert archive.url in message and good_md5 in message
    assert _md5(server.files[f"/ss/{PROPOSALS_TGZ}"]) in message
    assert list(tmp_path.iterdir()) == []

    assert main([*server.cli(tmp_path), f"--md5={PROPOSALS_TGZ}={good_md5}"]) == 1
    assert good_md5 in capsys.readouterr().err
    assert not (tmp_path / PROPOSALS_TGZ).exists()
    assert not (tmp_path / "selective_search_data").exists()
    assert _leftovers(tmp_path) == []


def test_truncated_archive_is_downloaded_again(server: Server, tmp_path: Path) -> None:
    data = server.files[f"/voc/{TEST_TAR}"]
    (tmp_path / TEST_TAR).write_bytes(data[:50])
    archive = Archive(f"{server.url}/voc/{TEST_TAR}", TEST_TAR, _md5(data), "VOCdevkit/VOC2007")

    assert fetch(archive, tmp_path) == tmp_path / "VOCdevkit/VOC2007"
    assert (tmp_path / TEST_TAR).read_bytes() == data
    assert (tmp_path / "VOCdevkit/VOC2007/ImageSets/Main/test.txt").read_text() == "000001\n"
    assert server.requests == [f"/voc/{TEST_TAR}"]


def test_md5_for_unknown_archive_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["voc2007", f"--root={tmp_path}", f"--md5=nope.tar={'0' * 32}"]) == 1
    assert "nope.tar" in capsys.readouterr().err


VOC2012 = "VOCdevkit/VOC2012"
VOC2012_IDS = ("2008_000001", "2008_000002")


def _voc2012_tar(*, annotations: bool = True) -> bytes:
    """A small trainval tar in the VOC2012 layout (without ``Annotations`` if not asked)."""
    jpeg = _jpeg()
    members = {
        f"{VOC2012}/ImageSets/Main/trainval.txt": "".join(f"{i}\n" for i in VOC2012_IDS).encode(),
        f"{VOC2012}/ImageSets/Main/train.txt": f"{VOC2012_IDS[0]}\n".encode(),
    }
    for image_id in VOC2012_IDS:
        members[f"{VOC2012}/JPEGImages/{image_id}.jpg"] = jpeg
        if annotations:
            members[f"{VOC2012}/Annotations/{image_id}.xml"] = XML.replace(
                "000005", image_id
            ).encode()
    return _tar(members)


@pytest.fixture
def voc2012_server() -> Iterator[Server]:
    served = Server(url="", files={f"/voc2012/{VOC2012_TAR}": _voc2012_tar()})
    with serve_files(served.files, served.requests) as url:
        served.url = url
        yield served


def _voc2012_md5(server: Server) -> str:
    return _md5(server.files[f"/voc2012/{VOC2012_TAR}"])


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file below ``folder``: its bytes, inode and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_default_voc2012_url_is_the_original() -> None:
    entry = DATASET_YEAR_DICT["2012"]
    assert voc2012_archives() == [
        Archive(entry["url"], entry["filename"], entry["md5"], entry["base_dir"])
    ]
    assert entry["base_dir"] == VOC2012
    assert voc2012_archives("http://mirror/x/")[0].url == f"http://mirror/x/{VOC2012_TAR}"


def test_voc2012_lands_beside_voc2007_and_then_does_nothing(
    server: Server, voc2012_server: Server, tmp_path: Path
) -> None:
    assert main([*server.cli(tmp_path), "--no-proposals"]) == 0  # a root holding VOC2007
    voc2007 = _snapshot(tmp_path / "VOCdevkit/VOC2007")
    assert len(voc2007) == 4
    md5 = _voc2012_md5(voc2012_server)

    paths = download_voc2012(tmp_path, f"{voc2012_server.url}/voc2012", {VOC2012_TAR: md5})
    voc = tmp_path / VOC2012
    assert paths == [voc]
    assert (voc / "ImageSets/Main/trainval.txt").read_text() == "2008_000001\n2008_000002\n"
    assert (voc / "ImageSets/Main/train.txt").read_text() == "2008_000001\n"
    for image_id in VOC2012_IDS:
        assert Image.open(voc / f"JPEGImages/{image_id}.jpg").size == (8, 6)
        assert f"<filename>{image_id}.jpg" in (voc / f"Annotations/{image_id}.xml").read_text()
    assert (tmp_path / f"{VOC2012_TAR}.extracted").read_text() == md5 + "\n"
    assert _snapshot(tmp_path / "VOCdevkit/VOC2007") == voc2007
    assert sorted(p.name for p in (tmp_path / "VOCdevkit").iterdir()) == ["VOC2007", "VOC2012"]
    assert voc2012_server.requests == [f"/voc2012/{VOC2012_TAR}"]
    assert _leftovers(tmp_path) == []

    (tmp_path / VOC2012_TAR).unlink()  # extracted: the archive may go
    assert download_voc2012(tmp_path, f"{voc2012_server.url}/voc2012", {VOC2012_TAR: md5}) == [voc]
    assert len(voc2012_server.requests) == 1
    assert not (tmp_path / VOC2012_TAR).exists()
    assert _snapshot(tmp_path / "VOCdevkit/VOC2007") == voc2007


def test_voc2012_with_wrong_md5_is_refused_and_leaves_nothing(
    voc2012_server: Server, tmp_path: Path
) -> None:
    url = f"{voc2012_server.url}/voc2012"
    with pytest.raises(DataError) as error:  # the real tar's MD5, not the generated one's
        download_voc2012(tmp_path, url)
    message = str(error.value)
    assert VOC2012_TAR in message and DATASET_YEAR_DICT["2012"]["md5"] in message
    assert _voc2012_md5(voc2012_server) in message
    assert list(tmp_path.iterdir()) == []

    with pytest.raises(ValueError, match=TRAINVAL_TAR):  # a 2007 name is not a 2012 archive
        download_voc2012(tmp_path, url, {TRAINVAL_TAR: _voc2012_md5(voc2012_server)})
    assert len(voc2012_server.requests) == 1


def test_voc2012_archive_without_the_layout_is_refused(
    voc2012_server: Server, tmp_path: Path
) -> None:
    data = voc2012_server.files[f"/voc2012/{VOC2012_TAR}"] = _voc2012_tar(annotations=False)
    with pytest.raises(DataError, match="has no Annotations") as error:
        download_voc2012(tmp_path, f"{voc2012_server.url}/voc2012", {VOC2012_TAR: _md5(data)})
    assert str(tmp_path / VOC2012) in str(error.value)


def test_voc2012_cli(
    voc2012_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "voc2012",
        f"--root={tmp_path}",
        f"--voc-base-url={voc2012_server.url}/voc2012/",
        f"--md5={VOC2012_TAR}={_voc2012_md5(voc2012_server)}",
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / VOC2012)]
    assert (tmp_path / VOC2012 / "ImageSets/Main/trainval.txt").is_file()
    assert main(argv) == 0  # done: nothing downloaded again
    assert len(voc2012_server.requests) == 1

    assert main([*argv[:3], f"--md5={VOC2012_TAR}={'0' * 32}"]) == 1  # not what is served
    err = capsys.readouterr().err
    assert VOC2012_TAR in err and "0" * 32 in err
    assert len(voc2012_server.requests) == 2

    assert main([*argv[:3], f"--md5={TEST_TAR}={'0' * 32}"]) == 1
    assert TEST_TAR in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--no-proposals"])
    assert exit_.value.code == 2
    assert "voc2007 only" in capsys.readouterr().err


def test_help_and_docstring_say_the_voc2012_test_set_is_not_downloadable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "voc2012" in help_text
    assert "VOC 2012 test set is not publicly downloadable" in help_text
    assert "VOC 2012 test set is not publicly downloadable" in " ".join(
        (download.__doc__ or "").split()
    )
