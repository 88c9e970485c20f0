import pytest

from conversations.addresses import InvalidAddress, normalise_email, normalise_phone


@pytest.mark.parametrize(
    "raw",
    ["+12015550123", "+1 (201) 555-0123", "+1-201-555-0123", "2015550123", "(201) 555-0123", " +12015550123 "],
)
def test_phone_numbers_in_any_common_format_normalise_to_e164(raw):
    assert normalise_phone(raw) == "+12015550123"


def test_international_numbers_keep_their_country_code():
    assert normalise_phone("+44 7911 123456") == "+447911123456"


@pytest.mark.parametrize("raw", ["abc", "123", "+1", "12345678901234567890", "", "++", "+1 201 555 01234 999"])
def test_impossible_phone_numbers_are_rejected(raw):
    with pytest.raises(InvalidAddress):
        normalise_phone(raw)


def test_email_domain_is_lower_cased_and_whitespace_trimmed():
    assert normalise_email("  Jane.Doe@Example.COM ") == "Jane.Doe@example.com"


@pytest.mark.parametrize(
    "raw",
    [
        "[user@usehatchapp.com](mailto:user@usehatchapp.com)",
        "mailto:user@usehatchapp.com",
        "User <user@UseHatchApp.com>",
    ],
)
def test_email_wrappers_from_the_scaffold_payloads_are_unwrapped(raw):
    assert normalise_email(raw) == "user@usehatchapp.com"


@pytest.mark.parametrize("raw", ["not-an-email", "a@", "@b.com", "a@b", "a b@c.com", "x" * 250 + "@example.com"])
def test_invalid_email_addresses_are_rejected(raw):
    with pytest.raises(InvalidAddress):
        normalise_email(raw)
