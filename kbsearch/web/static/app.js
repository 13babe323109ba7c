// kbsearch page: ask, see answers, say if they helped, ask the peers; experts answer their group's questions.
// No framework, no build step. Everything from the server is inserted as text, except the snippet's
// <mark> highlights, which are rebuilt from parsed text nodes (nothing else of it survives).
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const TOKEN_KEY = "kbsearch-token";

  // A portal may hand the page a signed token in the URL fragment (never sent to servers or logs).
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, frag.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
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
  let me = { user: null, groups: [] };
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
      setStatus("Sent to " + (esc.group || "the peers") + ". Ask again later to see their answer.", "done");
    } catch (e) {
      setStatus(e.message, "error");
    } finally {
      $("#esc-send").disabled = false;
    }
  }

  // ---- experts ----
  async function loadQueue() {
    const box = $("#queue");
    try {
      const data = await api("escalations?status=open");
      const items = data.escalations || [];
      $("#open-count").textContent = items.length ? String(items.length) : "";
      box.textContent = "";
      if (!items.length) { const p = document.createElement("p"); p.className = "hint"; p.textContent = "No open questions. Well done!"; box.appendChild(p); return; }
      const tpl = $("#esc-template");
      for (const esc of items) {
        const node = tpl.content.firstElementChild.cloneNode(true);
        node.dataset.escId = esc.id;
        node.querySelector(".meta").textContent = [esc.group, esc.user, (esc.created || "").slice(0, 16).replace("T", " ")].filter(Boolean).join(" · ");
        node.querySelector(".q").textContent = esc.question;
        node.querySelector(".details").textContent = esc.note || "";
        const photo = (esc.attachments || []).find((a) => String(a.content_type || "").startsWith("image/"));
        if (photo) loadPhoto(esc.id, photo.id, node.querySelector(".photo"));
        node.querySelector(".answer-form").addEventListener("submit", (ev) => answer(ev, esc, node));
        box.appendChild(node);
      }
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
      await api("escalations/" + encodeURIComponent(esc.id) + "/answer", { method: "POST", body: { text, verify: form.elements.verify.checked } });
      node.classList.add("answered");
      form.textContent = "Answered. Thank you!";
      loadQueue();
    } catch (e) {
      form.querySelector("button").disabled = false;
      const p = document.createElement("p"); p.className = "status error"; p.textContent = e.message; form.appendChild(p);
    }
  }

  function show(view) {
    $("#view-ask").hidden = view !== "ask";
    $("#view-expert").hidden = view !== "expert";
    $("#tab-ask").classList.toggle("active", view === "ask");
    $("#tab-expert").classList.toggle("active", view === "expert");
    if (view === "expert") loadQueue();
  }

  async function init() {
    $("#ask-form").addEventListener("submit", ask);
    $("#question").addEventListener("keydown", (ev) => { if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("#ask-form").requestSubmit(); } });
    $("#escalate-form").addEventListener("submit", escalate);
    $("#esc-cancel").addEventListener("click", () => { $("#escalate-form").hidden = true; });
    $("#tab-ask").addEventListener("click", () => show("ask"));
    $("#tab-expert").addEventListener("click", () => show("expert"));
    try {
      me = await api("me");
      $("#who").textContent = me.user ? me.user + (me.groups.length ? " · " + me.groups.join(", ") : "") : "not signed in";
      if (me.user && me.groups.length) { $("#tab-expert").hidden = false; loadQueue(); }
    } catch (e) { setStatus(e.message, "error"); }
    try { groups = (await api("groups")).groups || []; } catch (e) { groups = []; }
    if (new URLSearchParams(location.search).get("view") === "expert") show("expert");
    document.body.dataset.ready = "1";
  }
  init();
})();
