"""Open a Snakemake HTML report in a real headless Chromium and check it the way a reader sees it.

Snakemake 9 writes a single-file React report: the results are a JS object ``results`` (path ->
name, caption HTML, mime type, data URI, ...) and the menu is ``categories`` (category ->
subcategory -> paths).  :func:`check_report` loads the file in Debian's ``chromium`` through
Selenium and ``chromedriver`` (both taken from PATH, so Selenium Manager never downloads
anything) and

* reads ``categories`` and ``results`` from the page;
* walks the app's UI: every menu entry (Workflow, Statistics, About and each result category),
  every subcategory and toggle value, and for every result row its "info" button (the panel
  with the rendered caption), the rule-info panel of each rule, and its "eye" button, which
  shows the image, or the HTML/PDF in an iframe;
* checks every ``<a href>``, ``<img src>`` and ``<iframe src>`` of each rendered view, and,
  inside every displayed HTML result (Selenium switches into its data: iframe), every image and
  link of that document: data: URIs must decode, ``#fragment`` links must name an element of
  their document (``href="#"`` is the app's own router link), relative/file links must exist on
  disk next to the report, external http(s) links are only recorded (no network in CI);
* loads every image result once more on its own (``new Image()`` on its data URI, waiting for
  onload, ``naturalWidth > 0``) and decodes every data URI;
* collects the SEVERE browser-console messages logged while the UI was walked.

The checks never fail on a missing caption by themselves; :meth:`ReportCheck.problems` lists
them unless told not to.  Run ``python tests/report_browser.py report.html`` for a summary.
"""

from __future__ import annotations

import html
import importlib.util
import re
import shutil
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif", "image/webp")
# How the app shows a result when its "eye" button is clicked (abstract_view_manager.js).
VIEW_KIND = {"image/svg+xml": "img", "image/png": "img", "image/jpeg": "img",
             "text/html": "html", "application/pdf": "pdf"}
CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1600,1000", "--no-first-run", "--no-default-browser-check",
                 "--disable-extensions", "--disable-background-networking")


