"""Active API keys remembered per connection (apikeys/cache.py), and revocations that end them at once.

Outside a transaction, as the service runs: each test commits, and a second session stands for
another process (the admin, ``manage.py revoke_api_key``)."""

import select
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext

from apikeys import cache, services
from apikeys.keys import key_generate
from apikeys.models import ApiKey
from apikeys.services import api_key_authenticate, api_key_create
from tests.sessions import second_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def other_connection():
    """A second database session, committing on its own, as another process would."""
    with second_session(autocommit=True) as session:
        yield session


@pytest.fixture
def fresh_connection():
    """This thread's connection made anew, so that it listens (or not) as the settings now say."""
    connection.close()
    yield
    connection.close()


def statements_run(key):
    with CaptureQueriesContext(connection) as queries:
        found = api_key_authenticate(presented=key)
    return found, len(queries.captured_queries)


def server_has_sent(seconds=2.0):
    """Whether this thread's connection has something from the server waiting to be read (a
    notification, a notice) within ``seconds``."""
    readable, _, _ = select.select([connection.connection.fileno()], [], [], seconds)
    return bool(readable)


def authenticated_within(key, seconds=2.0):
    """Whether the key still authenticates after a notification had ``seconds`` to arrive (it arrives
    with the revoking commit on one host; the wait keeps a loaded machine from failing the test)."""
    deadline = time.monotonic() + seconds
    while api_key_authenticate(presented=key) is not None:
        if time.monotonic() > deadline:
            return True
        time.sleep(0.01)
    return False


def test_a_key_found_active_is_not_read_again_on_the_same_connection(fresh_connection):
    api_key, key = api_key_create(name="ci")

    assert statements_run(key) == (api_key, 2), "the key read, and its first use written"
    assert statements_run(key) == (api_key, 0)
    assert statements_run(key) == (api_key, 0)


def test_a_revocation_committed_by_another_session_ends_a_remembered_key(fresh_connection, other_connection):
    api_key, key = api_key_create(name="ci")
    api_key_authenticate(presented=key)
    assert statements_run(key) == (api_key, 0), "remembered"

    other_connection.execute("UPDATE apikeys_apikey SET revoked_at = now() WHERE id = %s", [api_key.pk])

    assert not authenticated_within(key)
    assert statements_run(key) == (None, 1), "a revoked key is read every time, never remembered"


def test_revoke_api_key_ends_a_remembered_key_on_the_next_request(fresh_connection, api):
    api_key, key = api_key_create(name="billing-app")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    assert api.get("/api/conversations", **headers).status_code == 200
    assert statements_run(key) == (api_key, 0), "remembered"

    call_command("revoke_api_key", api_key.prefix)

    response = api.get("/api/conversations", **headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    "removal", ["DELETE FROM apikeys_apikey WHERE id = %s", "TRUNCATE apikeys_apikey"], ids=["delete", "truncate"]
)
def test_a_removed_key_is_forgotten(fresh_connection, other_connection, removal):
    api_key, key = api_key_create(name="ci")
    api_key_authenticate(presented=key)
    assert statements_run(key) == (api_key, 0), "remembered"

    other_connection.execute(removal, [api_key.pk] if "%s" in removal else None)

    assert not authenticated_within(key)


def test_a_notification_read_while_another_statement_runs_is_not_missed(fresh_connection, other_connection):
    api_key, key = api_key_create(name="ci")
    api_key_authenticate(presented=key)
    other_connection.execute("UPDATE apikeys_apikey SET revoked_at = now() WHERE id = %s", [api_key.pk])
    assert server_has_sent()

    with connection.cursor() as cursor:  # psycopg reads the notification with this statement's answer
        cursor.execute("SELECT 1")

    assert connection.connection._api_key_memory.keys == {}
    assert statements_run(key) == (None, 1)


def test_a_key_revoked_while_it_is_being_read_is_not_remembered(fresh_connection, other_connection, monkeypatch):
    api_key, key = api_key_create(name="ci")
    read = services._active_key

    def read_then_revoked_elsewhere(digest):
        found = read(digest)  # active in this snapshot
        other_connection.execute("UPDATE apikeys_apikey SET revoked_at = now() WHERE id = %s", [api_key.pk])
        assert server_has_sent()  # its notification reaches this connection before the key would be remembered
        return found

    monkeypatch.setattr(services, "_active_key", read_then_revoked_elsewhere)
    assert api_key_authenticate(presented=key) == api_key  # the request that was already being checked
    monkeypatch.setattr(services, "_active_key", read)

    assert statements_run(key) == (None, 1)


def test_last_used_at_written_elsewhere_keeps_the_key_remembered(fresh_connection, other_connection):
    api_key, key = api_key_create(name="ci")
    api_key_authenticate(presented=key)

    other_connection.execute("UPDATE apikeys_apikey SET last_used_at = now() WHERE id = %s", [api_key.pk])
    assert not server_has_sent(0.5), "no notification"

    assert statements_run(key) == (api_key, 0)


