"""The tenant-scoped DRF building blocks every app's API uses, so tenant scoping is never
re-implemented. The serializer base classes are in anomalyhub.lib.serializers."""

from django.http import Http404
from rest_framework import mixins, permissions, viewsets
from rest_framework.exceptions import PermissionDenied

from ..tenancy import actor_for_request, system_actor

METHOD_ACTIONS = {"GET": "view", "HEAD": "view", "OPTIONS": "view"}


class ActorPermission(permissions.BasePermission):
    """Allows the request only if its actor may do the view's required action."""

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        actor = actor_for_request(request)
        action = view.required_action()
        if action is None:
            return True
        if actor.organization_id is None:
            raise PermissionDenied("You act for no organization: create one (POST /api/v1/organizations/) "
                                   "or pick one with the X-Organization header.")
        if not actor.can(action):
            raise PermissionDenied(f"Your role or API key scope does not allow '{action}' here.")
        return True


class ActorMixin:
    permission_classes = [ActorPermission]
    # Viewset action name -> tenancy action, for actions that need more than the method default.
    action_permissions: dict[str, str] = {}
    write_action = "change"

    @property
    def actor(self):
        return actor_for_request(self.request)

    def required_action(self) -> str | None:
        if getattr(self, "action", None) in self.action_permissions:
            return self.action_permissions[self.action]
        return METHOD_ACTIONS.get(self.request.method, self.write_action)


class TenantViewSet(ActorMixin, viewsets.ModelViewSet):
    """CRUD over a tenant-owned model, scoped to the actor's organization.

    Other tenants' objects are simply not in the queryset, so they answer 404."""

    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return self.queryset.for_actor(self.actor, "view")


class PkLookup:
    """`queryset.for_actor(actor, "view").get(pk=pk)` for a hot detail read, with its SQL compiled
    once per process instead of on every request.

    Django compiles a queryset's SQL each time it runs it; for the series lookup in front of every
    point read (most of the API's traffic) that took more CPU than running the query (about 550 us
    against 280 us). The SQL is compiled from the same for_actor() filter, with marker values in
    place of the organization and the pk, so the tenant scoping stays for_actor's; each lookup runs
    it with the actor's organization and the requested pk.

    Measured by tests/benchmarks/bench_rest.py ("rest GET /series/<id>/points/ with PkLookup"):
    DRF's stock get_object() cost 1.19-1.38x the CPU of a small point read with this lookup when it
    was last judged. Delete this class when that ratio falls under 1.10."""

    _ORG, _PK = -7_000_001, -7_000_002  # markers, never real ids

    def __init__(self, queryset):
        self.queryset = queryset.order_by()
        self._compiled = None

    def _compile(self):
        qs = self.queryset.for_actor(system_actor(self._ORG), "view").filter(pk=self._PK)[:2]
        sql, params = qs.query.sql_with_params()
        if len(params) != 2 or set(params) != {self._ORG, self._PK}:
            raise ValueError(f"PkLookup needs a queryset without parameters of its own: {params}")
        self._compiled = sql, [p == self._ORG for p in params]
        return self._compiled

    def get(self, actor, pk):
        """The object, or None where get() would find none (another tenant's, a malformed pk...)."""
        if not actor.can("view"):
            return None  # for_actor() gives an empty queryset
        try:
            pk = self.queryset.model._meta.pk.get_prep_value(pk)
        except (TypeError, ValueError):
            return None  # what DRF's get_object answers with 404
        sql, is_org = self._compiled or self._compile()
        params = [actor.organization_id if org else pk for org in is_org]
        return next(iter(self.queryset.raw(sql, params)), None)

    def get_or_404(self, view):
        obj = self.get(view.actor, view.kwargs[view.lookup_url_kwarg or view.lookup_field])
        if obj is None:
            raise Http404
        view.check_object_permissions(view.request, obj)
        return obj


class TenantReadOnlyViewSet(ActorMixin, viewsets.ReadOnlyModelViewSet):
    def get_queryset(self):
        return self.queryset.for_actor(self.actor, "view")


class TenantListCreateDestroyViewSet(ActorMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                                     mixins.CreateModelMixin, mixins.DestroyModelMixin,
                                     viewsets.GenericViewSet):
    def get_queryset(self):
        return self.queryset.for_actor(self.actor, "view")
