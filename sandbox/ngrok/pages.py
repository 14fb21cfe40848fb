"""ngrok's HTML error pages, reduced to what clients look for: the status and the ERR_NGROK code."""
from __future__ import annotations

import html

ERROR_HEADER = "ngrok-error-code"  # ngrok labels its own error responses with this header

_TEMPLATE = """<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<div class="ngrok-error" id="{code}">
<h1>{title}</h1>
<p>{message}</p>
<p><strong>{code}</strong></p>
<p><a href="https://ngrok.com/docs/errors/{code_lower}">https://ngrok.com/docs/errors/{code_lower}</a></p>
</div>
</body>
</html>
"""


def render(code: str, title: str, message: str) -> bytes:
    return _TEMPLATE.format(code=code, code_lower=code.lower(), title=html.escape(title),
                            message=html.escape(message)).encode("utf-8")


def upstream_refused(addr: str, hostport: str, reason: str) -> tuple[int, str, bytes]:
    message = (f"Traffic reached the ngrok agent, but the agent could not connect to the upstream service at "
               f"{addr}. The error was: dial tcp {hostport}: {reason}")
    return 502, "ERR_NGROK_8012", render("ERR_NGROK_8012", "The upstream service refused the connection", message)


def invalid_upstream_response(detail: str) -> tuple[int, str, bytes]:
    message = f"ngrok gateway error: the upstream returned an invalid or incomplete HTTP response ({detail})."
    return 502, "ERR_NGROK_3004", render("ERR_NGROK_3004", "ngrok gateway error", message)


def endpoint_offline(url: str) -> tuple[int, str, bytes]:
    return 404, "ERR_NGROK_3200", render("ERR_NGROK_3200", "The endpoint is offline", f"The endpoint {url} is offline.")


def browser_warning(host: str) -> tuple[int, str, bytes]:
    message = (f"You are about to visit {host}, served for free through ngrok. Only continue if you trust "
               "whoever sent you this link. Developers: send the 'ngrok-skip-browser-warning' request header "
               "(any value) or a non-browser User-Agent to skip this page.")
    return 200, "ERR_NGROK_6024", render("ERR_NGROK_6024", "You are about to visit a site served through ngrok", message)


def is_browser(user_agent: str | None) -> bool:
    """ngrok shows the interstitial to browsers only; they all announce themselves as Mozilla/..."""
    return bool(user_agent) and user_agent.startswith("Mozilla/")
