from rest_framework import serializers

from accounts.api.fields import TenantPrimaryKeyRelatedField

from ...models import Series
from ..models import Backfill, ProviderCredential, ProviderName, SeriesProvider


class CredentialSerializer(serializers.ModelSerializer):
    # The full choice set (one ProviderEnum in the schema); the service refuses keys for "replay".
    provider = serializers.ChoiceField(choices=ProviderName.choices)
    # Write-only: once set, a key is never sent back, not even masked.
    secret = serializers.CharField(write_only=True, max_length=500, trim_whitespace=True,
                                   style={"input_type": "password"}, help_text="The provider's API key.")
    configured = serializers.SerializerMethodField()

    class Meta:
        model = ProviderCredential
        fields = ["id", "provider", "secret", "configured", "created_at", "updated_at", "last_tested_at",
                  "last_test_ok", "last_error"]
        read_only_fields = ["id", "configured", "created_at", "updated_at", "last_tested_at", "last_test_ok",
                            "last_error"]

    def get_configured(self, obj) -> bool:
        return bool(obj.secret_encrypted)


class CredentialUpdateSerializer(CredentialSerializer):
    provider = serializers.CharField(read_only=True)


class BackfillSerializer(serializers.ModelSerializer):
    class Meta:
        model = Backfill
        fields = ["id", "series", "provider", "start", "end", "done_until", "status", "rows_stored", "error",
                  "created_at", "updated_at"]
        read_only_fields = fields


class SeriesProviderSerializer(serializers.ModelSerializer):
    series = TenantPrimaryKeyRelatedField(queryset=Series.objects.all())
    provider = serializers.ChoiceField(choices=ProviderName.choices)
    symbol = serializers.CharField(read_only=True, help_text="The symbol asked of the provider.")

    class Meta:
        model = SeriesProvider
        fields = ["id", "series", "provider", "provider_symbol", "symbol", "enabled", "last_session",
                  "last_import_at", "last_error", "last_error_at", "created_at"]
        read_only_fields = ["id", "symbol", "last_session", "last_import_at", "last_error", "last_error_at",
                            "created_at"]


class SeriesProviderUpdateSerializer(SeriesProviderSerializer):
    series = serializers.PrimaryKeyRelatedField(read_only=True)


class BackfillRequestSerializer(serializers.Serializer):
    start = serializers.DateField(help_text="First exchange-local day.")
    end = serializers.DateField(help_text="Last exchange-local day (inclusive).")


class TestResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    tested_at = serializers.DateTimeField()
