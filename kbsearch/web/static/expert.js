// kbsearch page, expert tools on a question card: who holds it (claim, assign, give back), the
// answer's earlier versions, and editing an answer.  app.js calls kbsearchExpert.decorate(esc, node, ctx)
// for every card; ctx = {api, me, groups, card}: card(esc) renders a fresh card for a changed question.
// Everything from the server goes in as text (textContent), never as markup.
"use strict";
window.kbsearchExpert = (function () {
  function el(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function when(iso) { return String(iso || "").slice(0, 16).replace("T", " "); }

  // One request that changes the question, then the card is drawn again from the server's answer.
  async function act(ctx, node, path, body, button) {
    button.disabled = true;
    try {
      const esc = await ctx.api(path, { method: "POST", body: body || {} });
      const fresh = ctx.card(esc);
      node.replaceWith(fresh);
      fresh.dataset.acted = "1";
    } catch (e) {
      button.disabled = false;
      const p = el("p", "status error", e.message);
      node.querySelector(".claim").appendChild(p);
    }
  }

  function claimBox(esc, node, ctx) {
    const box = node.querySelector(".claim");
    if (!box) return;
    const me = ctx.me;
    const inGroup = me.user && ((me.groups || []).includes(esc.group) || (me.expert_of || []).includes(esc.group));
    if (!esc.open || !inGroup) {
      if (esc.claimed_by && esc.open) { box.hidden = false; box.querySelector(".claim-state").textContent = "Taken by " + esc.claimed_by; }
      return;
    }
    box.hidden = false;
    node.dataset.claimedBy = esc.claimed_by || "";
    const state = box.querySelector(".claim-state");
    const expert = (me.expert_of || []).includes(esc.group);
    const mine = esc.claimed_by === me.user;
    if (!esc.claimed_by) state.textContent = "Nobody has taken it yet.";
    else state.textContent = (mine ? "You have taken it" : "Taken by " + esc.claimed_by)
      + (esc.assigned_by && esc.assigned_by !== esc.claimed_by ? " (assigned by " + esc.assigned_by + ")" : "")
      + (esc.claimed_at ? " · " + when(esc.claimed_at) : "");
    const actions = box.querySelector(".claim-actions");
    const path = "escalations/" + encodeURIComponent(esc.id);
    if (!esc.claimed_by) {
      const b = el("button", "take secondary", "I'll take it");
      b.type = "button";
      b.addEventListener("click", () => act(ctx, node, path + "/claim", {}, b));
      actions.appendChild(b);
    }
    if (esc.claimed_by && (mine || expert)) {
      const b = el("button", "give-back secondary", mine ? "Give it back" : "Release");
      b.type = "button";
      b.addEventListener("click", () => act(ctx, node, path + "/unclaim", {}, b));
      actions.appendChild(b);
    }
    const group = (ctx.groups || []).find((g) => g.name === esc.group);
    const people = ((group && group.people) || []).filter((p) => p !== esc.claimed_by);
    if ((expert || mine) && people.length) {
      const sel = el("select", "assign-to");
      sel.setAttribute("aria-label", "Assign to");
      people.forEach((p) => { const o = el("option", "", p); o.value = p; sel.appendChild(o); });
      const b = el("button", "assign secondary", "Assign");
      b.type = "button";
      b.addEventListener("click", () => act(ctx, node, path + "/claim", { to: sel.value }, b));
      actions.append(sel, b);
    }
  }

  // Earlier versions of the answer (GET escalations: answer_history), newest last.
  function historyBox(esc, node) {
    const box = node.querySelector(".history");
    const items = esc.answer_history || [];
    if (!box || !items.length) return;
    box.hidden = false;
    box.querySelector("summary").textContent = "Edited " + (items.length === 1 ? "once" : items.length + " times") + " — earlier versions";
    const list = box.querySelector("ol");
    for (const v of items) {
      const li = el("li", "version");
      li.appendChild(el("p", "meta", (v.by || "the operator") + (v.at ? " · " + when(v.at) : "")
        + " — replaced" + (v.replaced_by ? " by " + v.replaced_by : "") + " " + when(v.replaced_at)));
      li.appendChild(el("p", "old-text", v.text || ""));
      list.appendChild(li);
    }
  }

  // The answerer or an expert of the group may change an answer; the old text stays in the history.
  function editBox(esc, node, ctx) {
    const me = ctx.me;
    if (!esc.answer || !me.user || !(me.groups || []).includes(esc.group)) return;
    if (esc.answered_by !== me.user && !(me.expert_of || []).includes(esc.group)) return;
    const box = node.querySelector(".answer");
    const open = el("button", "edit-answer secondary", "Edit answer");
    open.type = "button";
    box.appendChild(open);
    open.addEventListener("click", () => {
      open.remove();
      const form = el("form", "edit-form");
      const ta = el("textarea");
      ta.name = "text"; ta.rows = 4; ta.maxLength = 20000; ta.value = esc.answer;
      ta.setAttribute("aria-label", "Changed answer");
      const send = el("button", "", "Save the change");
      send.type = "submit";
      form.append(ta, send);
      box.appendChild(form);
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const text = ta.value.trim();
        if (!text) return;
        send.disabled = true;
        try {
          const changed = await ctx.api("escalations/" + encodeURIComponent(esc.id) + "/answer", { method: "POST", body: { text } });
          const full = await ctx.api("escalations/" + encodeURIComponent(changed.id));
          const fresh = ctx.card(full);
          node.replaceWith(fresh);
          fresh.dataset.edited = "1";
        } catch (e) {
          send.disabled = false;
          form.appendChild(el("p", "status error", e.message));
        }
      });
    });
  }

  // The SLA (one question's GET): how long it has waited in its group, and what comes next.
  function slaLine(esc, node) {
    const sla = esc.sla;
    const box = node.querySelector(".claim");
    if (!sla || !box) return;
    const p = el("p", "meta sla" + (sla.overdue ? " overdue" : ""),
      "Waiting " + sla.hours_open + " h in " + sla.group
      + (sla.overdue ? " · overdue" + (sla.fallback_group ? " (goes to " + sla.fallback_group + ")" : "")
        : sla.overdue_at ? " · overdue at " + when(sla.overdue_at) + (sla.fallback_group ? ", then to " + sla.fallback_group : "") : "")
      + (sla.next_reminder_at && !sla.overdue ? " · next reminder " + when(sla.next_reminder_at) : ""));
    box.hidden = false;
    box.insertBefore(p, box.firstChild);
  }

  // What the asker saw and rejected before asking (the API keeps only documents the caller may see).
  function seenBox(esc, node) {
    const box = node.querySelector(".seen");
    const items = esc.seen || [];
    if (!box || !items.length || !esc.open) return;
    box.hidden = false;
    box.querySelector("summary").textContent = "Already shown to the asker (" + items.length + ")";
    const list = box.querySelector("ul");
    for (const s of items) {
      const li = el("li");
      let href = null;
      try { const u = new URL(s.url || "", location.href); if (s.url && (u.protocol === "http:" || u.protocol === "https:")) href = u.href; } catch (e) { href = null; }
      const a = el(href ? "a" : "span", "", s.title || s.id);
      if (href) { a.href = href; a.rel = "noopener noreferrer"; }
      li.appendChild(a);
      list.appendChild(li);
    }
  }

  return {
    decorate(esc, node, ctx) {
      seenBox(esc, node);
      claimBox(esc, node, ctx);
      slaLine(esc, node);
      historyBox(esc, node);
      editBox(esc, node, ctx);
    },
  };
})();
