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

from tests.http_server import serve_files
from wsl.data.bad_input import DataError
from wsl.data.download import Archive, fetch, main, voc2007_archives

TRAINVAL_TAR = DATASET_YEAR_DICT["2007"]["filename"]
TEST_TAR = DATASET_YEAR_DICT["2007-test"]["filename"]
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
