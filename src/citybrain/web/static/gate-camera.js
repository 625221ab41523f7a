// Camera scanning on the gate page (门岗摄像头扫码), included by healthcode/_camera.html only.
//
// A gate worker with only a phone has no scanner wedge: this opens the rear camera, draws a
// frame to a canvas a few times a second and decodes it with jsQR (vendored from npm, served
// from /static/vendor). A text starting with "CB1:" (a phone's health code) or "CBK1:" (a
// printed health card, 纸质健康卡) goes into the form's code field and the
// form is submitted as pressing Enter would (form.requestSubmit()), so the page's own submit
// handling (gate-offline.js: online by fetch, offline verification) applies unchanged. The
// same code read again while the phone is still over it is not submitted again. "Camera on"
// is remembered for this tab (sessionStorage), so when the answer comes as a new page the
// camera starts again by itself; the camera is released whenever the page is hidden.
(function () {
  "use strict";

  var box = document.querySelector("[data-testid=camera]");
  var form = document.querySelector("form.gate");
  if (!box || !form) { return; }
  // No camera API (an old browser, or a page not served over HTTPS/localhost) or no decoder:
  // the section stays hidden and the form works as before.
  if (!navigator.mediaDevices || typeof navigator.mediaDevices.getUserMedia !== "function") { return; }
  if (typeof window.jsQR !== "function") { return; }

  var PREFIX = "CB1:";
  var CARD_PREFIX = "CBK1:";
  function ours(text) { return text.indexOf(PREFIX) === 0 || text.indexOf(CARD_PREFIX) === 0; }
  var STATE_KEY = "citybrain.gate.camera";
  var SEEN_KEY = "citybrain.gate.camera.seen";
  var REPEAT_MS = 3000; // the same code again within this time: the phone is still over it
  var FRAME_MS = 200; // five reads a second: quick enough, and light on a phone's battery
  var MAX_SIDE = 640; // frames are scaled down to this before decoding

  var en = box.getAttribute("data-lang") === "en";
  var startButton = box.querySelector("[data-testid=camera-start]");
  var stopButton = box.querySelector("[data-testid=camera-stop]");
  var frame = box.querySelector("[data-testid=camera-box]");
  var video = box.querySelector("video");
  var status = box.querySelector("[data-testid=camera-status]");
  var codeInput = form.querySelector("[name=code]");
  var result = document.getElementById("gate-result");
  var canvas = document.createElement("canvas");
  var context = canvas.getContext("2d", { willReadFrequently: true });

  var TEXT = {
    starting: ["正在打开摄像头…", "opening the camera…"],
    reading: ["正在识别…请将健康码对准框内", "reading… hold the code inside the frame"],
    read: ["已识别，正在核验…", "code read, checking…"],
    notCode: ["不是健康码，请出示城市大脑健康码", "not a health code"],
    denied: ["相机未授权：请在浏览器设置中允许使用摄像头", "camera not allowed: allow it in the browser settings"],
    unsupported: ["此浏览器不支持摄像头", "this browser cannot use the camera"],
    noCamera: ["未找到摄像头", "no camera found"],
    busy: ["摄像头被其他应用占用", "the camera is in use by another app"],
    stopped: ["", ""],
  };

  var stream = null;
  var timer = null;
  var starting = false;
  var lastText = null;
  var lastSeen = 0;

  function say(key, warn) {
    var words = TEXT[key];
    status.textContent = en && words[1] ? words[0] + " · " + words[1] : words[0];
    status.className = "camera-status" + (warn ? " warn" : "");
    status.setAttribute("data-state", key);
  }

  function remember(on) {
    try {
      if (on) { sessionStorage.setItem(STATE_KEY, "on"); } else { sessionStorage.removeItem(STATE_KEY); }
    } catch (e) { /* storage unavailable: no automatic restart, nothing else lost */ }
  }

  function remembered() {
    try { return sessionStorage.getItem(STATE_KEY) === "on"; } catch (e) { return false; }
  }

  // A short fingerprint of the last code submitted, kept across the answer page's load so the
  // same code is not sent twice; the code itself is not stored.
  function fingerprint(text) {
    var h = 0x811c9dc5;
    for (var i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return h.toString(16);
  }

  function loadSeen() {
    try {
      var kept = JSON.parse(sessionStorage.getItem(SEEN_KEY) || "null");
      if (kept && typeof kept.h === "string" && typeof kept.t === "number") { return kept; }
    } catch (e) { /* nothing kept */ }
    return null;
  }

  function saveSeen(text, at) {
    try { sessionStorage.setItem(SEEN_KEY, JSON.stringify({ h: fingerprint(text), t: at })); } catch (e) { /* ignore */ }
  }

  function showRunning(running) {
    startButton.hidden = running;
    frame.hidden = !running;
    stopButton.hidden = !running;
  }

  function release() {
    if (timer !== null) { clearTimeout(timer); timer = null; }
    if (stream) {
      stream.getTracks().forEach(function (track) { track.stop(); });
      stream = null;
    }
    video.srcObject = null;
  }

  function start() {
    if (stream || starting) { return; }
    starting = true;
    say("starting");
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false }).then(function (media) {
      starting = false;
      if (document.hidden) { // hidden while the user was asked: give the camera back at once
        media.getTracks().forEach(function (track) { track.stop(); });
        return;
      }
      stream = media;
      video.srcObject = media;
      showRunning(true);
      remember(true);
      var playing = video.play();
      if (playing && playing.catch) { playing.catch(function () { /* autoplay is muted: plays */ }); }
      say("reading");
      schedule();
    }, function (error) {
      starting = false;
      release();
      showRunning(false);
      remember(false);
      var name = error && error.name;
      if (name === "NotAllowedError" || name === "SecurityError") { say("denied", true); }
      else if (name === "NotFoundError" || name === "OverconstrainedError") { say("noCamera", true); }
      else if (name === "NotReadableError" || name === "AbortError") { say("busy", true); }
      else { say("unsupported", true); }
    });
  }

  function stop() {
    release();
    showRunning(false);
    remember(false);
    say("stopped");
  }

  function schedule() {
    if (timer === null && stream) { timer = setTimeout(tick, FRAME_MS); }
  }

  function tick() {
    timer = null;
    if (!stream) { return; }
    var w = video.videoWidth;
    var h = video.videoHeight;
    if (video.readyState >= 2 && w && h) {
      var scale = Math.min(1, MAX_SIDE / Math.max(w, h));
      canvas.width = Math.round(w * scale);
      canvas.height = Math.round(h * scale);
      context.drawImage(video, 0, 0, canvas.width, canvas.height);
      var image = context.getImageData(0, 0, canvas.width, canvas.height);
      // Codes on phone screens and paper are dark on light: skip the inverted pass (half the work).
      var found = window.jsQR(image.data, image.width, image.height, { inversionAttempts: "dontInvert" });
      if (found && found.data) { onRead(found.data.trim()); }
    }
    schedule();
  }

  function onRead(text) {
    var now = Date.now();
    var again = text === lastText && now - lastSeen < REPEAT_MS;
    lastText = text;
    lastSeen = now; // still over the same code: the window starts anew
    if (again) {
      if (ours(text)) { saveSeen(text, now); }
      return;
    }
    if (!ours(text)) {
      say("notCode", true);
      return;
    }
    var kept = loadSeen(); // a code submitted just before the answer page loaded
    if (kept && kept.h === fingerprint(text) && now - kept.t < REPEAT_MS) {
      saveSeen(text, now);
      return;
    }
    saveSeen(text, now);
    codeInput.value = text;
    say("read");
    submit();
  }

  function submit() {
    if (typeof form.requestSubmit === "function") {
      form.requestSubmit();
    } else { // older browsers: a click on the submit button fires the submit event too
      var button = form.querySelector("button[type=submit], input[type=submit]");
      if (button) { button.click(); } else { form.submit(); }
    }
  }

  // The answer put in place (gate-offline.js): it must be in sight above the camera, and the
  // keyboard is not needed while scanning with the camera. After the other script is done
  // (it focuses the code field for a scanner wedge, which scrolls the page down to it).
  if (result && window.MutationObserver) {
    new MutationObserver(function () {
      if (!stream) { return; }
      setTimeout(function () {
        if (document.activeElement === codeInput) { codeInput.blur(); }
        result.scrollIntoView({ block: "start" });
        say("reading");
      }, 0);
    }).observe(result, { childList: true });
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", stop);
  // Hidden (another app, the screen off, the page left): the camera is released; shown again,
  // it restarts if it was on.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { release(); }
    else if (remembered()) { start(); }
  });
  window.addEventListener("pagehide", release);
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && remembered()) { start(); } // back from the back-forward cache
  });

  box.hidden = false;
  if (remembered()) { start(); }
})();
