from __future__ import annotations

from pathlib import Path

import pytest

from worker.labelmap import LabelMap, LabelMapError, load_label_map, parse_label_map


def test_reads_the_object_detection_api_format() -> None:
    # Given a label map as the Object Detection API writes it
    text = """
    item {
      id: 1
      name: 'thumbs_up'
      display_name: 'Thumbs up'
    }
    item {
      id: 2
      name: 'wave'
    }
    """
    # When it is parsed
    labels = parse_label_map(text)
    # Then ids map to names, and display names fall back to names
    assert dict(labels) == {1: "thumbs_up", 2: "wave"}
    assert labels.names == ("thumbs_up", "wave")
    assert labels.id_of("wave") == 2
    assert labels.display_name(1) == "Thumbs up"
    assert labels.display_name(2) == "wave"


def test_accepts_every_text_format_variant() -> None:
    # Given double quotes, comments, `item: {`, `<...>` blocks, separators, any field
    # order, escapes, ids out of order and fields the detector does not use
    text = """# header comment
    item: { name: "clap"; id: 3 }  # trailing comment
    item < display_name: "It's \\"ok\\"", id: 1, name: 'ok' >
    item {
      keypoints { id: 0 label: "tip" }
      frequency: FREQUENT
      ancestor_ids: [4, 5]
      instance_count: 7
      id: 2
      name: 'wave'
    }
    """
    # When it is parsed
    labels = parse_label_map(text)
    # Then every item is read, ordered by id
    assert list(labels.items()) == [(1, "ok"), (2, "wave"), (3, "clap")]
    assert labels.display_name(1) == 'It\'s "ok"'


def test_load_reads_a_file(tmp_path: Path) -> None:
    # Given a label map file
    path = tmp_path / "label_map.pbtxt"
    path.write_text("item { id: 1 name: 'palm' }\n", encoding="utf-8")
    # When it is loaded
    labels = load_label_map(path)
    # Then it holds the file's labels
    assert dict(labels) == {1: "palm"}


def test_load_names_a_missing_file(tmp_path: Path) -> None:
    # Given no file; when it is loaded; then the error names the path
    path = tmp_path / "label_map.pbtxt"
    with pytest.raises(LabelMapError, match=r"label_map\.pbtxt: cannot read"):
        load_label_map(path)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", None, "no items"),
        ("# only a comment\n", None, "no items"),
        ("item {\n  id: 1\n  name: 'a'\n", 3, "unexpected end of file"),
        ("item {\n  id: 1\n  name: 'a\n}", 3, "unterminated string"),
        ("item {\n  id: 1\n  name: 'a'\n  naem: 'b'\n}", 4, "unknown item field 'naem'"),
        ("items {\n  id: 1\n  name: 'a'\n}", 1, "unknown field 'items'"),
        ("item {\n  name: 'a'\n}", 1, "no 'id'"),
        ("item {\n  id: 1\n}", 1, "no 'name'"),
        ("item {\n  id: 0\n  name: 'a'\n}", 2, "id must be >= 1"),
        ("item {\n  id: -2\n  name: 'a'\n}", 2, "id must be >= 1"),
        ("item {\n  id: 1.5\n  name: 'a'\n}", 2, "must be an integer"),
        ("item {\n  id: '1'\n  name: 'a'\n}", 2, "id must be an integer"),
        ("item {\n  id: 1\n  name: 7\n}", 3, "name must be a non-empty string"),
        ("item {\n  id: 1\n  name: ''\n}", 3, "name must be a non-empty string"),
        ("item {\n  id: 1\n  id: 2\n  name: 'a'\n}", 3, "'id' given twice"),
        ("item { id: 1 name: 'a' }\nitem { id: 1 name: 'b' }", 2, "duplicate id 1"),
        ("item { id: 1 name: 'a' }\nitem { id: 2 name: 'a' }", 2, "duplicate name 'a'"),
        ("item {\n  id 1\n  name: 'a'\n}", 2, "expected ':' after 'id'"),
        ("item {\n  id: name\n}", 2, "expected a value for 'id'"),
        ("item id: 1", 1, "expected '{' after 'item'"),
        ("item {\n  id: 1\n  name: 'a\\q'\n}", 3, "unsupported escape"),
        ("item {\n  id: 1 @\n}", 2, "unexpected character '@'"),
        ("{ id: 1 }", 1, "expected a field name"),
    ],
)
def test_rejects_malformed_input_naming_file_and_line(
    text: str, line: int | None, message: str
) -> None:
    # Given malformed label map text; when it is parsed; then the error names the
    # source, the line and the problem
    where = "models/x/label_map.pbtxt" + ("" if line is None else f":{line}")
    with pytest.raises(LabelMapError, match=f"^{where}: .*{message}"):
        parse_label_map(text, source="models/x/label_map.pbtxt")


def test_label_map_rejects_inconsistent_contents() -> None:
    # Given ids and names built in code rather than parsed; then the same rules hold
    with pytest.raises(ValueError, match="must be >= 1"):
        LabelMap({0: "background"})
    with pytest.raises(ValueError, match="used by ids 1 and 2"):
        LabelMap({1: "a", 2: "a"})
    with pytest.raises(ValueError, match="at least one"):
        LabelMap({})
