def parse_id(value: object) -> int | None:
    """A resource id from a URL: plain ASCII digits within bigint range, else None (a 404)."""
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)
