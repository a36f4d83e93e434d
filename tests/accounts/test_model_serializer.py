"""anomalyhub.lib.serializers' Serializer and ModelSerializer build their fields once per class; every
instance still gets its own field objects, bound to it (so to its context)."""

import pytest
from rest_framework import serializers

from accounts.api.serializers import NewApiKeySerializer, OrganizationSerializer
from detection.api.serializers import AnomalyFilterSerializer, AnomalySerializer
from watchlists.api.serializers import SeriesSerializer, WatchlistSerializer


def test_model_fields_are_built_once_per_class(monkeypatch):
    OrganizationSerializer().fields  # noqa: B018 (built, if no test did before)
    built = []
    original = serializers.ModelSerializer.build_field
    monkeypatch.setattr(serializers.ModelSerializer, "build_field",
                        lambda self, *args: built.append(args[0]) or original(self, *args))
    first, second = OrganizationSerializer(), OrganizationSerializer()
    assert list(first.fields) == list(second.fields) == ["id", "name", "slug", "retention_days", "created_at", "role"]
    assert built == []


def test_each_instance_has_its_own_bound_fields():
    first, second = AnomalySerializer(), AnomalySerializer()
    for name in first.fields:
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first and second.fields[name].parent is second
    # Meta.extra_kwargs still apply, on every instance.
    assert OrganizationSerializer().fields["retention_days"].max_value == 36500


def test_fields_holding_fields_are_copied_whole():
    # A nested serializer and a list field's child are per-instance too, bound to their own parent.
    first, second = SeriesSerializer(), SeriesSerializer()
    assert first.fields["provider"] is not second.fields["provider"]
    assert first.fields["provider"].fields["provider"] is not second.fields["provider"].fields["provider"]
    assert first.fields["provider"].fields["provider"].root is first
    a, b = WatchlistSerializer(), WatchlistSerializer()
    assert a.fields["series"].child is not b.fields["series"].child
    assert a.fields["series"].child.parent is a.fields["series"]


def test_a_mutable_default_is_not_shared():
    from anomalyhub.lib.serializers import Serializer

    class Tags(Serializer):
        tags = serializers.JSONField(default=[])

    first, second = Tags(data={}), Tags(data={})
    assert first.is_valid() and second.is_valid()
    first.validated_data["tags"].append("changed")
    assert second.validated_data["tags"] == [] and Tags().fields["tags"].default == []


def test_a_subclass_builds_its_own_fields():
    assert "key" in NewApiKeySerializer().fields


@pytest.mark.django_db
def test_context_reaches_each_instance(org_a, org_b):
    assert OrganizationSerializer(org_a, context={"roles": {org_a.pk: "owner"}}).data["role"] == "owner"
    assert OrganizationSerializer(org_a, context={"roles": {org_a.pk: "viewer"}}).data["role"] == "viewer"
    assert OrganizationSerializer(org_b, context={"roles": {}}).data["role"] is None


def test_plain_serializers_validate_per_instance():
    good, bad = AnomalyFilterSerializer(data={"series": "3"}), AnomalyFilterSerializer(data={"series": "0"})
    assert good.is_valid() and good.validated_data == {"series": 3}
    assert not bad.is_valid() and list(bad.errors) == ["series"]
    assert good.fields["series"] is not bad.fields["series"] and good.fields["series"].parent is good


@pytest.mark.django_db
def test_the_base_classes_add_nothing_to_the_openapi_schema():
    from drf_spectacular.generators import SchemaGenerator

    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    for name in ("Anomaly", "Series", "Me", "User", "Organization"):
        assert "description" not in components[name], name
