"""Proposals from .mat files: layout conversion, alignment by id, filtering; real files on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from omegaconf import OmegaConf

from wsl.data.bad_input import DataError
from wsl.data.proposal_filter import ProposalFilter
from wsl.data.proposal_mat import read_proposal_mat
from wsl.data.proposals import MatProposals
from wsl.structures.proposals import Proposals

# 1-based [y1 x1 y2 x2] rows as in Fast R-CNN's files, and the same boxes 0-based x1 y1 x2 y2.
FILE_ROWS = [[11, 21, 40, 60], [1, 1, 375, 500]]
XYXY = [[20, 10, 59, 39], [0, 0, 499, 374]]


def cell(items: list) -> np.ndarray:
    """A 1xN MATLAB cell array as scipy.io.savemat writes it."""
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def write_mat(tmp_path: Path, boxes: list, name: str = "props.mat", **extra: object) -> Path:
    path = tmp_path / name
    scipy.io.savemat(path, {"boxes": cell([np.asarray(b) for b in boxes]), **extra})
    return path


def test_fast_rcnn_layout_becomes_zero_based_xyxy(tmp_path: Path) -> None:
    rows = np.array(FILE_ROWS, dtype=np.uint16)  # uint16, as in Fast R-CNN's files
    path = write_mat(tmp_path, [rows, np.zeros((0, 4)), rows[:1]])
    loaded = MatProposals(str(path)).load(["000005", "000007", "000009"])
    assert list(loaded) == ["000005", "000007", "000009"]
    first = loaded["000005"]
    assert first.boxes.dtype == np.float32 and first.scores is None
    np.testing.assert_array_equal(first.boxes, XYXY)
    assert loaded["000007"].boxes.shape == (0, 4)  # an empty cell is an image without proposals
    np.testing.assert_array_equal(loaded["000009"].boxes, XYXY[:1])


def test_xyxy_layout_and_column_cell(tmp_path: Path) -> None:
    path = tmp_path / "column.mat"
    boxes = np.empty((2, 1), dtype=object)  # Nx1 cell
    boxes[0, 0] = np.array([[21, 11, 60, 40]])
    boxes[1, 0] = np.array([[1, 2, 3, 4]])
    scipy.io.savemat(path, {"boxes": boxes})
    loaded = MatProposals(str(path), box_layout="xyxy").load(["a", "b"])
    np.testing.assert_array_equal(loaded["a"].boxes, XYXY[:1])
    np.testing.assert_array_equal(loaded["b"].boxes, [[0, 1, 2, 3]])


@pytest.mark.parametrize(
    "ids",
    [
        cell(["000009", "000005", "000007"]),  # cell of strings
        np.array(["000009", "000005", "000007"]),  # char matrix
        np.array([[9], [5], [7]]),  # numbers: "000005" is image 5
        cell([np.array([[9]]), np.array([[5]]), np.array([[7]])]),  # cell of numbers
    ],
    ids=["cell", "char-matrix", "numbers", "cell-of-numbers"],
)
def test_ids_in_file_align_by_id_not_position(tmp_path: Path, ids: np.ndarray) -> None:
    path = write_mat(tmp_path, [[[1, 1, 9, 9]], [[11, 21, 40, 60]], [[2, 2, 30, 30]]], images=ids)
    # The file holds more images than the split, in another order.
    loaded = MatProposals(str(path)).load(["000005", "000009"])
    assert list(loaded) == ["000005", "000009"]
    np.testing.assert_array_equal(loaded["000005"].boxes, XYXY[:1])
    np.testing.assert_array_equal(loaded["000009"].boxes, [[0, 0, 8, 8]])


def test_string_ids_keep_leading_zeros(tmp_path: Path) -> None:
    path = write_mat(tmp_path, [[[1, 1, 9, 9]]], images=cell(["000005"]))
    assert read_proposal_mat(path).image_ids == ["000005"]
    with pytest.raises(DataError, match=r"\['5'\]"):
        MatProposals(str(path)).load(["5"])  # "5" is not "000005" when ids are strings


def test_edge_boxes_scores_are_read_with_their_boxes(tmp_path: Path) -> None:
    scores = cell([np.array([[0.1], [0.9], [0.5]]), np.array([[0.2]])])
    path = write_mat(
        tmp_path,
        [[[1, 1, 30, 30], [1, 1, 40, 40], [1, 1, 50, 50]], [[11, 21, 40, 60]]],
        boxScores=scores,
        images=cell(["a", "b"]),
    )
    loaded = MatProposals(str(path)).load(["a", "b"])
    assert loaded["a"].scores.dtype == np.float32
    np.testing.assert_allclose(loaded["a"].scores, [0.1, 0.9, 0.5])
    np.testing.assert_array_equal(loaded["a"].boxes[:, 2], [29, 39, 49])
    kept = ProposalFilter(min_size=1, max_per_image=2).apply(loaded["a"], 100, 100, "e.mat[a]")
    np.testing.assert_array_equal(kept.boxes[:, 2], [39, 49])  # top 2 by score, best first
    np.testing.assert_allclose(kept.scores, [0.9, 0.5])


def test_scores_must_match_boxes(tmp_path: Path) -> None:
    path = write_mat(tmp_path, [[[1, 1, 30, 30]]], boxScores=cell([np.array([[0.1], [0.2]])]))
    with pytest.raises(DataError, match=r"props\.mat.*entry 1 has 1 boxes but 2 boxScores"):
        read_proposal_mat(path)


def test_count_must_match_image_set_without_ids(tmp_path: Path) -> None:
    path = write_mat(tmp_path, [[[1, 1, 30, 30]], [[1, 1, 30, 30]]])
    with pytest.raises(DataError, match=r"props\.mat: has 2 entries .* image set has 3 images"):
        MatProposals(str(path)).load(["a", "b", "c"])


def test_missing_ids_are_named(tmp_path: Path) -> None:
    path = write_mat(tmp_path, [[[1, 1, 30, 30]], [[1, 1, 30, 30]]], images=cell(["a", "b"]))
    with pytest.raises(DataError, match=r"props\.mat: has no proposals for 2 of 3 .*\['c', 'd'\]"):
        MatProposals(str(path)).load(["a", "c", "d"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"proposals": cell([np.ones((1, 4))])}, "has no 'boxes' variable"),
        ({"boxes": np.ones((2, 4))}, "'boxes' must be a 1xN or Nx1 cell array"),
        ({"boxes": cell([np.ones((2, 3))])}, r"boxes entry 1 is float64 \(2, 3\), not Kx4"),
    ],
)
def test_malformed_file_is_a_data_error(tmp_path: Path, content: dict, message: str) -> None:
    path = tmp_path / "bad.mat"
    scipy.io.savemat(path, content)
    with pytest.raises(DataError, match=f"bad.mat: {message}"):
        read_proposal_mat(path)


def test_unreadable_or_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"none\.mat: proposals file does not exist"):
        read_proposal_mat(tmp_path / "none.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 20)
    with pytest.raises(DataError, match=r"junk\.mat: not a readable \.mat file"):
        read_proposal_mat(tmp_path / "junk.mat")
    with pytest.raises(ValueError, match="box_layout='xxyy'"):
        MatProposals("any.mat", box_layout="xxyy")


def proposals(boxes: list, scores: list | None = None) -> Proposals:
    return Proposals(
        np.array(boxes, dtype=np.float32),
        None if scores is None else np.array(scores, dtype=np.float32),
    )


def test_filter_min_size_uses_inclusive_width() -> None:
    # widths x heights: 20x20 (kept), 19x40 (too narrow), 40x19 (too short), 100x100 (kept)
    boxes = [[0, 0, 19, 19], [0, 0, 18, 39], [0, 0, 39, 18], [0, 0, 99, 99]]
    kept = ProposalFilter(min_size=20).apply(proposals(boxes), 100, 100, "src")
    np.testing.assert_array_equal(kept.boxes, [[0, 0, 19, 19], [0, 0, 99, 99]])


def test_filter_removes_duplicates_keeping_first_occurrence_order() -> None:
    boxes = [[5, 5, 50, 50], [0, 0, 30, 30], [5, 5, 50, 50], [1, 1, 40, 40], [0, 0, 30, 30]]
    kept = ProposalFilter(min_size=1).apply(proposals(boxes, [1, 2, 3, 4, 5]), 60, 60, "src")
    # Score order of the first occurrences: [1,1,40,40] (4), [0,0,30,30] (2), [5,5,50,50] (1).
    np.testing.assert_array_equal(kept.boxes, [[1, 1, 40, 40], [0, 0, 30, 30], [5, 5, 50, 50]])
    np.testing.assert_array_equal(kept.scores, [4, 2, 1])
    unscored = ProposalFilter(min_size=1).apply(proposals(boxes), 60, 60, "src")
    np.testing.assert_array_equal(unscored.boxes, [boxes[0], boxes[1], boxes[3]])
    kept_all = ProposalFilter(min_size=1, remove_duplicates=False).apply(
        proposals(boxes), 60, 60, "src"
    )
    assert len(kept_all) == 5


def test_filter_top_k_keeps_file_order_without_scores() -> None:
    boxes = [[0, 0, 20 + i, 20 + i] for i in range(5)]
    kept = ProposalFilter(min_size=1, max_per_image=3).apply(proposals(boxes), 30, 30, "src")
    np.testing.assert_array_equal(kept.boxes, boxes[:3])
    kept_all = ProposalFilter(min_size=1, max_per_image=None).apply(proposals(boxes), 30, 30, "s")
    assert len(kept_all) == 5


@pytest.mark.parametrize(
    "box",
    [[-1, 0, 10, 10], [0, 0, 100, 10], [0, 0, 10, 50], [20, 0, 10, 10], [0, np.nan, 10, 10]],
    ids=["x1<0", "x2>W-1", "y2>H-1", "x1>x2", "nan"],
)
def test_filter_rejects_box_outside_image(box: list) -> None:
    boxes = [[0, 0, 99, 49], box]
    with pytest.raises(DataError, match=r"voc\.mat\[000005\]: proposal 1 .* not inside the 100x50"):
        ProposalFilter(min_size=1).apply(proposals(boxes), 100, 50, "voc.mat[000005]")
    ProposalFilter(min_size=1).apply(proposals(boxes[:1]), 100, 50, "voc.mat[000005]")  # edges ok


def test_zero_based_file_is_caught_not_wrapped(tmp_path: Path) -> None:
    """A file saved 0-based by mistake gives x1 = -1 (not 65535 from uint16) and is rejected."""
    path = write_mat(tmp_path, [np.array([[0, 0, 39, 59]], dtype=np.uint16)])
    (loaded,) = MatProposals(str(path)).load(["000005"]).values()
    np.testing.assert_array_equal(loaded.boxes, [[-1, -1, 58, 38]])
    message = r"props\.mat\[000005\]: proposal 0 .* = \[-1\.0, -1\.0, 58\.0, 38\.0\] .* 500x375"
    with pytest.raises(DataError, match=message):
        ProposalFilter().apply(loaded, 500, 375, "props.mat[000005]")


def test_filter_reports_why_nothing_is_left() -> None:
    with pytest.raises(DataError, match=r"voc\.mat\[7\]: all 2 proposals .* min_size=20"):
        ProposalFilter(min_size=20).apply(
            proposals([[0, 0, 5, 50], [0, 0, 50, 18]]), 60, 60, "voc.mat[7]"
        )
    with pytest.raises(DataError, match=r"voc\.mat\[8\]: the image has no proposals at all"):
        ProposalFilter().apply(Proposals(np.zeros((0, 4), np.float32)), 60, 60, "voc.mat[8]")


def test_filter_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_per_image=0"):
        ProposalFilter(max_per_image=0)
    with pytest.raises(ValueError, match="min_size=-1"):
        ProposalFilter(min_size=-1)


def test_the_filter_of_a_config_with_the_non_null_overrides() -> None:
    trained = OmegaConf.create({"min_size": 4, "remove_duplicates": False, "max_per_image": 300})
    assert ProposalFilter.of(None) == ProposalFilter()
    assert ProposalFilter.of(OmegaConf.create({})) == ProposalFilter()  # a run that set none
    assert ProposalFilter.of(trained) == ProposalFilter(4, False, 300)
    overrides = OmegaConf.create(
        {"min_size": None, "remove_duplicates": True, "max_per_image": None}
    )
    assert ProposalFilter.of(trained, overrides) == ProposalFilter(4, True, 300)  # wsl.predict's
    assert ProposalFilter.of({"dedup_scale": 0.125}).dedup_scale == 0.125  # the datamodule's dict
