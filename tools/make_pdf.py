"""Print the book into one PDF with the Debian chromium (offline), from its single-page HTML build.

Usage: python tools/make_pdf.py [--html _build/singlehtml] [--out _build/pdf/why-lottery-tickets-win.pdf]

``make pdf`` first builds the single-page HTML from the committed notebook outputs, then runs this:
chromium opens the page with every network request blocked, waits until MathJax has typeset all
the mathematics, hides the navigation, opens nothing else, and prints A4 pages with a bookmark
outline (the table of contents in a PDF reader), the book's own contents list with working
internal links, and page numbers.  The file is written atomically.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PRINT_CSS = """
.bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .bd-footer, .bd-footer-article, .prev-next-area,
.header-article, .bd-header-article, #pst-back-to-top, .bd-search, .skip-link, .headerlink, .toggle-button { display: none !important; }
.bd-main, .bd-content, .bd-article-container, .bd-page-width { max-width: 100% !important; width: 100% !important; }
.bd-article { padding: 0 !important; }
figure, img, table { break-inside: avoid; }
img { max-width: 100% !important; }
section[id^="document-"] { break-before: page; }
h1 { font-size: 1.45rem !important; } h2 { font-size: 1.2rem !important; } h3 { font-size: 1.05rem !important; }
"""
FOOTER = ('<div style="font-size:8px; width:100%; text-align:center; color:#555;">'
          'Why Lottery Tickets Win — <span class="pageNumber"></span> / <span class="totalPages"></span></div>')


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--html", type=Path, default=ROOT / "_build" / "singlehtml")
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "pdf" / "why-lottery-tickets-win.pdf")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for MathJax (default 300)")
    args = ap.parse_args(argv)
    page_path = args.html / "book" / "intro.html"
    if not page_path.exists():
        print(f"error: {page_path} does not exist; build it with `make pdf`", file=sys.stderr)
        return 2
    if CHROMIUM is None:
        print("error: chromium is not installed (`make chromium`)", file=sys.stderr)
        return 2
    # The single-page build writes the page to book/intro.html but links its resources relative to
    # the build root ("_static/...", "_images/..."): print a copy placed at the root.
    page_path = args.html / "whole-book.html"
    shutil.copyfile(args.html / "book" / "intro.html", page_path)
    from playwright.sync_api import sync_playwright

    args.out.parent.mkdir(parents=True, exist_ok=True)
    remote = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                                                                    "--disable-background-networking"])
        page = browser.new_page()
        page.route("http://**/*", lambda route: (remote.append(route.request.url), route.abort()))
        page.route("https://**/*", lambda route: (remote.append(route.request.url), route.abort()))
        page.goto(page_path.resolve().as_uri(), wait_until="load")
        page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=60_000)
        page.evaluate("MathJax.startup.promise")
        page.wait_for_function("document.querySelectorAll('mjx-container').length >= "
                               "document.querySelectorAll('.math').length", timeout=args.timeout * 1000)
        errors = page.evaluate("Array.from(document.querySelectorAll('mjx-merror')).map(e => "
                               "((e.closest('section') || {}).id || '?') + ': ' + e.getAttribute('data-mjx-error'))")
        if errors:
            browser.close()
            print(f"error: MathJax could not typeset {len(errors)} formula(s): {'; '.join(errors[:5])}", file=sys.stderr)
            return 1
        page.add_style_tag(content=PRINT_CSS)
        page.emulate_media(media="print")
        fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=".book-", suffix=".pdf")
        os.close(fd)
        try:
            page.pdf(path=tmp, format="A4", print_background=True, outline=True, tagged=True,
                     margin={"top": "15mm", "bottom": "15mm", "left": "14mm", "right": "14mm"},
                     display_header_footer=True, header_template="<div></div>", footer_template=FOOTER)
            os.chmod(tmp, 0o644)
            os.replace(tmp, args.out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        finally:
            browser.close()
    if remote:
        print(f"warning: the page asked for {len(remote)} remote resources (blocked), e.g. {remote[0]}", file=sys.stderr)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
