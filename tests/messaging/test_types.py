import pytest

from conversations.channels import CHANNELS


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
def test_sms_channel_infers_the_type_from_the_requested_type_addresses_and_attachments(
    requested, from_address, attachments, expected
):
    spec = CHANNELS["sms"]
    assert (
        spec.message_type(
            requested=requested, from_address=from_address, to_address="+18045551234", attachments=attachments
        )
        == expected
    )


@pytest.mark.parametrize(
    ("channel", "expected"), [("email", "email"), ("whatsapp", "whatsapp"), ("instagram", "instagram")]
)
def test_other_channels_carry_their_one_type(channel, expected):
    spec = CHANNELS[channel]
    assert spec.message_type(requested=None, from_address="a", to_address="b", attachments=["x"]) == expected
