"""Units of the crawl stages: canonical URLs, scope, decoding and section extraction."""

from __future__ import annotations

import pytest

from kbsearch.sources.crawl.sitemap import parse_sitemap
from kbsearch.sources.crawl.extract import decode_html, extract_page
from kbsearch.sources.crawl.frontier import Frontier, Scope, canonical_url


@pytest.mark.parametrize("raw, canonical", [
    ("HTTP://Wiki.Example:80/a/b.html#frag", "http://wiki.example/a/b.html"),
    ("https://wiki.example:443/a/./c/../index.html", "https://wiki.example/a/"),
    ("http://wiki.example/a/index.htm?utm_source=x&b=2&a=1", "http://wiki.example/a/?a=1&b=2"),
    ("http://user:pw@wiki.example:8080//x//y/", "http://wiki.example:8080/x/y/"),
    ("http://wiki.example", "http://wiki.example/"),
    ("http://wiki.example/a%7eb/c d.html", "http://wiki.example/a~b/c%20d.html"),
    ("http://[::1]:8000/x", "http://[::1]:8000/x"),
], ids=["case-port-fragment", "dots-index", "query-sort-tracking", "userinfo-slashes", "empty-path",
        "percent-encoding", "ipv6"])
def test_canonical_url(raw, canonical):
    assert canonical_url(raw) == canonical


@pytest.mark.parametrize("bad", ["ftp://x/", "mailto:a@b", "http:///nohost", "http://x:99999/"])
def test_canonical_url_rejects(bad):
    with pytest.raises(ValueError):
        canonical_url(bad)


def test_scope_defaults_to_start_directories_and_bounds_traps():
    scope = Scope.build(["http://wiki/docs/start.html", "http://10.0.0.5:8080/kb/"], exclude=[r"/private/"],
                        max_query_variants=2)
    assert scope.check("http://wiki/docs/deep/page.html") is None
    assert scope.check("http://10.0.0.5:8080/kb/x") is None  # private addresses are ordinary intranet hosts
    assert scope.check("http://wiki/other/") == "outside the allowed path prefixes"
    assert scope.check("http://elsewhere/docs/") == "outside the allowed hosts"
    assert scope.check("http://wiki/docs/private/x") == "matched by an exclude pattern"
    assert scope.check("http://wiki/docs/a/a/a/a/") == "repeated path segments (link loop)"
    assert scope.check("http://wiki/docs/" + "x" * 3000) == "URL too long"
    assert [scope.admit_query(f"http://wiki/docs/cal?m={i}") for i in range(4)] == [True, True, False, False]
    assert scope.admit_query("http://wiki/docs/cal?m=0")  # a known variant stays admitted


def test_frontier_hands_out_each_url_once_breadth_first():
    frontier = Frontier(max_depth=1)
    assert frontier.push("http://a/1", 0) and frontier.push("http://a/2", 1)
    assert not frontier.push("http://a/1", 0) and not frontier.push("http://a/3", 2)
    assert [frontier.pop().url, frontier.pop().url, frontier.pop()] == ["http://a/1", "http://a/2", None]


@pytest.mark.parametrize("body, header, expected, encoding", [
    (b"\xef\xbb\xbf<p>caf\xc3\xa9</p>", None, "café", "utf-8"),
    ("<p>café</p>".encode("utf-16"), None, "café", "utf-16-le"),
    ('<meta charset="iso-8859-1"><p>caf\xe9</p>'.encode("latin-1"), None, "café", "cp1252"),
    ('<meta http-equiv="Content-Type" content="text/html; charset=koi8-r"><p>мир</p>'.encode("koi8-r"), None,
     "мир", "koi8-r"),
    ("<p>мир</p>".encode("cp1251"), "windows-1251", "мир", "cp1251"),
    ("<p>café</p>".encode(), "iso-8859-1", "café", "utf-8"),  # header lies: the bytes are UTF-8
    (b"<p>r\xc3\xa9sum\xc3\xa9 caf\xe9 \x93quoted\x94</p>", "utf-8", "résumé café “quoted”", "utf-8"),
    ("<p>café</p>".encode(), "no-such-charset", "café", "utf-8"),
], ids=["bom", "utf16-bom", "meta-latin1", "meta-http-equiv", "header", "lying-header", "mixed", "unknown"])
def test_decode_html(body, header, expected, encoding):
    text, used = decode_html(body, header)
    assert expected in text and used == encoding


