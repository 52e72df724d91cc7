"""Before a flow runs: does the configured Prefect API answer? (A check, not a task: it runs
before any flow run exists.)

One GET of the server's ``/health`` (answered without credentials by a Prefect server; the
configured API key or auth string is sent anyway), retried by urllib3's ``Retry``: connection
errors and 429/5xx answers, with urllib3's exponential back-off (none before the first retry,
then ``first_delay * 2**(n-1)``: 2, 4, 8, 16 s by default). Prefect's own client retries a
connection error only after it has connected once, so it cannot be asked to wait for a server
that is still starting.
"""

from __future__ import annotations

import base64
import os

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def wait_for_api(attempts: int = 6, first_delay: float = 1.0, timeout_s: float = 10.0) -> str | None:
    """None once the configured Prefect API answers (or when none is configured: Prefect's
    ephemeral API is used); else the reason it did not, in one line."""
    import urllib3
    from urllib3.util.retry import Retry

    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return None
    headers = {"Accept": "application/json"}
    if key := PREFECT_API_KEY.value():
        headers["Authorization"] = f"Bearer {key.get_secret_value() if hasattr(key, 'get_secret_value') else key}"
    elif auth := PREFECT_API_AUTH_STRING.value():
        secret = auth.get_secret_value() if hasattr(auth, "get_secret_value") else auth
        headers["Authorization"] = "Basic " + base64.b64encode(secret.encode()).decode()
    retry = Retry(total=attempts - 1, backoff_factor=first_delay, status_forcelist=RETRY_STATUS,
                  allowed_methods=frozenset({"GET"}), raise_on_status=False)
    with urllib3.PoolManager(headers=headers, timeout=urllib3.Timeout(total=timeout_s)) as http:
        try:
            response = http.request("GET", url.rstrip("/") + "/health", retries=retry)
        except Exception as err:  # noqa: BLE001 - any failure to connect counts the same
            reason = getattr(err, "reason", None) or err
            text = f"{type(reason).__name__}: {reason}".splitlines()[0][:200]
            return f"the Prefect API at {url} did not answer after {attempts} attempts ({text})"
    if response.status >= 400:
        return f"the Prefect API at {url} did not answer after {attempts} attempts (HTTP {response.status})"
    return None
