"""core.prepared: the hot paths' statements are prepared on the connection, behave as Django's own cursors
(errors, query logging, the health check before a request's first statement), and can be turned off."""

import contextlib
import json

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError, ProgrammingError, connection, connections, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from core import prepared
from core.prepared import _PreparedCursorWrapper, numbered, prepared_cursor
from tests.prepared_statements import prepared_runs
from tests.settings_env import PRODUCTION_ENV, run_with_settings

pytestmark = pytest.mark.django_db

postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")


def test_placeholders_become_postgresql_numbers():
    assert numbered("SELECT %s, '%%', %s, $1") == "SELECT $1, '%', $2, $1"
    with pytest.raises(ValueError, match="%d"):
        numbered("SELECT %d")


@postgresql_only
def test_a_statement_is_prepared_once_per_connection_and_then_executed():
    for value in range(3):
        with prepared_cursor() as cursor:
            cursor.execute("SELECT %s::int + 1 AS prepared_probe", [value])
            assert cursor.fetchone() == (value + 1,)

    assert prepared_runs("prepared_probe") == [3], "one prepared statement, executed three times"


@postgresql_only
def test_an_error_is_djangos_and_leaves_the_connection_usable():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE prepared_unique (id int PRIMARY KEY)")
    with prepared_cursor() as cursor:
        cursor.execute("INSERT INTO prepared_unique (id) VALUES (%s)", [1])

    with pytest.raises(IntegrityError), transaction.atomic(), prepared_cursor() as cursor:
        cursor.execute("INSERT INTO prepared_unique (id) VALUES (%s)", [1])

    with prepared_cursor() as cursor:
        cursor.execute("INSERT INTO prepared_unique (id) VALUES (%s)", [2])
        cursor.execute("SELECT count(*) FROM prepared_unique")
        assert cursor.fetchone() == (2,)


@postgresql_only
def test_an_error_while_nothing_watches_is_translated_as_djangos_cursor_translates_it():
    """With no execute wrapper and no query logging the statements skip Django's wrapper chain; a
    driver error still arrives as Django's, chained to the driver's, and marks the connection as
    Django's does for errors other than data and integrity ones."""
    connection.errors_occurred = False
    with prepared_cursor() as cursor:
        assert isinstance(cursor, _PreparedCursorWrapper), "nothing watches: Django's wrapper chain is skipped"
        cursor.execute("CREATE TEMPORARY TABLE watched_unique (id int PRIMARY KEY)")
    with pytest.raises(IntegrityError) as integrity, transaction.atomic(), prepared_cursor() as cursor:
        cursor.execute("INSERT INTO watched_unique VALUES (%s), (%s)", [1, 1])
    assert isinstance(integrity.value.__cause__, psycopg.errors.UniqueViolation)
    assert connection.errors_occurred is False

    with pytest.raises(ProgrammingError) as programming, transaction.atomic(), prepared_cursor() as cursor:
        cursor.execute("SELECT no_such_column_here FROM (VALUES (1)) AS v(id) WHERE id = %s", [1])
    assert isinstance(programming.value.__cause__, psycopg.errors.UndefinedColumn)
    assert connection.errors_occurred is True


@postgresql_only
def test_a_statement_in_a_broken_transaction_is_refused_as_djangos_cursor_refuses_it():
    with transaction.atomic():
        connection.needs_rollback = True  # as after an error inside this block that nothing rolled back
        with pytest.raises(TransactionManagementError), prepared_cursor() as cursor:
            cursor.execute("SELECT %s::int", [1])
        connection.needs_rollback = False


@postgresql_only
def test_an_execute_wrapper_sees_the_prepared_statements():
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper), prepared_cursor() as cursor:
        cursor.execute("SELECT %s::int AS wrapped_probe", [1])
        assert cursor.fetchone() == (1,)
    with prepared_cursor() as cursor, connection.execute_wrapper(wrapper):  # installed after the cursor
        cursor.execute("SELECT %s::int AS late_wrapped_probe", [2])

    assert seen == ["SELECT %s::int AS wrapped_probe", "SELECT %s::int AS late_wrapped_probe"]


