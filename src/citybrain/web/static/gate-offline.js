// The gate page offline (门岗离线核验), included by healthcode/gate.html only.
//
// Progressive enhancement: without this script the form posts as before. With it the form
// still goes to the server while the network is up (by fetch, so that a post that fails for
// want of network is caught); when the network is down the code is verified here, exactly
// in the order healthcode/codes.py does it: prefix, base45, zlib (inflated with a size cap),
// the COSE_Sign1 envelope and its protected header, the key by kid from the stored trust
// list, the ES256 signature over the CBOR Sig_structure — and only then the payload, its
// type and its times (with the server's clock skew). The decision is by the colour in the
// code, mirroring healthcode/policy.py as far as the page knows (the place's kind and, at a
// compound's gate, its tier as of page load); when unsure, non-green is denied. Each
// offline scan is queued in localStorage and uploaded to POST /api/v1/scans/offline when
// the network is back (the "online" event, and on page load).
(function () {
  "use strict";

  var form = document.querySelector("form.gate");
  if (!form || !window.localStorage) { return; }

  var TRUST_KEY = "citybrain.gate.trust";
  var QUEUE_KEY = "citybrain.gate.queue";
  var PREFIX = "CB1:";
  // A printed health card (纸质健康卡) holds no colour: only the server can judge it.
  var CARD_PREFIX = "CBK1:";
  var CARD_OFFLINE = ["纸质健康卡须联网核验当前颜色，离线时不能放行；请稍后重试，或联系社区核实",
    "a health card needs the network to check the current colour: not passed offline"];
  var MAX_TEXT = 4096;
  var MAX_INFLATED = 4096;
  var MAX_UPLOAD = 500;
  var TRUST_REFRESH_MS = 60000;
  var BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
  var skewMs = (parseInt(form.getAttribute("data-clock-skew"), 10) || 30) * 1000;
  var trustUrl = form.getAttribute("data-trust-url");
  var uploadUrl = form.getAttribute("data-upload-url");
  var codeInput = form.querySelector("[name=code]");
  var placeSelect = form.querySelector("[name=place_code]");
  var csrfInput = form.querySelector("[name=csrf_token]");
  var result = document.getElementById("gate-result");
  var bar = document.querySelector("[data-testid=offline-bar]");
  var netState = document.querySelector("[data-testid=network-state]");
  var queueCount = document.querySelector("[data-testid=offline-queue]");
  var summary = document.querySelector("[data-testid=offline-summary]");
  var en = (document.documentElement.lang || "").indexOf("en") === 0;

  // Refusals, as healthcode/codes.py words them.
  var REFUSALS = {
    bad_prefix: ["不是本系统的码", "not a citybrain code (wrong prefix)"],
    bad_encoding: ["码的编码无效或已损坏", "the code is not valid base45/zlib or is too large"],
    malformed: ["码的内容格式错误", "the code's content is malformed"],
    unknown_key: ["签发密钥不在信任列表中", "signed by a key not in the trust list"],
    bad_signature: ["签名无效，码可能被篡改", "the signature does not verify (tampered?)"],
    expired: ["码已过期，请刷新后重新出示", "the code has expired; refresh and show it again"],
    not_yet_valid: ["码尚未生效（设备时间有误？）", "the code is not valid yet (clock wrong?)"],
    wrong_type: ["码的类型不符", "the code is of another type"],
    no_trust_list: ["本机没有信任列表，无法离线核验（请联网打开本页一次）",
      "no trust list on this device: open the page once online"],
    no_crypto: ["本浏览器无法离线验签（需 HTTPS）", "this browser cannot verify offline (needs HTTPS)"],
  };
  // Decisions, as healthcode/policy.py words them.
  var REASONS = {
    green_code: ["绿码，请通行", "green code: pass"],
    code_yellow: ["黄码，禁止通行，请配合核验", "yellow code: no entry, please verify"],
    code_red: ["红码，禁止通行，请配合核验", "red code: no entry, please verify"],
    compound_closed_exit: ["小区封闭管理（红色），禁止外出", "compound closed (red): nobody leaves"],
    compound_closed_entry: ["小区封闭管理（红色），非本小区居民禁止进入",
      "compound closed (red): residents only"],
    compound_controlled: ["小区管控（黄色），非本小区居民禁止通行",
      "compound controlled (yellow): residents only"],
  };
  var COLOURS = { green: ["绿码", "green"], yellow: ["黄码", "yellow"], red: ["红码", "red"] };
  var BANNER = "离线核验：按码内颜色判断，联网后上传";

  function Refused(code) { this.code = code; }

  // -- storage ------------------------------------------------------------------------------

  function load(key, fallback) {
    try {
      var raw = localStorage.getItem(key);
      return raw ? JSON.parse(raw) : fallback;
    } catch (e) { return fallback; }
  }
  function save(key, value) {
    try { localStorage.setItem(key, JSON.stringify(value)); return true; } catch (e) { return false; }
  }
  function queue() { var q = load(QUEUE_KEY, []); return Array.isArray(q) ? q : []; }

  // -- the trust list -----------------------------------------------------------------------

  var keyCache = {};

  function fetchTrustList() {
    if (!navigator.onLine) { return Promise.resolve(); }
    return fetch(trustUrl, { credentials: "same-origin", cache: "no-cache" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (list) {
        if (list && Array.isArray(list.keys)) {
          save(TRUST_KEY, { fetched_at: new Date().toISOString(), list: list });
          keyCache = {};
        }
      })
      .catch(function () { /* offline: the stored list stays */ });
  }

  function b64decode(text) {
    var bin = atob(text);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }
  function b64url(bytes) {
    var bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function trustedKey(kid, now) {
    var stored = load(TRUST_KEY, null);
    if (!stored || !stored.list || !Array.isArray(stored.list.keys)) {
      return Promise.reject(new Refused("no_trust_list"));
    }
    var entry = null;
    stored.list.keys.forEach(function (k) { if (k.kid === kid) { entry = k; } });
    if (!entry || (entry.not_after && now > Date.parse(entry.not_after))) {
      return Promise.reject(new Refused("unknown_key"));
    }
    if (!keyCache[kid]) {
      keyCache[kid] = crypto.subtle.importKey(
        "spki", b64decode(entry.spki), { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    }
    return keyCache[kid];
  }

  // -- base45, inflate, CBOR ----------------------------------------------------------------

  function base45decode(text) {
    var values = [];
    for (var i = 0; i < text.length; i++) {
      var v = BASE45.indexOf(text.charAt(i));
      if (v < 0) { throw new Refused("bad_encoding"); }
      values.push(v);
    }
    if (values.length % 3 === 1) { throw new Refused("bad_encoding"); }
    var out = [];
    for (var j = 0; j < values.length; j += 3) {
      if (j + 2 < values.length) {
        var n = values[j] + values[j + 1] * 45 + values[j + 2] * 2025;
        if (n > 0xffff) { throw new Refused("bad_encoding"); }
        out.push(n >> 8, n & 0xff);
      } else {
        var m = values[j] + values[j + 1] * 45;
        if (m > 0xff) { throw new Refused("bad_encoding"); }
        out.push(m);
      }
    }
    return new Uint8Array(out);
  }

  function inflate(bytes) {
    if (typeof DecompressionStream === "undefined") { return Promise.reject(new Refused("no_crypto")); }
    var reader;
    try {
      reader = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate")).getReader();
    } catch (e) { return Promise.reject(new Refused("bad_encoding")); }
    var chunks = [], total = 0;
    function pump() {
      return reader.read().then(function (step) {
        if (step.done) {
          var out = new Uint8Array(total), at = 0;
          chunks.forEach(function (c) { out.set(c, at); at += c.length; });
          return out;
        }
        total += step.value.length;
        // More than a code can hold: refused, never inflated further (a decompression bomb).
        if (total > MAX_INFLATED) { reader.cancel(); throw new Refused("bad_encoding"); }
        chunks.push(step.value);
        return pump();
      });
    }
    return pump().catch(function (e) { throw e instanceof Refused ? e : new Refused("bad_encoding"); });
  }

  function Tag(tag, value) { this.tag = tag; this.value = value; }

  // A minimal CBOR decoder (RFC 8949): definite lengths only, which is all a code uses.
  function cborDecode(bytes) {
    var pos = 0, depth = 0;
    function need(n) { if (pos + n > bytes.length) { throw new Refused("malformed"); } }
    function uint(info) {
      if (info < 24) { return info; }
      var size = { 24: 1, 25: 2, 26: 4, 27: 8 }[info];
      if (!size) { throw new Refused("malformed"); }
      need(size);
      var n = 0;
      for (var i = 0; i < size; i++) { n = n * 256 + bytes[pos++]; }
      if (n > Number.MAX_SAFE_INTEGER) { throw new Refused("malformed"); }
      return n;
    }
    function item() {
      if (++depth > 16) { throw new Refused("malformed"); }
      need(1);
      var first = bytes[pos++], major = first >> 5, info = first & 31, value, n, i;
      if (major === 7) {
        if (info === 20) { value = false; } else if (info === 21) { value = true; }
        else if (info === 22 || info === 23) { value = null; }
        else if (info === 25 || info === 26 || info === 27) {
          var size = { 25: 2, 26: 4, 27: 8 }[info];
          need(size);
          var view = new DataView(bytes.buffer, bytes.byteOffset + pos, size);
          value = size === 2 ? half(view.getUint16(0)) : size === 4 ? view.getFloat32(0) : view.getFloat64(0);
          pos += size;
        } else { throw new Refused("malformed"); }
      } else {
        n = uint(info);
        if (major === 0) { value = n; }
        else if (major === 1) { value = -1 - n; }
        else if (major === 2) { need(n); value = bytes.slice(pos, pos + n); pos += n; }
        else if (major === 3) {
          need(n);
          try { value = new TextDecoder("utf-8", { fatal: true }).decode(bytes.slice(pos, pos + n)); }
          catch (e) { throw new Refused("malformed"); }
          pos += n;
        } else if (major === 4) { value = []; for (i = 0; i < n; i++) { value.push(item()); } }
        else if (major === 5) { value = new Map(); for (i = 0; i < n; i++) { var k = item(); value.set(k, item()); } }
        else { value = new Tag(n, item()); }
      }
      depth--;
      return value;
    }
    function half(h) {
      var exp = (h >> 10) & 31, frac = h & 1023, sign = h & 0x8000 ? -1 : 1;
      if (exp === 0) { return sign * Math.pow(2, -14) * (frac / 1024); }
      if (exp === 31) { return frac ? NaN : sign * Infinity; }
      return sign * Math.pow(2, exp - 15) * (1 + frac / 1024);
    }
    var decoded = item();
    if (pos !== bytes.length) { throw new Refused("malformed"); }
    return decoded;
  }

  // Just what the Sig_structure needs: an array of text and byte strings, shortest lengths
  // (as cbor2 writes them, so the bytes are the ones that were signed).
  function cborHead(major, n) {
    if (n < 24) { return [(major << 5) | n]; }
    if (n < 256) { return [(major << 5) | 24, n]; }
    if (n < 65536) { return [(major << 5) | 25, n >> 8, n & 255]; }
    return [(major << 5) | 26, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255];
  }
  function sigStructure(protectedBytes, payload) {
    var context = new TextEncoder().encode("Signature1");
    var parts = [cborHead(4, 4), cborHead(3, context.length), context,
      cborHead(2, protectedBytes.length), protectedBytes, cborHead(2, 0),
      cborHead(2, payload.length), payload];
    var total = 0;
    parts.forEach(function (p) { total += p.length; });
    var out = new Uint8Array(total), at = 0;
    parts.forEach(function (p) { out.set(p, at); at += p.length; });
    return out;
  }

  // -- verification, in the order of healthcode/codes.py ------------------------------------

  function verifyCode(text, now) {
    return Promise.resolve().then(function () {
      if (text.indexOf(PREFIX) !== 0) { throw new Refused("bad_prefix"); }
      var body = text.slice(PREFIX.length).trim();
      if (!body || body.length > MAX_TEXT) { throw new Refused("bad_encoding"); }
      return inflate(base45decode(body));
    }).then(function (raw) {
      var cose = cborDecode(raw);
      if (cose instanceof Tag) {
        if (cose.tag !== 18) { throw new Refused("malformed"); }
        cose = cose.value;
      }
      if (!Array.isArray(cose) || cose.length !== 4) { throw new Refused("malformed"); }
      var prot = cose[0], payload = cose[2], signature = cose[3];
      [prot, payload, signature].forEach(function (part) {
        if (!(part instanceof Uint8Array)) { throw new Refused("malformed"); }
      });
      var header = prot.length ? cborDecode(prot) : new Map();
      if (!(header instanceof Map) || header.get(1) !== -7) { throw new Refused("malformed"); }
      var kid = header.get(4);
      if (!(kid instanceof Uint8Array) || !kid.length) { throw new Refused("malformed"); }
      if (!window.crypto || !crypto.subtle) { throw new Refused("no_crypto"); }
      return trustedKey(b64url(kid), now).then(function (key) {
        // The signature first: nothing in the payload is read before it is known to be ours.
        if (signature.length !== 64) { throw new Refused("bad_signature"); }
        return crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, signature,
          sigStructure(prot, payload));
      }).then(function (ok) {
        if (!ok) { throw new Refused("bad_signature"); }
        var claims = cborDecode(payload);
        if (!(claims instanceof Map)) { throw new Refused("malformed"); }
        var iat = claims.get(6), exp = claims.get(4), mine = claims.get(-65537);
        if (!Number.isInteger(iat) || !Number.isInteger(exp)) { throw new Refused("malformed"); }
        if (now > exp * 1000 + skewMs) { throw new Refused("expired"); }
        if (iat * 1000 > now + skewMs) { throw new Refused("not_yet_valid"); }
        if (!(mine instanceof Map)) { throw new Refused("malformed"); }
        if (mine.get("t") !== "hc") { throw new Refused("wrong_type"); }
        var colour = mine.get("c");
        if (typeof mine.get("ref") !== "string" || !COLOURS[colour]) { throw new Refused("malformed"); }
        return colour;
      });
    });
  }

  // healthcode/policy.py as far as the page knows: no residency and no exit passes offline,
  // so at a closed or controlled compound nobody is let through; otherwise green passes.
  function decide(kind, tier, direction, colour) {
    if (kind === "compound_gate" && tier === "red") {
      return ["deny", direction === "exit" ? "compound_closed_exit" : "compound_closed_entry"];
    }
    if (kind === "compound_gate" && tier === "yellow") { return ["deny", "compound_controlled"]; }
    if (colour === "green") { return ["pass", "green_code"]; }
    return ["deny", colour === "red" ? "code_red" : "code_yellow"];
  }

  // -- the page -----------------------------------------------------------------------------

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function showNetwork() {
    bar.hidden = false;
    var online = navigator.onLine;
    netState.className = online ? "" : "net-off";
    netState.textContent = online ? (en ? "online" : "在线") : en ? "offline (codes checked on this phone)" : "离线（在本机核验）";
    var n = queue().length;
    queueCount.setAttribute("data-count", String(n));
    queueCount.textContent = "待上传 " + n + " 条" + (en ? " · " + n + " to upload" : "");
  }

  function nextPerson() {
    codeInput.value = "";
    codeInput.focus();
  }

  function showOffline(verdict, reason, colour, placeName) {
    result.textContent = "";
    result.appendChild(el("div", { "class": "offline-banner", "data-testid": "offline-banner" }, BANNER));
    var box = el("div", {
      "class": "verdict " + verdict, "role": verdict === "pass" ? "status" : "alert",
      "data-testid": "verdict", "data-verdict": verdict, "data-offline": "true",
    });
    box.appendChild(el("b", {}, verdict === "pass" ? (en ? "PASS" : "通行") : (en ? "DENY" : "禁止通行")));
    box.appendChild(el("p", { "data-testid": "reason" }, reason[0]));
    box.appendChild(el("p", { "class": "en" }, reason[1]));
    result.appendChild(box);
    if (colour) {
      var line = el("p", { "class": "muted", "data-testid": "colour" });
      line.appendChild(el("span", { "class": "dot " + colour }));
      line.appendChild(document.createTextNode("码内颜色：" + COLOURS[colour][0] + " · " + placeName));
      result.appendChild(line);
    }
  }

  function clientId() {
    if (crypto.randomUUID) { return crypto.randomUUID(); }
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  function scanOffline(text) {
    if (text.indexOf(CARD_PREFIX) === 0) {
      // Not queued: the card names its holder, not a colour, so there is nothing to decide by.
      showOffline("deny", CARD_OFFLINE, null, "");
      result.querySelector("[data-testid=verdict]").setAttribute("data-refused", "card_offline");
      showNetwork();
      nextPerson();
      return Promise.resolve();
    }
    var option = placeSelect ? placeSelect.options[placeSelect.selectedIndex] : null;
    var direction = (form.querySelector("[name=direction]:checked") || {}).value === "exit" ? "exit" : "entry";
    var now = Date.now();
    return verifyCode(text, now).then(function (colour) {
      var kind = option ? option.getAttribute("data-kind") : "";
      var decision = decide(kind, option ? option.getAttribute("data-tier") : "", direction, colour);
      var item = {
        client_id: clientId(), place_code: option ? option.value : null, direction: direction,
        place_name: option ? option.text : "", // shown in the upload's summary, never sent
        code: text, decision: decision[0], colour: colour, scanned_at: new Date(now).toISOString(),
      };
      var q = queue();
      q.push(item);
      if (!save(QUEUE_KEY, q)) {
        showOffline("deny", ["本机存储已满，无法记录离线扫码，请联网", "device storage full: go online"], null, "");
        return;
      }
      showOffline(decision[0], REASONS[decision[1]], colour, option ? option.text : "");
    }, function (error) {
      var code = error instanceof Refused ? error.code : "malformed";
      var words = REFUSALS[code] || REFUSALS.malformed;
      showOffline("deny", ["码无效：" + words[0], "code refused: " + words[1]], null, "");
      result.querySelector("[data-testid=verdict]").setAttribute("data-refused", code);
    }).then(function () { showNetwork(); nextPerson(); });
  }

  // Online: the same post as without script, its answer put in place of the last one.
  function scanOnline(text) {
    var body = new URLSearchParams(new FormData(form));
    return fetch(form.action, {
      method: "POST", body: body, credentials: "same-origin", headers: { Accept: "text/html" },
    }).then(function (response) {
      if (new URL(response.url).pathname !== new URL(form.action).pathname) {
        window.location.assign(response.url); // signed out meanwhile: the login page
        return;
      }
      return response.text().then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("gate-result");
        result.textContent = "";
        if (fresh) {
          Array.prototype.forEach.call(fresh.childNodes, function (n) {
            result.appendChild(document.importNode(n, true));
          });
        }
        nextPerson();
      });
    }, function () { return scanOffline(text); }); // no network after all
  }

  var busy = false;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (busy) { return; }
    var text = codeInput.value.trim();
    if (!text) { return; }
    busy = true;
    (navigator.onLine ? scanOnline(text) : scanOffline(text)).then(
      function () { busy = false; }, function () { busy = false; });
  });

  // -- upload -------------------------------------------------------------------------------

  var uploading = false;

  function showSummary(totals, flagged, failed) {
    summary.hidden = false;
    summary.className = "offline-summary" + (flagged.length ? " flagged" : "");
    summary.textContent = "";
    var head = failed
      ? "离线记录上传失败，稍后重试：" + failed
      : "离线记录已上传：记录 " + totals.recorded + " 条，重复 " + totals.duplicate
        + " 条，拒收 " + totals.refused + " 条";
    summary.appendChild(el("b", { "data-testid": "offline-summary-head" }, head));
    if (!flagged.length && !totals.refusedItems.length) { return; }
    var list = el("ul");
    flagged.forEach(function (f) {
      list.appendChild(el("li", { "data-testid": "offline-flagged" },
        "离线放行但当前非绿码（当前" + (COLOURS[f.current_colour] || ["?"])[0] + "）：" + f.when + " " + f.place
        + "，请跟进"));
    });
    totals.refusedItems.forEach(function (r) {
      list.appendChild(el("li", {}, "拒收：" + r.when + " " + r.place + " — " + r.reason));
    });
    summary.appendChild(list);
  }

  function upload() {
    if (uploading || !navigator.onLine) { return Promise.resolve(); }
    var pending = queue();
    if (!pending.length) { showNetwork(); return Promise.resolve(); }
    uploading = true;
    var totals = { recorded: 0, duplicate: 0, refused: 0, refusedItems: [] };
    var flagged = [];
    function describe(item) {
      return {
        when: new Date(item.scanned_at).toLocaleString("zh-CN", { hour12: false }),
        place: item.place_name || item.place_code || "",
      };
    }
    function round() {
      var batch = queue().slice(0, MAX_UPLOAD);
      if (!batch.length) { return null; }
      var items = batch.map(function (q) {
        return {
          client_id: q.client_id, code: q.code, direction: q.direction, place_code: q.place_code,
          scanned_at: q.scanned_at, decision: q.decision,
        };
      });
      return fetch(uploadUrl, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfInput ? csrfInput.value : "" },
        body: JSON.stringify({ items: items }),
      }).then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      }).then(function (answer) {
        var done = {};
        var byId = {};
        batch.forEach(function (q) { byId[q.client_id] = q; });
        answer.items.forEach(function (r) {
          // Recorded, duplicate (recorded before) or refused (will never be recorded): each
          // leaves the queue; whatever the server did not answer for stays for next time.
          done[r.client_id] = true;
          var item = byId[r.client_id] || {};
          if (r.status === "recorded") { totals.recorded++; }
          else if (r.status === "duplicate") { totals.duplicate++; }
          else {
            totals.refused++;
            var d = describe(item);
            totals.refusedItems.push({ when: d.when, place: d.place, reason: r.reason_zh || r.reason_code });
          }
          if (r.flagged) {
            var f = describe(item);
            flagged.push({ when: f.when, place: f.place, current_colour: r.current_colour });
          }
        });
        var before = queue();
        var left = before.filter(function (q) { return !done[q.client_id]; });
        save(QUEUE_KEY, left);
        showNetwork();
        // On while the queue shrinks (more than 500 waiting); never round and round.
        return left.length && left.length < before.length ? round() : null;
      });
    }
    return Promise.resolve(round()).then(function () {
      showSummary(totals, flagged, null);
    }, function (error) {
      showSummary(totals, flagged, String(error && error.message || error));
    }).then(function () { uploading = false; showNetwork(); });
  }

  // The service worker keeps this page and its scripts, so that it opens again without a
  // network (a phone restarted, a tab the browser dropped); it needs a secure context too.
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/healthcode/gate-sw.js").catch(function () {});
  }

  window.addEventListener("online", function () { showNetwork(); fetchTrustList(); upload(); });
  window.addEventListener("offline", showNetwork);
  showNetwork();
  fetchTrustList().then(upload);
  setInterval(fetchTrustList, TRUST_REFRESH_MS);
})();
