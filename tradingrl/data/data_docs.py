"""Great Expectations Data Docs that work without a network.

GE 1.x writes pages whose CSS and JavaScript come from public CDNs (jQuery,
Bootstrap, bootstrap-table, Font Awesome, Vega...). Offline they render
unstyled and the index lists nothing (bootstrap-table draws its tables).
:func:`make_offline` copies the same published files, shipped in
``docs_assets/`` (its README names each package, version and licence), into
the site's ``static/vendor/`` and rewrites every page to load them by
relative path. A page that loads a URL this module does not know is an
error naming it: a GE release that changes its assets must not leave pages
that quietly depend on the network again.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "docs_assets"
VENDOR = Path("static") / "vendor"

# CDN URL (as GE writes it) -> the file under docs_assets/.
OFFLINE_ASSETS: dict[str, str] = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css":
        "bootstrap/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js":
        "bootstrap/bootstrap.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js":
        "popper.js/popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        "bootstrap-table/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        "bootstrap-table/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js":
        "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css":
        "bootstrap-table-1.19.0/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css":
        "bootstrap-table-1.19.0/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        "fontawesome/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": "bootstrap-dark/bootstrap-prefers-dark.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega/vega-embed.min.js",
}
# GE's logos on S3 (with a cache-busting query): the site's own copy.
_LOGO = re.compile(r"https://great-expectations-web-assets\.s3\.[\w.-]+\.amazonaws\.com/"
                   r"(?:logo-long|full_logo_dark)\.png(?:\?[^\"']*)?")
_LOGO_FILE = Path("static") / "images" / "logo-long.png"
# A site-relative reference to static/ (GE writes some at the wrong depth:
# a validation page's favicon one folder short).
_STATIC_REF = re.compile(r"(?P<attr>\b(?:src|href)=[\"'])(?:\./)?(?:\.\./)*static/")
# What a page loads: <script src>, <link href> of a stylesheet or icon, <img src>.
_LOADED = re.compile(r"<(?:script|img)\b[^>]*\bsrc=[\"'](https?://[^\"']+)[\"']"
                     r"|<link\b[^>]*\bhref=[\"'](https?://[^\"']+)[\"']", re.IGNORECASE)


class UnknownAsset(ValueError):
    """A Data Docs page loads a URL that has no offline copy."""


def make_offline(site: str | Path) -> int:
    """Rewrite every page of the Data Docs site at ``site`` to load its CSS,
    JavaScript and logo from ``static/`` (copied there first), and every
    reference into ``static/`` relative to the page's real depth; returns the
    number of pages rewritten. Raises :class:`UnknownAsset` naming the page
    and URL when a page loads something else from the network. Links a
    person clicks (``<a href>`` to greatexpectations.io) stay as they are."""
    root = Path(site)
    shutil.copytree(ASSETS, root / VENDOR, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("README.md"))
    pages = sorted(root.rglob("*.html"))
    for page in pages:
        to_root = Path(os.path.relpath(root, page.parent))
        text = _LOGO.sub((to_root / _LOGO_FILE).as_posix(), page.read_text(encoding="utf-8"))
        static = (to_root / "static").as_posix()
        text = _STATIC_REF.sub(rf"\g<attr>{static}/", text)
        for url, local in OFFLINE_ASSETS.items():
            text = text.replace(url, (to_root / VENDOR / local).as_posix())
        left = [a or b for a, b in _LOADED.findall(text)]
        if left:
            raise UnknownAsset(f"{page.relative_to(root)} loads {left[0]}, which has no offline "
                               f"copy in {ASSETS} (see its README)")
        page.write_text(text, encoding="utf-8")
    return len(pages)