def test_a_remembered_key_used_elsewhere_takes_the_stored_last_use(fresh_connection, other_connection):
    api_key, key = api_key_create(name="ci")
    remembered = api_key_authenticate(presented=key)
    remembered.last_used_at -= timedelta(minutes=5)  # as if this connection had not used it for a while
    other_connection.execute(
        "UPDATE apikeys_apikey SET last_used_at = now() - interval '30 seconds' WHERE id = %s", [api_key.pk]
    )
    stored = ApiKey.objects.get().last_used_at

    assert statements_run(key)[1] == 2, "the write another request had made already, and its time read"
    assert remembered.last_used_at == stored == ApiKey.objects.get().last_used_at
    assert statements_run(key)[1] == 0


def test_unknown_keys_are_read_every_time(fresh_connection):
    unknown = key_generate()

    assert statements_run(unknown) == (None, 1)
    assert statements_run(unknown) == (None, 1)


def test_nothing_is_remembered_inside_a_transaction(fresh_connection):
    api_key, key = api_key_create(name="ci")

    api_key_authenticate(presented=key)  # its first use written

    with transaction.atomic():
        assert statements_run(key) == (api_key, 1)
        assert statements_run(key) == (api_key, 1)


def test_a_remembered_key_is_read_again_after_api_key_cache_seconds(fresh_connection, settings, monkeypatch):
    api_key, key = api_key_create(name="ci")
    api_key_authenticate(presented=key)
    now = time.monotonic()

    monkeypatch.setattr(cache.time, "monotonic", lambda: now + settings.API_KEY_CACHE_SECONDS - 1)
    assert statements_run(key) == (api_key, 0)
    monkeypatch.setattr(cache.time, "monotonic", lambda: now + settings.API_KEY_CACHE_SECONDS + 1)
    assert statements_run(key) == (api_key, 1)


def test_nothing_is_remembered_while_a_transaction_is_open_without_atomic(fresh_connection):
    api_key, key = api_key_create(name="ci")
    api_key_authenticate(presented=key)
    transaction.set_autocommit(False)
    try:
        ApiKey.objects.exists()  # the transaction begins

        assert statements_run(key) == (api_key, 1)
        assert statements_run(key) == (api_key, 1)
    finally:
        transaction.rollback()
        transaction.set_autocommit(True)


def test_a_connection_the_server_ended_does_not_use_its_memory(fresh_connection, other_connection):
    api_key, key = api_key_create(name="ci")
    api_key_authenticate(presented=key)
    assert statements_run(key) == (api_key, 0), "remembered"

    other_connection.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
    assert server_has_sent()

    with pytest.raises(OperationalError):  # the lookup reached the (gone) server
        api_key_authenticate(presented=key)


def test_without_the_notifying_triggers_nothing_is_remembered(fresh_connection, other_connection, caplog):
    api_key, key = api_key_create(name="ci")
    other_connection.execute("ALTER TABLE apikeys_apikey DISABLE TRIGGER api_key_changed_update")
    try:
        connection.close()
        api_key_authenticate(presented=key)

        assert statements_run(key) == (api_key, 1)
        assert statements_run(key) == (api_key, 1)
        assert "missing or disabled" in caplog.text
    finally:
        other_connection.execute("ALTER TABLE apikeys_apikey ENABLE TRIGGER api_key_changed_update")


def test_a_connection_closed_after_each_request_does_not_listen(fresh_connection, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    api_key, key = api_key_create(name="ci")
    api_key_authenticate(presented=key)

    assert statements_run(key) == (api_key, 1)
    assert not hasattr(connection.connection, "_api_key_memory")


def test_a_connection_without_autocommit_does_not_listen(fresh_connection, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "AUTOCOMMIT", False)
    connection.ensure_connection()

    assert not hasattr(connection.connection, "_api_key_memory")


def test_api_key_cache_seconds_zero_reads_every_key_every_time(settings, fresh_connection):
    settings.API_KEY_CACHE_SECONDS = 0
    api_key, key = api_key_create(name="ci")
    api_key_authenticate(presented=key)  # its first use written

    assert statements_run(key) == (api_key, 1)
    assert statements_run(key) == (api_key, 1)
    assert not hasattr(connection.connection, "_api_key_memory")


def test_a_connection_remembers_at_most_max_keys(fresh_connection, monkeypatch):
    monkeypatch.setattr(cache, "MAX_KEYS", 2)
    keys = [api_key_create(name=f"client-{n}")[1] for n in range(3)]
    for key in keys:
        api_key_authenticate(presented=key)

    assert len(connection.connection._api_key_memory.keys) == 1, "forgot the first two to remember the third"
    assert statements_run(keys[2])[1] == 0
    assert statements_run(keys[0])[1] == 1