def chromium_binary() -> str | None:
    """Debian's Chromium (``chromium``; ``chromium-browser`` on some other distributions)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_available() -> bool:
    """Chromium and chromedriver on PATH and Selenium importable: what :func:`check_report` needs."""
    return (chromium_binary() is not None and shutil.which("chromedriver") is not None
            and importlib.util.find_spec("selenium") is not None)


@dataclass(frozen=True)
class BrokenLink:
    where: str     # the view or document it was found in, e.g. "result info of results/x.png"
    tag: str       # a, img or iframe
    url: str       # as written in the page (long data: URIs shortened)
    reason: str

    def __str__(self) -> str:
        return f"<{self.tag}> {self.url!r} in {self.where}: {self.reason}"


@dataclass
class ResultCheck:
    path: str
    name: str
    mime_type: str
    category: str | None = None
    subcategory: str | None = None
    caption: str = ""               # the caption as plain text
    caption_rendered: bool = False  # shown in the result-info panel of the app
    reached_via_ui: bool = False    # its row was found and clicked in the app's menu
    displayed: bool = False         # the app showed it (image / iframe) after clicking "eye"
    loads: bool = False
    size: tuple[int, int] | None = None   # natural width, height of an image result
    problems: list[str] = field(default_factory=list)          # why it does not load / show
    broken_links: list[BrokenLink] = field(default_factory=list)  # inside an HTML result

    @property
    def has_caption(self) -> bool:
        return bool(self.caption.strip())


@dataclass
class ReportCheck:
    path: Path
    categories: dict[str, dict[str, list[str]]]
    results: dict[str, ResultCheck]
    broken_links: list[BrokenLink]
    external_links: list[str]
    console_errors: list[str]
    views: list[str]
    seconds: float

    @property
    def result_paths(self) -> list[str]:
        return list(self.results)

    @property
    def not_loading(self) -> list[str]:
        return [p for p, r in self.results.items() if not r.loads]

    @property
    def missing_captions(self) -> list[str]:
        return [p for p, r in self.results.items() if not r.has_caption]

    def problems(self, require_captions: bool = True) -> list[str]:
        """Every failure, one readable line each (empty when the report is fine)."""
        out = []
        if not self.results:
            out.append("the report lists no results")
        for path, r in self.results.items():
            out.extend(f"result {path}: {p}" for p in r.problems)
            if require_captions and not r.has_caption:
                out.append(f"result {path}: has no caption")
        out.extend(f"broken link: {link}" for link in self.broken_links)
        out.extend(f"browser console error: {msg}" for msg in self.console_errors)
        return out

    @property
    def ok(self) -> bool:
        return not self.problems()

    def summary(self) -> str:
        lines = [f"{self.path}: {len(self.results)} results in {len(self.categories)} categories, "
                 f"{len(self.results) - len(self.not_loading)} load, "
                 f"{len(self.results) - len(self.missing_captions)} with captions, "
                 f"{len(self.broken_links)} broken links, {len(self.external_links)} external links, "
                 f"{len(self.console_errors)} console errors; {len(self.views)} views in {self.seconds:.1f} s"]
        lines += [f"  {p}" for p in self.problems()] or ["  no problems"]
        return "\n".join(lines)


def _short(url: str, n: int = 120) -> str:
    return url if len(url) <= n else f"{url[:n]}... ({len(url)} chars)"


def _caption_text(caption_html: str | None) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", caption_html or "")).split())


# --- JavaScript run in the page ------------------------------------------------------------------

# Shared helpers, prepended to the scripts below.  dataCheck decodes a data: URI the way the
# browser does (percent-decoding, then forgiving base64 via atob) without any network request,
# so it logs nothing to the console.
_JS_HELPERS = r"""
function pctDecode(s) { return s.replace(/%([0-9a-fA-F]{2})/g, (m, h) => String.fromCharCode(parseInt(h, 16))); }
function dataCheck(u) {
  const comma = u.indexOf(',');
  if (comma < 0) return {ok: false, error: 'data: URI without a comma'};
  const meta = u.slice(5, comma);
  const mime = (meta.split(';')[0] || 'text/plain').toLowerCase();
  const b64 = /;base64$/i.test(meta);
  let bin;
  try { bin = b64 ? atob(pctDecode(u.slice(comma + 1))) : pctDecode(u.slice(comma + 1)); }
  catch (e) { return {ok: false, mime: mime, error: 'base64 payload does not decode (' + e.message + ')'}; }
  if (!bin.length) return {ok: false, mime: mime, error: 'empty payload'};
  const head = bin.slice(0, 8);
  const magic = {'image/png': '\x89PNG', 'image/jpeg': '\xff\xd8', 'image/gif': 'GIF8', 'application/pdf': '%PDF'}[mime];
  if (magic && !head.startsWith(magic)) return {ok: false, mime: mime, bytes: bin.length, error: 'payload is not ' + mime + ' (starts with ' + JSON.stringify(head) + ')'};
  return {ok: true, mime: mime, bytes: bin.length};
}
function shortUrl(u) { return (u && u.length > 120) ? u.slice(0, 120) + '... (' + u.length + ' chars)' : (u || ''); }
"""

# Every <a href>, <img src> and <iframe src> of the current document, after its images settled.
_JS_COLLECT = _JS_HELPERS + r"""
const done = arguments[arguments.length - 1];
const settleMs = arguments[0];
const imgs = Array.from(document.images);
imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });
const pending = imgs.filter(i => !i.complete).map(i => new Promise(res => {
  i.addEventListener('load', res, {once: true}); i.addEventListener('error', res, {once: true}); }));
