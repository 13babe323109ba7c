// kbsearch page: what makes a result scannable: the page it belongs to (breadcrumb of its headings,
// without the section's own title), where it lives (the site's host) and when it was last updated.
// Everything goes in as text.
"use strict";
window.kbsearchResults = (function () {
  function host(url) {
    try { const u = new URL(url, location.href); return (u.protocol === "http:" || u.protocol === "https:") ? u.host : ""; }
    catch (e) { return ""; }
  }

  function decorate(hit, node) {
    const title = String(hit.title || "");
    const trail = (hit.headings || []).map(String).filter((h) => h && h !== title);
    const crumbs = node.querySelector(".crumbs");
    if (crumbs && trail.length) { crumbs.hidden = false; crumbs.textContent = trail.join(" › "); }
    const where = [];
    const site = hit.url ? host(hit.url) : "";
    if (site) where.push(site);
    if (hit.kind === "answer" && hit.group) where.push("answered by " + hit.group);
    if (hit.updated) where.push("updated " + String(hit.updated).slice(0, 10));
    const src = node.querySelector(".source");
    if (src && where.length) { src.hidden = false; src.textContent = where.join(" · "); }
  }

  return { decorate };
})();
