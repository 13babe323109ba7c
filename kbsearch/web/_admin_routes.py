"""Admin endpoints of the API: ``GET /api/stats`` (what the index holds, per source).

For members of ``web.report_groups`` only, like the report: counts of restricted documents per source
are not for everyone.
"""

from __future__ import annotations


from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from ._auth import ForbiddenError
from ._calls import call_kb, has_kb


def rules() -> list[Rule]:
    """The URL rules of this module, fresh for each `WebApp.url_map`."""
    return [Rule("/api/stats", endpoint="stats", methods=["GET"])]


class AdminRoutes:
    """The handlers of `rules`, mixed into `WebApp`."""

    def on_stats(self, request: Request) -> Response:
        """`KnowledgeBase.stats` with ``sources``: documents, pages, answers, restricted, verified,
        outdated and the newest ``updated`` date of each source, and under ``run`` its last sync
        run and health (`KnowledgeBase.source_health`)."""
        who = self.identity(request)
        if who.anonymous or not set(who.groups) & set(self.cfg.report_groups):
            raise ForbiddenError("index statistics are only for members of the groups in web.report_groups")
        from ..ops._source_runs import with_health

        stats = call_kb(self.kb, "stats")
        sources = call_kb(self.kb, "source_stats")
        health = call_kb(self.kb, "source_health", sources=[s.source for s in sources]) \
            if has_kb(self.kb, "source_health") else []  # a portal's own knowledge base may not keep runs
        return self.json({**stats.to_dict(), "sources": with_health(sources, health)})
