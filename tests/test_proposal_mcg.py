"""MCG proposals for COCO: wetectron's pickles and the MCG site's per-image .mat files, read into
0-based x1, y1, x2, y2; bad entries per image, bad files whole; pickles that would run code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from wsl.data.bad_input import DataError
from wsl.data.proposal_mcg import MCGProposalFiles, MCGProposals

CONFIG = Path(__file__).resolve().parents[1] / "conf" / "data" / "proposals" / "mcg.yaml"
IDS = [str(i) for i in range(1, 11)]  # ten COCO image ids


def write_pickle(path: Path, content: object, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    with path.open("wb") as file:
        pickle.dump(content, file, protocol=protocol)
    return path


def wetectron_pickle(path: Path, ids: list[int], id_field: str = "indexes", **replace: object):
    """A pickle as wetectron's files are: box i of image k is (k, 2k, k + i, 2k + i), 0-based."""
    boxes = [np.array([[k, 2 * k, k + i, 2 * k + i] for i in (1, 2)], np.uint16) for k in ids]
    scores = [np.array([[0.5], [0.25]], np.float32) for _ in ids]  # Kx1, as the converters write
    content = {"boxes": boxes, "scores": scores, id_field: ids, **replace}
    return write_pickle(path, content)


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("id_field", ["indexes", "ids"])
def test_wetectron_pickle_boxes_are_taken_as_they_are(
    tmp_path: Path, id_field: str, protocol: int
) -> None:
    content = {
        "boxes": [
            np.array([[0, 1, 10, 20], [5, 5, 7, 9]], np.uint16),
            np.array([[3, 4, 5, 6]], np.int16),
        ],
        "scores": [np.array([[0.9], [0.1]], np.float32), np.array([0.7])],
        id_field: [397133, np.int64(42)],
    }
    path = write_pickle(tmp_path / "MCG-coco_2014_val-boxes.pkl", content, protocol)
    provider = MCGProposals(str(path))
    lookup = provider.load(["42", "397133"])
    assert lookup["397133"].boxes.dtype == np.float32
    np.testing.assert_array_equal(lookup["397133"].boxes, [[0, 1, 10, 20], [5, 5, 7, 9]])
    np.testing.assert_array_equal(lookup["42"].boxes, [[3, 4, 5, 6]])
    np.testing.assert_allclose(lookup["397133"].scores, [0.9, 0.1])
    np.testing.assert_allclose(lookup["42"].scores, [0.7])
    assert provider.source("42", Path("x.jpg")) == f"{path}[42]"


def test_a_pickle_written_by_numpy_1_is_read(tmp_path: Path) -> None:
    content = {"boxes": [np.array([[0, 1, 10, 20]], np.uint16)], "indexes": [np.int64(9)]}
    data = pickle.dumps(content, protocol=2)  # names its globals as text lines
    assert b"numpy._core.multiarray\n_reconstruct" in data
    path = tmp_path / "p.pkl"
    path.write_bytes(data.replace(b"numpy._core.", b"numpy.core."))  # as numpy 1 (and Python 2)
    np.testing.assert_array_equal(MCGProposals(str(path)).load(["9"])["9"].boxes, [[0, 1, 10, 20]])


def test_mcg_site_mat_files_are_swapped_and_made_0_based(tmp_path: Path) -> None:
    folder = tmp_path / "MCG-COCO-val2014-boxes"
    folder.mkdir()
    # [y1 x1 y2 x2], 1-based: x1 0, y1 1, x2 10, y2 20 and x1 4, y1 2, x2 4, y2 3 (0-based).
    boxes = np.array([[2, 1, 21, 11], [3, 5, 4, 5]], dtype=np.float64)
    scores = np.array([[0.75], [0.5]])
    scipy.io.savemat(folder / "COCO_val2014_000000397133.mat", {"boxes": boxes, "scores": scores})
    scipy.io.savemat(folder / "COCO_val2014_000000000042.mat", {"boxes": boxes[:1]})
    (folder / "README.txt").write_text("not a box file")
    provider = MCGProposals(str(folder))
    lookup = provider.load(["397133", "42"])
    np.testing.assert_array_equal(lookup["397133"].boxes, [[0, 1, 10, 20], [4, 2, 4, 3]])
    np.testing.assert_allclose(lookup["397133"].scores, [0.75, 0.5])
    np.testing.assert_array_equal(lookup["42"].boxes, [[0, 1, 10, 20]])
    assert lookup["42"].scores is None
    assert provider.source("42", Path("x.jpg")) == str(folder / "COCO_val2014_000000000042.mat")