function scheme(u) { const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(u || ''); return m ? m[1].toLowerCase() : ''; }
function record(el, tag, raw, resolved) {
  const r = {tag: tag, raw: shortUrl(raw), resolved: scheme(resolved) === 'data' ? '' : resolved,
             scheme: scheme(resolved), rawScheme: scheme(raw),
             label: ((el.getAttribute('title') || el.getAttribute('alt') || el.textContent || '').trim()).slice(0, 60)};
  if (r.rawScheme === 'data') r.data = dataCheck(raw.split('#')[0]);
  if (raw && raw.startsWith('#') && raw.length > 1) {
    let frag = raw.slice(1); try { frag = decodeURIComponent(frag); } catch (e) {}
    r.fragmentFound = !!(document.getElementById(frag) || document.getElementsByName(frag).length);
  }
  return r;
}
Promise.race([Promise.all(pending), new Promise(r => setTimeout(r, settleMs))]).then(() => {
  const out = [];
  for (const a of document.querySelectorAll('a[href]')) out.push(record(a, 'a', a.getAttribute('href'), a.href));
  for (const i of imgs) {
    const r = record(i, 'img', i.getAttribute('src') || '', i.currentSrc || i.src);
    r.complete = i.complete; r.width = i.naturalWidth; r.height = i.naturalHeight;
    out.push(r);
  }
  for (const f of document.querySelectorAll('iframe[src]')) out.push(record(f, 'iframe', f.getAttribute('src'), f.src));
  const body = document.body;
  done({links: out, href: shortUrl(location.href), readyState: document.readyState,
        text: body ? body.innerText.trim().length : 0, elements: body ? body.getElementsByTagName('*').length : 0});
});
"""

# Load one image result on its own: new Image() on its data URI, wait for onload / onerror.
_JS_PROBE_IMAGE = r"""
const done = arguments[arguments.length - 1];
const img = new Image();
const timer = setTimeout(() => done({ok: false, error: 'timed out'}), arguments[1]);
img.onload = () => { clearTimeout(timer); (img.decode ? img.decode() : Promise.resolve()).then(
  () => done({ok: img.naturalWidth > 0, width: img.naturalWidth, height: img.naturalHeight, error: img.naturalWidth > 0 ? null : 'naturalWidth is 0'}),
  (e) => done({ok: false, width: img.naturalWidth, height: img.naturalHeight, error: 'decode() failed: ' + e.message})); };
