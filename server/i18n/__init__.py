"""French and English for people: message catalogues, the locale a person reads, and
dates, times and amounts formatted for it.

```python
from ruche.server.i18n import Formats, choose_locale, translations

locale = choose_locale(setting=None, accept_language="en-GB,en;q=0.9")
_ = translations(locale).gettext
Formats(locale, "Europe/Paris").amount(1234.5)   # '€1,234.50'
```

Catalogues: `locales/<lang>/LC_MESSAGES/ruche.po`, updated by `make messages`
(docs/server.md, "Pages, languages").
"""

from ruche.server.i18n.catalogues import (
    DEFAULT_LOCALE,
    DOMAIN,
    LOCALES,
    LOCALES_DIR,
    N_,
    Translator,
    UnknownLocaleError,
    po_path,
    read_translator,
    translations,
)
from ruche.server.i18n.formats import BABEL_LOCALES, Formats, site_timezone
from ruche.server.i18n.negotiation import choose_locale, parse_accept_language

__all__ = [
    "BABEL_LOCALES",
    "DEFAULT_LOCALE",
    "DOMAIN",
    "LOCALES",
    "LOCALES_DIR",
    "N_",
    "Formats",
    "Translator",
    "UnknownLocaleError",
    "choose_locale",
    "parse_accept_language",
    "po_path",
    "read_translator",
    "site_timezone",
    "translations",
]
