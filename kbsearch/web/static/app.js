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
  let current = null; // {question, decision}

  function decisionKind(d) { return String(d.decision || d.action || d.kind || "").toUpperCase(); }
  function decisionHits(d) { return d.answers || d.hits || d.candidates || []; }
  function suggestedGroup(d) {
    if (d.routing && d.routing.group) return d.routing.group;
    if (typeof d.group === "string") return d.group;
    return null;
  }

  function renderHits(hits, kind) {
    const box = $("#results");
    box.textContent = "";
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
      node.querySelector(".solved").addEventListener("click", () => solved(hit, node));
      node.querySelector(".more").addEventListener("click", () => needHelp(hit));
      if (i > 0 && kind === "ANSWER") node.classList.add("secondary-hit");
      box.appendChild(node);
    });
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
      current = { question, decision: d };
      const kind = decisionKind(d);
      const hits = decisionHits(d);
      renderHits(kind === "ESCALATE" ? [] : hits, kind);
      if (kind === "ANSWER" && hits.length) setStatus("Here is what we found.");
      else if (hits.length && kind !== "ESCALATE") setStatus("These might help. If not, ask the peers.");
      else { setStatus("Nothing good found. Ask the peers:"); openEscalate(); }
      document.body.dataset.decision = kind;
    } catch (e) {
      setStatus(e.message, "error");
    } finally {
      $("#ask-button").disabled = false;
      document.body.dataset.state = "shown";
    }
  }

  async function feedback(helpful) {
    if (!current.decision.id) return;
    await api("feedback", { method: "POST", body: { decision_id: current.decision.id, helpful } });
  }

  async function solved(hit, node) {
    try {
      await feedback(true);
      node.querySelector(".actions").textContent = "Thanks! Glad it helped.";
      setStatus("Glad it helped.", "done");
    } catch (e) { setStatus(e.message, "error"); }
  }

  async function needHelp(hit) {
    try { await feedback(false); } catch (e) { /* best effort: the escalation below matters more */ }
    openEscalate();
  }

  function openEscalate() {
    const form = $("#escalate-form");
    if (!me.user) { setStatus("Sign in through your portal to ask the peers.", "error"); return; }
    const sel = $("#esc-group");
    sel.textContent = "";
    const suggested = current && suggestedGroup(current.decision);
    const names = groups.map((g) => g.name);
    if (suggested && !names.includes(suggested)) names.unshift(suggested);
    names.forEach((n) => { const o = document.createElement("option"); o.value = n; o.textContent = n + (n === suggested ? " (suggested)" : ""); sel.appendChild(o); });
    if (suggested) sel.value = suggested;
    form.hidden = false;
    form.scrollIntoView({ block: "nearest" });
  }

  async function escalate(ev) {
    ev.preventDefault();
    const fd = new FormData();
    fd.append("question", current.question);
    if ($("#esc-group").value) fd.append("group", $("#esc-group").value);
    const details = $("#esc-details").value.trim();
    if (details) fd.append("details", details);
    const photo = $("#esc-photo").files[0];
    if (photo) fd.append("photo", photo);
    fd.append("seen", JSON.stringify(decisionHits(current.decision).map((h) => h.id)));
    if (current.decision.id) fd.append("decision_id", current.decision.id);
    $("#esc-send").disabled = true;
    try {
      const esc = await api("escalations", { method: "POST", body: fd });
      $("#escalate-form").hidden = true;
      $("#escalate-form").reset();
      setStatus("Sent to " + (esc.group || "the peers") + " — reference ", "done");
      const ref = document.createElement("a");
      ref.id = "sent-ref";
      ref.href = "#esc=" + encodeURIComponent(esc.id);
      ref.textContent = esc.id;
      $("#status").append(ref, document.createTextNode(". Their answer will appear under My questions."));
    } catch (e) {
      setStatus(e.message, "error");
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
    const form = node.querySelector(".answer-form");
    if (esc.open && me.user && me.groups.includes(esc.group)) {
      form.hidden = false;
      if (!(me.may_verify || []).includes(esc.group)) form.querySelector("label.check").remove();
      form.addEventListener("submit", (ev) => answer(ev, esc, node));
    } else {
      form.remove();
    }
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
    const view = new URLSearchParams(location.search).get("view");
    if (!route() && (view === "expert" || view === "mine")) show(view);
    document.body.dataset.ready = "1";
  }
  init();
})();
