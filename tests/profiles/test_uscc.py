from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles.uscc import ALPHABET, UsccError, check_character, is_valid_uscc, normalize_uscc

KNOWN_GOOD = ["91110000600037341L", "91440300708461136T"]


@pytest.mark.parametrize("code", KNOWN_GOOD)
def test_known_public_codes_pass(code: str) -> None:
    assert normalize_uscc(code) == code


def test_lower_case_and_spaces_are_normalised() -> None:
    assert normalize_uscc("  91440300708461136t\t") == "91440300708461136T"


@pytest.mark.parametrize("code", KNOWN_GOOD)
def test_every_other_last_character_is_rejected_as_check_failure(code: str) -> None:
    for ch in ALPHABET:
        if ch == code[-1]:
            continue
        with pytest.raises(UsccError) as err:
            normalize_uscc(code[:-1] + ch)
        assert err.value.rule == "check"
        assert "校验位" in str(err.value) and f"应为“{code[-1]}”" in str(err.value)


@pytest.mark.parametrize(
    ("code", "rule", "words"),
    [
        ("9111000060003734", "length", "18位"),
        ("91110000600037341LX", "length", "18位"),
        ("", "length", "18位"),
        ("9111000060003734IL", "alphabet", "“I”"),
        ("91110000600O37341L", "alphabet", "0写成了O"),
        ("9111000060003734-L", "alphabet", "“-”"),
    ],
)
def test_rule_named_in_words_an_operator_understands(code: str, rule: str, words: str) -> None:
    with pytest.raises(UsccError) as err:
        normalize_uscc(code)
    assert err.value.rule == rule
    assert words in str(err.value)


@given(st.text(alphabet=ALPHABET, min_size=17, max_size=17))
def test_generated_codes_round_trip_and_any_single_substitution_fails(body: str) -> None:
    code = body + check_character(body)
    assert is_valid_uscc(code)
    # a single changed character in the body is always detected (weights are units mod 31)
    pos = len(body) // 2
    other = ALPHABET[(ALPHABET.index(body[pos]) + 1) % len(ALPHABET)]
    assert not is_valid_uscc(body[:pos] + other + body[pos + 1 :] + code[-1])
