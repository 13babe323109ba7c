"""Small self-made archives in real indexes (temporary folders) for the deflection tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kbsearch import Document, KnowledgeBase, Settings

#: Repository root.
ROOT = Path(__file__).resolve().parents[2]
#: Small subsets of the evaluation sets, kept in the repository (see tests/data/eval/README.md); the
#: full sets (../shared/data/eval) are evaluated by bench/, not by the tests.
EVAL = ROOT / "tests" / "data" / "eval"

THREADS: dict[str, tuple[str, str, str, list[str]]] = {
    # id: (group, title, answer, alternate phrasings)
    "vpn": ("it", "How do I connect to the VPN from a hotel?",
            "Hotel networks block the VPN port; use the SSL fallback option or your phone hotspot.",
            ["vpn does not work in the hotel wifi", "cannot reach the vpn gateway when travelling",
             "vpn connection fails on guest network", "how to use vpn while on a business trip",
             "the vpn client says gateway unreachable at the hotel", "remote access not working abroad",
             "vpn keeps disconnecting in hotel", "connect to company network from a hotel room"]),
    "password": ("it", "My password expired, how do I reset it?",
                 "Go to the self-service portal, choose 'forgot password' and confirm with your authenticator.",
                 ["reset my expired password", "i forgot my password", "password no longer works after 90 days",
                  "how can i change my login password", "locked out because the password expired",
                  "where do i renew my password", "new password for my account", "unlock my account password"]),
    "printer": ("it", "The printer on floor 3 shows a paper jam",
                "Open drawer 2, remove the jammed sheet, close it and press resume; call facilities if it repeats.",
                ["printer paper jam third floor", "cannot print, paper stuck", "printer says jam but no paper inside",
                 "how to clear a paper jam", "the copier is jammed", "printing stopped with a jam error",
                 "fix jammed printer", "paper stuck in the printer tray"]),
    "holiday": ("hr", "How many vacation days do I get per year?",
                "Full-time staff get 28 days of paid leave a year; part-time staff pro rata.",
                ["how much annual leave do i have", "number of holidays per year", "vacation allowance",
                 "how many days off do employees get", "paid leave entitlement", "days of holiday for part time staff",
                 "annual vacation days", "what is my leave entitlement"]),
    "sick": ("hr", "What do I do when I am sick?",
             "Tell your manager before 9am and send a doctor's note from the fourth day of illness.",
             ["calling in sick", "i am ill today what should i do", "sick leave procedure", "doctor note needed when",
              "how to report sickness", "who do i inform when i am sick", "sick day rules", "illness absence reporting"]),
    "expenses": ("finance", "How do I submit travel expenses?",
                 "Upload receipts in the expense app within 30 days; your manager approves, payment follows in a week.",
                 ["claim travel costs", "where do i send my receipts", "reimbursement of hotel costs",
                  "expense report for a business trip", "how to get money back for train tickets",
                  "submit receipts for reimbursement", "travel expense claim deadline", "refund of travel expenses"]),
    "parking": ("facilities", "Where can I park my car at the office?",
                "Use the garage under building B; request a parking card from reception.",
                ["car park at headquarters", "parking spaces for employees", "where to leave my car",
                 "parking card request", "is there a garage", "employee parking rules", "visitor and staff parking",
                 "can i park at the office"]),
    "badge": ("facilities", "I lost my access badge",
              "Report it at reception at once; they block it and print a new one for 10 euros.",
              ["lost my badge", "access card missing", "replace my id card", "badge does not open the door",
               "new entry badge", "stolen access card", "forgot my badge at home", "how to get a new badge"]),
    "meeting": ("facilities", "How do I book a meeting room?",
                "Open the calendar, add a room from the room list and wait for its confirmation.",
                ["reserve a conference room", "booking meeting rooms", "how to get a room for a meeting",
                 "room reservation in outlook", "book a room for 10 people", "meeting room booking system",
                 "schedule a room", "conference room availability"]),
    "payslip": ("finance", "Where do I find my payslip?",
                "Payslips are in the HR portal under 'My pay' from the 25th of each month.",
                ["download my salary statement", "payslip online", "where is my pay slip",
                 "monthly salary document", "get my payroll statement", "access my payslips",
                 "pay statement location", "see my salary slip"]),
}


def thread_docs(*, outdated: set[str] = frozenset(), restricted: dict[str, list[str]] | None = None) -> list[Document]:
    restricted = restricted or {}
    return [Document(id=tid, title=title, text=answer, kind="answer", questions=tuple(phr), group=group,
                     outdated=tid in outdated, allowed_groups=tuple(restricted.get(tid, ())),
                     url=f"https://intranet.example/answers/{tid}")
            for tid, (group, title, answer, phr) in THREADS.items()]


def make_kb(path: Path, docs: list[Document], **overrides: object) -> KnowledgeBase:
    settings = Settings.load(env={}, **{"index_path": path, **overrides})
    kb = KnowledgeBase.open(settings=settings)
    kb.rebuild(docs)
    return kb


@pytest.fixture
def kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    with make_kb(tmp_path / "kb", thread_docs()) as kb:
        yield kb


@pytest.fixture(scope="module")
def shared_kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeBase]:
    """One index for read-only tests (building one takes a few seconds)."""
    with make_kb(tmp_path_factory.mktemp("deflect") / "kb", thread_docs()) as kb:
        yield kb


def eval_set(name: str) -> Path:
    path = EVAL / name
    if not (path / "archive.jsonl").is_file():
        raise FileNotFoundError(f"evaluation set missing: {path} (see tests/data/eval/README.md)")
    return path
