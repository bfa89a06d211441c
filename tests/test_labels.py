"""The published text rules: response post-processing and scoring-candidate cleaning."""

import pytest

from auditoryhum.errors import ParameterError
from auditoryhum.labels import clean_candidate, postprocess_caption, postprocess_response, split_candidates


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


# ---------------------------------------------------------------------------------------
# the revision's options: --label_limit N and --candidates {split,line}
#
# Expected values are worked out by hand from the reference script's steps (features_clap_text.py
# of prism-ml commit e739591: split on ",", encode("ascii", "ignore"), strip(), and only when the
# limit is not 0/absent " ".join(split()[:N])), except that empty candidates are dropped here.

TRICKY_LINES = [
    "birds chirping loudly,  wind\tnoise  outdoors ,, traffic",
    "Café  ambience, ünïcode street, 日本, ",
    "A busy street; cars pass by, then rain falls.",
    "  single  ",
    ",,,",
    "",
]


@pytest.mark.parametrize(
    "label_limit,expected",
    [
        (2, [["birds chirping", "wind noise", "traffic"], ["Caf ambience", "ncode street"],
             ["A busy", "then rain"], ["single"], [], []]),
        (1, [["birds", "wind", "traffic"], ["Caf", "ncode"], ["A", "then"], ["single"], [], []]),
        (3, [["birds chirping loudly", "wind noise outdoors", "traffic"], ["Caf ambience", "ncode street"],
             ["A busy street;", "then rain falls."], ["single"], [], []]),
        # 0: whole candidate, inner whitespace (double spaces, tabs) kept as the reference leaves it
        (0, [["birds chirping loudly", "wind\tnoise  outdoors", "traffic"], ["Caf  ambience", "ncode street"],
             ["A busy street; cars pass by", "then rain falls."], ["single"], [], []]),
    ],
)
def test_label_limit_on_a_tricky_file(label_limit, expected):
    assert [split_candidates(line, label_limit=label_limit) for line in TRICKY_LINES] == expected


def test_default_is_the_published_two_word_rule():
    for line in TRICKY_LINES:
        assert split_candidates(line) == split_candidates(line, label_limit=2, candidates="split")
    assert clean_candidate("one two three") == clean_candidate("one two three", label_limit=2) == "one two"


@pytest.mark.parametrize(
    "label_limit,expected",
    [
        (0, [["birds chirping loudly,  wind\tnoise  outdoors ,, traffic"], ["Caf  ambience, ncode street, ,"],
             ["A busy street; cars pass by, then rain falls."], ["single"], [",,,"], []]),
        (2, [["birds chirping"], ["Caf ambience,"], ["A busy"], ["single"], [",,,"], []]),
    ],
)
def test_line_mode_keeps_the_line_as_one_candidate(label_limit, expected):
    assert [split_candidates(line, label_limit=label_limit, candidates="line") for line in TRICKY_LINES] == expected


def test_a_caption_with_semicolons_scores_the_same_in_both_modes():
    # the revision's captions have their commas turned into semicolons, so splitting on commas
    # leaves them whole; our caption task writes them the same way
    caption = postprocess_caption("A busy street, cars pass by, then rain falls.")
    assert caption == "A busy street; cars pass by; then rain falls."
    assert split_candidates(caption, 0, "split") == split_candidates(caption, 0, "line") == [caption]


@pytest.mark.parametrize(
    "response,expected",
    [
        ("The audio features a busy street, with cars.", "The audio features a busy street; with cars."),
        ("Birds sing!\n\nA dog barks (far away).\r\n", "Birds sing! A dog barks (far away)."),
        ("  Café: people talk.  \r  ", "Café: people talk."),
        ("\n\n", ""),
    ],
)
def test_postprocess_caption_one_line_punctuation_kept(response, expected):
    assert postprocess_caption(response) == expected
    assert "\n" not in postprocess_caption(response) and "\r" not in postprocess_caption(response)


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True, None])
def test_bad_label_limit_is_a_parameter_error(bad):
    with pytest.raises(ParameterError) as info:
        split_candidates("a b c", label_limit=bad)
    assert info.value.param == "label_limit"
    assert info.value.for_flag("--label_limit").startswith("--label_limit must be a whole number >= 0")


def test_bad_candidate_mode_is_a_parameter_error():
    with pytest.raises(ParameterError) as info:
        split_candidates("a b", candidates="words")
    assert info.value.param == "candidates"
    assert "split, line" in str(info.value)
