import base64
import json
import time
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import RequestFactory

from providers import sendgrid, twilio
from providers.base import SignatureInvalid, SignedRequest
from providers.registry import provider_get
from tests.settings_env import PRODUCTION_ENV, run_with_settings
from webhooks.checks import public_base_url_problem
from webhooks.signatures import signatures_required, signed_request_from_django

twilio_signature = twilio.signature_for
twilio_json_url = twilio.json_url
sendgrid_hmac_signature = sendgrid.hmac_signature
sendgrid_ecdsa_signature = sendgrid.ecdsa_signature
verify_twilio = provider_get("twilio").verify
verify_sendgrid = provider_get("sendgrid").verify

FORM = "application/x-www-form-urlencoded"

# Twilio's published example (its webhook security guide and twilio-python's test suite).
TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
TWILIO_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


@pytest.fixture(autouse=True)
def _no_secrets(settings):
    settings.TWILIO_AUTH_TOKEN = []
    settings.SENDGRID_WEBHOOK_VERIFICATION_KEY = []
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = []
    settings.PUBLIC_BASE_URL = None
    settings.WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS = 300


@pytest.fixture
def twilio_token(settings):
    settings.TWILIO_AUTH_TOKEN = [TWILIO_TOKEN]
    return TWILIO_TOKEN


def twilio_form_request(*, url=TWILIO_URL, params=TWILIO_PARAMS, signature=TWILIO_SIGNATURE):
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    body = urlencode(list(params.items()) if isinstance(params, dict) else params).encode()
    return SignedRequest(method="POST", url=url, headers=headers, body=body, content_type=FORM)


def twilio_json_request(*, url, body, signature):
    return SignedRequest(
        method="POST",
        url=url,
        headers={"X-Twilio-Signature": signature},
        body=body,
        content_type="application/json",
    )


def rejection(verify, request) -> str:
    with pytest.raises(SignatureInvalid) as caught:
        verify(request)
    return caught.value.message


# Twilio: the scheme


def test_twilio_signature_matches_twilios_published_example():
    assert twilio_signature(url=TWILIO_URL, params=TWILIO_PARAMS, token=TWILIO_TOKEN) == TWILIO_SIGNATURE


def test_repeated_parameters_are_signed_sorted_by_name_then_value():
    # twilio-python's test vector for duplicate keys.
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]

    assert twilio_signature(url=TWILIO_URL, params=params, token=TWILIO_TOKEN) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_a_parameter_repeated_with_the_same_value_is_signed_once_as_twilio_python_does():
    repeated = [*TWILIO_PARAMS.items(), ("Digits", "1234")]

    assert twilio_signature(url=TWILIO_URL, params=repeated, token=TWILIO_TOKEN) == TWILIO_SIGNATURE


def test_twilio_json_url_appends_the_body_hash_as_twilio_does():
    # twilio-python's test vector for a JSON body.
    body = b'{"property": "value", "boolean": true}'
    body_hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"

    assert twilio_json_url(url=TWILIO_URL, body=body) == f"{TWILIO_URL}&bodySHA256={body_hash}"
    assert twilio_json_url(url="https://h.example/hook", body=b"") == (
        "https://h.example/hook?bodySHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


# Twilio: verification


def test_the_published_example_verifies_as_a_form_post(twilio_token):
    verify_twilio(twilio_form_request())


def test_form_parameters_are_verified_in_any_order_and_with_a_charset(twilio_token):
    reordered = list(reversed(TWILIO_PARAMS.items()))
    request = SignedRequest(
        method="post",
        url=TWILIO_URL,
        headers={"x-twilio-signature": TWILIO_SIGNATURE},
        body=urlencode(reordered).encode(),
        content_type="Application/X-WWW-Form-Urlencoded; charset=utf-8",
    )

    verify_twilio(request)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({**TWILIO_PARAMS, "Digits": "9999"}, id="tampered"),
        pytest.param({**TWILIO_PARAMS, "Body": "send money"}, id="added"),
        pytest.param({k: v for k, v in TWILIO_PARAMS.items() if k != "Digits"}, id="removed"),
        pytest.param([*TWILIO_PARAMS.items(), ("Digits", "0000")], id="repeated"),
    ],
)
def test_a_changed_parameter_is_rejected(twilio_token, params):
    message = rejection(verify_twilio, twilio_form_request(params=params))

    assert message == "X-Twilio-Signature does not match this request."


