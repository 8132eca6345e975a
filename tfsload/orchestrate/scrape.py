"""Read a server's Prometheus metrics over HTTP, before and after each cell."""

from __future__ import annotations

import urllib.error
import urllib.request


class ScrapeError(Exception):
    """The metrics endpoint could not be read; the message is one line."""


def scrape(url: str, timeout: float = 10.0) -> str:
    """GET the Prometheus text at ``url``; raises ScrapeError with a one-line reason."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        raise ScrapeError(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ScrapeError(f"{url}: {reason}") from None
