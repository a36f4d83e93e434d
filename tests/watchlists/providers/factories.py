"""Provider factories, registered for the cross-tenant walker."""

from datetime import date

import factory

from tests.factories import TENANT_FACTORIES, OrganizationFactory, SeriesFactory
from watchlists.providers import crypto
from watchlists.providers.models import Backfill, ProviderCredential, SeriesProvider


class CredentialFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProviderCredential

    organization = factory.SubFactory(OrganizationFactory)
    provider = "polygon"
    secret_encrypted = factory.LazyFunction(lambda: crypto.encrypt("factory-secret"))


class SeriesProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SeriesProvider

    organization = factory.SubFactory(OrganizationFactory)
    series = factory.LazyAttribute(lambda o: SeriesFactory(organization=o.organization))
    provider = "polygon"


class BackfillFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Backfill

    organization = factory.SubFactory(OrganizationFactory)
    series = factory.LazyAttribute(lambda o: SeriesFactory(organization=o.organization))
    provider = "polygon"
    start = date(2024, 3, 1)
    end = date(2024, 3, 31)


TENANT_FACTORIES.update({
    # One key per (organization, provider): the walker asks once per route, so reuse it.
    ProviderCredential: lambda org: (ProviderCredential.objects.filter(organization=org, provider="polygon").first()
                                     or CredentialFactory(organization=org)),
    SeriesProvider: lambda org: SeriesProviderFactory(organization=org),
    Backfill: lambda org: BackfillFactory(organization=org),
})
