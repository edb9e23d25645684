"""Forms post, then redirect (303) back to a page that says how it went.

A page's POST does its work and answers `back("/manage/members", done="created")` (or
`error="..."`); the page's GET reads the code with `outcome(request, ERRORS, NOTICES)`
and shows its sentence, translated. Codes, not sentences, travel in the URL, so a link
cannot make a page say anything its author did not write.

```python
NOTICES = {"created": N_("The member was added.")}
ERRORS = {"email_taken": N_("Another member already uses this email.")}
...
return render(request, "members/list.html", message=outcome(request, ERRORS, NOTICES))
```
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from fastapi import Request, status
from fastapi.responses import RedirectResponse

from ruche.server.api.pages.rendering import safe_next


def back(path: str, *, done: str | None = None, error: str | None = None,
         **params: str | int | None) -> RedirectResponse:  # fmt: skip
    """A 303 to `path` (a path on this server) with `done=` or `error=` and `params`."""
    query = {k: str(v) for k, v in params.items() if v is not None}
    if done is not None:
        query["done"] = done
    if error is not None:
        query["error"] = error
    separator = "&" if "?" in path else "?"
    target = safe_next(path) + (separator + urllib.parse.urlencode(query) if query else "")
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


def outcome(
    request: Request, errors: Mapping[str, str], notices: Mapping[str, str]
) -> dict[str, str] | None:
    """The message `message.html` shows for this request's `error=` or `done=` code;
    None for no code or one the page does not know."""
    error = request.query_params.get("error", "")
    if error in errors:
        return {"kind": "error", "text": errors[error]}
    done = request.query_params.get("done", "")
    if done in notices:
        return {"kind": "success", "text": notices[done]}
    return None
