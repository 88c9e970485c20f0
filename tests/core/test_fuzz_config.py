"""schemathesis.toml (bin/fuzz.sh, CI): the checks expect every answer the server documents for valid or
invalid input alike, so that no random seed fails a run on a documented refusal."""

import tomllib
from pathlib import Path

import pytest
from django.conf import settings

#: Refusals by size, in bytes, which JSON Schema cannot state: a request that fits the schema can still
#: be too large (413: the body; 414: the request line, refused by gunicorn before the application runs).
SIZE_REFUSALS = {"413", "414"}


def _expected_lists(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expected-statuses" and any(
                part.endswith("_data_acceptance") or part.endswith("_data_rejection") for part in path
            ):
                yield ".".join(path), set(value)
            else:
                yield from _expected_lists(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _expected_lists(item, (*path, str(index)))


@pytest.fixture(scope="module")
def lists():
    config = tomllib.loads((Path(settings.BASE_DIR) / "schemathesis.toml").read_text())
    found = dict(_expected_lists(config))
    assert any(name.endswith("positive_data_acceptance") for name in found)
    assert any(name.endswith("negative_data_rejection") for name in found)
    return found


def test_size_refusals_are_expected_of_valid_and_invalid_input(lists):
    missing = {name: SIZE_REFUSALS - statuses for name, statuses in lists.items() if SIZE_REFUSALS - statuses}

    assert not missing


@pytest.mark.django_db
def test_every_operation_documents_the_request_line_limit(client):
    schema = client.get("/api/schema/?format=json").json()

    for operations in schema["paths"].values():
        for method, operation in operations.items():
            assert "414" in operation["responses"], method
