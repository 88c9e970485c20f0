import factory

from apikeys.keys import key_digest, key_generate, key_shown_part
from apikeys.models import ApiKey


class ApiKeyFactory(factory.django.DjangoModelFactory):
    """An API key row; the key itself is the ``key`` parameter (never stored), e.g. ``ApiKeyFactory(key=...)``."""

    class Meta:
        model = ApiKey

    class Params:
        key = factory.LazyFunction(key_generate)

    name = factory.Sequence(lambda n: f"client-{n}")
    prefix = factory.LazyAttribute(lambda o: key_shown_part(key=o.key))
    key_hash = factory.LazyAttribute(lambda o: key_digest(key=o.key))
