"""Health, schema, pages, settings: the project's wiring."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def test_healthz_and_readyz_check_database_and_redis(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    body = client.get("/readyz").json()
    assert body["status"] == "ok" and body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "ok"  # the suite runs with REDIS_URL set


def test_readyz_reports_unreachable_redis(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["redis"].startswith("error")


def test_openapi_schema_and_docs(alice_client):
    schema = alice_client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/v1/me/" in schema["paths"] and "/api/v1/api-keys/" in schema["paths"]
    assert alice_client.get("/api/v1/docs/").status_code == 200


def test_signed_in_home_page(alice_client, client):
    response = alice_client.get("/")
    assert response.status_code == 200 and b"Org A" in response.content
    assert client.get("/").status_code == 302  # anonymous -> login


def test_api_key_page_shows_a_new_key_once(alice_client):
    response = alice_client.post("/settings/api-keys/", {"name": "ui key", "scope": "read"})
    assert b"ahk_" in response.content and b"will not be shown again" in response.content
    assert b"will not be shown again" not in alice_client.get("/settings/api-keys/").content


def test_user_without_org_is_sent_to_create_one(db, client):
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    assert client.get("/").headers["Location"] == "/orgs/new/"
    response = client.post("/orgs/new/", {"name": "Fresh Co"})
    assert response.status_code == 302
    assert b"Fresh Co" in client.get("/").content


def test_test_settings_use_postgres_and_redis():
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    # channels-redis' stock pub/sub layer; its prefix names the db, which pub/sub itself ignores.
    layer = settings.CHANNEL_LAYERS["default"]
    assert layer["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert layer["CONFIG"]["hosts"][0]["socket_timeout"] is None
    assert layer["CONFIG"]["prefix"] == f"asgi.db{layer['CONFIG']['hosts'][0]['address'].rsplit('/', 1)[1]}."


def _manage(*args, env):
    return subprocess.run([sys.executable, "manage.py", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=settings.BASE_DIR, timeout=120)


def test_production_settings_pass_check_deploy():
    env = {"DJANGO_ENV": "production", "SECRET_KEY": "x" * 64 + "-production-grade-secret-key-value",
           "ALLOWED_HOSTS": "anomalyhub.example.com", "DEBUG": "false"}
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_secret_key():
    result = _manage("check", env={"DJANGO_ENV": "production", "SECRET_KEY": ""})
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_invalid_boolean_setting_stops_start_up():
    result = _manage("check", env={"DEBUG": "maybe"})
    assert result.returncode != 0 and "DEBUG='maybe' is not a boolean" in result.stderr


def test_celery_routes_tasks_to_their_queues():
    from anomalyhub.celery import app

    router = app.amqp.router
    assert router.route({}, "detection.train_model")["queue"].name == "train"
    assert router.route({}, "detection.run")["queue"].name == "detect"
    assert router.route({}, "alerts.deliver")["queue"].name == "alerts"
    assert router.route({}, "watchlists.import")["queue"].name == "ingest"
