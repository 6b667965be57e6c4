import pytest

from common.threads import scoped_threads


def test_count_is_set_for_the_block_and_given_back_even_on_error():
    knob = {"n": 4}
    get, set_ = (lambda: knob["n"]), (lambda n: knob.update(n=n))
    with scoped_threads(get, set_, 1):
        assert knob["n"] == 1
    assert knob["n"] == 4
    with pytest.raises(RuntimeError), scoped_threads(get, set_, 2):
        raise RuntimeError("search failed")
    assert knob["n"] == 4
