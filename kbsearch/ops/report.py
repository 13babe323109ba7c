"""The deflection report: how many questions the index answered, how many went to the peers, and why.

Built from the usage log (``usage.sqlite3``, or PostgreSQL with ``store.url``: every
`KnowledgeBase.ask` and its feedback) and the escalation store (``peers.sqlite3``, or PostgreSQL:
escalations and their answers), both read through
`KnowledgeBase`.  Shown as a terminal table (`render_text`), JSON (`DeflectionReport.to_dict`) and a
self-contained HTML page with inline SVG charts (`render_html`; no external assets).

Definitions (also in docs/web.md):

* *asked*: logged asks in the period; *answered*: the decision was ANSWER; *suggested*: SUGGEST;
* *escalated*: an escalation was created in the period (through ``ask``, the page or the API);
* *deflected*: answered, or marked "this solved it" (whatever was shown), and neither escalated
  afterwards nor marked "still need help"; the *deflection rate* is deflected / asked;
* *time to a peer answer*: from an escalation's creation to its first answer (a later edit does not
  move it): median and 90th percentile (nearest rank), hours, in all and per group;
* *content gaps*: questions that were not answered (or were marked not helpful), grouped by their
  analysed terms, most asked first; a gap drops off once peers answered it (an answered escalation
  with the same analysed terms, or the one the ask led to);
* *outdated*: answers and pages currently marked outdated.
"""

from __future__ import annotations

import html
import logging
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..config import Settings
    from ..deflect import Deflector
    from ..documents import Document
    from ..storage.usage import UsageLog


class ReportSource(Protocol):
    """What the report reads (`KnowledgeBase` is one): the usage log, escalations and documents."""

    settings: Settings

    @property
    def usage(self) -> UsageLog:
        """The usage log: asks and feedback."""
        ...

    def escalations(self, *, limit: int = 100) -> list[Any]:
        """Escalations, newest first."""
        ...

    def documents(self) -> Iterator[Document]:
        """Every document of the live version."""
        ...

    def get(self, doc_id: str) -> Document | None:
        """The document with ``doc_id``, or None."""
        ...

log = logging.getLogger(__name__)

NO_GROUP = "(none)"


@dataclass
class Bucket:
    """Counts for one day (or one group)."""

    key: str
    asked: int = 0
    answered: int = 0
    suggested: int = 0
    escalated: int = 0
    deflected: int = 0
    not_helpful: int = 0
    median_answer_hours: float | None = None
    #: 90th percentile of the time to a peer answer (hours): the slow tail the median hides.
    p90_answer_hours: float | None = None

    @property
    def deflection_rate(self) -> float | None:
        return round(self.deflected / self.asked, 4) if self.asked else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["deflection_rate"] = self.deflection_rate
        return out


