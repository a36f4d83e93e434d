"""Accounts REST API: auth flows (through allauth), me, organizations, members, invitations, keys."""

from allauth.account.forms import ResetPasswordForm, SignupForm
from allauth.account.models import EmailAddress, EmailConfirmation, EmailConfirmationHMAC
from allauth.account.utils import complete_signup
from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from anomalyhub.lib.errors import PermissionDeniedError

from .. import bruteforce, lifecycle, services
from ..authentication import throttled
from ..models import ApiKey, AuditEvent, Invitation, Membership, Organization
from ..socket_access import session_digest
from ..tenancy import (
    SESSION_ORG_KEY,
    TICKET_MAX_AGE,
    actor_for_org,
    actor_for_request,
    issue_ticket,
    organizations_for,
)
from . import serializers as s
from .base import ActorMixin, TenantListCreateDestroyViewSet, TenantReadOnlyViewSet


class AuthView(APIView):
    """Public auth endpoints: no auth required, throttled per client."""

    authentication_classes = [SessionAuthentication]  # a bearer key cannot sign anyone up or in
    permission_classes = [permissions.AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    def validated(self, serializer_class):
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class SignupView(AuthView):
    @extend_schema(request=s.SignupSerializer, responses={201: s.SignupResultSerializer})
    def post(self, request):
        data = self.validated(s.SignupSerializer)
        form = SignupForm(data={"email": data["email"], "password1": data["password"],
                                "password2": data["password"]})
        if not form.is_valid():
            raise ValidationError({("password" if k.startswith("password") else k): v
                                   for k, v in form.errors.items()})
        user, _ = form.try_save(request._request)
        if user is not None:
            complete_signup(request._request, user=user, email_verification=settings.ACCOUNT_EMAIL_VERIFICATION,
                            success_url="/")
        # The same answer whether or not the address already had an account (no enumeration).
        return Response({"email": data["email"], "verification": "sent"}, status=status.HTTP_201_CREATED)


class VerifyEmailView(AuthView):
    @extend_schema(request=s.KeySerializer, responses={200: s.UserSerializer})
    def post(self, request):
        key = self.validated(s.KeySerializer)["key"]
        confirmation = EmailConfirmationHMAC.from_key(key) or EmailConfirmation.from_key(key)
        address = confirmation.confirm(request._request) if confirmation else None
        if not address:
            raise ValidationError({"key": ["Invalid or expired verification key; request a new email."]})
        return Response(s.UserSerializer(address.user).data)


class LoginView(AuthView):
    @extend_schema(request=s.LoginSerializer, responses={200: s.UserSerializer})
    def post(self, request):
        data = self.validated(s.LoginSerializer)
        email = data["email"].lower()
        try:
            bruteforce.check("login", email)
        except bruteforce.TooManyAttempts as exc:
            raise throttled(exc.message, exc.wait)
        user = authenticate(request._request, email=email, password=data["password"])
        if user is None:
            bruteforce.failed("login", email)
            raise ValidationError({"non_field_errors": ["Email or password is incorrect."]})
        bruteforce.succeeded("login", email)
        if (settings.ACCOUNT_EMAIL_VERIFICATION == "mandatory"
                and not EmailAddress.objects.filter(user=user, verified=True).exists()):
            raise PermissionDeniedError("Verify your email address first; the link was emailed to you.",
                                        code="email_not_verified")
        login(request._request, user, backend="django.contrib.auth.backends.ModelBackend")
        return Response(s.UserSerializer(user).data)


class LogoutView(AuthView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        logout(request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordResetView(AuthView):
    @extend_schema(request=s.EmailSerializer, responses={202: None})
    def post(self, request):
        email = self.validated(s.EmailSerializer)["email"]
        form = ResetPasswordForm(data={"email": email})
        if form.is_valid():
            form.save(request._request)
        # Always 202: whether an account exists is not disclosed.
        return Response({"detail": "If an account exists, a reset link was emailed."},
                        status=status.HTTP_202_ACCEPTED)


class MeView(ActorMixin, APIView):
    def required_action(self):
        return None  # anyone signed in may ask who they are

    @extend_schema(responses=s.MeSerializer)
    def get(self, request):
        actor = actor_for_request(request)
        org = Organization.objects.filter(pk=actor.organization_id).first()
        user = actor.user if getattr(actor.user, "pk", None) else None
        return Response(s.MeSerializer({
            "user": user, "organization": org, "role": actor.role, "scope": actor.scope,
            "actions": sorted(actor.actions),
        }, context={"roles": {org.pk: actor.role} if org else {}}).data)

    @extend_schema(request=s.DeleteAccountSerializer, responses={204: None})
    def delete(self, request):
        """Deletes your account (docs/data-lifecycle.md). Signed-in users only, with their password."""
        if actor_for_request(request).api_key is not None:
            raise PermissionDeniedError("An API key cannot delete a person's account; sign in as them.")
        data = s.DeleteAccountSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if not request.user.check_password(data.validated_data["password"]):
            raise ValidationError({"password": ["Incorrect password."]})
        lifecycle.delete_user(user=request.user)
        # Not logout(): its signal would audit a "logout" by the user who no longer exists.
        request._request.session.flush()
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrganizationViewSet(ActorMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                          mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin,
                          viewsets.GenericViewSet):
    """Organizations are addressed by id; rights come from the caller's role in *that* org."""

    serializer_class = s.OrganizationSerializer
    queryset = Organization.objects.all()
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def required_action(self):
        return None  # checked per organization below

    def get_queryset(self):
        return organizations_for(self.actor).order_by("pk")

    def get_serializer_context(self):
        ctx = super().get_serializer_context()
        user = self.actor.user
        if self.actor.api_key is not None:
            ctx["roles"] = {}
        elif getattr(user, "pk", None):
            ctx["roles"] = dict(Membership.objects.filter(user=user).values_list("organization_id", "role"))
        return ctx

    def perform_create(self, serializer):
        if self.actor.api_key is not None:
            raise PermissionDeniedError("API keys cannot create organizations; sign in as a user.")
        serializer.instance = services.create_organization(user=self.request.user,
                                                           name=serializer.validated_data["name"])

    def perform_update(self, serializer):
        actor = actor_for_org(self.request, serializer.instance.pk)
        serializer.instance = services.update_organization(actor=actor, organization=serializer.instance,
                                                           **serializer.validated_data)

    def perform_destroy(self, instance):
        services.delete_organization(actor=actor_for_org(self.request, instance.pk), organization=instance)

    @extend_schema(request=None, responses=s.OrganizationSerializer)
    @action(detail=True, methods=["post"])
    def switch(self, request, pk=None):
        """Makes this organization the one the session acts for."""
        org = self.get_object()
        request._request.session[SESSION_ORG_KEY] = org.pk
        return Response(self.get_serializer(org).data)


class MembershipViewSet(ActorMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                        mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Members of the organization the caller acts for. DELETE on your own membership = leave."""

    serializer_class = s.MembershipSerializer
    queryset = Membership.objects.select_related("user").order_by("pk")
    http_method_names = ["get", "patch", "delete", "head", "options"]
    write_action = "view"  # services decide: leaving needs no rights, the rest needs "manage"

    def get_queryset(self):
        return self.queryset.for_actor(self.actor, "view")

    def perform_update(self, serializer):
        if "role" not in serializer.validated_data:
            raise ValidationError({"role": ["This field is required."]})
        serializer.instance = services.change_role(actor=self.actor, membership_id=serializer.instance.pk,
                                                   role=serializer.validated_data["role"])

    def perform_destroy(self, instance):
        services.remove_member(actor=self.actor, membership_id=instance.pk)


class InvitationViewSet(TenantListCreateDestroyViewSet):
    serializer_class = s.InvitationSerializer
    queryset = Invitation.objects.order_by("-pk")
    action_permissions = {"list": "manage", "retrieve": "manage", "create": "manage", "destroy": "manage"}

    def perform_create(self, serializer):
        serializer.instance, _ = services.invite_member(actor=self.actor, **serializer.validated_data)

    def perform_destroy(self, instance):
        services.delete_invitation(actor=self.actor, invitation_id=instance.pk)

    @extend_schema(request=s.AcceptInvitationSerializer, responses={201: s.MembershipSerializer})
    @action(detail=False, methods=["post"], url_path="accept")
    def accept(self, request):
        data = s.AcceptInvitationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if self.actor.api_key is not None:
            raise PermissionDeniedError("Invitations are accepted by a signed-in user, not an API key.")
        membership = services.accept_invitation(user=request.user, token=data.validated_data["token"])
        return Response(s.MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    def required_action(self):
        return None if self.action == "accept" else super().required_action()


class ApiKeyViewSet(TenantListCreateDestroyViewSet):
    """API keys of the organization. Create returns the key once; DELETE revokes it."""

    serializer_class = s.ApiKeySerializer
    queryset = ApiKey.objects.order_by("-pk")
    action_permissions = {"list": "manage", "retrieve": "manage", "create": "manage", "destroy": "manage"}

    @extend_schema(responses={201: s.NewApiKeySerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, raw = services.create_api_key(actor=self.actor, **serializer.validated_data)
        key.key = raw
        return Response(s.NewApiKeySerializer(key).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.revoke_api_key(actor=self.actor, key_id=instance.pk)


class AuditEventViewSet(TenantReadOnlyViewSet):
    """Security-relevant events of the organization, newest first; admins and owners only.
    `?action=login_failed` filters by action."""

    serializer_class = s.AuditEventSerializer
    queryset = AuditEvent.objects.order_by("-created_at", "-pk")
    action_permissions = {"list": "manage", "retrieve": "manage"}

    def get_queryset(self):
        qs = super().get_queryset()
        wanted = self.request.query_params.get("action")
        return qs.filter(action=wanted) if wanted else qs


class LiveTicketView(ActorMixin, APIView):
    """A 60-second ticket for `wss://…/ws/v1/live/?ticket=…` (for clients that cannot send headers)."""

    def required_action(self):
        return "view"

    @extend_schema(request=None, responses={201: s.TicketSerializer})
    def post(self, request):
        session = request._request.session.session_key if self.actor.api_key is None else None
        return Response({"ticket": issue_ticket(self.actor, session_digest(session) if session else None),
                         "expires_in": TICKET_MAX_AGE},
                        status=status.HTTP_201_CREATED)
