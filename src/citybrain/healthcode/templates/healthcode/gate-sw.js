// citybrain gate page service worker (门岗扫码离线页面): lets the gate page open again with no
// network, e.g. after the phone restarted or the browser dropped the tab while the network is
// down. Network first, always: with a network the page and its scripts are fetched as usual
// (and the copy kept here is refreshed); only when the fetch fails is the kept copy served.
// Only GET requests of this origin for the gate page and the static files are touched; form
// posts, the API and every other page go to the network untouched. Served from
// /healthcode/gate-sw.js, so its scope is /healthcode/.
"use strict";

var CACHE = "citybrain-gate-v1";
var PAGE = "/healthcode/gate";

self.addEventListener("install", function () { self.skipWaiting(); });

self.addEventListener("activate", function (event) {
  event.waitUntil(
    caches.keys().then(function (names) {
      return Promise.all(names.filter(function (name) {
        return name.indexOf("citybrain-gate-") === 0 && name !== CACHE;
      }).map(function (name) { return caches.delete(name); }));
    }).then(function () { return self.clients.claim(); })
  );
});

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") { return; }
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) { return; }
  var page = url.pathname === PAGE;
  if (!page && url.pathname.indexOf("/static/") !== 0) { return; }
  // The page is kept under one key whatever its query (the place picked last).
  var key = page ? PAGE : request;
  event.respondWith(
    fetch(request).then(function (response) {
      // Not a login page after a redirect, not an error: only a real answer is kept.
      if (response.ok && !response.redirected && response.type === "basic") {
        var copy = response.clone();
        event.waitUntil(caches.open(CACHE).then(function (cache) { return cache.put(key, copy); }));
      }
      return response;
    }, function () {
      return caches.open(CACHE).then(function (cache) {
        return cache.match(key).then(function (kept) { return kept || Response.error(); });
      });
    })
  );
});
