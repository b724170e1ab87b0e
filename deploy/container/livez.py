"""The image's health check: exit 0 when the service's /livez answers 200.

The URL comes from ESGF_HA_LIVEZ_URL (each service listens on its own port), so the check
needs no curl in the image. HTTPS services are probed without verifying their certificate:
the question is only whether the process answers.
"""

import os
import ssl
import sys
import urllib.request

url = os.environ.get("ESGF_HA_LIVEZ_URL", "http://127.0.0.1:8080/livez")
context = ssl._create_unverified_context() if url.startswith("https:") else None
try:
    with urllib.request.urlopen(url, timeout=3, context=context) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:
    print(f"{url}: {exc}", file=sys.stderr)
    sys.exit(1)
