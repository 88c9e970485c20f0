"""Migration operations that work on PostgreSQL and on the SQLite development fallback."""

from django.db import migrations, models


class PortableNullsLastIndex(migrations.AddIndex):
    """PostgreSQL gets the index exactly as declared. SQLite (development only) cannot say NULLS LAST
    in an index, and needs not: it sorts NULLs first ascending, so last descending."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "sqlite":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        index = models.Index(models.F("last_message_at").desc(), models.F("id").desc(), name=self.index.name)
        schema_editor.add_index(model, index)


def activity_index() -> models.Index:
    """The inbox index exactly as the model declares it."""
    return models.Index(
        models.OrderBy(models.F("last_message_at"), descending=True, nulls_last=True),
        models.OrderBy(models.F("id"), descending=True),
        name="conversation_activity_idx",
    )
