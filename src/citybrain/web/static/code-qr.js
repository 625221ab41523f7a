// The residents' code page draws its QR in the browser (qrcode-generator, error correction Q
// like the server's): the server only signs the code, which costs it a fraction of drawing the
// symbol, and the morning's code views are the city's largest load. Each box carries the code
// text; it is drawn on load and again whenever htmx swaps in a fresh card. Without script the
// page shows the server's drawing instead (the <noscript> image).
(function () {
  "use strict";

  function symbol(text) {
    var qr = qrcode(0, "Q");
    try {
      // Our codes are base45 behind an upper-case prefix: QR's alphanumeric set.
      qr.addData(text, "Alphanumeric");
      qr.make();
    } catch (e) {
      qr = qrcode(0, "Q");
      qr.addData(text, "Byte");
      qr.make();
    }
    return qr;
  }

  function draw(root) {
    root.querySelectorAll(".qr[data-code]").forEach(function (box) {
      var text = box.getAttribute("data-code");
      if (!text || box.getAttribute("data-drawn") === text) {
        return;
      }
      box.innerHTML = symbol(text).createSvgTag({ cellSize: 4, margin: 16, scalable: true });
      box.setAttribute("data-drawn", text);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    draw(document);
  });
  document.addEventListener("htmx:load", function (event) {
    if (event.target && event.target.querySelectorAll) {
      draw(event.target.parentNode || event.target);
    }
  });
})();
