"""The published text rules: response post-processing and scoring-candidate cleaning."""

import pytest

from auditoryhum.labels import clean_candidate, postprocess_response, split_candidates


@pytest.mark.parametrize(
    "response,expected",
    [
        ("Birds chirping, Wind blowing.", "birds chirping, wind blowing"),
        ("Car horn\nEngine idling\r\nPeople talking", "car horn, engine idling, people talking"),
        ("1. Dog's bark; (loud) - outdoors!", "1 dogs bark loud  outdoors"),
        ("Café ambience", "café ambience"),  # only ASCII punctuation is removed
        ("", ""),
    ],
)
def test_postprocess_response(response, expected):
    assert postprocess_response(response) == expected


def test_postprocess_order_newline_before_punctuation():
    # "\r\n" must become ", " before punctuation removal, or the comma would be lost with the newline
    assert postprocess_response("a b\r\nc d") == "a b, c d"


@pytest.mark.parametrize(
    "candidate,expected",
    [
        ("  car traffic noise ", "car traffic"),
        ("café people", "caf people"),
        ("ünïcode", "ncode"),
        ("single", "single"),
        ("   ", ""),
    ],
)
def test_clean_candidate(candidate, expected):
    assert clean_candidate(candidate) == expected


def test_split_candidates_drops_empty_keeps_order():
    assert split_candidates("birds chirping, , wind noise outdoors,, 日本") == ["birds chirping", "wind noise"]
