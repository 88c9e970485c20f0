import pytest

from messaging.types import infer_message_type


@pytest.mark.parametrize(
    ("requested", "from_address", "attachments", "expected"),
    [
        ("email", "+12015550123", [], "email"),
        (None, "a@example.com", [], "email"),
        ("sms", "a@example.com", [], "email"),
        ("mms", "+12015550123", [], "mms"),
        (None, "+12015550123", ["https://example.com/a.jpg"], "mms"),
        ("sms", "+12015550123", ["https://example.com/a.jpg"], "mms"),
        ("sms", "+12015550123", [], "sms"),
        (None, "+12015550123", [], "sms"),
    ],
)
def test_type_is_inferred_from_the_requested_type_addresses_and_attachments(
    requested, from_address, attachments, expected
):
    assert (
        infer_message_type(
            requested_type=requested, from_address=from_address, to_address="+18045551234", attachments=attachments
        )
        == expected
    )
