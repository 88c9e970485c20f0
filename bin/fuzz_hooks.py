"""Schemathesis hooks for bin/fuzz.sh: how to make values of this API's own string formats.

The schema marks SMS addresses ``format: phone``, the conversation filter ``format: phone-or-email`` and
attachments ``format: http-url`` (core/openapi.py). Schemathesis knows standard formats such as
``email``, not these: without a strategy it would draw arbitrary text, which is almost never a possible
phone number, so schema-valid sends would rarely be valid and rarely reach delivery and the database.
Named functions rather than lambdas: Hypothesis describes strategies by their source.
"""

import schemathesis
from hypothesis import strategies as st

_DIGITS = "0123456789"
_LOWER = "abcdefghijklmnopqrstuvwxyz"


def _digits(count: int) -> st.SearchStrategy[str]:
    return st.text(_DIGITS, min_size=count, max_size=count)


def _nanp(first: str, rest_of_area: str, exchange_first: str, rest: str) -> str:
    # A North American number: area code and exchange do not start with 0 or 1.
    return f"{first}{rest_of_area}{exchange_first}{rest}"


def _e164_nanp(number: str) -> str:
    return f"+1{number}"


def _national_nanp(number: str) -> str:
    return f"({number[:3]}) {number[3:6]}-{number[6:]}"


def _dashed_nanp(number: str) -> str:
    return f"1-{number[:3]}-{number[3:6]}-{number[6:]}"


def _london(number: str) -> str:
    return f"+44 20 {number}"


def _paris(first: str, rest: str) -> str:
    return f"+33 {first}{rest}"


_NANP = st.builds(_nanp, st.sampled_from("23456789"), _digits(2), st.sampled_from("23456789"), _digits(6))

#: Possible numbers (the right length for their country), written the ways clients write them.
PHONE_NUMBERS = st.one_of(
    _NANP.map(_e164_nanp),
    _NANP.map(_national_nanp),
    _NANP.map(_dashed_nanp),
    _digits(8).map(_london),
    st.builds(_paris, st.sampled_from("123456789"), _digits(8)),
)


def _host(labels: list[str], top_level: str) -> str:
    return ".".join([*labels, top_level])


_HOSTS = st.builds(
    _host,
    st.lists(st.text(_LOWER + _DIGITS, min_size=1, max_size=12), min_size=1, max_size=3),
    st.sampled_from(["com", "org", "net", "io", "example", "co.uk"]),
)


def _email(local: str, host: str) -> str:
    return f"{local}@{host}"


#: Dot-atom local parts: letters, digits and ``+-_``, dots only between them.
_LOCAL_PARTS = st.lists(st.text(_LOWER + _DIGITS + "_+-", min_size=1, max_size=8), min_size=1, max_size=3).map(".".join)
EMAILS = st.builds(_email, _LOCAL_PARTS, _HOSTS)


def _url(scheme: str, host: str, path: str) -> str:
    return f"{scheme}://{host}/{path}"


#: http(s) URLs Django's URLValidator accepts: a host name with a top-level domain, any path.
HTTP_URLS = st.builds(
    _url, st.sampled_from(["http", "https"]), _HOSTS, st.text(_LOWER + _DIGITS + "-._~/%", max_size=40)
)


def _whatsapp_number(area: str, line: str) -> str:
    # Valid numbers (a WhatsApp number must be valid, not merely possible): NANP 555-01xx lines.
    return f"+1{area}55501{line}"


def _whatsapp_prefixed(number: str) -> str:
    return f"whatsapp:{number}"


_WHATSAPP_NUMBERS = st.builds(_whatsapp_number, st.sampled_from(["201", "212", "415", "646"]), _digits(2))

#: WhatsApp users: valid numbers in Meta's spellings, or opaque user ids (a letter first, so that an
#: id is never read as a wa_id number).
WHATSAPP_ADDRESSES = st.one_of(
    _WHATSAPP_NUMBERS,
    _WHATSAPP_NUMBERS.map(_whatsapp_prefixed),
    st.from_regex(r"\A[A-Za-z][A-Za-z0-9._-]{0,20}\Z"),
)

schemathesis.openapi.format("phone", PHONE_NUMBERS)
schemathesis.openapi.format("whatsapp-address", WHATSAPP_ADDRESSES)
schemathesis.openapi.format("phone-or-email", st.one_of(PHONE_NUMBERS, EMAILS))
schemathesis.openapi.format("http-url", HTTP_URLS)


#: What a send answers when the Idempotency-Key header and the body's client_message_id differ.
_KEY_DISAGREEMENT = {"client_message_id": ["Differs from the Idempotency-Key header."]}


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Drops one false positive and keeps every other failure.

    A send may carry its idempotency key in the Idempotency-Key header or as client_message_id; two
    different keys are refused (400). OpenAPI cannot relate a header to a body field, so the schema
    calls such a request valid and the positive_data_acceptance check (ST202) reports the 400.
    """
    if failure.code != "ST202" or response.status_code != 400:
        return True
    try:
        details = response.json()["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return True
    return details != _KEY_DISAGREEMENT
