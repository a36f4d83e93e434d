from django.urls import path

from . import views

app_name = "frontend"
urlpatterns = [
    path("", views.home, name="home"),
    path("orgs/new/", views.org_new, name="org-new"),
    path("series/<int:series_id>/", views.series_detail, name="series"),
    path("orgs/<int:org_id>/switch/", views.org_switch, name="org-switch"),
    path("settings/api-keys/", views.api_keys, name="api-keys"),
    path("invitations/accept/", views.accept_invitation, name="accept-invitation"),
]
