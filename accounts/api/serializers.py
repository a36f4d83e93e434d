from rest_framework import serializers

from anomalyhub.lib.serializers import ModelSerializer, Serializer

from ..models import ApiKey, ApiKeyScope, AuditEvent, Invitation, Membership, Organization, Role, User


class UserSerializer(ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "name", "time_zone", "date_joined"]
        read_only_fields = ["id", "email", "date_joined"]


class SignupSerializer(Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, write_only=True)


class SignupResultSerializer(Serializer):
    email = serializers.EmailField()
    verification = serializers.CharField(help_text='"sent": follow the link emailed to you, then sign in.')


class LoginSerializer(Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, write_only=True)


class KeySerializer(Serializer):
    key = serializers.CharField(max_length=512)


class EmailSerializer(Serializer):
    email = serializers.EmailField(max_length=254)


class OrganizationSerializer(ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Organization
        fields = ["id", "name", "slug", "retention_days", "created_at", "role"]
        read_only_fields = ["id", "slug", "created_at", "role"]
        extra_kwargs = {"retention_days": {"min_value": 1, "max_value": 36500}}

    def get_role(self, org) -> str | None:
        roles = self.context.get("roles") or {}
        if org.pk not in roles and "request" in self.context:  # e.g. just created
            user = self.context["request"].user
            if getattr(user, "pk", None):
                roles[org.pk] = Membership.objects.filter(user=user, organization=org).values_list(
                    "role", flat=True).first()
        return roles.get(org.pk)


class MembershipSerializer(ModelSerializer):
    user = UserSerializer(read_only=True)
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "created_at"]
        read_only_fields = ["id", "user", "created_at"]


class InvitationSerializer(ModelSerializer):
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "created_at", "expires_at", "accepted_at"]
        read_only_fields = ["id", "created_at", "expires_at", "accepted_at"]


class AcceptInvitationSerializer(Serializer):
    token = serializers.CharField(max_length=256)


class ApiKeySerializer(ModelSerializer):
    scope = serializers.ChoiceField(choices=ApiKeyScope.choices, default=ApiKeyScope.READ)
    name = serializers.CharField(max_length=100)

    class Meta:
        model = ApiKey
        fields = ["id", "name", "scope", "prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at"]


class NewApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ["key"]


class MeSerializer(Serializer):
    user = UserSerializer(allow_null=True)
    organization = OrganizationSerializer(allow_null=True)
    role = serializers.CharField(allow_null=True)
    scope = serializers.CharField(allow_null=True)
    actions = serializers.ListField(child=serializers.CharField())


class TicketSerializer(Serializer):
    ticket = serializers.CharField()
    expires_in = serializers.IntegerField()


class AuditEventSerializer(ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "action", "actor_label", "target_type", "target_id", "target_label", "ip",
                  "details"]
        read_only_fields = fields


class DeleteAccountSerializer(Serializer):
    password = serializers.CharField(max_length=128, write_only=True,
                                     help_text="Your current password, to confirm it is you.")
