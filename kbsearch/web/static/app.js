// kbsearch page: ask, see answers, say if they helped, ask the peers, follow "My questions";
// experts answer their group's questions.  "#esc=<id>" (the link in notifications) opens one question.
// No framework, no build step. Everything from the server is inserted as text, except the snippet's
// <mark> highlights, which are rebuilt from parsed text nodes (nothing else of it survives).
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const TOKEN_KEY = "kbsearch-token";

  // A portal may hand the page a signed token in the URL fragment (never sent to servers or logs).
  // It is taken out of the address at once; the rest of the fragment (e.g. esc=<id>) stays.
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, frag.get("token"));
    frag.delete("token");
    const rest = frag.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
  const token = sessionStorage.getItem(TOKEN_KEY);

  async function api(path, opts = {}) {
    const headers = Object.assign({}, opts.headers || {});
    if (token) headers["Authorization"] = "Bearer " + token;
    let body = opts.body;
    if (body && !(body instanceof FormData)) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(body);
    }
    const resp = await fetch("api/" + path, { method: opts.method || "GET", headers, body, credentials: "same-origin" });
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) {
      const err = new Error((data && data.error) || ("request failed (" + resp.status + ")"));
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  function setStatus(text, kind) {
    const el = $("#status");
    el.textContent = text || "";
    el.className = "status" + (kind ? " " + kind : "");
  }

  // Rebuild a server snippet (escaped text + <mark>) as DOM: only text and <mark> survive.
  function safeSnippet(target, html) {
    const doc = new DOMParser().parseFromString("<body>" + (html || ""), "text/html");
    target.textContent = "";
    (function walk(node, out) {
      for (const child of node.childNodes) {
        if (child.nodeType === Node.TEXT_NODE) out.appendChild(document.createTextNode(child.textContent));
        else if (child.nodeType === Node.ELEMENT_NODE && child.tagName === "MARK") {
          const m = document.createElement("mark");
          m.textContent = child.textContent;
          out.appendChild(m);
        } else if (child.nodeType === Node.ELEMENT_NODE) walk(child, out);
      }
    })(doc.body, target);
  }

  function safeUrl(url) {
    if (!url) return null;
    try {
      const u = new URL(url, location.href);
      return (u.protocol === "http:" || u.protocol === "https:") ? u.href : null;
    } catch (e) { return null; }
  }

  // ---- state ----
  let me = { user: null, groups: [], may_verify: [] };
  let groups = [];
  let limits = {}; // GET /api/health: max_photo_bytes
  let current = null; // {question, decision, shown: the hits shown (sent as "seen")}
  let routed = null; // {group, reason}: where the server would send the question; kept unless changed
  let similarTimer = null;
  let similarSeq = 0;

  function decisionKind(d) { return String(d.decision || d.action || d.kind || "").toUpperCase(); }
  function decisionHits(d) { return d.answers || d.hits || d.candidates || []; }
  function suggestedGroup(d) {
    if (d.routing && d.routing.group) return d.routing.group;
    if (typeof d.group === "string") return d.group;
    return null;
  }

  function renderHits(hits, kind, heading) {
    const box = $("#results");
    box.textContent = "";
    if (heading && hits.length) {
      const h = document.createElement("h2");
      h.className = "section";
      h.id = "closest-heading";
      h.textContent = heading;
      box.appendChild(h);
    }
    const tpl = $("#hit-template");
    hits.forEach((hit, i) => {
      const node = tpl.content.firstElementChild.cloneNode(true);
      const a = node.querySelector(".title");
      a.textContent = hit.title || "(untitled)";
      const href = safeUrl(hit.url);
      if (href) a.href = href; else a.removeAttribute("href");
      const badges = node.querySelector(".badges");
      const add = (text, cls) => { const s = document.createElement("span"); s.className = "badge " + (cls || ""); s.textContent = text; badges.appendChild(s); };
      add(hit.kind === "answer" ? "peer answer" : "page");
      if (hit.verified) add("verified", "verified");
      if (hit.outdated) add("may be outdated", "outdated");
      safeSnippet(node.querySelector(".snippet"), hit.snippet);
      node.dataset.docId = hit.id;
      if (window.kbsearchResults) window.kbsearchResults.decorate(hit, node);
      if (i > 0 && kind === "ANSWER") node.classList.add("secondary-hit");
      box.appendChild(node);
    });
    // One prompt for the whole answer set: feedback is about the decision, not one card.
    const prompt = $("#feedback-template").content.firstElementChild.cloneNode(true);
    prompt.querySelector(".solved").addEventListener("click", () => solved(prompt));
    prompt.querySelector(".more").addEventListener("click", () => needHelp());
    if (hits.length) box.appendChild(prompt);
  }

  // ---- asked already: similar questions the caller may see, while typing and before escalating ----
  function typing() {
    clearTimeout(similarTimer);
    similarTimer = setTimeout(() => loadSimilar($("#question").value.trim()), 400);
  }

  async function loadSimilar(question) {
    clearTimeout(similarTimer);
    const seq = ++similarSeq;
    const box = $("#similar");
    let items = [];
    if (question.length >= 8) {
      try { items = (await api("similar", { method: "POST", body: { question, limit: 3 } })).questions || []; }
      catch (e) { items = []; }
    }
    if (seq !== similarSeq) return; // a newer lookup is under way
    const list = box.querySelector(".similar-list");
    list.textContent = "";
    for (const q of items) list.appendChild(similarItem(q));
    box.querySelector("h2").textContent = "Asked already — follow it";
    box.hidden = !items.length;
    document.body.dataset.similar = String(items.length);
  }

  // The server's hint after sending: similar questions the asker may see (never this one).
  function showSimilar(items, heading) {
    if (!items.length) return;
    const box = $("#similar");
    const list = box.querySelector(".similar-list");
    list.textContent = "";
    for (const q of items) list.appendChild(similarItem(q));
    box.querySelector("h2").textContent = heading;
    box.hidden = false;
    document.body.dataset.similar = String(items.length);
  }

  function similarItem(q) {
    const node = $("#similar-template").content.firstElementChild.cloneNode(true);
    node.dataset.escId = q.id;
    node.querySelector(".q").textContent = q.question;
    node.querySelector(".state").textContent = STATES[q.status] || q.status || "";
    if (q.answer) { const a = node.querySelector(".answer-text"); a.hidden = false; a.textContent = q.answer; }
    const link = node.querySelector(".open-link");
    if (q.mine || me.groups.includes(q.group)) link.href = "#esc=" + encodeURIComponent(q.id); else link.remove();
    const follow = node.querySelector(".follow");
    const say = (text) => { const s = document.createElement("span"); s.className = "meta followed"; s.textContent = text; follow.replaceWith(s); };
    if (!q.open) follow.remove();
    else if (q.mine) say("Your question — you will hear when it is answered.");
    else if (q.following) say("Following — you will hear when it is answered.");
    else if (!me.user) follow.remove();
    else follow.addEventListener("click", async () => {
      follow.disabled = true;
      try { await api("escalations/" + encodeURIComponent(q.id) + "/follow", { method: "POST" }); say("Following — you will hear when it is answered."); }
      catch (e) { follow.disabled = false; setStatus(e.message, "error"); }
    });
    return node;
  }

  async function ask(ev) {
    ev.preventDefault();
    const question = $("#question").value.trim();
    if (!question) return;
    $("#ask-button").disabled = true;
    document.body.dataset.state = "asking";
    $("#escalate-form").hidden = true;
    setStatus("Searching…");
    try {
      let d;
      try {
        d = await api("ask", { method: "POST", body: { question } });
      } catch (e) {
        if (e.status !== 501) throw e;
        // A kbsearch without the deflection part: show plain search hits as suggestions.
        const r = await api("search", { method: "POST", body: { question, limit: 5 } });
        d = { action: "suggest", answers: r.hits, id: null };
      }
      const kind = decisionKind(d);
      // Never a dead end: when search is not sure, still show what came closest (access-filtered
      // by the server: the decision's own "closest" list when it has one, else /api/search).
      const hits = kind === "ESCALATE" ? await closestHits(question, d) : decisionHits(d);
      current = { question, decision: d, shown: hits };
      renderHits(hits, kind, kind === "ESCALATE" ? "Not sure — closest matches" : "");
      if (kind === "ANSWER" && hits.length) setStatus("Here is what we found.");
      else if (hits.length && kind !== "ESCALATE") setStatus("These might help. If not, ask the peers.");
      else if (hits.length) { setStatus("Not sure these answer it. If they don't, ask the peers:"); await openEscalate(); }
      else { setStatus("Nothing good found. Ask the peers:"); await openEscalate(); }
      document.body.dataset.decision = kind;
    } catch (e) {
      setStatus(e.message, "error");
    } finally {
      $("#ask-button").disabled = false;
      document.body.dataset.state = "shown";
    }
  }

  async function closestHits(question, d) {
    if (Array.isArray(d.closest)) return d.closest;
    try {
      return (await api("search", { method: "POST", body: { question, limit: 3 } })).hits || [];
    } catch (e) { return []; }
  }

  async function feedback(helpful) {
    if (!current.decision.id) return;
    await api("feedback", { method: "POST", body: { decision_id: current.decision.id, helpful } });
  }

  async function solved(prompt) {
    try {
      await feedback(true);
      prompt.textContent = "Thanks! Glad it helped.";
      setStatus("Glad it helped.", "done");
    } catch (e) { setStatus(e.message, "error"); }
  }

  async function needHelp() {
    try { await feedback(false); } catch (e) { /* best effort: the escalation below matters more */ }
    openEscalate();
  }

  // Shows where routing would send the question and why; the asker may pick another group.  Only a
  // changed choice is sent, so an unchanged one keeps routing's reason (not "chosen by the asker").
  async function openEscalate() {
    const form = $("#escalate-form");
    if (!me.user) { setStatus("Sign in through your portal to ask the peers.", "error"); return; }
    if (current) loadSimilar(current.question); // "asked already" before sending it again
    routed = null;
    const r = current && current.decision.routing;
    if (r && r.group && !r.explicit) routed = { group: r.group, reason: r.reason || "" };
    else if (current) {
      try { routed = await api("route", { method: "POST", body: { question: current.question } }); }
      catch (e) { routed = null; }
    }
    const suggested = (routed && routed.group) || (current && suggestedGroup(current.decision));
    const sel = $("#esc-group");
    sel.textContent = "";
    const names = groups.map((g) => g.name);
    if (suggested && !names.includes(suggested)) names.unshift(suggested);
    names.forEach((n) => { const o = document.createElement("option"); o.value = n; o.textContent = n + (n === suggested ? " (suggested)" : ""); sel.appendChild(o); });
    if (suggested) sel.value = suggested;
    $("#esc-route").textContent = routed && routed.group
      ? "Suggested: " + routed.group + (routed.reason ? " — " + routed.reason : "") + ". Pick another group if it belongs elsewhere."
      : "";
    form.hidden = false;
    form.scrollIntoView({ block: "nearest" });
  }

  async function escalate(ev) {
    ev.preventDefault();
    const fd = new FormData();
    fd.append("question", current.question);
    const chosen = $("#esc-group").value;
    if (chosen && !(routed && routed.group === chosen)) fd.append("group", chosen);
    const details = $("#esc-details").value.trim();
    if (details) fd.append("details", details);
    const photo = $("#esc-photo").files[0];
    const err = $("#esc-error");
    err.hidden = true;
    if (photo) {
      const ready = window.kbsearchPhoto ? await window.kbsearchPhoto.prepare(photo, limits.max_photo_bytes) : { blob: photo, name: photo.name };
      fd.append("photo", ready.blob, ready.name);
      document.body.dataset.photoResized = ready.resized ? "1" : "0";
    }
    fd.append("seen", JSON.stringify((current.shown || decisionHits(current.decision)).map((h) => h.id)));
    if (current.decision.id) fd.append("decision_id", current.decision.id);
    $("#esc-send").disabled = true;
    // One key per question sent: a second tap after a lost answer (a phone changing networks) gets
    // the escalation the first one stored instead of sending the question twice.
    if (!current.escKey) current.escKey = (window.crypto && crypto.randomUUID) ? crypto.randomUUID()
      : Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
    try {
      const esc = await api("escalations", { method: "POST", body: fd, headers: { "Idempotency-Key": current.escKey } });
      current.escKey = null;
      $("#escalate-form").hidden = true;
      $("#escalate-form").reset();
      setStatus("Sent to " + (esc.group || "the peers") + " — reference ", "done");
      const ref = document.createElement("a");
      ref.id = "sent-ref";
      ref.href = "#esc=" + encodeURIComponent(esc.id);
      ref.textContent = esc.id;
      $("#status").append(ref, document.createTextNode(". Their answer will appear under My questions."));
      showSimilar((esc.similar || []).filter((q) => q.id !== esc.id), "Asked before — you may find it there");
    } catch (e) {
      if (e.status) current.escKey = null;  // answered (with an error): nothing to repeat
      // Said beside the form (a photo too large, a missing field), where the asker is looking.
      err.textContent = e.status === 413 ? "The photo is too large to send: " + e.message : e.message;
      err.hidden = false;
      err.scrollIntoView({ block: "nearest" });
    } finally {
      $("#esc-send").disabled = false;
    }
  }

  // ---- one question as a card: asker's view, expert's queue, deep link ----
  const STATES = { asked: "waiting for an answer", escalated: "waiting for an answer", answered: "answered",
                   accepted: "answered · accepted", verified: "answered · verified", duplicate: "answered before" };

  function hint(box, text) { const p = document.createElement("p"); p.className = "hint"; p.textContent = text; box.appendChild(p); }

  // Everything from the server goes in as text; the answer form only where the caller may answer,
  // and its verify box only for groups whose answers the caller may verify (GET /api/me may_verify).
  function escCard(esc) {
    const node = $("#esc-template").content.firstElementChild.cloneNode(true);
    node.dataset.escId = esc.id;
    node.dataset.status = esc.status || "";
    node.querySelector(".meta").textContent = [esc.group, esc.user, (esc.created || "").slice(0, 16).replace("T", " ")].filter(Boolean).join(" · ");
    node.querySelector(".q").textContent = esc.question;
    node.querySelector(".state").textContent = STATES[esc.status] || esc.status || "";
    node.querySelector(".details").textContent = esc.note || "";
    const ref = node.querySelector(".ref-link");
    ref.textContent = esc.id;
    ref.href = "#esc=" + encodeURIComponent(esc.id);
    const photo = (esc.attachments || []).find((a) => String(a.content_type || "").startsWith("image/"));
    if (photo) loadPhoto(esc.id, photo.id, node.querySelector(".photo"));
    const box = node.querySelector(".answer");
    const dup = esc.duplicate_answer;
    if (esc.answer) {
      box.hidden = false;
      node.querySelector(".answer-by").textContent = "Answer" + (esc.answered_by ? " from " + esc.answered_by : "") + (esc.verified ? " (verified)" : "");
      node.querySelector(".answer-text").textContent = esc.answer;
    } else if (esc.status === "duplicate") {
      box.hidden = false;
      node.querySelector(".answer-by").textContent = "Answered before" + (dup && dup.title ? ": " + dup.title : "");
      node.querySelector(".answer-text").textContent = dup ? dup.text || "" : "The answer is in a place you cannot open; ask the group.";
      const href = dup && safeUrl(dup.url);
      if (href) { const p = node.querySelector(".answer-link"); p.hidden = false; p.firstElementChild.href = href; p.firstElementChild.textContent = href; }
    }
    if (esc.rerouted_from) {
      const p = node.querySelector(".rerouted");
      p.hidden = false;
      p.textContent = "Sent on from " + esc.rerouted_from + (esc.reroute_reason ? ": " + esc.reroute_reason : "");
    }
    const reroute = node.querySelector(".reroute-form");
    const others = groups.map((g) => g.name).filter((n) => n && n !== esc.group);
    if (esc.open && me.user && others.length && (me.groups.includes(esc.group) || (me.expert_of || []).includes(esc.group))) {
      reroute.hidden = false;
      const sel = reroute.elements.group;
      others.forEach((n) => { const o = document.createElement("option"); o.value = n; o.textContent = n; sel.appendChild(o); });
      reroute.addEventListener("submit", (ev) => rerouteEsc(ev, esc, node));
      // type="button": the card's one submit button stays the answer's
      reroute.querySelector(".reroute-send").addEventListener("click", () => reroute.requestSubmit());
    } else {
      reroute.remove();
    }
    const form = node.querySelector(".answer-form");
    if (esc.open && me.user && me.groups.includes(esc.group)) {
      form.hidden = false;
      if (!(me.may_verify || []).includes(esc.group)) form.querySelector("label.check").remove();
      form.addEventListener("submit", (ev) => answer(ev, esc, node));
    } else {
      form.remove();
    }
    if (window.kbsearchExpert) window.kbsearchExpert.decorate(esc, node, { api, me, groups, card: escCard });
    return node;
  }

  // ---- my questions and deep links ----
  async function loadMine(focusId) {
    const one = $("#esc-one");
    const box = $("#mine");
    one.textContent = "";
    if (focusId) {
      try { one.appendChild(escCard(await api("escalations/" + encodeURIComponent(focusId)))).classList.add("focus"); }
      catch (e) { const p = document.createElement("p"); p.className = "status error"; p.textContent = e.message; one.appendChild(p); }
    }
    try {
      const items = (await api("escalations?mine=1&status=all")).escalations || [];
      box.textContent = "";
      if (!items.length) hint(box, "You have not sent a question to the peers yet.");
      for (const esc of items) box.appendChild(escCard(esc));
    } catch (e) {
      box.textContent = e.message;
    }
    document.body.dataset.mine = "loaded";
  }

  // ---- experts ----
  async function loadQueue() {
    const box = $("#queue");
    try {
      const data = await api("escalations?status=open");
      const items = data.escalations || [];
      $("#open-count").textContent = items.length ? String(items.length) : "";
      box.textContent = "";
      if (!items.length) { hint(box, "No open questions. Well done!"); return; }
      for (const esc of items) box.appendChild(escCard(esc));
    } catch (e) {
      box.textContent = e.message;
    }
  }

  async function loadPhoto(id, attId, img) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const resp = await fetch("api/escalations/" + encodeURIComponent(id) + "/attachments/" + encodeURIComponent(attId), { headers });
    if (!resp.ok) return;
    img.src = URL.createObjectURL(await resp.blob());
    img.hidden = false;
  }

  async function answer(ev, esc, node) {
    ev.preventDefault();
    const form = ev.target;
    const text = form.elements.text.value.trim();
    if (!text) return;
    form.querySelector("button").disabled = true;
    try {
      const verify = !!(form.elements.verify && form.elements.verify.checked);
      await api("escalations/" + encodeURIComponent(esc.id) + "/answer", { method: "POST", body: { text, verify } });
      node.classList.add("answered");
      form.textContent = "Answered. Thank you!";
      loadQueue();
    } catch (e) {
      form.querySelector("button").disabled = false;
      const p = document.createElement("p"); p.className = "status error"; p.textContent = e.message; form.appendChild(p);
    }
  }

  async function rerouteEsc(ev, esc, node) {
    ev.preventDefault();
    const form = ev.target;
    const group = form.elements.group.value;
    const reason = form.elements.reason.value.trim();
    if (!group || !reason) return;
    form.querySelector("button").disabled = true;
    try {
      const moved = await api("escalations/" + encodeURIComponent(esc.id) + "/reroute", { method: "POST", body: { group, reason } });
      node.dataset.rerouted = moved.group;
      form.textContent = "Sent to " + moved.group + ". Thank you!";
      const answerForm = node.querySelector(".answer-form");
      if (answerForm && !me.groups.includes(moved.group)) answerForm.remove();
    } catch (e) {
      form.querySelector("button").disabled = false;
      const p = document.createElement("p"); p.className = "status error"; p.textContent = e.message; form.appendChild(p);
    }
  }

  function show(view, escId) {
    for (const name of ["ask", "mine", "expert"]) {
      $("#view-" + name).hidden = view !== name;
      $("#tab-" + name).classList.toggle("active", view === name);
    }
    if (view === "expert") loadQueue();
    if (view === "mine") loadMine(escId);
  }

  // "#esc=<id>" opens that question (the asker's, or one of the caller's group); the server decides.
  function route() {
    const id = new URLSearchParams(location.hash.slice(1)).get("esc");
    if (id) show("mine", id);
    return !!id;
  }

  async function init() {
    $("#ask-form").addEventListener("submit", ask);
    $("#question").addEventListener("keydown", (ev) => { if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("#ask-form").requestSubmit(); } });
    $("#escalate-form").addEventListener("submit", escalate);
    $("#question").addEventListener("input", typing);
    $("#esc-cancel").addEventListener("click", () => { $("#escalate-form").hidden = true; });
    $("#tab-ask").addEventListener("click", () => show("ask"));
    $("#tab-expert").addEventListener("click", () => show("expert"));
    $("#tab-mine").addEventListener("click", () => show("mine"));
    window.addEventListener("hashchange", route);
    try {
      me = await api("me");
      $("#who").textContent = me.user ? me.user + (me.groups.length ? " · " + me.groups.join(", ") : "") : "not signed in";
      if (me.user) $("#tab-mine").hidden = false;
      if (me.user && me.groups.length) { $("#tab-expert").hidden = false; loadQueue(); }
    } catch (e) { setStatus(e.message, "error"); }
    try { groups = (await api("groups")).groups || []; } catch (e) { groups = []; }
    try { limits = (await api("health")).limits || {}; } catch (e) { limits = {}; }
    const view = new URLSearchParams(location.search).get("view");
    if (!route() && (view === "expert" || view === "mine")) show(view);
    document.body.dataset.ready = "1";
  }
  init();
})();
