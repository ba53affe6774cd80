"""Dataset tools: VOC reading and validation, label normalisation, splits, image folders
and the label-distribution chart — on the real shared data and on broken files."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from models.dataset.imagefolder import read_image_folder
from models.dataset.labels import HAND, class_agnostic, normalise_hands, normalise_sign
from models.dataset.plots import plot_label_distribution
from models.dataset.splits import group_split, split_items, stratified_split
from models.dataset.voc import (
    Annotation,
    DatasetError,
    Problem,
    Severity,
    count_labels,
    format_report,
    read_voc_dir,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _voc(name: str, width: int, height: int, objects: list[tuple[str, int, int, int, int]]) -> str:
    boxes = "".join(
        f"<object><name>{label}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for label, x0, y0, x1, y1 in objects
    )
    return (
        f"<annotation><filename>{name}.jpg</filename><size><width>{width}</width>"
        f"<height>{height}</height><depth>3</depth></size>{boxes}</annotation>"
    )


def _write_pair(
    folder: Path,
    name: str,
    objects: list[tuple[str, int, int, int, int]],
    *,
    size: tuple[int, int] = (64, 48),
    xml_size: tuple[int, int] | None = None,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, "grey").save(folder / f"{name}.jpg")
    w, h = xml_size or size
    (folder / f"{name}.xml").write_text(_voc(name, w, h, objects))


def test_real_hands_read_clean_with_readme_counts() -> None:
    # given the shared hands/ data, when read with the finger-count labels
    dataset = read_voc_dir(DATA / "hands", labels=normalise_hands, strict=True)
    # then the source's split and box counts match its README
    groups = [a.group for a in dataset.annotations]
    assert (groups.count("train"), groups.count("test")) == (1245, 312)
    assert dataset.label_counts() == {
        "0-hand": 503, "1-hand": 232, "2-hand": 221, "3-hand": 225, "4-hand": 210, "5-hand": 339,
    }  # fmt: skip
    assert dataset.issues == []


def test_real_signs_normalise_every_label_and_group_by_person() -> None:
    dataset = read_voc_dir(DATA / "signs", labels=normalise_sign, strict=True)
    assert len(dataset.annotations) == 803
    assert len({a.group for a in dataset.annotations}) == 9
    counts = dataset.label_counts()
    # "Hi"/"hello"/"Hello" and the three spellings of "thank you" each became one word
    assert {"hello", "thanks", "iloveyou"} <= counts.keys()
    assert not {"Hi", "ThankYou", "I Love You", "thank you"} & counts.keys()


def test_real_hagrid_crops_counts_and_stratified_split() -> None:
    dataset = read_image_folder(DATA / "hagrid-crops")
    counts = dataset.counts()
    assert len(dataset.classes) == 13
    assert sum(counts.values()) == 14_640
    assert counts["none"] == 2640 and counts["palm"] == 1000
    split = dataset.split(test_fraction=0.1, seed=7)
    test_palm = sum(1 for s in split.test if s.label == "palm")
    assert test_palm == 100
    assert len(split.train) + len(split.test) == 14_640
    assert not {s.path for s in split.train} & {s.path for s in split.test}


def test_each_broken_file_is_reported_by_name_without_raising(tmp_path: Path) -> None:
    # given one good frame and one of each kind of broken annotation
    _write_pair(tmp_path, "good", [("Hello", 1, 1, 30, 30)])
    _write_pair(tmp_path, "degenerate", [("yes", 40, 10, 20, 30)])
    _write_pair(tmp_path, "outside", [("yes", 10, 10, 90, 30)])
    _write_pair(tmp_path, "far_outside", [("yes", 100, 100, 120, 130)])
    _write_pair(tmp_path, "unknown", [("wave hands", 1, 1, 30, 30)])
    _write_pair(tmp_path, "resized", [("no", 1, 1, 30, 30)], xml_size=(640, 480))
    _write_pair(tmp_path, "empty", [])
    (tmp_path / "noimage.xml").write_text(_voc("noimage", 64, 48, [("no", 1, 1, 5, 5)]))
    (tmp_path / "broken.xml").write_text("<annotation><size>")
    (tmp_path / "other.xml").write_text("<svg/>")
    (tmp_path / "huge.xml").write_text(" " * 2000)
    (tmp_path / "corrupt.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "corrupt.xml").write_text(_voc("corrupt", 64, 48, [("no", 1, 1, 5, 5)]))
    Image.new("RGB", (8, 8)).save(tmp_path / "orphan.jpg")

    # when read with the sign normaliser and a small XML limit
    dataset = read_voc_dir(tmp_path, labels=normalise_sign, max_xml_bytes=1000)

    # then every problem names its file, and only the readable frames remain
    found = {(issue.path.name, issue.problem) for issue in dataset.issues}
    assert found == {
        ("degenerate.xml", Problem.BOX_DEGENERATE),
        ("outside.xml", Problem.BOX_OUTSIDE),
        ("far_outside.xml", Problem.BOX_DEGENERATE),
        ("unknown.xml", Problem.LABEL_UNKNOWN),
        ("resized.xml", Problem.SIZE_MISMATCH),
        ("empty.xml", Problem.NO_BOXES),
        ("noimage.xml", Problem.IMAGE_MISSING),
        ("broken.xml", Problem.XML_UNREADABLE),
        ("other.xml", Problem.NOT_VOC),
        ("huge.xml", Problem.XML_TOO_LARGE),
        ("corrupt.jpg", Problem.IMAGE_UNREADABLE),
        ("orphan.jpg", Problem.IMAGE_UNANNOTATED),
    }
    kept = {a.image_path.name: a for a in dataset.annotations}
    assert set(kept) == {"good.jpg", "outside.jpg", "empty.jpg"}
    assert kept["good.jpg"].boxes[0].label == "hello"
    assert kept["good.jpg"].boxes[0].raw_label == "Hello"
    assert (kept["outside.jpg"].boxes[0].xmax, kept["outside.jpg"].width) == (64, 64)
    assert "unknown.xml: error label-unknown" in format_report(dataset)


def test_strict_mode_fails_on_errors_but_not_on_warnings(tmp_path: Path) -> None:
    _write_pair(tmp_path / "a", "clipped", [("yes", 10, 10, 90, 30)])
    clean = read_voc_dir(tmp_path, labels=normalise_sign, strict=True)
    assert [i.severity for i in clean.issues] == [Severity.WARNING]

    _write_pair(tmp_path / "b", "typo", [("yess", 1, 1, 9, 9)])
    with pytest.raises(DatasetError, match=r"typo\.xml.*unknown label 'yess'") as raised:
        read_voc_dir(tmp_path, labels=normalise_sign, strict=True)
    assert [i.path.name for i in raised.value.issues] == ["typo.xml"]


def test_accepted_label_set_and_no_image_check(tmp_path: Path) -> None:
    # given a size mismatch, which only a header read can see
    _write_pair(tmp_path, "frame", [("hand", 1, 1, 9, 9)], xml_size=(640, 480))
    assert read_voc_dir(tmp_path, labels={"hand"}, check_images=False).issues == []
    problems = [i.problem for i in read_voc_dir(tmp_path, labels={"face"}).issues]
    assert problems == [Problem.SIZE_MISMATCH]


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Hi", "hello"), ("hello", "hello"), ("Thank You", "thanks"), ("ThankYou", "thanks"),
        ("thank", "thanks"), ("I Love you", "iloveyou"), ("I", "iloveyou"),
        ("ILoveYou", "iloveyou"), (" Yes ", "yes"), ("Love", "love"), ("banana", None),
    ],
)  # fmt: skip
def test_normalise_sign(raw: str, canonical: str | None) -> None:
    assert normalise_sign(raw) == canonical


def test_class_agnostic_maps_known_labels_to_hand_and_keeps_rejecting_unknown() -> None:
    policy = class_agnostic(normalise_hands)
    assert (policy("3-hand"), policy("3-Hand"), policy("6-hand")) == (HAND, HAND, None)
    signs = read_voc_dir(DATA / "signs" / "Condzi", labels=normalise_sign)
    assert count_labels(signs.class_agnostic()) == {HAND: 57}


def _frames(n: int, groups: int) -> list[Annotation]:
    return [
        Annotation(Path(f"{i}.xml"), Path(f"{i}.jpg"), 8, 8, (), f"person{i % groups}")
        for i in range(n)
    ]


def test_splits_are_seeded_and_independent_of_input_order() -> None:
    frames = _frames(100, 5)
    key = lambda a: a.xml_path.as_posix()  # noqa: E731
    first = split_items(frames, key=key, test_fraction=0.2, seed=1)
    again = split_items(reversed(frames), key=key, test_fraction=0.2, seed=1)
    other = split_items(frames, key=key, test_fraction=0.2, seed=2)
    assert first == again
    assert len(first.test) == 20 and set(first.test) != set(other.test)
    strat = stratified_split(frames, key=key, label_of=lambda a: a.group, test_fraction=0.2, seed=1)
    assert sorted(a.group for a in strat.test) == sorted(
        f"person{g}" for g in range(5) for _ in range(4)
    )


def test_group_split_holds_out_whole_people() -> None:
    signs = read_voc_dir(DATA / "signs", labels=normalise_sign).annotations
    key = lambda a: a.xml_path.as_posix()  # noqa: E731
    split = group_split(signs, key=key, group_of=lambda a: a.group, seed=3, test_fraction=0.2)
    train_people = {a.group for a in split.train}
    test_people = {a.group for a in split.test}
    assert not train_people & test_people
    assert len(test_people) == 2 and len(train_people) == 7
    assert split == group_split(signs, key=key, group_of=lambda a: a.group, seed=3)
    named = group_split(signs, key=key, group_of=lambda a: a.group, seed=3, test_groups={"Condzi"})
    assert {a.group for a in named.test} == {"Condzi"} and len(named.test) == 57
    with pytest.raises(ValueError, match="unknown test groups"):
        group_split(signs, key=key, group_of=lambda a: a.group, seed=3, test_groups={"nobody"})


def test_label_distribution_chart_is_a_png(tmp_path: Path) -> None:
    dataset = read_voc_dir(DATA / "hands", labels=normalise_hands)
    by_split = {
        group: count_labels(a for a in dataset.annotations if a.group == group)
        for group in ("train", "test")
    }
    path = plot_label_distribution(by_split, tmp_path / "charts" / "hands.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300


def test_the_dataset_report_command_validates_splits_and_charts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from memelearning.cli import main

    chart = tmp_path / "signs.png"
    args = ["models", "dataset-report", str(DATA / "signs"), "--labels", "signs"]
    assert main([*args, "--hold-out-groups", "--chart", str(chart), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "803 annotated images" in out
    assert "0 error(s)" in out
    assert chart.stat().st_size > 0


def test_the_dataset_report_command_fails_strict_on_broken_annotations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from memelearning.cli import main

    (tmp_path / "a.xml").write_text("<annotation><filename>missing.jpg</filename>")
    assert main(["models", "dataset-report", str(tmp_path), "--strict"]) == 1
    assert "a.xml" in capsys.readouterr().out
