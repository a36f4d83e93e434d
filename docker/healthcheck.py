"""Container health check for the web role: GET http://127.0.0.1:8000<path>, exit 0 on 200.

Sends the first ALLOWED_HOSTS entry as Host (production refuses unknown hosts) and
X-Forwarded-Proto: https (production redirects plain HTTP to HTTPS behind its proxy)."""

import os
import sys
import urllib.request

path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
hosts = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip() and "*" not in h]
request = urllib.request.Request(f"http://127.0.0.1:8000{path}",
                                 headers={"Host": hosts[0] if hosts else "localhost", "X-Forwarded-Proto": "https"})
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # any failure is "unhealthy"; say why in `docker inspect`
    print(f"{path}: {exc}", file=sys.stderr)
    sys.exit(1)
