from django.urls import path

from . import alert_views, detector_views, rule_views, views, watchlist_views

app_name = "frontend"
urlpatterns = [
    path("", views.home, name="home"),
    path("orgs/new/", views.org_new, name="org-new"),
    path("series/<int:series_id>/", views.series_detail, name="series"),
    path("series/<int:series_id>/replay/", views.series_replay, name="series-replay"),
    path("anomalies/<int:anomaly_id>/", views.anomaly_detail, name="anomaly"),
    path("anomalies/<int:anomaly_id>/feedback/", views.anomaly_feedback, name="anomaly-feedback"),
    path("watchlists/new/", watchlist_views.watchlist_new, name="watchlist-new"),
    path("watchlists/<int:watchlist_id>/", watchlist_views.watchlist_detail, name="watchlist"),
    path("watchlists/<int:watchlist_id>/edit/", watchlist_views.watchlist_edit, name="watchlist-edit"),
    path("watchlists/<int:watchlist_id>/delete/", watchlist_views.watchlist_delete, name="watchlist-delete"),
    path("rules/", rule_views.rule_list, name="rules"),
    path("rules/new/", rule_views.rule_edit, name="rule-new"),
    path("rules/validate/", rule_views.rule_validate, name="rule-validate"),
    path("rules/preview/", rule_views.rule_preview, name="rule-preview"),
    path("rules/<int:rule_id>/", rule_views.rule_edit, name="rule-edit"),
    path("rules/<int:rule_id>/toggle/", rule_views.rule_toggle, name="rule-toggle"),
    path("detectors/", detector_views.detector_list, name="detectors"),
    path("detectors/<int:detector_id>/", detector_views.detector_detail, name="detector"),
    path("detectors/<int:detector_id>/train/", detector_views.detector_train, name="detector-train"),
    path("detectors/<int:detector_id>/versions/<int:version_id>/activate/", detector_views.version_activate,
         name="version-activate"),
    path("detectors/<int:detector_id>/runs/<int:run_id>/", detector_views.run_progress, name="run-progress"),
    path("alerts/", alert_views.subscription_list, name="subscriptions"),
    path("alerts/new/", alert_views.subscription_edit, name="subscription-new"),
    path("alerts/<int:subscription_id>/", alert_views.subscription_edit, name="subscription-edit"),
    path("alerts/<int:subscription_id>/delete/", alert_views.subscription_delete, name="subscription-delete"),
    path("alerts/webhooks/", alert_views.webhook_list, name="webhooks"),
    path("alerts/webhooks/<int:endpoint_id>/<str:action>/", alert_views.webhook_action, name="webhook-action"),
    path("alerts/deliveries/", alert_views.delivery_log, name="deliveries"),
    path("orgs/<int:org_id>/switch/", views.org_switch, name="org-switch"),
    path("settings/api-keys/", views.api_keys, name="api-keys"),
    path("invitations/accept/", views.accept_invitation, name="accept-invitation"),
]
