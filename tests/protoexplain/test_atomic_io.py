"""Atomic writes: a file is replaced whole, a failed write keeps the old one and no temporary."""

import json
import os

import pytest

from protoexplain.atomic_io import atomic_write_bytes, atomic_write_json, atomic_write_text


def test_text_write_replaces_the_content_and_creates_missing_directories(tmp_path):
    path = tmp_path / "new" / "metrics.json"
    assert atomic_write_text(path, "{}") == path
    atomic_write_text(path, '{"a": "é"}')
    assert path.read_bytes() == '{"a": "é"}'.encode()
    assert os.listdir(path.parent) == ["metrics.json"]


def test_json_is_indented_keeps_key_order_and_ends_with_a_newline(tmp_path):
    path = atomic_write_json(tmp_path / "x.json", {"b": 1, "a": [1.5, None]})
    assert path.read_text() == '{\n  "b": 1,\n  "a": [\n    1.5,\n    null\n  ]\n}\n'
    assert json.loads(path.read_text()) == {"b": 1, "a": [1.5, None]}


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "picture.png"
    atomic_write_bytes(path, lambda stream: stream.write(b"old"))

    def half_written(stream):
        stream.write(b"new but incompl")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, half_written)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["picture.png"]
