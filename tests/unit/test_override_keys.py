"""How the text-keeping override stores (Redis, LMDB) join two strings: exact whatever either
holds, and unchanged for keys written before the escape existed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trackd.overrides.store import SEPARATOR, joined, split_joined

# Mostly the bytes that matter, so that every mix of them comes up.
TEXT = st.text(
    alphabet=st.sampled_from(["\x1b", "\x1f", "e", "s", "a", "\x00", "é"]) | st.characters()
)


@given(TEXT, TEXT)
def test_any_two_strings_split_back_exactly(head: str, tail: str) -> None:
    assert split_joined(joined(head, tail)) == (head, tail)


def test_a_key_without_esc_or_us_is_written_as_it_was_before_the_escape() -> None:
    assert joined("promo", "rule") == "promo" + SEPARATOR + "rule"


def test_an_esc_a_key_written_before_the_escape_held_reads_as_it_is() -> None:
    # Only ESC e and ESC s are escapes; an older key's ESC x stays ESC x.
    assert split_joined("promo\x1bx" + SEPARATOR + "rule") == ("promo\x1bx", "rule")