@dataclass
class DeflectionReport:
    """Everything `kbsearch report` shows; `to_dict` is the JSON of ``--json`` and ``GET /api/report``."""

    since: str
    until: str
    days: int
    totals: Bucket
    per_day: list[Bucket] = field(default_factory=list)
    per_group: list[Bucket] = field(default_factory=list)
    median_answer_hours: float | None = None
    p90_answer_hours: float | None = None
    open_escalations: int = 0
    answered_escalations: int = 0
    helpful: int = 0
    not_helpful: int = 0
    content_gaps: list[dict[str, Any]] = field(default_factory=list)
    outdated: list[dict[str, Any]] = field(default_factory=list)
    #: Share of unanswerable questions: assumed (``deflect.unanswerable_share``), estimated from the
    #: questions asked at the last rebuild (None: too few asks), and the one decisions use.
    unanswerable_share: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since, "until": self.until, "days": self.days, "totals": self.totals.to_dict(),
            "deflection_rate": self.totals.deflection_rate, "median_answer_hours": self.median_answer_hours,
            "p90_answer_hours": self.p90_answer_hours,
            "open_escalations": self.open_escalations, "answered_escalations": self.answered_escalations,
            "helpful": self.helpful, "not_helpful": self.not_helpful,
            "per_day": [b.to_dict() for b in self.per_day], "per_group": [b.to_dict() for b in self.per_group],
            "content_gaps": self.content_gaps, "outdated": self.outdated,
            "unanswerable_share": self.unanswerable_share,
        }


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    try:
        ts = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _gap_key(question: str) -> str:
    """Questions asked in different words but with the same analysed terms count as one gap."""
    from ..index import analyze

    terms = sorted(set(analyze(question)))
    return " ".join(terms) if terms else re.sub(r"\W+", " ", question.lower()).strip()


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _p90(values: list[float]) -> float | None:
    """The 90th percentile (nearest rank: the value at or below which 90% of ``values`` lie)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, -(-9 * len(ordered) // 10) - 1)], 3)


def build(kb: ReportSource, *, days: int = 90, now: datetime | None = None,
          deflector: Deflector | None = None) -> DeflectionReport:
    """Compute the report for the last ``days`` days (see the module docstring for the definitions).

    ``deflector``: the live version's (`kbsearch.deflect`), for what it assumes about unanswerable
    questions; None when there is none yet."""
    now = now or datetime.now(timezone.utc)
    start = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    asks = list(kb.usage.asks(since=start.isoformat())) if hasattr(kb, "usage") else []
    feedback = list(kb.usage.feedback()) if hasattr(kb, "usage") else []
    escalations = _escalations(kb, start)

    latest_fb: dict[str, Any] = {}
    for fb in feedback:  # oldest first: the latest feedback of a decision wins
        latest_fb[fb.decision_id] = fb
    escalated_decisions = {a["id"] for a in asks if a.get("escalation_id")}
    escalated_decisions |= {d for d, fb in latest_fb.items() if fb.escalated}

    doc_groups: dict[str, str | None] = {}

    def group_of(ask: dict[str, Any]) -> str:
        if ask.get("routed_group"):
            return str(ask["routed_group"])
        answer_id = ask.get("answer_id")
        if answer_id and ask.get("action") == "answer":
            if answer_id not in doc_groups:
                doc = kb.get(answer_id)
                doc_groups[answer_id] = doc.group if doc is not None else None
            return doc_groups[answer_id] or NO_GROUP
        return NO_GROUP

    totals = Bucket("all")
    per_day: dict[str, Bucket] = {}
    per_group: dict[str, Bucket] = {}
    day = start
    while day <= now:
        key = day.date().isoformat()
        per_day[key] = Bucket(key)
        day += timedelta(days=1)
    gaps: dict[str, dict[str, Any]] = {}
    gap_phrasings: dict[str, Counter[str]] = defaultdict(Counter)

    for ask in asks:
        ts = _parse_time(ask.get("time"))
        if ts is None:
            continue
        action = ask.get("action")
        fb = latest_fb.get(ask["id"])
        unhelpful = fb is not None and not fb.helpful
        solved = fb is not None and fb.helpful  # "This solved it", whatever the decision was
        escalated = ask["id"] in escalated_decisions
        deflected = (action == "answer" or solved) and not escalated and not unhelpful
        group = group_of(ask)
        for bucket in (totals, per_day.setdefault(ts.date().isoformat(), Bucket(ts.date().isoformat())),
                       per_group.setdefault(group, Bucket(group))):
            bucket.asked += 1
            bucket.answered += action == "answer"
            bucket.suggested += action == "suggest"
            bucket.deflected += deflected
            bucket.not_helpful += unhelpful
        if not deflected:
            key = _gap_key(ask.get("question") or "")
            gap = gaps.setdefault(key, {"question": "", "asked": 0, "escalated": 0, "last_asked": "",
                                        "group": group})
            gap["asked"] += 1
            gap["escalated"] += escalated
            gap["last_asked"] = max(gap["last_asked"], ts.isoformat())
            gap_phrasings[key][ask.get("question") or ""] += 1

    answer_hours: list[float] = []
    group_hours: dict[str, list[float]] = defaultdict(list)
    open_count = answered_count = 0
    for esc in escalations:
        created = _parse_time(esc.get("created"))
        if created is None:
            continue
        group = esc.get("group") or NO_GROUP
        for bucket in (totals, per_day.setdefault(created.date().isoformat(), Bucket(created.date().isoformat())),
                       per_group.setdefault(group, Bucket(group))):
            bucket.escalated += 1
        answered_at = _parse_time(esc.get("first_answered_at") or esc.get("answered_at"))
        if answered_at is not None:
            answered_count += 1
            hours = max((answered_at - created).total_seconds() / 3600, 0.0)
            answer_hours.append(hours)
            group_hours[group].append(hours)
        elif esc.get("open", esc.get("status") in ("asked", "escalated")):
            open_count += 1
    for group, bucket in per_group.items():
        bucket.median_answer_hours = _median(group_hours.get(group, []))
        bucket.p90_answer_hours = _p90(group_hours.get(group, []))
    totals.median_answer_hours, totals.p90_answer_hours = _median(answer_hours), _p90(answer_hours)

    # A gap that peers have answered since is no gap any more: its answer is in the index.
    answered_keys = {_gap_key(str(e.get("question") or "")) for e in escalations if e.get("answered_at")}
    answered_ids = {str(e.get("id")) for e in escalations if e.get("answered_at")}
    answered_keys |= {_gap_key(a.get("question") or "") for a in asks if a.get("escalation_id") in answered_ids}
    gaps = {k: g for k, g in gaps.items() if k not in answered_keys}
    for key, gap in gaps.items():
        gap["question"] = gap_phrasings[key].most_common(1)[0][0]
        gap["phrasings"] = len(gap_phrasings[key])
    content_gaps = sorted(gaps.values(), key=lambda g: (-g["asked"], -g["escalated"], g["question"]))[:20]

    return DeflectionReport(
        since=start.isoformat(), until=now.isoformat(), days=days, totals=totals,
        per_day=[per_day[k] for k in sorted(per_day)],
        per_group=sorted(per_group.values(), key=lambda b: (-b.asked - b.escalated, b.key)),
        median_answer_hours=_median(answer_hours), p90_answer_hours=_p90(answer_hours), open_escalations=open_count,
        answered_escalations=answered_count,
        helpful=sum(1 for fb in latest_fb.values() if fb.helpful),
        not_helpful=sum(1 for fb in latest_fb.values() if not fb.helpful),
        content_gaps=content_gaps, outdated=_outdated(kb), unanswerable_share=_unanswerable_share(kb.settings, deflector),
    )


def _unanswerable_share(settings: Settings, deflector: Deflector | None) -> dict[str, Any]:
    """What deflection assumes about unanswerable questions, and what the questions asked suggest."""
    if deflector is None:  # nothing built yet: nothing to report
        return {}
    cfg = settings.deflect
    estimate = deflector.cal.report.get("unanswerable_share_estimate")
    return {"assumed": cfg.unanswerable_share, "estimated": estimate,
            "estimated_from_asks": deflector.cal.report.get("estimate_asks"),
            "learning": cfg.learn_unanswerable_share,
            "used": deflector.thresholds(settings).get("unanswerable_share")}


def _escalations(kb: ReportSource, start: datetime) -> list[dict[str, Any]]:
    if not hasattr(kb, "escalations"):
        return []
    out = []
    for esc in kb.escalations(limit=1_000_000):
        data = esc.to_dict() if hasattr(esc, "to_dict") else dict(esc)
        created = _parse_time(data.get("created"))
        if created is not None and created >= start:
            if int(data.get("revision") or 0) > 1 and hasattr(kb, "escalation"):
                # changed since (edited, verified): its first answer is in the history
                first = [e["at"] for e in kb.escalation(data["id"]).events if e["kind"] == "answered"]
                data["first_answered_at"] = first[0] if first else None
            out.append(data)
    return out


def _outdated(kb: ReportSource) -> list[dict[str, Any]]:
    return [{"id": d.id, "title": d.title, "kind": d.kind, "url": d.url, "group": d.group}
            for d in kb.documents() if d.outdated][:200]


# -- rendering ---------------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _hours(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 60:.0f} min" if value < 1 else f"{value:.1f} h"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return out


def _bucket_row(b: Bucket) -> list[str]:
    return [b.key, str(b.asked), str(b.answered), str(b.escalated), _pct(b.deflection_rate),
            _hours(b.median_answer_hours), _hours(b.p90_answer_hours)]


def render_text(report: DeflectionReport) -> str:
    """The report as plain-text tables for a terminal."""
    t = report.totals
    lines = [f"Deflection report {report.since[:10]} .. {report.until[:10]} ({report.days} days)", ""]
    lines += [f"asked {t.asked}, answered from the index {t.answered}, suggested {t.suggested}, "
              f"escalated {t.escalated}; deflection rate {_pct(t.deflection_rate)}",
              f"peer answers: {report.answered_escalations} (median {_hours(report.median_answer_hours)}, "
              f"p90 {_hours(report.p90_answer_hours)}), "
              f"still open {report.open_escalations}; feedback: {report.helpful} helpful, "
              f"{report.not_helpful} not helpful"]
    share = report.unanswerable_share
    if share.get("estimated") is not None:
        lines.append(f"unanswerable questions: assumed {_pct(share['assumed'])}, estimated from the last "
                     f"{share['estimated_from_asks']} questions asked {_pct(share['estimated'])}"
                     + (f"; deciding with {_pct(share['used'])}" if share.get("learning")
                        else " (set deflect.unanswerable_share, or learn it)"))
    lines.append("")
    headers = ["group", "asked", "answered", "escalated", "deflected", "peer answer", "p90"]
    lines += ["Per group", *_table(headers, [_bucket_row(b) for b in report.per_group]), ""]
    weeks = _weekly(report.per_day)
    lines += ["Per week", *_table(["week of"] + headers[1:], [_bucket_row(b) for b in weeks]), ""]
    lines.append("Content gaps (asked, found nothing good)")
    if report.content_gaps:
        lines += _table(["question", "asked", "escalated"],
                        [[g["question"][:70], str(g["asked"]), str(g["escalated"])] for g in report.content_gaps[:10]])
    else:
        lines.append("  none")
    lines += ["", "Marked outdated"]
    lines += [f"  {d['title'][:70]}  ({d['kind']}, {d['id']})" for d in report.outdated[:20]] or ["  none"]
    return "\n".join(lines)


def _weekly(days: list[Bucket]) -> list[Bucket]:
    weeks: dict[str, Bucket] = {}
    for b in days:
        d = datetime.fromisoformat(b.key).date()
        key = (d - timedelta(days=d.weekday())).isoformat()
        w = weeks.setdefault(key, Bucket(key))
        w.asked += b.asked
        w.answered += b.answered
        w.suggested += b.suggested
        w.escalated += b.escalated
        w.deflected += b.deflected
        w.not_helpful += b.not_helpful
    return [weeks[k] for k in sorted(weeks) if weeks[k].asked or weeks[k].escalated]


def _svg_rate_chart(days: list[Bucket], width: int = 720, height: int = 200) -> str:
    """Asked per day as bars, deflection rate as a line (inline SVG)."""
    pad = 30
    n = max(len(days), 1)
    peak = max([b.asked for b in days] + [1])
    step = (width - 2 * pad) / n
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Questions and deflection rate per day" '
             f'xmlns="http://www.w3.org/2000/svg" class="chart">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" class="axis"/>']
    points = []
    for i, b in enumerate(days):
        x = pad + i * step
        h = (height - 2 * pad) * b.asked / peak
        parts.append(f'<rect x="{x + step * 0.1:.1f}" y="{height - pad - h:.1f}" width="{step * 0.8:.1f}" '
                     f'height="{h:.1f}" class="bar"><title>{html.escape(b.key)}: {b.asked} asked, '
                     f'{b.deflected} deflected</title></rect>')
        if b.deflection_rate is not None:
            points.append(f"{x + step / 2:.1f},{height - pad - (height - 2 * pad) * b.deflection_rate:.1f}")
    if points:
        parts.append(f'<polyline points="{" ".join(points)}" class="rate"/>')
    parts.append(f'<text x="{pad}" y="{pad - 10}" class="label">bars: asked (max {peak}/day) · '
                 'line: deflection rate (0-100%)</text>')
    if days:
        parts.append(f'<text x="{pad}" y="{height - 8}" class="label">{html.escape(days[0].key)}</text>')
        parts.append(f'<text x="{width - pad}" y="{height - 8}" text-anchor="end" class="label">'
                     f'{html.escape(days[-1].key)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_group_chart(groups: list[Bucket], width: int = 720) -> str:
    """Per group: answered (deflected) vs escalated, as horizontal stacked bars."""
    row, label_w, pad = 26, 160, 10
    groups = groups[:12]
    height = row * max(len(groups), 1) + 2 * pad
    peak = max([b.deflected + b.escalated for b in groups] + [1])
    scale = (width - label_w - 2 * pad - 40) / peak
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Deflected and escalated per group" '
             f'xmlns="http://www.w3.org/2000/svg" class="chart">']
    for i, b in enumerate(groups):
        y = pad + i * row
        a, e = b.deflected * scale, b.escalated * scale
        parts.append(f'<text x="{label_w - 6}" y="{y + 17}" text-anchor="end" class="label">{html.escape(b.key[:24])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{a:.1f}" height="18" class="ok"><title>deflected {b.deflected}</title></rect>')
        parts.append(f'<rect x="{label_w + a:.1f}" y="{y + 4}" width="{e:.1f}" height="18" class="esc"><title>escalated {b.escalated}</title></rect>')
        parts.append(f'<text x="{label_w + a + e + 4:.1f}" y="{y + 17}" class="label">{b.deflected} / {b.escalated}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """body{font:15px/1.45 system-ui,sans-serif;color:#1d2430;max-width:60rem;margin:1.5rem auto;padding:0 1rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}table{border-collapse:collapse;width:100%}
th,td{padding:.3rem .5rem;border-bottom:1px solid #dde1e7;text-align:right}th:first-child,td:first-child{text-align:left}
.kpis{display:flex;flex-wrap:wrap;gap:1rem}.kpi{background:#f5f6f8;border-radius:.5rem;padding:.6rem 1rem}
.kpi b{display:block;font-size:1.5rem}.chart{width:100%;height:auto}.axis{stroke:#999}.bar{fill:#b9cde6}
.rate{fill:none;stroke:#1d7a3a;stroke-width:2.5}.ok{fill:#1d7a3a}.esc{fill:#c77700}.label{font-size:11px;fill:#5b6577}
.scroll{overflow-x:auto;max-width:100%}td:first-child{overflow-wrap:anywhere;min-width:8rem}
.legend{font-size:.85rem;color:#5b6577}.key{display:inline-block;width:.9rem;height:.9rem;margin:0 .3rem 0 .8rem;
vertical-align:-.1rem;border-radius:.15rem}.key.bar{background:#b9cde6}.key.rate{background:#1d7a3a;height:.25rem;
vertical-align:.2rem}.key.ok{background:#1d7a3a}.key.esc{background:#c77700}
@media (max-width:30rem){body{margin:.6rem auto;padding:0 .6rem}th,td{padding:.25rem .3rem;font-size:.85rem}.kpi{flex:1 1 40%}}"""


def render_html(report: DeflectionReport) -> str:
    """A self-contained HTML page (inline CSS and SVG; every text from users is escaped)."""
    e = html.escape
    t = report.totals
    kpis = [("asked", str(t.asked)), ("answered from the index", str(t.answered)), ("escalated", str(t.escalated)),
            ("deflection rate", _pct(t.deflection_rate)), ("median time to a peer answer", _hours(report.median_answer_hours)),
            ("90% of peer answers within", _hours(report.p90_answer_hours)),
            ("still open", str(report.open_escalations))]

    def table(headers: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{e(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"

    def legend(*items: tuple[str, str]) -> str:
        return "<p class='legend'>" + "".join(f"<span class='key {c}'></span>{e(t)} " for c, t in items) + "</p>"

    headers = ["group", "asked", "answered", "escalated", "deflected", "peer answer (median)", "(p90)"]
    gaps = [[g["question"], str(g["asked"]), str(g["escalated"]), g["group"]] for g in report.content_gaps]
    outdated = [[d["title"], d["kind"], d["group"] or "", d["id"]] for d in report.outdated]
    return "".join([
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        f"<title>kbsearch deflection report</title><style>{_CSS}</style></head><body>",
        f"<h1>Deflection report</h1><p>{e(report.since[:10])} to {e(report.until[:10])} ({report.days} days)</p>",
        "<div class='kpis'>", "".join(f"<div class='kpi'><b>{e(v)}</b>{e(k)}</div>" for k, v in kpis), "</div>",
        "<h2>Questions and deflection rate per day</h2>", _svg_rate_chart(report.per_day),
        legend(("bar", "questions asked per day"), ("rate", "deflection rate (0-100%)")),
        "<h2>Per group</h2>", _svg_group_chart(report.per_group),
        legend(("ok", "deflected (answered, no escalation)"), ("esc", "escalated to the peers")),
        table(headers, [_bucket_row(b) for b in report.per_group]),
        "<h2>Content gaps: most-asked questions that found nothing good</h2>",
        table(["question", "asked", "escalated", "group"], gaps) if gaps else "<p>None.</p>",
        "<h2>Answers and pages marked outdated</h2>",
        table(["title", "kind", "group", "id"], outdated) if outdated else "<p>None.</p>",
        "</body></html>",
    ])