@pytest.mark.parametrize(
    "url",
    [
        "https://mycompany.com/myapp.php?foo=1&bar=3",
        "https://mycompany.com/other.php?foo=1&bar=2",
        "https://evil.example/myapp.php?foo=1&bar=2",
        "http://mycompany.com/myapp.php?foo=1&bar=2",
    ],
)
def test_another_url_is_rejected(twilio_token, url):
    rejection(verify_twilio, twilio_form_request(url=url))


def test_a_wrong_token_is_rejected(settings):
    settings.TWILIO_AUTH_TOKEN = ["not-the-token"]

    message = rejection(verify_twilio, twilio_form_request())

    assert "not-the-token" not in message


def test_during_rotation_every_listed_token_is_accepted(settings):
    settings.TWILIO_AUTH_TOKEN = ["the-new-token", TWILIO_TOKEN]
    verify_twilio(twilio_form_request())

    new_signature = twilio_signature(url=TWILIO_URL, params=TWILIO_PARAMS, token="the-new-token")
    verify_twilio(twilio_form_request(signature=new_signature))

    settings.TWILIO_AUTH_TOKEN = ["the-new-token"]
    rejection(verify_twilio, twilio_form_request())


def test_a_missing_or_blank_signature_header_is_rejected(twilio_token):
    assert rejection(verify_twilio, twilio_form_request(signature=None)) == "Missing X-Twilio-Signature header."
    assert rejection(verify_twilio, twilio_form_request(signature="  ")) == "Missing X-Twilio-Signature header."


