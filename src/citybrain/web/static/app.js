// Send the session's CSRF token with every htmx request (the server checks it on writes).
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content"); }
});

// A form sent once is not sent again by a second tap while its answer is on the way (a slow
// phone, an impatient thumb): a second submit is cancelled, and the submit buttons rest for a
// few seconds — disabled only after the browser has taken the pressed button's name and value
// into the submission. htmx's own requests (their submit events are cancelled already) are left
// alone. A download answered in place (an export) frees the form when the rest ends; a page
// restored by the back button is freed at once.
var RESTING_MS = 4000;
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (event.defaultPrevented || !(form instanceof HTMLFormElement)) { return; }
  if (form.hasAttribute("data-sent")) { event.preventDefault(); return; }
  form.setAttribute("data-sent", "");
  var buttons = Array.prototype.slice.call(
    form.querySelectorAll("button:not([type=button]):not([disabled]), input[type=submit]:not([disabled])")
  );
  window.setTimeout(function () {
    buttons.forEach(function (b) { b.disabled = true; b.setAttribute("data-resting", ""); });
  }, 0);
  window.setTimeout(function () { wake(form); }, RESTING_MS);
});
function wake(form) {
  form.removeAttribute("data-sent");
  Array.prototype.forEach.call(form.querySelectorAll("[data-resting]"), function (b) {
    b.disabled = false;
    b.removeAttribute("data-resting");
  });
}
window.addEventListener("pageshow", function (event) {
  if (event.persisted) { Array.prototype.forEach.call(document.querySelectorAll("form[data-sent]"), wake); }
});