@postgresql_only
def test_query_logging_shows_the_statement_with_its_parameters():
    with CaptureQueriesContext(connection) as queries, prepared_cursor() as cursor:
        cursor.execute("SELECT %s::text AS logged_probe", ["it's here"])

    assert queries.captured_queries[-1]["sql"] == "SELECT 'it''s here'::text AS logged_probe"


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_dropped_is_replaced_before_a_prepared_statement(monkeypatch):
    """The request's first statement may be a prepared one (an API key, an inbound webhook): it runs the
    per-request health check as Django's own cursors do, so a server restart is not answered 503."""
    wrapper = connections["default"]
    with prepared_cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [pid] = cursor.fetchone()
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    # A new request on a connection that has been idle: Django resets the check, the backend makes it.
    monkeypatch.setattr(wrapper, "health_check_enabled", True)
    wrapper.health_check_done = False
    wrapper.connection.answered_at = float("-inf")

    with prepared_cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        [new_pid] = cursor.fetchone()

    assert new_pid != pid


@contextlib.contextmanager
def _table_whose_column_type_changes(table):
    """A table (id, name varchar) for the block; the function it yields changes ``name`` to text from
    another connection, as a migration run while the service serves would."""
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (id int, name varchar(5))")
        cursor.execute(f"INSERT INTO {table} VALUES (1, 'one')")

    def change_type():
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {table} ALTER COLUMN name TYPE text")
        finally:
            other.close()

    try:
        yield change_type
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {table}")


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_migration_changing_a_returned_column_type_does_not_break_the_statement():
    with _table_whose_column_type_changes("prepared_shape") as change_type:
        with prepared_cursor() as cursor:
            cursor.execute("SELECT name FROM prepared_shape WHERE id = %s", [1])
            assert cursor.fetchone() == ("one",)
        change_type()

        with prepared_cursor() as cursor:
            cursor.execute("SELECT name FROM prepared_shape WHERE id = %s", [1])
            assert cursor.fetchone() == ("one",)

    assert prepared_runs("FROM prepared_shape WHERE") == [1], "the stale statement was closed, its successor run once"


@postgresql_only
def test_with_preparing_off_the_statements_run_unprepared(monkeypatch):
    connection.ensure_connection()
    monkeypatch.setattr(connection.connection, "prepare_threshold", None)  # DB_PREPARED_STATEMENTS=false

    with prepared_cursor() as cursor:
        cursor.execute("SELECT %s::int AS unprepared_probe", [7])
        assert cursor.fetchone() == (7,)

    assert prepared_runs("unprepared_probe") == []


def test_prepared_statements_can_be_turned_off_for_a_pooler():
    code = (
        "import json; from django.conf import settings; "
        "print(json.dumps(settings.DATABASES['default']['OPTIONS']['prepare_threshold']))"
    )
    env = {**PRODUCTION_ENV, "DATABASE_URL": "postgresql://user:pass@db.example.com/messaging"}

    default = run_with_settings("config.settings.production", env, "-c", "import django; django.setup(); " + code)
    off = run_with_settings(
        "config.settings.production",
        {**env, "DB_PREPARED_STATEMENTS": "false"},
        "-c",
        "import django; django.setup(); " + code,
    )

    assert default.returncode == 0, default.stderr
    assert json.loads(default.stdout) > 10**9, "only what core.prepared asks for is prepared"
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout) is None, "psycopg prepares nothing"


@postgresql_only
def test_a_prepared_cursor_used_inside_another_leaves_the_outer_results_alone():
    with prepared_cursor() as outer:
        outer.execute("SELECT g FROM generate_series(1, 3) AS g WHERE g > %s", [0])
        with prepared_cursor() as inner:
            inner.execute("SELECT %s::int", [42])
            assert inner.fetchone() == (42,)
        assert outer.fetchall() == [(1,), (2,), (3,)]


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_changed_result_type_inside_a_transaction_is_a_moments_unavailability():
    from django.db import OperationalError

    from core.database import is_database_unavailable

    with _table_whose_column_type_changes("prepared_shape_tx") as change_type:
        with prepared_cursor() as cursor:
            cursor.execute("SELECT name FROM prepared_shape_tx WHERE id = %s", [1])
        change_type()

        with pytest.raises(OperationalError) as raised, transaction.atomic(), prepared_cursor() as cursor:
            cursor.execute("SELECT name FROM prepared_shape_tx WHERE id = %s", [1])
        assert is_database_unavailable(raised.value), "answered 503 with Retry-After"

        with transaction.atomic(), prepared_cursor() as cursor:  # prepared again, under a new name
            cursor.execute("SELECT name FROM prepared_shape_tx WHERE id = %s", [1])
            assert cursor.fetchone() == ("one",)

    assert prepared_runs("FROM prepared_shape_tx WHERE") == [1], (
        "the stale statement was closed, its successor run once"
    )