def test_a_non_ascii_signature_header_is_rejected_not_an_error(twilio_token):
    rejection(verify_twilio, twilio_form_request(signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ\xe9"))


def test_twilio_verification_without_a_token_fails_closed():
    assert "not configured" in rejection(verify_twilio, twilio_form_request())


@pytest.mark.parametrize(
    ("signed_url", "received_url"),
    [
        ("https://mycompany.com:443/myapp.php?foo=1", "https://mycompany.com/myapp.php?foo=1"),
        ("https://mycompany.com/myapp.php?foo=1", "https://mycompany.com:443/myapp.php?foo=1"),
        ("http://mycompany.com:80/myapp.php?foo=1", "http://mycompany.com/myapp.php?foo=1"),
        ("http://mycompany.com/myapp.php?foo=1", "http://mycompany.com:80/myapp.php?foo=1"),
        ("https://mycompany.com:8443/myapp.php", "https://mycompany.com:8443/myapp.php"),
    ],
)
def test_the_url_is_tried_with_and_without_its_port(twilio_token, signed_url, received_url):
    signature = twilio_signature(url=signed_url, params=TWILIO_PARAMS, token=TWILIO_TOKEN)

    verify_twilio(twilio_form_request(url=received_url, signature=signature))


def test_twilio_pythons_vector_for_a_url_with_the_default_port_verifies(twilio_token):
    # twilio-python signs its own example parameters over the URL with :443 added.
    params = {**TWILIO_PARAMS, "From": "+14158675309", "Caller": "+14158675309"}

    verify_twilio(twilio_form_request(params=params, signature="kvajT1Ptam85bY51eRf/AJRuM3w="))


def test_a_json_body_verifies_through_body_sha256_in_the_url(twilio_token):
    # twilio-python's test vector for a JSON body.
    body = b'{"property": "value", "boolean": true}'
    url = twilio_json_url(url=TWILIO_URL, body=body)

    verify_twilio(twilio_json_request(url=url, body=body, signature="a9nBmqA0ju/hNViExpshrM61xv4="))


def test_a_json_body_signed_by_our_helpers_verifies(twilio_token):
    body = json.dumps({"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}).encode()
    url = twilio_json_url(url="https://hooks.example/api/webhooks/sms/status", body=body)
    signature = twilio_signature(url=url, params={}, token=TWILIO_TOKEN)

    verify_twilio(twilio_json_request(url=url, body=body, signature=signature))


def test_a_tampered_json_body_is_rejected(twilio_token):
    body = b'{"property": "value", "boolean": true}'
    url = twilio_json_url(url=TWILIO_URL, body=body)
    tampered = b'{"property": "other", "boolean": true}'

    message = rejection(
        verify_twilio, twilio_json_request(url=url, body=tampered, signature="a9nBmqA0ju/hNViExpshrM61xv4=")
    )

    assert message == "The body does not match the bodySHA256 in the URL."


def test_a_json_body_without_body_sha256_is_rejected(twilio_token):
    body = b'{"MessageSid": "SM1"}'
    signature = twilio_signature(url=TWILIO_URL, params={}, token=TWILIO_TOKEN)

    message = rejection(verify_twilio, twilio_json_request(url=TWILIO_URL, body=body, signature=signature))

    assert "needs bodySHA256" in message


def test_an_empty_non_form_body_is_signed_by_the_url_alone(twilio_token):
    signature = twilio_signature(url=TWILIO_URL, params={}, token=TWILIO_TOKEN)

    verify_twilio(SignedRequest(method="GET", url=TWILIO_URL, headers={"X-Twilio-Signature": signature}, body=b""))


# SendGrid


def sendgrid_request(*, body=b'[{"event": "delivered"}]', timestamp=None, signature=None, key=None, private_key=None):
    timestamp = str(int(time.time())) if timestamp is None else str(timestamp)
    if signature is None and key is not None:
        signature = sendgrid_hmac_signature(timestamp=timestamp, body=body, key=key)
    if signature is None and private_key is not None:
        signature = sendgrid_ecdsa_signature(timestamp=timestamp, body=body, private_key=private_key)
    headers = {"X-Twilio-Email-Event-Webhook-Timestamp": timestamp}
    if signature is not None:
        headers["X-Twilio-Email-Event-Webhook-Signature"] = signature
    return SignedRequest(
        method="POST", url="https://h.example/api/webhooks/email/events", headers=headers, body=body, content_type=""
    )


def spki_base64(private_key) -> str:
    """The public key as SendGrid's console shows it: base64 DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def spki_pem(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
def hmac_key(settings):
    settings.SENDGRID_WEBHOOK_VERIFICATION_KEY = ["sg-hmac-key"]
    return "sg-hmac-key"


@pytest.fixture
def ec_key(settings):
    private_key = ec.generate_private_key(ec.SECP256R1())
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = [spki_base64(private_key)]
    return private_key


def test_sendgrid_hmac_signature_is_hex_hmac_sha256_over_timestamp_and_body():
    # Computed independently: printf '1700000000[]' | openssl dgst -sha256 -hmac k
    expected = "3620c6a3ec39ba518a6d5fb9b48f117730f9950aff3f3944eabc9c4bf389bb1d"

    assert sendgrid_hmac_signature(timestamp=1700000000, body=b"[]", key="k") == expected


def test_an_hmac_signed_request_verifies(hmac_key):
    verify_sendgrid(sendgrid_request(key=hmac_key))


def test_an_uppercase_hex_signature_verifies(hmac_key):
    timestamp = int(time.time())
    signature = sendgrid_hmac_signature(timestamp=timestamp, body=b"[]", key=hmac_key).upper()

    verify_sendgrid(sendgrid_request(body=b"[]", timestamp=timestamp, signature=signature))


def test_an_ecdsa_signed_request_verifies(ec_key):
    verify_sendgrid(sendgrid_request(private_key=ec_key))


#: Made with OpenSSL's command line, not with this project's signer (openssl ecparam -name prime256v1
#: -genkey; openssl ec -pubout -outform DER | base64; openssl dgst -sha256 -sign over timestamp + body).
OPENSSL_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAErtuXaHDG4nX8JrAGKTNSdHjjpwJFrIA6kqEPSSveG6u8"
    "vNqya5WnItxWp2KvmgGyuftR9SNl7H1PbpSj4XPj9A=="
)
OPENSSL_BODY = b'[{"event":"delivered","sg_event_id":"openssl-vector","sg_message_id":"m-1"}]'
OPENSSL_SIGNATURE = "MEUCIExFqjcw6PC/EDd6QndPgReMnttqxsVqH4wOZevqNXJHAiEAq8b8HcBhPd7JmHt3rK2yaiREekq3z1SCe9awFqG/aaM="


def test_an_independently_produced_ecdsa_signature_verifies(settings, frozen_clock):
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = [OPENSSL_PUBLIC_KEY]
    request = SignedRequest(
        method="POST",
        url="https://hooks.example/api/webhooks/email/events",
        headers={
            "X-Twilio-Email-Event-Webhook-Timestamp": str(NOW),
            "X-Twilio-Email-Event-Webhook-Signature": OPENSSL_SIGNATURE,
        },
        body=OPENSSL_BODY,
    )

    verify_sendgrid(request)
    tampered = SignedRequest(
        method="POST", url=request.url, headers=request.headers, body=OPENSSL_BODY.replace(b"delivered", b"bounce")
    )
    assert rejection(verify_sendgrid, tampered) == "X-Twilio-Email-Event-Webhook-Signature does not match this request."


def test_a_pem_public_key_works_too(settings):
    private_key = ec.generate_private_key(ec.SECP256R1())
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = [spki_pem(private_key)]

    verify_sendgrid(sendgrid_request(private_key=private_key))


@pytest.mark.parametrize("scheme", ["hmac", "ecdsa"])
def test_a_tampered_body_is_rejected(hmac_key, ec_key, scheme):
    signer = {"key": hmac_key} if scheme == "hmac" else {"private_key": ec_key}
    signed = sendgrid_request(body=b'[{"event": "delivered"}]', **signer)
    tampered = SignedRequest(
        method=signed.method, url=signed.url, headers=signed.headers, body=b'[{"event": "bounce"}]'
    )

    message = rejection(verify_sendgrid, tampered)

    assert message == "X-Twilio-Email-Event-Webhook-Signature does not match this request."


#: A clock held still for the tolerance tests, so a slow machine cannot move a boundary case across.
NOW = 1_700_000_000


@pytest.fixture
def frozen_clock(monkeypatch):
    monkeypatch.setattr(sendgrid, "now", lambda: float(NOW))


@pytest.mark.parametrize("scheme", ["hmac", "ecdsa"])
@pytest.mark.parametrize("offset", [-301, 301, -10_000_000])
def test_a_timestamp_outside_the_tolerance_is_rejected_even_when_signed(hmac_key, ec_key, scheme, offset, frozen_clock):
    signer = {"key": hmac_key} if scheme == "hmac" else {"private_key": ec_key}

    message = rejection(verify_sendgrid, sendgrid_request(timestamp=NOW + offset, **signer))

    assert message == "X-Twilio-Email-Event-Webhook-Timestamp is more than 300 seconds from now."


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_a_timestamp_inside_the_tolerance_is_accepted(hmac_key, offset, frozen_clock):
    verify_sendgrid(sendgrid_request(timestamp=NOW + offset, key=hmac_key))


def test_the_tolerance_is_configurable(settings, hmac_key, frozen_clock):
    settings.WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS = 10

    verify_sendgrid(sendgrid_request(timestamp=NOW - 10, key=hmac_key))
    rejection(verify_sendgrid, sendgrid_request(timestamp=NOW - 11, key=hmac_key))


@pytest.mark.parametrize("timestamp", ["soon", "1700000000.5", "-1700000000", "1e9", "\u0661\u0662\u0663", "9" * 40])
def test_a_timestamp_that_is_not_whole_unix_seconds_is_rejected(hmac_key, timestamp):
    message = rejection(verify_sendgrid, sendgrid_request(timestamp=timestamp, signature="00"))

    assert message == "X-Twilio-Email-Event-Webhook-Timestamp must be a Unix time in whole seconds."


def test_missing_sendgrid_headers_are_rejected(hmac_key):
    unsigned = sendgrid_request()
    assert rejection(verify_sendgrid, unsigned) == "Missing X-Twilio-Email-Event-Webhook-Signature header."

    no_timestamp = SignedRequest(
        method="POST", url=unsigned.url, headers={"X-Twilio-Email-Event-Webhook-Signature": "00"}, body=b"[]"
    )
    assert rejection(verify_sendgrid, no_timestamp) == "Missing X-Twilio-Email-Event-Webhook-Timestamp header."


def test_a_wrong_hmac_key_is_rejected_without_revealing_either_key(settings):
    settings.SENDGRID_WEBHOOK_VERIFICATION_KEY = ["the-real-key"]

    message = rejection(verify_sendgrid, sendgrid_request(key="a-guessed-key"))

    assert "the-real-key" not in message
    assert "a-guessed-key" not in message


def test_hmac_keys_rotate(settings):
    settings.SENDGRID_WEBHOOK_VERIFICATION_KEY = ["old-key", "new-key"]
    verify_sendgrid(sendgrid_request(key="old-key"))
    verify_sendgrid(sendgrid_request(key="new-key"))

    settings.SENDGRID_WEBHOOK_VERIFICATION_KEY = ["new-key"]
    rejection(verify_sendgrid, sendgrid_request(key="old-key"))


def test_public_keys_rotate(settings):
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = [spki_base64(old), spki_pem(new)]
    verify_sendgrid(sendgrid_request(private_key=old))
    verify_sendgrid(sendgrid_request(private_key=new))

    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = [spki_base64(new)]
    rejection(verify_sendgrid, sendgrid_request(private_key=old))


def test_a_request_signed_by_another_ec_key_is_rejected(ec_key):
    stranger = ec.generate_private_key(ec.SECP256R1())

    rejection(verify_sendgrid, sendgrid_request(private_key=stranger))


def test_either_configured_scheme_is_enough(hmac_key, ec_key):
    verify_sendgrid(sendgrid_request(key=hmac_key))
    verify_sendgrid(sendgrid_request(private_key=ec_key))


@pytest.mark.parametrize("signature", ["not base64 at all!", "AAAA", base64.b64encode(b"\x30\x03garbage").decode()])
def test_a_malformed_ecdsa_signature_is_rejected_not_an_error(ec_key, signature):
    rejection(verify_sendgrid, sendgrid_request(signature=signature))


def test_sendgrid_verification_without_keys_fails_closed():
    assert "not configured" in rejection(verify_sendgrid, sendgrid_request(signature="00"))


# Which providers are on


def signatures_enabled_for(name):
    return signatures_required(provider_get(name))


def test_signatures_are_enabled_per_provider_by_its_secrets(settings):
    assert not signatures_enabled_for("twilio")
    assert not signatures_enabled_for("sendgrid")

    settings.TWILIO_AUTH_TOKEN = ["t"]
    assert signatures_enabled_for("twilio")
    assert not signatures_enabled_for("sendgrid")

    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = [spki_base64(ec.generate_private_key(ec.SECP256R1()))]
    assert signatures_enabled_for("sendgrid")

    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = []
    settings.SENDGRID_WEBHOOK_VERIFICATION_KEY = ["k"]
    assert signatures_enabled_for("sendgrid")


def test_when_signatures_are_required_every_provider_needs_them_even_without_a_secret(settings):
    settings.WEBHOOK_SIGNATURES_REQUIRED = True

    assert signatures_enabled_for("twilio")
    assert signatures_enabled_for("meta")
    with pytest.raises(SignatureInvalid, match="not configured"):
        verify_twilio(twilio_form_request())


# From a Django request


def test_a_django_request_keeps_its_own_url_without_a_public_base_url():
    request = RequestFactory().post(
        "/api/webhooks/sms?x=1&y=2", data="A=1", content_type="Application/X-WWW-Form-Urlencoded; charset=UTF-8"
    )

    signed = signed_request_from_django(request)

    assert signed.method == "POST"
    assert signed.url == "http://testserver/api/webhooks/sms?x=1&y=2"
    assert signed.body == b"A=1"
    assert signed.content_type == FORM


def test_the_public_base_url_replaces_scheme_host_and_port_and_keeps_path_and_query(settings):
    settings.PUBLIC_BASE_URL = "https://hooks.example.com/messaging"
    request = RequestFactory().post(
        "/api/webhooks/sms/status/?a=b%20c", data=b"{}", content_type="application/json", HTTP_HOST="10.0.0.5:8080"
    )

    assert (
        signed_request_from_django(request).url
        == "https://hooks.example.com/messaging/api/webhooks/sms/status/?a=b%20c"
    )


def test_headers_of_a_django_request_are_read_case_insensitively():
    request = RequestFactory().post("/api/webhooks/sms", data="", content_type=FORM, HTTP_X_TWILIO_SIGNATURE="sig")

    signed = signed_request_from_django(request)

    assert signed.headers["x-twilio-signature"] == "sig"
    assert signed.headers["X-TWILIO-SIGNATURE"] == "sig"


def test_a_signed_django_form_post_verifies_end_to_end(settings, twilio_token):
    settings.PUBLIC_BASE_URL = "https://mycompany.com"
    signature = twilio_signature(url="https://mycompany.com/myapp.php?foo=1&bar=2", params=TWILIO_PARAMS, token="12345")
    request = RequestFactory().post(
        "/myapp.php?foo=1&bar=2", data=urlencode(TWILIO_PARAMS), content_type=FORM, HTTP_X_TWILIO_SIGNATURE=signature
    )

    verify_twilio(signed_request_from_django(request))
    assert signature == TWILIO_SIGNATURE


# Settings


@pytest.mark.parametrize(
    "value",
    [
        None,
        "https://api.example.com",
        "http://localhost:8080",
        "https://api.example.com/messaging",
        "http://[::1]:8080",
    ],
)
def test_a_well_formed_public_base_url_passes_the_start_up_check(value):
    assert public_base_url_problem(value) is None


def test_the_public_base_url_loses_its_trailing_slash():
    result = run_with_settings(
        "config.settings.development",
        {"PUBLIC_BASE_URL": "https://api.example.com/messaging/"},
        "-c",
        "import django; django.setup(); from django.conf import settings; print(settings.PUBLIC_BASE_URL)",
    )

    assert result.stdout.strip() == "https://api.example.com/messaging", result.stderr


@pytest.mark.parametrize(
    "value",
    [
        "api.example.com",
        "ftp://api.example.com",
        "https://",
        "https://:8080",
        "https://api.example.com:port",
        "https://api.example.com:99999",
        "https://api.example.com:0",
        "https://user:pw@api.example.com",
        "https://api.example.com/?a=1",
        "https://api.example.com/#top",
        "https://api example.com",
    ],
)
def test_a_malformed_public_base_url_fails_the_start_up_check(value):
    assert "PUBLIC_BASE_URL must be http" in public_base_url_problem(value)


def test_valid_public_keys_pass_validation():
    keys = [spki_base64(ec.generate_private_key(ec.SECP256R1())), spki_pem(ec.generate_private_key(ec.SECP256R1()))]

    assert sendgrid.public_key_problems(keys) == []


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("not-a-key", id="garbage"),
        pytest.param(base64.b64encode(b"\x30\x00").decode(), id="bad-der"),
        pytest.param("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", id="bad-pem"),
        pytest.param(spki_base64(ec.generate_private_key(ec.SECP384R1())), id="p384"),
        pytest.param(spki_base64(rsa.generate_private_key(public_exponent=65537, key_size=2048)), id="rsa"),
    ],
)
def test_a_malformed_public_key_is_a_configuration_error_naming_the_variable(key):
    good = spki_base64(ec.generate_private_key(ec.SECP256R1()))

    (problem,) = sendgrid.public_key_problems([good, key])
    assert problem.startswith("SENDGRID_WEBHOOK_PUBLIC_KEY: key 2 of 2 is not an ECDSA P-256")


_start = run_with_settings

#: Production's environment without any webhook secret.
PRODUCTION = {
    name: value
    for name, value in PRODUCTION_ENV.items()
    if name not in ("TWILIO_AUTH_TOKEN", "SENDGRID_WEBHOOK_VERIFICATION_KEY", "META_APP_SECRET")
}


def test_production_refuses_to_start_without_webhook_secrets():
    result = _start("config.settings.production", PRODUCTION)

    assert result.returncode != 0
    assert (
        "Webhook signatures are required, but these providers have no secret: "
        "twilio (TWILIO_AUTH_TOKEN); sendgrid (SENDGRID_WEBHOOK_VERIFICATION_KEY or SENDGRID_WEBHOOK_PUBLIC_KEY); "
        "meta (META_APP_SECRET)." in result.stderr
    )


def test_production_refuses_to_start_with_only_the_twilio_token():
    result = _start("config.settings.production", {**PRODUCTION, "TWILIO_AUTH_TOKEN": "t"})

    assert result.returncode != 0
    assert (
        "have no secret: sendgrid (SENDGRID_WEBHOOK_VERIFICATION_KEY or SENDGRID_WEBHOOK_PUBLIC_KEY); "
        "meta (META_APP_SECRET)." in result.stderr
    )


@pytest.mark.parametrize(
    "secrets",
    [
        {"TWILIO_AUTH_TOKEN": "t1,t2", "SENDGRID_WEBHOOK_VERIFICATION_KEY": "k", "META_APP_SECRET": "m"},
        {
            "TWILIO_AUTH_TOKEN": "t",
            "SENDGRID_WEBHOOK_PUBLIC_KEY": spki_base64(ec.generate_private_key(ec.SECP256R1())),
            "META_APP_SECRET": "m1,m2",
        },
        {"WEBHOOK_SIGNATURES_REQUIRED": "false"},
    ],
)
def test_production_starts_with_webhook_secrets_or_when_explicitly_not_required(secrets):
    result = _start("config.settings.production", {**PRODUCTION, **secrets})

    assert result.returncode == 0, result.stderr


def test_a_malformed_public_key_stops_start_up():
    result = _start(
        "config.settings.development", {"SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"}
    )

    assert result.returncode != 0
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY: key 1 of 1 is not an ECDSA P-256 public key" in result.stderr
    assert "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE" not in result.stderr


def test_a_malformed_public_base_url_stops_start_up():
    result = _start("config.settings.development", {"PUBLIC_BASE_URL": "api.example.com"})

    assert result.returncode != 0
    assert "PUBLIC_BASE_URL must be http(s)://host[:port]" in result.stderr