def test_box_layout_overrides_the_column_order(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "p.pkl", {"boxes": [np.array([[1, 0, 20, 10]])], "indexes": [7]})
    lookup = MCGProposals(str(path), box_layout="yxyx").load(["7"])
    np.testing.assert_array_equal(lookup["7"].boxes, [[0, 1, 10, 20]])


def test_a_missing_image_raises_or_is_skipped(tmp_path: Path) -> None:
    path = wetectron_pickle(tmp_path / "p.pkl", [int(i) for i in IDS])
    wanted = [*IDS, "397133"]  # 1 of 11 missing: an image's problem, not the file's
    with pytest.raises(DataError, match=r"p\.pkl: has no proposals for 1 of 11 .*397133"):
        MCGProposals(str(path), on_error="raise").load(wanted)
    lookup = MCGProposals(str(path), on_error="skip").load(wanted)
    assert "397133" not in lookup
    assert sorted(lookup, key=int) == IDS
    np.testing.assert_array_equal(lookup["3"].boxes, [[3, 6, 4, 7], [3, 6, 5, 8]])
    with pytest.raises(DataError, match=r"p\.pkl: has no proposals for image 397133"):
        lookup["397133"]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (np.array([[5, 0, 4, 9]]), r"image 4: box 0 .* has x2 < x1"),
        (np.array([[0, 0, np.inf, 9]]), r"image 4: box 0 .* is not finite"),
        (np.array([1, 2, 3]), r"image 4: boxes are int64 \(3,\), not Kx4"),
    ],
)
def test_a_bad_entry_raises_or_is_skipped(tmp_path: Path, entry: np.ndarray, problem: str) -> None:
    ids = [int(i) for i in IDS]
    path = wetectron_pickle(tmp_path / "p.pkl", ids)
    content = pickle.loads(path.read_bytes())
    content["boxes"][3] = entry
    content["scores"][3] = np.zeros(len(entry))
    write_pickle(path, content)
    with pytest.raises(DataError, match=r"p\.pkl: " + problem):
        MCGProposals(str(path), on_error="raise").load(IDS)
    lookup = MCGProposals(str(path), on_error="skip").load(IDS)
    assert "4" not in lookup
    assert len(lookup) == 9
    with pytest.raises(DataError, match=problem):
        lookup["4"]


def test_scores_of_another_length_are_the_images_problem(tmp_path: Path) -> None:
    path = wetectron_pickle(tmp_path / "p.pkl", [int(i) for i in IDS])
    content = pickle.loads(path.read_bytes())
    content["scores"][0] = np.zeros(3)
    write_pickle(path, content)
    with pytest.raises(DataError, match=r"image 1: 2 boxes but 3 scores"):
        MCGProposals(str(path)).load(IDS)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda c: [c], r"holds a list, not a dict"),
        (lambda c: {**c, "indexes": c["indexes"][:-1]}, r"'indexes' has 9 entries but 'boxes'"),
        (lambda c: {**c, "scores": c["scores"][:-1]}, r"'scores' has 9 entries but 'boxes'"),
        (lambda c: {"boxes": c["boxes"]}, r"has no 'ids'"),
        (lambda c: {**c, "boxes": np.zeros((10, 2, 4))}, r"'boxes' is a ndarray, not a list"),
        (lambda c: {**c, "indexes": [1, *c["indexes"][1:-1], 1]}, r"'indexes' lists image 1 more"),
        (lambda c: {**c, "indexes": ["a", *c["indexes"][1:]]}, r"indexes\[0\] is 'a', not a"),
        (
            lambda c: {**c, "indexes": [i + 100 for i in c["indexes"]]},
            r"has no proposals for 10 of",
        ),
    ],
)
def test_a_bad_file_is_refused_whatever_on_error_says(
    tmp_path: Path, change: object, problem: str
) -> None:
    path = wetectron_pickle(tmp_path / "MCG-coco_2014_train-boxes.pkl", [int(i) for i in IDS])
    write_pickle(path, change(pickle.loads(path.read_bytes())))
    with pytest.raises(DataError, match=r"MCG-coco_2014_train-boxes\.pkl: " + problem):
        MCGProposals(str(path), on_error="skip").load(IDS)