@postgresql_only
def test_the_api_key_row_needs_no_converters():
    """The API key lookup, run on every request, spends nothing on converting its row."""
    from apikeys.models import ApiKey

    assert [field.name for field in ApiKey._meta.concrete_fields if field.get_db_converters(connection)] == []


def _field_values(instance):
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def test_prepared_models_are_the_instances_the_orm_makes():
    """Every field as the ORM reads it, JSON decoded included (Django reads jsonb as text and decodes it
    in the field's converter), and instances that know they are stored."""
    from core.prepared import model_columns, prepared_models
    from messaging.models import Message
    from tests.factories import MessageFactory

    stored = MessageFactory(
        metadata={"provider_response": {"sid": "SM1", "num_media": "1"}, "accepted_by": "twilio"},
        attachments=["https://example.com/a.png"],
    )
    MessageFactory(conversation=stored.conversation)
    sql = f"SELECT {model_columns(Message)} FROM messaging_message WHERE conversation_id = %s ORDER BY id"

    made = prepared_models(Message, sql, [stored.conversation_id])
    read = list(Message.objects.filter(conversation_id=stored.conversation_id).order_by("id"))

    assert [_field_values(message) for message in made] == [_field_values(message) for message in read]
    assert made[0].metadata["provider_response"]["sid"] == "SM1"
    assert made[0].attachments == ["https://example.com/a.png"]
    assert not made[0]._state.adding
    assert made[0]._state.db == "default"
    assert prepared_models(Message, sql, [0]) == []
    assert made[0].__dict__.keys() == read[0].__dict__.keys(), "no attribute more or less than __init__ sets"
    made[0].save(update_fields=["body"])  # an instance the ORM can write back
    assert made[0].conversation == stored.conversation


@pytest.mark.parametrize("signal_name", ["pre_init", "post_init"])
def test_prepared_models_go_through_init_when_a_receiver_listens_for_it(signal_name):
    """Instances are built without ``Model.__init__`` only while nothing could tell: a pre_init or
    post_init receiver for the model gets its signal."""
    from django.db.models import signals

    from core.prepared import model_columns, prepared_models
    from messaging.models import Message
    from tests.factories import MessageFactory

    stored = MessageFactory()
    seen = []

    def receiver(sender, **kwargs):
        seen.append(sender)

    signal = getattr(signals, signal_name)
    signal.connect(receiver, sender=Message)
    try:
        [made] = prepared_models(
            Message, f"SELECT {model_columns(Message)} FROM messaging_message WHERE id = %s", [stored.pk]
        )
    finally:
        signal.disconnect(receiver, sender=Message)

    assert seen == [Message]
    assert made.pk == stored.pk


@postgresql_only
def test_a_thread_page_is_one_prepared_statement():
    from core.pagination import PageRequest
    from messaging.selectors import message_thread_page
    from tests.factories import MessageFactory

    first = MessageFactory()
    MessageFactory(conversation=first.conversation)
    # Earlier tests may have prepared it, with these parameter types or others: the runs are counted.
    runs_before = sum(prepared_runs('ORDER BY "timestamp" DESC'))
    with CaptureQueriesContext(connection) as queries:
        messages, total = message_thread_page(
            conversation_id=first.conversation_id, order="desc", page=PageRequest(page=1, limit=50)
        )

    assert len(messages) == 2
    assert total == 2
    assert len(queries) == 1
    assert sum(prepared_runs('ORDER BY "timestamp" DESC')) == runs_before + 1, "a prepared statement, run once more"


@postgresql_only
def test_a_statement_gives_its_rows_and_rowcount_as_a_cursor_does():
    with prepared_cursor() as cursor:
        cursor.execute("SELECT g FROM generate_series(1, 5) AS g WHERE g > %s", [0])
        assert cursor.rowcount == 5
        assert cursor.fetchone() == (1,)
        assert cursor.fetchmany(2) == [(2,), (3,)]
        assert list(cursor) == [(4,), (5,)]
        assert cursor.fetchone() is None
        assert cursor.fetchall() == []

        cursor.execute("CREATE TEMPORARY TABLE prepared_rowcount (id int)")
        cursor.execute("INSERT INTO prepared_rowcount SELECT generate_series(1, %s)", [4])
        cursor.execute("UPDATE prepared_rowcount SET id = id + %s WHERE id > 1", [10])
        assert cursor.rowcount == 3
        assert cursor.fetchall() == []
        with pytest.raises(psycopg.NotSupportedError):
            cursor.description  # noqa: B018 - no caller reads it; it fails rather than describe another statement


