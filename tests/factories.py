"""factory_boy factories. Domain issues add theirs and register them in TENANT_FACTORIES."""

from datetime import timedelta

import factory
from allauth.account.models import EmailAddress
from django.utils import timezone

from accounts.models import ApiKey, Invitation, Membership, Organization, Role, User, hash_secret
from detection.models import Anomaly, Detector, HistoryRun, ModelVersion, Rule, TrainingRun
from watchlists.models import Series, Watchlist, WatchlistItem


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def verified(obj, create, extracted, **kwargs):
        if create:
            obj.save()
            EmailAddress.objects.create(user=obj, email=obj.email, verified=extracted is not False, primary=True)


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    role = Role.MEMBER


class InvitationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Invitation

    organization = factory.SubFactory(OrganizationFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.com")
    token_hash = factory.Sequence(lambda n: hash_secret(f"token-{n}"))
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=7))


class ApiKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApiKey

    organization = factory.SubFactory(OrganizationFactory)
    name = "factory key"
    prefix = factory.Sequence(lambda n: f"ahk_f{n:07d}")
    key_hash = factory.Sequence(lambda n: hash_secret(f"key-{n}"))


class SeriesFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Series

    organization = factory.SubFactory(OrganizationFactory)
    symbol = factory.Sequence(lambda n: f"SYM{n}")
    kind = "bar"
    exchange = "XNYS"
    bar_seconds = 60


class WatchlistFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Watchlist

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Watchlist {n}")


def watchlist_with_series(org):
    wl = WatchlistFactory(organization=org)
    WatchlistItem.objects.create(organization=org, watchlist=wl, series=SeriesFactory(organization=org))
    return wl


class RuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Rule

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Rule {n}")
    metrics = "close > 100"
    series = factory.LazyAttribute(lambda o: SeriesFactory(organization=o.organization))


class AnomalyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Anomaly

    organization = factory.SubFactory(OrganizationFactory)
    series = factory.LazyAttribute(lambda o: SeriesFactory(organization=o.organization))
    ts = factory.LazyFunction(timezone.now)
    source = "rule:0"
    text = "close > 100"


class DetectorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Detector

    organization = factory.SubFactory(OrganizationFactory)
    series = factory.LazyAttribute(lambda o: SeriesFactory(organization=o.organization))
    kind = "robust_zscore"


def metric_series_with_key(scope: str = "read") -> tuple[str, Series]:
    """A new organization with an owner, one metric series and a raw API key of `scope`."""
    from accounts.services import create_api_key
    from accounts.tenancy import actor_for_user

    org = OrganizationFactory()
    owner = UserFactory()
    MembershipFactory(user=owner, organization=org, role="owner")
    series = SeriesFactory(organization=org, kind="metric", exchange="", bar_seconds=None)
    _, key = create_api_key(actor=actor_for_user(owner, org.pk), name="ws", scope=scope)
    return key, series


def model_version_for(org):
    detector = DetectorFactory(organization=org)
    return ModelVersion.objects.create(organization=org, detector=detector, version=1, train_start=timezone.now(),
                                       train_end=timezone.now(), train_points=1, artifact=b"x")


# model -> factory(organization=...) used by the cross-tenant walker to build org A's objects.
TENANT_FACTORIES = {
    Membership: lambda org: MembershipFactory(organization=org, role=Role.VIEWER),
    Invitation: lambda org: InvitationFactory(organization=org),
    ApiKey: lambda org: ApiKeyFactory(organization=org),
    Organization: lambda org: org,
    Series: lambda org: SeriesFactory(organization=org),
    Watchlist: watchlist_with_series,
    Rule: lambda org: RuleFactory(organization=org),
    Anomaly: lambda org: AnomalyFactory(organization=org),
    Detector: lambda org: DetectorFactory(organization=org),
    ModelVersion: model_version_for,
    TrainingRun: lambda org: TrainingRun.objects.create(organization=org, detector=DetectorFactory(organization=org)),
    HistoryRun: lambda org: HistoryRun.objects.create(organization=org, rule=RuleFactory(organization=org),
                                                      series=SeriesFactory(organization=org), start_us=0, end_us=1),
}


def load_app_factories() -> None:
    """Imports the tests/<app>/**/factories.py modules; each adds its models to TENANT_FACTORIES."""
    import importlib
    from pathlib import Path

    here = Path(__file__).parent
    for path in sorted(here.glob("*/**/factories.py")):
        importlib.import_module(".".join(["tests", *path.relative_to(here).with_suffix("").parts]))
