"""docker/ cannot be built on the development machines (no Docker engine), so its files are checked
here instead: every command, module, management command, queue, file and environment variable they
name must exist in the project."""

import importlib
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands
from django.urls import resolve

REPO = Path(settings.BASE_DIR)
DOCKER = REPO / "docker"
APP_DIRS = ("anomalyhub", "accounts", "watchlists", "detection", "alerts", "frontend")
# Read by Python, Django, the Celery CLI, pip or the shell rather than by AnomalyHub's code.
EXTERNAL_VARS = {"DJANGO_SETTINGS_MODULE", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PATH", "HOSTNAME",
                 "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_EXTRA_INDEX_URL", "PYTHON_VERSION"}
ENV_READ = re.compile(r"""(?:env_(?:str|bool|int|list|secret|datetime)\(|os\.environ\.get\(|os\.environ\[|os\.getenv\()\s*["'](\w+)["']""")
INTERPOLATION = re.compile(r"(?<!\$)\$\{(\w+)(?::?[-?+][^}]*)?\}")


def _env_file_keys(path: Path) -> list[str]:
    return [line.split("=", 1)[0].strip() for line in path.read_text().splitlines()
            if "=" in line and not line.lstrip().startswith("#")]


def _project_vars() -> set[str]:
    """Every environment variable the project's code reads (env_secret's NAME_FILE too), and those the
    Procfile's commands take (`${REALTIME_CONCURRENCY:-2}`)."""
    found = set(INTERPOLATION.findall((REPO / "Procfile").read_text()))
    for app in APP_DIRS:
        for source in (REPO / app).rglob("*.py"):
            text = source.read_text()
            found |= set(ENV_READ.findall(text))
            found |= {f"{name}_FILE" for name in re.findall(r"""env_secret\(\s*["'](\w+)["']""", text)}
    return found


KNOWN_VARS = _project_vars() | set(_env_file_keys(REPO / ".env.example"))


def _procfile() -> dict[str, list[str]]:
    """The Procfile's processes: `web: exec gunicorn ...` -> {"web": ["gunicorn", ...]}."""
    lines = (REPO / "Procfile").read_text().splitlines()
    processes = {}
    for name, command in (line.split(":", 1) for line in lines if line.strip() and not line.startswith("#")):
        processes[name.strip()] = shlex.split(command.strip().removeprefix("exec "))
    return processes


def _roles() -> dict[str, list[str]]:
    """The entrypoint's roles, each as the command it ends up running: `migrate) shift; exec python ...`
    -> {"migrate": ["python", ...]}; a Procfile process honcho starts (`web|beat) exec honcho ... "$1"`)
    -> that process's command from the Procfile."""
    text = (DOCKER / "entrypoint.sh").read_text()
    roles = {}
    for names, command in re.findall(r"^\s*([\w|]+)\)\s+(?:shift;\s+)?exec (.+?)\s*;;", text, re.M):
        argv = [arg for arg in shlex.split(command) if arg not in ("$@", "$1")]
        for role in names.split("|"):
            roles[role] = _procfile()[role] if command.endswith('"$1"') else argv
    return roles


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = {name: svc for name, svc in SERVICES.items() if svc.get("image", "").startswith("anomalyhub")}


def _expand(command: list[str]) -> list[str]:
    role, *rest = command
    return [*_roles().get(role, [role]), *rest]


