"""Site template: text blocks that recur on a large share of one source's pages are dropped.

Banners, navigation bars and footers that a site's theme repeats on every page are not content:
indexed, they become sections of their own ("Download the ebook Prev … Next" on every page of the
Debian handbook) or noise inside real ones.  Per-page extraction cannot tell them from content, so
the crawler counts, per source, on how many pages each block's normalized text occurs (the page's
block keys are kept in the crawl state, so the counts survive between runs and an incremental
crawl counts what a full one would).  A block is *template* when it occurs on at least ``share``
of the source's pages and on at least ``min_pages`` of them.  Links next to template text
(``Prev: <title of the previous page>`` beside "Up" and "Home") differ on every page, so a group of
blocks (the items of one list, the children of one element) made only of template text and links
is dropped whole.

Per-page libraries (readability, jusText, trafilatura) judge one page at a time; trafilatura's
optional deduplication remembers recent text segments in its process, so its result depends on the
order pages arrive in and is lost between runs.  Counting per source is a few lines here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from .extract import Block, Section, section_text

_WORD = re.compile(r"\w")


class SiteTemplate:
    """Block counts of one source and the decision they imply (see the module docstring).

    Until `freeze`, decisions follow the counts so far (the first pages of a new site are judged
    on little evidence; the crawler re-parses the pages whose decision changed at the end of the
    run); after it they follow the counts at that moment.
    """

    def __init__(self, share: float, min_pages: int) -> None:
        self.share, self.min_pages = share, max(1, min_pages)
        self.counts: dict[int, int] = {}
        #: Pages counted (pages with at least one block).
        self.pages = 0
        self._frozen: frozenset[int] | None = None

    @property
    def enabled(self) -> bool:
        return self.share > 0

    def add(self, keys: Iterable[int]) -> None:
        """Count one page's distinct block keys."""
        keys = list(keys)
        if not keys:
            return
        self.pages += 1
        counts = self.counts
        for key in keys:
            counts[key] = counts.get(key, 0) + 1

    def remove(self, keys: Iterable[int]) -> None:
        """Forget one page counted by `add` (it changed or is gone)."""
        keys = list(keys)
        if not keys:
            return
        self.pages = max(0, self.pages - 1)
        counts = self.counts
        for key in keys:
            left = counts.get(key, 0) - 1
            if left > 0:
                counts[key] = left
            else:
                counts.pop(key, None)

    def threshold(self) -> int:
        """Pages a block must occur on to be template now."""
        return max(self.min_pages, math.ceil(self.share * self.pages - 1e-9))

    def freeze(self) -> frozenset[int]:
        """Fix the template to the current counts (for the re-parse at the end of a run)."""
        if not self.enabled:
            self._frozen = frozenset()
        else:
            least = self.threshold()
            self._frozen = frozenset(k for k, n in self.counts.items() if n >= least)
        return self._frozen

    def is_template(self, key: int) -> bool:
        if self._frozen is not None:
            return key in self._frozen
        return self.enabled and self.counts.get(key, 0) >= self.threshold()

    def apply(self, sections: Sequence[Section]) -> tuple[list[Section | None], list[int], list[int]]:
        """(``sections`` without their template blocks, None for a section left without text; the
        page's distinct block keys; those of them that are template now), keys sorted."""
        blocks = [b for s in sections for b in s.blocks]
        keys = sorted({b.key for b in blocks})
        template = [k for k in keys if self.is_template(k)]
        if not template:
            return list(sections), keys, template
        hit = set(template)
        mixed: set[int] = set()  # groups holding something that is neither template nor a link
        groups_with_template: set[int] = set()
        for b in blocks:
            if b.key in hit:
                groups_with_template.add(b.group)
            elif not b.link_only:
                mixed.add(b.group)
        navigation = groups_with_template - mixed
        out: list[Section | None] = []
        for section in sections:
            kept = [b for b in section.blocks if not _dropped(b, hit, navigation)]
            if len(kept) == len(section.blocks):
                out.append(section)
            elif not any(_WORD.search(b.text) for b in kept):
                out.append(None)
            else:
                out.append(Section(section.anchor, section.title, section.headings, section_text(kept), tuple(kept)))
        return out, keys, template


def _dropped(block: Block, template: set[int], navigation: set[int]) -> bool:
    return block.key in template or (block.group in navigation and block.link_only)
