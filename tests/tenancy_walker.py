"""Walks every registered REST route as a member of another organization.

Routes are discovered from the URL resolver, not listed, so a new route is covered the moment it
exists: if its model has no factory in TENANT_FACTORIES, or it is not a viewset over a tenant
queryset and not exempted below with a reason, the walk reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.forms.models import model_to_dict
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from .factories import TENANT_FACTORIES, load_app_factories

API_PREFIX = "api/v1/"

# Routes that hold no tenant data, each with the reason. Kept honest by test_exempt_routes_exist.
EXEMPT = {
    "schema": "OpenAPI document, no data",
    "swagger-ui": "Swagger UI page, no data",
    "auth-signup": "public auth flow",
    "auth-verify-email": "public auth flow",
    "auth-login": "public auth flow",
    "auth-logout": "ends the caller's own session",
    "auth-password-reset": "public auth flow; answers the same for every address",
    "me": "describes the caller only",
    "live-ticket": "a ticket for the caller's own organization; covered by the WebSocket isolation tests",
    "invitation-accept": "takes a secret token; covered by test_invitation_token_of_other_org",
    "ingest": "resolves symbols inside the caller's org; covered by test_ingest_cannot_reach_other_orgs_symbols",
    "export": "exports the caller's own organization only; covered by "
              "tests/reliability/test_lifecycle_export.py::test_export_never_contains_another_organizations_data",
}


@dataclass
class Route:
    name: str
    regex: str
    kwargs: list[str]
    callback: object


def api_routes(urlconf=None) -> list[Route]:
    load_app_factories()
    routes: list[Route] = []

    def walk(patterns, prefix, namespace):
        for p in patterns:
            regex = prefix + str(p.pattern.regex.pattern).lstrip("^").rstrip("$").replace("\\Z", "")
            if isinstance(p, URLResolver):
                ns = ":".join(x for x in (namespace, p.namespace) if x)
                walk(p.url_patterns, regex, ns)
            elif isinstance(p, URLPattern) and regex.startswith(API_PREFIX):
                name = ":".join(x for x in (namespace, p.name) if x) if p.name else ""
                groups = list(p.pattern.regex.groupindex)
                routes.append(Route(name, regex, groups, p.callback))

    walk(get_resolver(urlconf).url_patterns, "", "")
    # DRF registers a format-suffix twin for each route; one of them is enough.
    return [r for r in routes if "format" not in r.kwargs]


def _model_of(route: Route):
    cls = getattr(route.callback, "cls", None)
    queryset = getattr(cls, "queryset", None)
    return getattr(queryset, "model", None)


def _methods(route: Route, actions: dict) -> list[str]:
    allowed = getattr(route.callback.cls, "http_method_names", [])
    return [m for m in list(actions) if m not in ("head", "options") and m in allowed]


def _snapshot(obj):
    obj.refresh_from_db()
    return model_to_dict(obj)


def walk_as_other_tenant(client, org_a, urlconf=None) -> list[str]:
    """Calls every route as `client` (a member of another org) against org A's objects.

    Returns the problems found: empty means every route is scoped."""
    problems: list[str] = []
    for route in api_routes(urlconf):
        short = route.name.split(":")[-1]
        if short in EXEMPT:
            continue
        if not route.name:
            problems.append(f"{route.regex}: unnamed route; name it so it can be walked")
            continue
        model = _model_of(route)
        actions = getattr(route.callback, "actions", None)
        if model is None or actions is None:
            problems.append(f"{route.name}: not a viewset over a model; exempt it with a reason or scope it")
            continue
        factory = TENANT_FACTORIES.get(model)
        if factory is None:
            problems.append(f"{route.name}: no factory for {model.__name__} in tests/factories.TENANT_FACTORIES")
            continue
        victim = factory(org_a)
        before = _snapshot(victim)
        count_before = model._default_manager.filter(pk=victim.pk).count()
        if route.kwargs:
            url = reverse(route.name, urlconf=urlconf, kwargs={k: victim.pk for k in route.kwargs})
            for method in _methods(route, actions):
                response = getattr(client, method)(url, data={}, format="json")
                if response.status_code != 404:
                    problems.append(f"{method.upper()} {url} ({route.name}) answered {response.status_code}, not 404")
        else:
            url = reverse(route.name, urlconf=urlconf)
            for method in _methods(route, actions):
                response = getattr(client, method)(url, data={}, format="json")
                if method == "get":
                    body = response.json() if response.status_code == 200 else {}
                    items = body.get("results", body) if isinstance(body, dict) else body
                    ids = {item.get("id") for item in items if isinstance(item, dict)}
                    if victim.pk in ids:
                        problems.append(f"GET {url} ({route.name}) lists another organization's object")
                elif response.status_code >= 500:
                    problems.append(f"{method.upper()} {url} ({route.name}) answered {response.status_code}")
        if model._default_manager.filter(pk=victim.pk).count() != count_before or _snapshot(victim) != before:
            problems.append(f"{route.name}: another organization's {model.__name__} {victim.pk} was changed")
    return problems