SPHINX = b"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Design FAQ - Docs</title>
<link rel="canonical" href="/faq/design.html"><base href="/faq/"></head><body>
<div class="related" role="navigation"><a href="../index.html">up</a> RELATEDNAV</div>
<div class="document"><div class="body" role="main">
<section id="design-faq"><h1>Design FAQ<a class="headerlink" href="#design-faq">\xc2\xb6</a></h1>
<p>Intro text.</p>
<section id="why-indentation"><h2>Why does Python use indentation?<a class="headerlink" href="#x">\xc2\xb6</a></h2>
<p>Because <code>braces</code> are noise.</p>
<section id="sub"><h3>Really?</h3><p>Yes really.</p></section></section>
<h2 id="empty">Only subsections</h2><h3><a name="named"></a>Named anchor</h3><p>named text</p>
</section></div></div>
<div class="sphinxsidebar" role="navigation">SIDEBAR <a href="other.html" rel="nofollow">o</a></div>
<div class="footer">FOOTER <a href="copyright.html">c</a></div></body></html>"""


def test_extract_sections_anchors_links_and_chrome():
    page = extract_page(SPHINX, "http://docs/faq/design.html")
    assert page.title == "Design FAQ - Docs" and page.canonical == "http://docs/faq/design.html"
    got = [(s.anchor, s.title, s.headings[1:], s.text) for s in page.sections]
    assert got == [
        ("design-faq", "Design FAQ", (), "Intro text."),
        ("why-indentation", "Why does Python use indentation?", ("Design FAQ",), "Because braces are noise."),
        ("sub", "Really?", ("Design FAQ", "Why does Python use indentation?"), "Yes really."),
        ("named", "Named anchor", ("Design FAQ", "Only subsections"), "named text"),
    ]
    assert page.sections[0].headings == ("Design FAQ - Docs",)
    # Links resolve against <base>, nofollow links are dropped, chrome links are still followed.
    assert page.links == ["http://docs/", "http://docs/faq/copyright.html"]
    text = " ".join(s.text for s in page.sections)
    assert "RELATEDNAV" not in text and "SIDEBAR" not in text and "FOOTER" not in text


@pytest.mark.parametrize("body, flag", [
    (b'<html><head><meta name="robots" content="NOINDEX, follow"></head><body><p>x</p><a href="a">a</a></body>',
     "noindex"),
    (b'<html><head><meta name="robots" content="none"></head><body><p>x</p><a href="a">a</a></body>', "none"),
    (b"<html><head><title>Index of /files/</title></head><body><a href='a.html'>a</a></body>", "listing"),
], ids=["noindex", "none", "apache-listing"])
def test_extract_robots_directives_and_listings(body, flag):
    page = extract_page(body, "http://h/")
    assert page.sections == []
    if flag == "listing":
        assert page.listing and page.links == ["http://h/a.html"]
    else:
        assert page.noindex and (page.nofollow == (flag == "none"))


def test_extract_survives_garbage():
    for body in [b"", b"\x00\x01\x02", b"<<<>>>", b"<?xml version='1.0' encoding='utf-8'?><html><p>x</p></html>",
                 b"<div>" * 5000 + b"deep text" + b"</div>" * 10]:
        page = extract_page(body, "http://h/")
        assert page.error is None or "unparseable" in page.error
    assert extract_page(b"<div>" * 200 + b"deep text", "http://h/").sections[0].text == "deep text"


def test_x_robots_tag_header_counts_like_meta():
    assert extract_page(b"<p>x</p>", "http://h/", x_robots="noindex").noindex


def test_parse_sitemap_and_index():
    urlset = b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">' \
             b'<url><loc> http://h/a </loc></url><url><loc>http://h/b</loc></url></urlset>'
    index = b'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>http://h/s1.xml' \
            b'</loc></sitemap></sitemapindex>'
    assert parse_sitemap(urlset) == (["http://h/a", "http://h/b"], [])
    assert parse_sitemap(index) == ([], ["http://h/s1.xml"])
    assert parse_sitemap(b"not xml at all") == ([], [])
    bomb = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>' \
           b'<urlset><url><loc>&b;</loc></url></urlset>'
    assert all(len(url) < 100 for url in parse_sitemap(bomb)[0])  # entities are not expanded


def test_code_blocks_keep_their_lines_and_indentation():
    """A ``<pre>`` block keeps its line breaks and indentation (issue 24: code lost its line breaks);
    the text around it is still collapsed to single spaces."""
    body = (b"<html><head><title>json</title></head><body><main><h1>Examples</h1><p>Use   it\n like this:</p>"
            b"<pre>import json\r\n<span class='k'>def</span> f(x):\n    return json.dumps(x)\n</pre>"
            b"<p>Then   call <code>f</code>.</p></main></body></html>")
    [section] = extract_page(body, "http://docs/json.html").sections
    assert section.text == "Use it like this:\nimport json\ndef f(x):\n    return json.dumps(x)\nThen call f."
