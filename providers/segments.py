"""SMS segment counting, as a carrier bills it (GSM-7 vs UCS-2)."""

import math

_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")


def sms_segments(body: str) -> int:
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENDED for ch in body):
        units = sum(2 if ch in _GSM7_EXTENDED else 1 for ch in body)
        single, multi = 160, 153
    else:
        units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in body)  # UTF-16 code units
        single, multi = 70, 67
    if units <= single:
        return 1
    return math.ceil(units / multi)
