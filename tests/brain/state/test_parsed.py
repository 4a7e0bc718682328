"""`Parsed`: a row is parsed again only when its stored text changed; rows no scan uses any more are forgotten."""

from __future__ import annotations

import json
from typing import Any

from brain_server.state._parsed import Parsed


def _counting() -> tuple[Parsed[int, str, dict[str, Any]], list[str]]:
    parsed_texts: list[str] = []

    def parse(text: str) -> dict[str, Any]:
        parsed_texts.append(text)
        return json.loads(text)

    return Parsed[int, str, dict[str, Any]](parse), parsed_texts


def test_an_unchanged_row_is_not_parsed_again_and_a_changed_one_is() -> None:
    parsed, texts = _counting()
    first = parsed.get(1, '{"usd": 1}')
    assert parsed.get(1, '{"usd": 1}') is first and texts == ['{"usd": 1}']
    assert parsed.get(1, '{"usd": 2}') == {"usd": 2} and len(texts) == 2


def test_rows_the_last_scans_did_not_use_are_forgotten_and_a_whole_table_scan_keeps_what_it_saw() -> None:
    parsed, texts = _counting()
    parsed.get(1, "1")
    parsed.get(2, "2")
    parsed.end_scan(keep=2)
    parsed.get(2, "2")  # (row 1 out of the window of the next scans)
    parsed.end_scan(keep=2)
    parsed.get(2, "2")
    parsed.end_scan(keep=2)
    parsed.get(1, "1")
    assert texts == ["1", "2", "1"]  # (row 1 forgotten, parsed again; row 2 never again)
    parsed.keep_only({2})
    parsed.get(1, "1")
    assert texts == ["1", "2", "1", "1"]
    parsed.clear()
    parsed.get(2, "2")
    assert texts[-1] == "2"