img.onerror = () => { clearTimeout(timer); done({ok: false, error: 'onerror fired (the image does not decode)'}); };
img.src = results[arguments[0]].data_uri;
"""

_JS_DATA_CHECK = _JS_HELPERS + r"""
const u = results[arguments[0]].data_uri;
return /^data:/i.test(u) ? dataCheck(u) : {ok: null, url: u};
"""

# The content pane: the last child of the app's flex row (Navbar renders two elements before it).
_JS_CONTENT = "document.querySelector('#app > div').lastElementChild"

_JS_SHOWN_IMAGE = f"""
const path = arguments[0];
if (app.state.resultPath !== path || app.state.content !== 'img') return null;
const img = {_JS_CONTENT}.querySelector('img');
if (!img || img.getAttribute('src') !== results[path].data_uri || !img.complete) return null;
return {{width: img.naturalWidth, height: img.naturalHeight}};
"""

_JS_SHOWN_FRAME = f"""
const path = arguments[0], kind = arguments[1];
if (app.state.resultPath !== path || app.state.content !== kind) return null;
const f = {_JS_CONTENT}.querySelector('iframe');
return (f && f.getAttribute('src') === results[path].data_uri) ? f : null;
"""


class ReportBrowserError(RuntimeError):
    pass


def _load_failure(r: ResultCheck, message: str) -> None:
    r.loads = False
    r.problems.append(message)


class _Checker:
    def __init__(self, path: Path, timeout: float):
        if not chromium_available():
            raise ReportBrowserError("chromium, chromedriver or selenium is missing (see chromium_available())")
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.path = path
        self.deadline = time.monotonic() + timeout
        self.views: list[str] = []
        self.broken: dict[tuple[str, str, str], BrokenLink] = {}
        self.external: set[str] = set()
        self.results: dict[str, ResultCheck] = {}
        self.rules_seen: set[str] = set()
        self.missed_clicks: list[str] = []  # clicks that did nothing and were repeated from JS

        options = webdriver.ChromeOptions()
        options.binary_location = chromium_binary()
        for arg in CHROMIUM_ARGS:
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # An explicit chromedriver: Selenium Manager is never asked to find or download one.
        service = Service(executable_path=shutil.which("chromedriver"))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(max(5.0, timeout))
        self.driver.set_script_timeout(max(5.0, timeout))

    # -- helpers ----------------------------------------------------------------------------------

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait(self, script: str, what: str, *args, limit: float = 20.0):
        """Poll a JS expression until it returns something truthy; return that."""
        end = time.monotonic() + min(limit, max(self.remaining(), 0.5))
        while True:
            value = self.driver.execute_script(script, *args)
            if value:
                return value
            if time.monotonic() > end:
                raise ReportBrowserError(f"timed out waiting for {what} in {self.path}")
            time.sleep(0.03)

    def click(self, element, until: str | None = None, what: str = "", *args):
        """Click like a user; when ``until`` (a JS predicate) does not come true soon, the click
        missed (the element moved, was covered): click it once more from JS, then wait for it."""
        from selenium.common.exceptions import WebDriverException

        try:
            element.click()
        except WebDriverException:  # covered by another element, off-screen: click it from JS
            self.driver.execute_script("arguments[0].click()", element)
        if until is None:
            return None
        try:
            return self.wait(until, what, *args, limit=2.0)
        except ReportBrowserError:
            self.missed_clicks.append(what)
            self.driver.execute_script("arguments[0].click()", element)
            return self.wait(until, what, *args)

    def set_view(self, **view) -> None:
        self.driver.execute_script("app.setView(arguments[0])", view)

    def state(self) -> dict:
        return self.driver.execute_script("return app.state")

    def nav_entries(self) -> list[tuple[str, object]]:
        """The clickable entries of the navbar's menu (Menu / Category components)."""
        entries = self.driver.find_elements("css selector", "#app nav ul > li > a")
        return [(self.driver.execute_script("return arguments[0].textContent.trim()", a), a) for a in entries]

    def collect(self, where: str, embedded: bool = False, result: ResultCheck | None = None) -> dict:
        """Check the links and images of the current document (or frame)."""
        self.views.append(where)
        info = self.driver.execute_async_script(_JS_COLLECT, 5000)
        for link in info["links"]:
            reason = self.judge(link, embedded)
            if reason:
                broken = BrokenLink(where, link["tag"], link["raw"], reason)
                self.broken.setdefault((broken.tag, broken.url, broken.reason), broken)
                if result is not None:
                    result.broken_links.append(broken)
        return info

    def judge(self, link: dict, embedded: bool) -> str | None:
        """Why a collected link/image is broken, or None when it is fine (or external)."""
        tag, raw, sch = link["tag"], link["raw"], link["scheme"]
        if tag == "img" and not raw:
            return "<img> without src"
        if tag == "a" and raw.startswith("#"):
            if raw == "#":
                return None  # the app's own router links (href="#" with an onClick handler)
            return None if link.get("fragmentFound") else f"no element with id or name {raw[1:]!r} in this document"
        if sch in ("http", "https"):
            self.external.add(link["resolved"])
            return None  # no network here: recorded, not followed
        if tag == "img" and not (link["complete"] and link["width"] > 0):
            detail = f" ({link['data']['error']})" if link.get("data") and not link["data"]["ok"] else ""
            return f"image did not load{detail}"
        if link.get("data"):
            return None if link["data"]["ok"] else f"data: URI does not decode: {link['data']['error']}"
        if sch in ("mailto", "tel", "javascript", "about", "blob"):
            return None
        if sch == "file":
            target = Path(urllib.request.url2pathname(urllib.parse.urlsplit(link["resolved"]).path))
            if not target.exists():
                return f"file {target} does not exist"
            return None
        if embedded and not link["rawScheme"]:
            target = self.path.parent / urllib.parse.unquote(raw.split("#")[0].split("?")[0])
            return (f"relative link inside an embedded (data: URI) document cannot be followed "
                    f"(would be {target}{'' if target.exists() else ', which does not exist either'})")
        return f"unsupported link (scheme {sch or 'none'!r})"

    # -- the walk ---------------------------------------------------------------------------------

    def run(self) -> ReportCheck:
        start = time.monotonic()
        driver = self.driver
        driver.get(self.path.resolve().as_uri())
        self.wait("return typeof app !== 'undefined' && document.querySelector('#app nav') !== null",
                  "the report's React app to render", limit=self.remaining())
        # No CSS transitions: the navbar animates its width, which moves what is clicked next.
        driver.execute_script(
            "const s = document.createElement('style'); s.textContent = '*, *::before, *::after "
            "{ transition: none !important; animation: none !important; }'; document.head.appendChild(s)")
        categories = driver.execute_script("return categories")
        meta = driver.execute_script(
            "return Object.fromEntries(Object.entries(results).map(([p, r]) => "
            "[p, {name: r.name, mime: r.mime_type, caption: r.caption || '', rule: (r.job_properties || {}).rule}]))")
        for path, m in meta.items():
            self.results[path] = ResultCheck(path=path, name=m["name"], mime_type=m["mime"],
                                             caption=_caption_text(m["caption"]), loads=True)
        for cat, subcats in categories.items():
            for sub, paths in subcats.items():
                for p in paths:
                    if p in self.results:
                        self.results[p].category, self.results[p].subcategory = cat, sub
                    else:
                        self.add_broken(f"category {cat!r}", "a", p, "listed in categories but not in results")
        self.rule_of = {p: m["rule"] for p, m in meta.items()}

        self.collect(f"start page ({self.state()['content']})")
        self.walk_menu(categories)
        for path, r in self.results.items():
            if not r.reached_via_ui:
                r.problems.append("not reachable from the report's menu (no row for it in its category)")
                self.show_directly(path)
        console = [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
        self.probe_results()
        driver.get_log("browser")  # the probes' own messages are not the report's
        for path, r in self.results.items():
            if r.category is None:
                r.problems.append("not listed in any category")
        return ReportCheck(path=self.path, categories=categories, results=self.results,
                           broken_links=list(self.broken.values()), external_links=sorted(self.external),
                           console_errors=console, views=self.views, seconds=time.monotonic() - start)

    def add_broken(self, where, tag, url, reason):
        link = BrokenLink(where, tag, url, reason)
        self.broken.setdefault((tag, url, reason), link)

    def back_to_menu(self):
        self.set_view(navbarMode="menu")
        self.wait("return app.state.navbarMode === 'menu'", "the main menu")

    def walk_menu(self, categories):
        self.back_to_menu()
        labels = [label for label, _ in self.nav_entries()]
        single = len(categories) == 1
        for label in labels:
            entry = dict(self.nav_entries()).get(label)
            if entry is None:
                raise ReportBrowserError(f"menu entry {label!r} disappeared from the menu")
            if label in categories or (single and label == "Results"):
                category = next(iter(categories)) if single and label == "Results" else label
                self.click(entry, "return ['category', 'subcategory'].includes(app.state.navbarMode) "
                           "&& app.state.category === arguments[0]", f"category {category!r} to open", category)
                self.walk_category(category, categories[category])
            else:  # Workflow, Statistics, About
                before = self.driver.execute_script("return JSON.stringify(app.state)")
                self.click(entry, "return JSON.stringify(app.state) !== arguments[0]",
                           f"menu entry {label!r} to open", before)
                time.sleep(0.2)  # let the view (e.g. the Vega charts) render
                s = self.state()
                self.collect(f"menu entry {label!r} ({s['navbarMode']}/{s['content']})")
            self.back_to_menu()
        missing = [c for c in categories if c not in labels and not single]
        for c in missing:
            self.add_broken("main menu", "a", c, "category has no menu entry")

    def walk_category(self, category, subcats):
        if self.state()["navbarMode"] == "subcategory":
            self.walk_subcategory(category, self.state()["subcategory"])
            return
        self.collect(f"category {category!r}")
        for sub in sorted(subcats):
            self.set_view(navbarMode="category", category=category)
            self.wait("return app.state.navbarMode === 'category'", f"category {category!r}")
            entry = dict(self.nav_entries()).get(sub)
            if entry is None:
                self.add_broken(f"category {category!r}", "a", sub, "subcategory has no menu entry")
                continue
            self.click(entry, "return app.state.navbarMode === 'subcategory' && app.state.subcategory === arguments[0]",
                       f"subcategory {sub!r} to open", sub)
            self.walk_subcategory(category, sub)

    def open_subcategory(self, category, sub, toggle):
        self.set_view(navbarMode="subcategory", category=category, subcategory=sub)
        self.wait("return app.state.navbarMode === 'subcategory' && document.querySelector('#app nav table')",
                  f"the results table of {category!r}/{sub!r}")
        if toggle is not None:
            label = self.driver.find_element("css selector", f"label[for='{toggle}']")
            self.click(label, "return document.getElementById(arguments[0]).checked", f"toggle {toggle}", toggle)

    def walk_subcategory(self, category, sub):
        self.open_subcategory(category, sub, None)
        toggles = self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#app nav fieldset input[type=radio]')).map(i => i.id)")
        for toggle in toggles or [None]:
            self.open_subcategory(category, sub, toggle)
            where = f"results of {category!r}/{sub!r}" + (f" ({toggle})" if toggle else "")
            self.collect(where)
            rows = len(self.driver.find_elements("css selector", "#app nav table tbody tr"))
            for i in range(rows):
                self.walk_row(category, sub, toggle, i, where)

    def row_buttons(self, i):
        row = self.driver.find_elements("css selector", "#app nav table tbody tr")[i]
        return row.find_elements("css selector", "div[role=group] > a")

    def walk_row(self, category, sub, toggle, i, where):
        self.open_subcategory(category, sub, toggle)
        buttons = self.row_buttons(i)
        if len(buttons) < 2:
            self.add_broken(where, "a", f"row {i + 1}", "result row without view/info buttons")
            return
        # The info button: the result-info panel with the rendered caption.
        path = self.click(buttons[1], "return app.state.navbarMode === 'resultinfo' && app.state.resultPath",
                          "the result-info panel")
        r = self.results[path]
        r.reached_via_ui = True
        self.collect(f"result info of {path}")
        rendered = self.driver.execute_script(
            "const li = document.querySelector('#app nav li.prose'); return li ? li.innerText : ''")
        r.caption_rendered = bool(rendered.strip())
        if r.has_caption and not r.caption_rendered:
            r.problems.append("has a caption that the result-info panel does not show")
        rule = self.rule_of.get(path)
        if rule and rule not in self.rules_seen:
            self.rules_seen.add(rule)
            button = self.driver.find_elements("css selector", "#app nav li span.flex > a")
            if button:
                self.click(button[-1], "return app.state.navbarMode === 'ruleinfo'", f"the rule-info panel of {rule}")
                self.collect(f"rule info of {rule}")
        # The eye button: shows the image, or the HTML/PDF in an iframe (or downloads the file).
        self.open_subcategory(category, sub, toggle)
        eye = self.row_buttons(i)[0]
        if eye.get_attribute("href") and not eye.get_attribute("href").endswith("#"):
            return  # a download link (mime types the app cannot show): checked by collect()
        kind = VIEW_KIND.get(r.mime_type)
        self.click(eye, "return app.state.resultPath === arguments[0] && app.state.content === arguments[1]",
                   f"{path} to be shown", path, kind)
        self.check_shown(path, f"result {path} (shown after clicking its row)")

    def show_directly(self, path):
        kind = VIEW_KIND.get(self.results[path].mime_type)
        if kind:
            self.driver.execute_script("app.setView({content: arguments[1], "
                                       "contentPath: results[arguments[0]].data_uri, resultPath: arguments[0]})",
                                       path, kind)
            self.check_shown(path, f"result {path} (shown directly)")

    def check_shown(self, path, where):
        r = self.results[path]
        kind = VIEW_KIND.get(r.mime_type)
        if kind == "img":
            shown = self.wait(_JS_SHOWN_IMAGE, f"{path} to be shown", path)
            r.displayed = True
            if not shown["width"]:
                _load_failure(r, "shown by the app as a broken image (naturalWidth 0)")
            self.collect(where)
        elif kind in ("html", "pdf"):
            frame = self.wait(_JS_SHOWN_FRAME, f"{path} to be shown in an iframe", path, kind)
            r.displayed = True
            self.collect(where)
            if kind == "html":
                self.check_frame(frame, r)

    def check_frame(self, frame, r: ResultCheck):
        from selenium.common.exceptions import WebDriverException

        driver = self.driver
        try:
            driver.switch_to.frame(frame)
            end = time.monotonic() + min(20.0, max(self.remaining(), 0.5))
            while driver.execute_script("return document.readyState") != "complete" and time.monotonic() < end:
                time.sleep(0.03)
            info = self.collect(f"result {r.path} (embedded HTML)", embedded=True, result=r)
        except WebDriverException as exc:
            _load_failure(r, f"shown in an iframe that cannot be opened: {exc.msg}")
            return
        finally:
            driver.switch_to.default_content()
        if info["href"].startswith(("chrome-error:", "about:")):
            _load_failure(r, f"shown as an error page ({info['href']}) instead of its document")
        elif info["readyState"] != "complete":
            _load_failure(r, "shown in an iframe that never finished loading")
        elif not info["text"] and info["elements"] <= 1:
            _load_failure(r, "shown as an empty document")
        for link in info["links"]:
            external = link["scheme"] in ("http", "https")
            if link["tag"] == "img" and not external and not (link["complete"] and link["width"] > 0):
                _load_failure(r, f"shown with an image that does not load: {link['raw']!r}")

    def probe_results(self):
        for path, r in self.results.items():
            data = self.driver.execute_script(_JS_DATA_CHECK, path)
            if data["ok"] is None:  # not embedded (zip report): a file next to the report
                target = self.path.parent / urllib.parse.unquote(data["url"])
                if not target.exists():
                    _load_failure(r, f"does not load: {target} does not exist")
                    continue
            elif not data["ok"]:
                _load_failure(r, f"data URI does not decode: {data['error']}")
            if r.mime_type in IMAGE_MIMES:
                probe = self.driver.execute_async_script(_JS_PROBE_IMAGE, path, 10000)
                if probe["ok"]:
                    r.size = (probe["width"], probe["height"])
                else:
                    _load_failure(r, f"image does not load in the browser: {probe['error']}")

    def quit(self):
        try:
            self.driver.quit()
        except Exception:  # noqa: BLE001 - best effort
            pass


def check_report(path: Path, timeout: float = 60) -> ReportCheck:
    """Open the Snakemake report ``path`` in headless Chromium and check it (see the module doc).

    ``timeout`` bounds the page load and each wait; a report that does not render in time raises
    :class:`ReportBrowserError` naming what it waited for."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    checker = _Checker(path, timeout)
    try:
        return checker.run()
    finally:
        checker.quit()


if __name__ == "__main__":
    report = check_report(Path(sys.argv[1]), timeout=float(sys.argv[2]) if len(sys.argv) > 2 else 120)
    print(report.summary())
    for p, r in report.results.items():
        print(f"  {'ok  ' if r.loads else 'FAIL'} {p} [{r.mime_type}] size={r.size} caption={r.has_caption}"
              f" rendered={r.caption_rendered} ui={r.reached_via_ui}")
    sys.exit(0 if report.ok else 1)
