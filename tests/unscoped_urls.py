"""A deliberately broken urlconf: one viewset that forgets tenant scoping, for the walker test."""

from django.urls import include, path
from rest_framework import serializers, viewsets
from rest_framework.routers import SimpleRouter

from accounts.models import ApiKey


class LeakySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name"]


class LeakyViewSet(viewsets.ModelViewSet):
    queryset = ApiKey.objects.all()  # the bug under test: no .for_actor(...)
    serializer_class = LeakySerializer


router = SimpleRouter()
router.register("leaky", LeakyViewSet, basename="leaky")
urlpatterns = [path("api/v1/", include(router.urls))]