def test_damaged_or_absent_files_name_the_file(tmp_path: Path) -> None:
    path = wetectron_pickle(tmp_path / "p.pkl", [int(i) for i in IDS])
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"p\.pkl: not a readable pickle"):
        MCGProposals(str(path)).load(IDS)
    with pytest.raises(DataError, match=r"absent\.pkl: proposals file .* does not exist"):
        MCGProposals(str(tmp_path / "absent.pkl")).load(IDS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: holds no per-image MCG files"):
        MCGProposals(str(tmp_path / "empty")).load(IDS)


class _RunsCommand:
    """What a stranger's pickle can hold: rebuilding it calls ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


class _EvaluatesCode:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (eval, (self.code,))


@pytest.mark.parametrize("payload", [_RunsCommand, _EvaluatesCode])
def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path: Path, payload: type) -> None:
    def evil(marker: Path) -> bytes:
        command = (
            f"touch {marker}" if payload is _RunsCommand else f"open({str(marker)!r}, 'w').close()"
        )
        content = {"boxes": [np.zeros((1, 4))], "indexes": [1], "scores": payload(command)}
        return pickle.dumps(content, protocol=2)

    proof = tmp_path / "ran_with_plain_pickle"
    pickle.loads(evil(proof))  # the payload is real: a plain pickle.load runs it
    assert proof.exists()
    marker = tmp_path / "ran"
    path = tmp_path / "MCG-coco_2014_val-boxes.pkl"
    path.write_bytes(evil(marker))
    name = r"(posix|os|nt)\.system" if payload is _RunsCommand else r"(__builtin__|builtins)\.eval"
    with pytest.raises(DataError, match=rf"MCG-coco_2014_val-boxes\.pkl: .*call {name}.*refused"):
        MCGProposals(str(path), on_error="skip").load(["1"])
    assert not marker.exists()


def test_a_split_of_two_pickles_reads_both_and_refuses_an_image_in_both(tmp_path: Path) -> None:
    first = wetectron_pickle(tmp_path / "train.pkl", [1, 2, 3])
    second = wetectron_pickle(tmp_path / "valminusminival.pkl", [4, 5])
    provider = MCGProposals([str(first), str(second)])
    lookup = provider.load(["5", "1"])
    np.testing.assert_array_equal(lookup["5"].boxes[0], [5, 10, 6, 11])
    assert provider.source("5", Path("x.jpg")) == f"{second}[5]"
    wetectron_pickle(second, [3, 4])
    with pytest.raises(DataError, match=r"valminusminival\.pkl: has proposals for image 3, and"):
        MCGProposals([str(first), str(second)]).load(["1"])


def test_boxes_outside_most_images_are_the_files_error(tmp_path: Path) -> None:
    paths = []
    for image_id in IDS:
        paths.append(tmp_path / f"COCO_val2014_{int(image_id):012d}.jpg")
        Image.new("RGB", (12, 30)).save(paths[-1])  # box x2 = k + 2 is outside from k = 10 on
    path = wetectron_pickle(tmp_path / "p.pkl", [int(i) for i in IDS])
    assert len(MCGProposals(str(path)).load(IDS, paths)) == 10  # one image of ten: its own
    Image.new("RGB", (11, 30)).save(paths[8])  # two of ten
    with pytest.raises(DataError, match=r"p\.pkl: 2 of 10 images have proposals outside"):
        MCGProposals(str(path), on_error="skip").load(IDS, paths)


def test_the_mcg_config_names_wetectrons_files_per_split(tmp_path: Path) -> None:
    cfg = OmegaConf.create(
        {"data": {"root": "/data/coco", "on_error": "skip", "proposals": OmegaConf.load(CONFIG)}}
    )
    files = instantiate(cfg.data.proposals)
    assert isinstance(files, MCGProposalFiles)
    provider = files.for_split("train2017")
    assert provider.paths == [
        Path("/data/coco/proposals/MCG-coco_2014_train-boxes.pkl"),
        Path("/data/coco/proposals/MCG-coco_2014_valminusminival-boxes.pkl"),
    ]
    assert provider.on_error == "skip"
    assert provider.box_layout is None
    assert files.for_split("val2014").paths == [
        Path("/data/coco/proposals/MCG-coco_2014_val-boxes.pkl")
    ]
    with pytest.raises(ValueError, match=r"\+data\.proposals\.files\.test2015=PATH"):
        files.for_split("test2015")
