"""Factories of the reliability suite's models, registered for the cross-tenant walkers
(tests.factories.load_app_factories imports every tests/<dir>/factories.py)."""

from accounts.models import AuditEvent
from tests.factories import TENANT_FACTORIES


def audit_event_for(org):
    return AuditEvent.objects.create(organization=org, action="api_key.created", actor_label="walker@example.com",
                                     target_type="apikey", target_id="1", target_label="walker key")


TENANT_FACTORIES[AuditEvent] = audit_event_for