def _option(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg in names:
            return argv[i + 1]
    return None


def check_command(argv: list[str]) -> None:
    """Fails unless argv is a command this project really has (gunicorn / honcho / celery / manage.py)."""
    for arg in argv:
        for var in INTERPOLATION.findall(arg):
            assert var in KNOWN_VARS | EXTERNAL_VARS, f"{argv}: ${{{var}}} is read nowhere"
    program = argv[0]
    if program == "gunicorn":
        module, attr = argv[-1].split(":")
        assert callable(getattr(importlib.import_module(module), attr)), argv
        importlib.import_module(_option(argv, "-c", "--config").removeprefix("python:"))
    elif program == "honcho":
        assert (REPO / Path(_option(argv, "-f", "--procfile")).name).is_file(), argv
    elif program == "celery":
        app_module = _option(argv, "-A", "--app")
        assert app_module, argv
        app = importlib.import_module(f"{app_module}.celery").app
        subcommand = argv[argv.index(app_module) + 1]
        assert subcommand in {"worker", "beat", "inspect"}, argv
        queues = _option(argv, "-Q", "--queues")
        if queues:
            known = {q.name for q in app.conf.task_queues}
            assert set(queues.split(",")) <= known, f"{argv}: queues {queues} not in {known}"
    elif program == "python" and argv[1] == "manage.py":
        assert argv[2] in get_commands(), f"{argv}: no management command {argv[2]!r}"
    elif program == "python":
        script = argv[1]
        assert (REPO / script.removeprefix("/app/")).is_file(), f"{argv}: {script} is not in the image"
    else:
        pytest.fail(f"unknown program {program!r} in {argv}")


def test_every_entrypoint_role_is_a_real_command():
    roles = _roles()
    assert set(_procfile()) | {"migrate", "serve"} <= set(roles), "every Procfile process is a container role"
    for argv in [*roles.values(), *_procfile().values()]:
        check_command(argv)


def test_the_dockerfile_copies_real_files_and_runs_real_commands():
    instructions = _dockerfile()
    stages = [args.split()[-1] for op, args in instructions if op == "FROM"]
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    copied = {}
    for op, args in instructions:
        if op == "COPY" and "--from=" not in args:
            *sources, dest = args.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: no such file"
                copied[dest] = source
        if op == "RUN":
            for match in re.findall(r"python manage\.py (\w+)", args):
                assert match in get_commands(), f"RUN manage.py {match}: no such command"
        if op == "ENV":
            for name in re.findall(r"(\w+)=", args):
                assert name in KNOWN_VARS | EXTERNAL_VARS, f"ENV {name} is read nowhere"
    for package in APP_DIRS:
        assert package in copied.values(), f"the image lacks the {package} package"
    entrypoint = json.loads(dict(instructions)["ENTRYPOINT"])
    by_name = {Path(dest).name: source for dest, source in copied.items()}
    assert by_name.get(entrypoint[0]) == "docker/entrypoint.sh", entrypoint
    default = json.loads(dict(instructions)["CMD"])
    assert default[0] in _roles()


def test_compose_services_run_real_commands():
    assert {"db", "redis", "migrate", "web", "beat"} <= set(SERVICES)
    for name, service in APP_SERVICES.items():
        assert service["command"][0] in _roles(), f"{name}: unknown role"
        check_command(_expand(service["command"]))
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"


def test_every_queue_has_a_worker_and_nodes_are_named_apart():
    from anomalyhub.celery import app

    served, nodes = [], []
    for service in APP_SERVICES.values():
        argv = _expand(service["command"])
        if argv[0] == "celery" and "worker" in argv:
            served += _option(argv, "-Q", "--queues").split(",")
            nodes.append(_option(argv, "-n", "--hostname"))
    assert sorted(served) == sorted(q.name for q in app.conf.task_queues), "each queue exactly once"
    assert len(set(nodes)) == len(nodes), "every worker service needs its own -n"
    beats = [n for n, s in APP_SERVICES.items() if _expand(s["command"])[:4] == ["celery", "-A", "anomalyhub", "beat"]]
    assert len(beats) == 1, "exactly one beat: two schedule every task twice"


def test_migrate_runs_once_before_the_app():
    assert SERVICES["migrate"]["restart"] == "no"
    assert _expand(SERVICES["migrate"]["command"])[:3] == ["python", "manage.py", "migrate"]
    for name, service in APP_SERVICES.items():
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_health_checks_hit_real_routes_and_real_workers():
    for name in ("db", "redis", "web"):
        assert SERVICES[name].get("healthcheck"), f"{name} has no health check"
    for name, service in APP_SERVICES.items():
        test = service.get("healthcheck", {}).get("test")
        if not test:
            continue
        if test[0] == "CMD":
            check_command(test[1:])
            for path in (arg for arg in test[1:] if arg.startswith("/") and not arg.startswith("/app/")):
                resolve(path)  # raises Resolver404 for a route that does not exist
        else:  # CMD-SHELL: a worker ping addressed to the service's own node name
            argv = shlex.split(test[1])
            check_command(argv)
            node = _option(_expand(service["command"]), "-n")
            assert _option(argv, "-d").split("@")[0] == node.split("@")[0], name


def test_every_variable_is_read_by_the_project_or_listed():
    interpolated = set(INTERPOLATION.findall((DOCKER / "compose.yaml").read_text()))
    docker_env = set(_env_file_keys(DOCKER / ".env.example"))
    for service in APP_SERVICES.values():
        assert service["env_file"] == ".env" and (DOCKER / ".env.example").exists()
        for key in service.get("environment", {}):
            assert key in KNOWN_VARS, f"environment: {key} is read nowhere"
    for key in docker_env:
        assert key in KNOWN_VARS or key in interpolated, f"docker/.env.example: {key} is read nowhere"
    for var in interpolated:
        assert var in docker_env, f"compose.yaml uses ${{{var}}}; list it in docker/.env.example"


def test_every_documented_variable_is_read_by_the_code():
    documented = set(_env_file_keys(REPO / ".env.example"))
    read = _project_vars()
    assert documented <= read | EXTERNAL_VARS, f".env.example lists variables nothing reads: {documented - read}"
    undocumented = {v for v in read - documented - EXTERNAL_VARS if not v.endswith("_FILE")}
    undocumented -= {"PROMETHEUS_MULTIPROC_DIR", "TEST_DATABASE_NAME"}  # set by the runner / the test commands
    assert not undocumented, f"read but missing from .env.example: {undocumented}"
