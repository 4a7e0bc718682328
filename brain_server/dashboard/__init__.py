"""The dashboard (#20): `GET /` and its static files (`pages`), the routes only it needs (`api`: the pending
decisions, the live stream), and the audit events as they arrive (`feed`). No build step, no CDN: the page is
plain HTML, CSS and JavaScript in `static/`, served by the brain under a strict Content-Security-Policy, and
everything an agent wrote is put in the page as text (`textContent`), never as markup."""
