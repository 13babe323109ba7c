// kbsearch page: phone photos are made small enough before they are sent.  A photo over
// LIMIT bytes or EDGE pixels on a side is drawn again at most EDGE pixels wide or high and sent as a
// JPEG; anything the browser cannot decode is sent as it is (the server then says what is wrong,
// and the page shows it beside the form).
"use strict";
window.kbsearchPhoto = (function () {
  const LIMIT = 1500 * 1024;
  const EDGE = 2048;

  async function bitmap(file) {
    try { return await createImageBitmap(file); } catch (e) { return null; }
  }

  function blobOf(canvas, quality) {
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
  }

  // Resolves to {blob, name, resized}: the file itself, or a smaller JPEG of it (at most LIMIT bytes,
  // or the server's maxBytes when lower; smaller edges and qualities are tried until it fits).
  async function prepare(file, maxBytes) {
    if (!file || !String(file.type || "").startsWith("image/")) return { blob: file, name: file && file.name, resized: false };
    const target = Math.min(LIMIT, maxBytes || LIMIT);
    const img = await bitmap(file);
    if (!img) return { blob: file, name: file.name, resized: false };
    const big = Math.max(img.width, img.height);
    if (file.size <= target && big <= EDGE) { img.close(); return { blob: file, name: file.name, resized: false }; }
    let blob = null;
    search:
    for (const edge of [EDGE, 1600, 1200, 800]) {
      const scale = Math.min(1, edge / big);
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(img.width * scale));
      canvas.height = Math.max(1, Math.round(img.height * scale));
      canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
      for (const q of [0.85, 0.7, 0.5]) {
        blob = await blobOf(canvas, q);
        if (blob && blob.size <= target) break search;
      }
    }
    img.close();
    if (!blob) return { blob: file, name: file.name, resized: false };
    const name = String(file.name || "photo").replace(/\.[A-Za-z0-9]+$/, "") + ".jpg";
    return { blob, name, resized: true };
  }

  return { prepare };
})();
