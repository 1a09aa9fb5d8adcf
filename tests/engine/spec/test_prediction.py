"""Where an output stands in its prediction, on literal token lists."""

from shard.engine.spec.prediction import PredictionAlignment

ORIGINAL = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]


def follow(alignment: PredictionAlignment, tokens: list[int]) -> None:
    for token in tokens:
        alignment.advance(token)


def test_an_output_that_repeats_the_prediction_is_drafted_ahead() -> None:
    alignment = PredictionAlignment(ORIGINAL)
    assert alignment.draft(3) == [10, 11, 12]  # the start, before any output
    follow(alignment, [10, 11, 12])
    assert (alignment.draft(4), alignment.run) == ([13, 14, 15, 16], 3)
    follow(alignment, ORIGINAL[3:])
    assert alignment.draft(4) == []  # nothing predicted past the end
    assert alignment.matched == len(ORIGINAL)


def test_after_an_edit_the_place_is_found_again_by_the_output_s_last_tokens() -> None:
    alignment = PredictionAlignment(ORIGINAL)
    follow(alignment, [10, 11, 12, 13])
    follow(alignment, [99, 98])  # the edit: 14 and 15 replaced
    assert alignment.cursor is None and alignment.draft(3) == []
    follow(alignment, [16])  # one token is not enough to be sure
    assert alignment.draft(3) == []
    follow(alignment, [17])  # "16 17" is in the prediction: carry on after it
    assert (alignment.draft(3), alignment.run) == ([18, 19], 2)
    assert alignment.matched == 4  # 10-13 followed it; 16 and 17 only found the place again


def test_a_repeated_passage_is_picked_up_nearest_after_the_place_that_was_lost() -> None:
    repeated = [1, 2, 3, 4, 1, 2, 3, 5]
    alignment = PredictionAlignment(repeated)
    follow(alignment, [1, 2, 3, 4, 7])  # lost at index 4, where the second "1 2 3" starts
    follow(alignment, [1, 2, 3])
    assert alignment.draft(2) == [5]  # the second "1 2 3" (followed by 5), not the first
    inserted = PredictionAlignment(ORIGINAL)
    follow(inserted, [10, 11, 50, 12, 13])  # an insertion: back on track after two tokens
    assert inserted.draft(2) == [14, 15]
