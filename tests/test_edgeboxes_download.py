"""``python -m wsl.data.download voc2007-edgeboxes`` against generated ``.mat`` files, served
on loopback."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from tests.http_server import serve_on_loopback
from wsl.data.bad_input import DataError
from wsl.data.download import EDGEBOXES_BASE_URL, EDGEBOXES_FILENAMES, check_edgeboxes, main
from wsl.data.manifest import MANIFEST_NAME
from wsl.data.proposal_mat import load_proposal_mat
from wsl.data.proposals import MatProposals

TRAINVAL, TEST = EDGEBOXES_FILENAMES
IDS = ["000005", "000007", "000009"]


def cell(items: list) -> np.ndarray:
    out = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        out[0, i] = item
    return out


def edgeboxes(ids: list[str] = IDS, **replace: np.ndarray) -> dict[str, np.ndarray]:
    """EdgeBoxes content as WSDDN ships it: 1-based [y1 x1 y2 x2] boxes, scores, string ids."""
    boxes = [np.array([[1, 1, 40, 50], [3, 5, 20, 60 + k]], dtype=np.float64) for k in range(3)]
    scores = [np.array([[0.9], [0.1 * (k + 1)]]) for k in range(3)]
    return {"boxes": cell(boxes), "boxScores": cell(scores), "images": cell(ids)} | replace


def mat_bytes(content: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, content)
    return buffer.getvalue()


@dataclass
class Server:
    """Files served under ``/eb/``; the Range header of each request; an optional cut-off."""

    url: str
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut_after: int | None = None  # send only this many bytes of the next response, then close

    def cli(self, root: Path) -> list[str]:
        return ["voc2007-edgeboxes", f"--root={root}", f"--edgeboxes-base-url={self.url}/eb/"]


@pytest.fixture
def server() -> Iterator[Server]:
    files = {f"/eb/{TRAINVAL}": mat_bytes(edgeboxes()), f"/eb/{TEST}": mat_bytes(edgeboxes())}
    served = Server(url="", files=files)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            byte_range = self.headers.get("Range")
            served.requests.append((self.path, byte_range))
            data = served.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = int(byte_range.removeprefix("bytes=").rstrip("-")) if byte_range else 0
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if served.cut_after is not None:
                body, served.cut_after = body[: served.cut_after], None
                self.close_connection = True
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serve_on_loopback(Handler) as url:
        served.url = url
        yield served


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*.part")]


def test_default_urls_are_the_authors() -> None:
    # hbilen/WSDDN pascal/setup_voc07_eb.m: 'http://groups.inf.ed.ac.uk/hbilen-data/data/WSDDN/%s'
    assert EDGEBOXES_BASE_URL == "https://groups.inf.ed.ac.uk/hbilen-data/data/WSDDN"
    assert EDGEBOXES_FILENAMES == ("EdgeBoxesVOC2007trainval.mat", "EdgeBoxesVOC2007test.mat")


def test_cli_downloads_checks_records_and_then_does_nothing(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(server.cli(tmp_path)) == 0
    folder = tmp_path / "edgeboxes"
    for name in EDGEBOXES_FILENAMES:
        assert (folder / name).read_bytes() == server.files[f"/eb/{name}"]
    manifest = json.loads((folder / MANIFEST_NAME).read_text())["files"]
    assert manifest == {
        name: {
            "sha256": hashlib.sha256(server.files[f"/eb/{name}"]).hexdigest(),
            "size": len(server.files[f"/eb/{name}"]),
            "url": f"{server.url}/eb/{name}",
        }
        for name in EDGEBOXES_FILENAMES
    }
    assert leftovers(tmp_path) == []
    out, err = capsys.readouterr()
    assert out.split() == [str(folder / name) for name in EDGEBOXES_FILENAMES]
    assert TRAINVAL in err and "100%" in err

    assert main(server.cli(tmp_path)) == 0
    assert len(server.requests) == 2  # present and unchanged: nothing fetched again
    proposals = MatProposals(str(folder / TRAINVAL)).load(IDS[::-1])
    np.testing.assert_array_equal(proposals["000009"].boxes, [[0, 0, 49, 39], [4, 2, 61, 19]])
    np.testing.assert_array_equal(proposals["000009"].scores, np.float32([0.9, 0.3]))


def test_interrupted_download_continues_where_it_stopped(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.cut_after = 300
    assert main(server.cli(tmp_path)) == 1
    total = len(server.files[f"/eb/{TRAINVAL}"])
    assert f"ended after 300 of {total} bytes; run again to continue" in capsys.readouterr().err
    part = tmp_path / "edgeboxes" / f"{TRAINVAL}.part"
    assert part.stat().st_size == 300 and not (tmp_path / "edgeboxes" / TRAINVAL).exists()

    assert main(server.cli(tmp_path)) == 0
    assert server.requests[:2] == [(f"/eb/{TRAINVAL}", None), (f"/eb/{TRAINVAL}", "bytes=300-")]
    assert (tmp_path / "edgeboxes" / TRAINVAL).read_bytes() == server.files[f"/eb/{TRAINVAL}"]
    assert leftovers(tmp_path) == []


def test_truncated_file_is_rejected_and_leaves_nothing(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = server.files[f"/eb/{TEST}"]
    server.files[f"/eb/{TEST}"] = data[: len(data) // 2]  # complete transfer of a damaged file
    assert main(server.cli(tmp_path)) == 1
    err = capsys.readouterr().err
    assert f"{server.url}/eb/{TEST}: the downloaded file is damaged" in err
    folder = tmp_path / "edgeboxes"
    assert sorted(p.name for p in folder.iterdir()) == [TRAINVAL, MANIFEST_NAME]
    assert list(json.loads((folder / MANIFEST_NAME).read_text())["files"]) == [TRAINVAL]


def test_a_changed_file_is_noticed_by_the_download_and_the_loader(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(server.cli(tmp_path)) == 0
    path = tmp_path / "edgeboxes" / TRAINVAL
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, other content
    path.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(server.cli(tmp_path)) == 1
    assert f"{path}: has SHA-256 {hashlib.sha256(data).hexdigest()}" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"had [0-9a-f]{64} when downloaded .* the file changed"):
        load_proposal_mat(path)
    path.write_bytes(bytes(data[:-10]))
    with pytest.raises(DataError, match=rf"is {len(data) - 10} bytes but was {len(data)} bytes"):
        MatProposals(str(path)).load(IDS)
    assert len(server.requests) == 2


def test_a_file_put_there_by_hand_is_checked_and_recorded(server: Server, tmp_path: Path) -> None:
    folder = tmp_path / "edgeboxes"
    folder.mkdir()
    (folder / TEST).write_bytes(server.files[f"/eb/{TEST}"])
    assert main(server.cli(tmp_path)) == 0
    assert server.requests == [(f"/eb/{TRAINVAL}", None)]
    assert set(json.loads((folder / MANIFEST_NAME).read_text())["files"]) == {TRAINVAL, TEST}
    (folder / MANIFEST_NAME).unlink()
    (folder / TEST).write_bytes(mat_bytes(edgeboxes(images=cell([5, 7, 9]))))
    with pytest.raises(DataError, match=r"EdgeBoxesVOC2007test\.mat: has no 'images' cell of"):
        check_edgeboxes(folder / TEST)
    assert main(server.cli(tmp_path)) == 1


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({"boxScores": cell([np.ones((2, 1))] * 2)}, "'boxScores' has 2 entries but 'boxes' has 3"),
        ({"images": cell(IDS[:2])}, "'images' has 2 ids but 'boxes' has 3 entries"),
        ({"boxScores": cell([np.ones((3, 1))] * 3)}, "entry 1 has 2 boxes but 3 boxScores"),
        ({"images": cell(["000005"] * 3)}, "'images' lists some image id more than once"),
        (
            {"boxes": cell([np.array([[1, 1, 2, 2], [9, 1, 4, 5]])] * 3)},
            "boxes of image 000005 are not 1-based",
        ),
        (
            {"boxes": cell([np.array([[1, 1, 2, 2], [0, 1, 4, 5]])] * 3)},
            "boxes of image 000005 are not 1-based",
        ),
    ],
)
def test_structure_check_names_the_problem(tmp_path: Path, replace: dict, message: str) -> None:
    path = tmp_path / "eb.mat"
    scipy.io.savemat(path, edgeboxes(**replace))
    with pytest.raises(DataError, match=rf"eb\.mat: {message}"):
        check_edgeboxes(path)


def test_structure_check_needs_scores(tmp_path: Path) -> None:
    path = tmp_path / "eb.mat"
    content = edgeboxes()
    del content["boxScores"]
    scipy.io.savemat(path, content)
    with pytest.raises(DataError, match=r"eb\.mat: has no 'boxScores'"):
        check_edgeboxes(path)
    scipy.io.savemat(path, edgeboxes())
    assert check_edgeboxes(path) == 3
