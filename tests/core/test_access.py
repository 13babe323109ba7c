"""Access control runs inside the search, before the top-k cut."""

from __future__ import annotations

import pytest

from kbsearch import ALL_GROUPS, Document, KnowledgeBase


def test_restricted_pages_need_a_group(example_kb: KnowledgeBase) -> None:
    q = "salary bands per job level"
    assert all(h.id != "page:hr/salary#bands" for h in example_kb.search(q))
    assert all(h.id != "page:hr/salary#bands" for h in example_kb.search(q, user_groups=["sales"]))
    assert example_kb.search(q, user_groups=["hr"])[0].id == "page:hr/salary#bands"
    assert example_kb.search(q, user_groups=ALL_GROUPS)[0].id == "page:hr/salary#bands"


@pytest.mark.parametrize("groups", [None, [], ["it-support"], "it-support"], ids=["none", "empty", "list", "str"])
def test_public_results_for_everyone(example_kb: KnowledgeBase, groups: object) -> None:
    hits = example_kb.search("commission plan margin quota", user_groups=groups)
    assert all(h.id != "page:sales/commission#plan" for h in hits)


def test_filter_runs_before_the_cut(kb: KnowledgeBase) -> None:
    # 60 restricted documents match better than the 15 public ones; a public user must still get 10.
    docs = [Document(id=f"secret{i}", title="forklift battery charging forklift battery",
                     text="forklift battery charging rules " * 5, allowed_groups=("warehouse",)) for i in range(60)]
    docs += [Document(id=f"public{i}", title=f"General rules {i}", text="forklift battery charging") for i in range(15)]
    kb.add(docs)
    hits = kb.search("forklift battery charging", limit=10)
    assert len(hits) == 10 and all(h.id.startswith("public") for h in hits)
    mixed = kb.search("forklift battery charging", limit=10, user_groups=["warehouse"])
    assert all(h.id.startswith("secret") for h in mixed)