class _RolledBack(Exception):
    pass


def _in_a_rolled_back_transaction(statement, params):
    with contextlib.suppress(_RolledBack), transaction.atomic(), prepared_cursor() as cursor:
        cursor.execute(statement, params)
        raise _RolledBack


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_statement_outlives_a_rollback_on_its_connection():
    """psycopg deallocates every statement after a rollback once it has prepared one of its own; none of
    these is psycopg's, so a rolled-back transaction costs the next run no new Parse."""
    with prepared_cursor() as cursor:
        cursor.execute("SELECT %s::int AS rollback_probe", [1])
    _in_a_rolled_back_transaction("SELECT %s::int AS rollback_probe", [2])
    with prepared_cursor() as cursor:
        cursor.execute("SELECT %s::int AS rollback_probe", [3])
        assert cursor.fetchone() == (3,)

    assert prepared_runs("rollback_probe") == [3], "one statement, prepared once, run three times"


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_the_first_statement_of_a_transaction_runs_inside_it_as_psycopg_would_begin_it():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE prepared_begin (id int)")
    try:
        _in_a_rolled_back_transaction("INSERT INTO prepared_begin (id) VALUES (%s)", [1])
        with prepared_cursor() as cursor:
            cursor.execute("SELECT count(*) FROM prepared_begin WHERE id > %s", [0])
            assert cursor.fetchone() == (0,), "rolled back with its transaction"

        connection.ensure_connection()
        connection.connection.read_only = True  # psycopg's BEGIN READ ONLY
        try:
            with (
                pytest.raises(DatabaseError, match="read-only transaction"),
                transaction.atomic(),
                prepared_cursor() as cursor,
            ):
                cursor.execute("INSERT INTO prepared_begin (id) VALUES (%s)", [2])
        finally:
            connection.connection.read_only = None
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE prepared_begin")


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_statement_deallocated_behind_its_back_is_prepared_again():
    from django.db import OperationalError

    from core.database import is_database_unavailable

    def deallocate_all():
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")

    with prepared_cursor() as cursor:
        cursor.execute("SELECT %s::int AS gone_probe", [1])
    deallocate_all()
    with prepared_cursor() as cursor:  # in autocommit: prepared again and run
        cursor.execute("SELECT %s::int AS gone_probe", [2])
        assert cursor.fetchone() == (2,)

    with prepared_cursor() as cursor:
        cursor.execute("SELECT %s::int AS other_gone_probe", [1])
    deallocate_all()
    with pytest.raises(OperationalError) as raised, transaction.atomic(), prepared_cursor() as cursor:
        cursor.execute("SELECT %s::int AS gone_probe", [3])  # inside a transaction: it is lost
    assert is_database_unavailable(raised.value), "answered 503 with Retry-After"
    with transaction.atomic(), prepared_cursor() as cursor:
        cursor.execute("SELECT %s::int AS gone_probe", [4])
        assert cursor.fetchone() == (4,)
        cursor.execute("SELECT %s::int AS other_gone_probe", [5])  # known gone with the first: no second 503
        assert cursor.fetchone() == (5,)


@postgresql_only
def test_a_connection_keeps_at_most_so_many_statements_the_oldest_closed(monkeypatch):
    monkeypatch.setattr(prepared, "MAX_PREPARED_STATEMENTS", 2)
    for number in range(3):
        with prepared_cursor() as cursor:
            cursor.execute(f"SELECT %s::int AS capped_probe_{number}", [number])
            assert cursor.fetchone() == (number,)

    assert prepared_runs("capped_probe_0") == []
    assert prepared_runs("capped_probe_1") == [1]
    assert prepared_runs("capped_probe_2") == [1]


@postgresql_only
def test_a_statement_given_the_wrong_number_of_parameters_is_a_programming_error():
    with pytest.raises(ProgrammingError, match="2 placeholders but 1 parameters"), prepared_cursor() as cursor:
        cursor.execute("SELECT %s::int + %s::int AS count_probe", [1])
    with pytest.raises(ProgrammingError, match="1 placeholders but 2 parameters"), prepared_cursor() as cursor:
        cursor.execute("SELECT %s::int AS count_probe", [1, 2])

    with prepared_cursor() as cursor:  # nothing was sent: the connection and its transaction are fine
        cursor.execute("SELECT %s::int + %s::int AS count_probe", [1, 2])
        assert cursor.fetchone() == (3,)
