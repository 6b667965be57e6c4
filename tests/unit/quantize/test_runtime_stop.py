import pytest

from common.errors import InvalidInput
from quantize.runtime import SamplingParams, split_on_stop


def test_no_stops_emits_everything():
    assert split_on_stop("hello", ()) == ("hello", "", False)


def test_stop_string_cuts_before_its_first_occurrence():
    assert split_on_stop("answer.\n\nQ:", ["\n\n", "Q:"]) == ("answer.", "", True)


def test_possible_stop_prefix_is_held_back():
    assert split_on_stop("the end</", ["</s>"]) == ("the end", "</", False)
    assert split_on_stop("abc\n", ["\n\n"]) == ("abc", "\n", False)
    assert split_on_stop("abc", ["xyz"]) == ("abc", "", False)


@pytest.mark.parametrize("kw", [{"max_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": -1}])
def test_sampling_params_are_validated(kw):
    with pytest.raises(InvalidInput):
        SamplingParams(**kw).validate()
