// The leadership cockpit (疫情态势领导驾驶舱): fetches the cockpit API, draws the panels and the
// ECharts district map, and follows the live stream. Everything shown comes from the scoped
// JSON API; the page itself holds no figures. Text goes in through textContent only.
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("cockpit-config").textContent);
  var words = config.words;
  var en = config.lang === "en";
  var API = "/api/v1/cockpit/";
  var CITY_MAP = "zhengzhou";
  var TIER_WORDS = en
    ? { red: "Red", yellow: "Yellow", green: "Green" }
    : { red: "红色", yellow: "黄色", green: "绿色" };
  var CODE_WORDS = en
    ? { red: "Red code", yellow: "Yellow code", green: "Green code" }
    : { red: "红码", yellow: "黄码", green: "绿码" };
  var KIND_WORDS = en
    ? { new_case: "New case", compound_red: "Red compound", source_stale: "Stale data", override: "Override",
        appeal_overdue: "Appeal overdue", contacts_uncontrolled: "Contacts not controlled",
        hand_turn_limit: "Hand turns at limit", hand_free_many: "Many turned green",
        card_presented: "Ended card shown" }
    : { new_case: "新增病例", compound_red: "小区转红", source_stale: "数据停更", override: "人工赋码",
        appeal_overdue: "申诉逾期", contacts_uncontrolled: "密接未管控",
        hand_turn_limit: "手工转码超限", hand_free_many: "手工转绿较多",
        card_presented: "挂失卡被出示" };
  var MAX_ALERTS = 50;

  var state = {
    path: [config.root], // the breadcrumb: the viewer's root first, the current area last
    measure: "confirmed",
    days: 14,
    sort: { key: "value", desc: true },
    overview: null,
    map: null,
    alerts: [],
    geojson: null,
    registered: {},
  };
  var cockpit = {
    chart: null,
    ready: false,
    renders: 0,
    state: state,
    mapName: null,
    refresh: refreshAll,
  };
  window.cockpit = cockpit;

  function $(testid) {
    return document.querySelector('[data-testid="' + testid + '"]');
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      node.setAttribute(name, attrs[name]);
    });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function fmt(value) {
    return value === null || value === undefined ? "—" : Number(value).toLocaleString(config.lang);
  }

  function localTime(iso, withDate) {
    if (!iso) return words.never;
    var options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
                    timeZone: "Asia/Shanghai" };
    if (withDate) { options.month = "2-digit"; options.day = "2-digit"; }
    return new Date(iso).toLocaleString(config.lang, options);
  }

  function current() {
    return state.path[state.path.length - 1];
  }

  function getJSON(path) {
    return fetch(path, { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname);
        }
        if (!response.ok) throw new Error(path + " " + response.status);
        return response.json();
      });
  }

  function withArea(path, extra) {
    var query = "area=" + encodeURIComponent(current().code) + (extra ? "&" + extra : "");
    return API + path + "?" + query;
  }

  // ------------------------------------------------------------------------------ figures

  function sparkline(values) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 100 24");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "cp-spark");
    svg.setAttribute("aria-hidden", "true");
    if (!values || !values.length) return svg;
    var max = Math.max.apply(null, values.concat([1]));
    var step = values.length > 1 ? 100 / (values.length - 1) : 100;
    var points = values.map(function (v, i) {
      return (i * step).toFixed(1) + "," + (22 - (v / max) * 20).toFixed(1);
    });
    var line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.appendChild(line);
    return svg;
  }

  function drawFigures() {
    var box = $("figures");
    box.replaceChildren();
    state.overview.figures.forEach(function (figure) {
      var notBuilt = figure.source === "not_built";
      var card = el("div", {
        class: "cp-fig" + (notBuilt ? " not-built" : ""),
        "data-key": figure.key,
        "data-source": figure.source,
        "data-testid": "figure-" + figure.key,
      });
      card.appendChild(el("span", { class: "cp-fig-label" }, en ? figure.label_en : figure.label_zh));
      // Never 0 for a figure the platform cannot count yet: a dash and the reason.
      var value = el("b", { "data-testid": "value-" + figure.key }, notBuilt ? "—" : fmt(figure.value));
      if (notBuilt) value.setAttribute("title", words.not_built);
      card.appendChild(value);
      if (!notBuilt) card.appendChild(sparkline(state.days === 30 ? figure.trend30 : figure.trend14));
      box.appendChild(card);
    });
  }

  function drawBar(testid, counts, names) {
    var bar = $(testid);
    bar.replaceChildren();
    ["red", "yellow", "green"].forEach(function (colour) {
      var n = counts ? counts[colour] || 0 : 0;
      var seg = el("span", { class: "seg " + colour, "data-colour": colour, "data-value": n });
      seg.style.flexGrow = String(Math.max(n, 0.0001));
      seg.appendChild(el("small", {}, names[colour]));
      seg.appendChild(el("b", {}, fmt(n)));
      bar.appendChild(seg);
    });
  }

  function drawLoop() {
    var loop = state.overview.loop || {};
    document.querySelectorAll('[data-testid="loop"] dd').forEach(function (dd) {
      var v = loop[dd.getAttribute("data-key")];
      dd.textContent = v === null || v === undefined ? "—" : Number(v).toFixed(1) + " " + words.minutes;
    });
    $("loop-cases").textContent = words.cases + ": " + fmt(loop.cases || 0) + " · " +
      words.controlled + ": " + fmt(loop.contacts_controlled || 0) + " / " + fmt(loop.close_contacts || 0);
  }

  function drawOverview() {
    drawFigures();
    drawBar("tiers", state.overview.tiers, TIER_WORDS);
    drawBar("colours", state.overview.colours, CODE_WORDS);
    drawLoop();
  }

  // ------------------------------------------------------------------------------ the map

  function districtOfPath() {
    for (var i = state.path.length - 1; i >= 0; i--) {
      if (state.path[i].code.length === 6) return state.path[i];
    }
    return null;
  }

  function registerMap(codes) {
    // One registered map per set of polygons: the whole city, or a single district.
    var name = codes ? "zz-" + codes.join("-") : CITY_MAP;
    if (!state.registered[name]) {
      var features = state.geojson.features.filter(function (f) {
        return !codes || codes.indexOf(String(f.properties.adcode)) >= 0;
      });
      window.echarts.registerMap(name, { type: "FeatureCollection", features: features });
      state.registered[name] = features.length;
    }
    return name;
  }

  function mapSeriesData() {
    var data = state.map.areas;
    var here = current();
    if (here.code.length === 4) {
      return data.filter(function (a) { return a.has_polygon; }).map(function (a) {
        return { name: a.code, value: a.value, areaName: a.name };
      });
    }
    // Inside a district the map keeps its polygon, coloured by the area's total.
    var district = districtOfPath();
    if (!district) return [];
    var total = data.reduce(function (sum, a) { return sum + (a.value || 0); }, 0);
    return [{ name: district.code, value: total, areaName: district.name }];
  }

  function drawMap() {
    var here = current();
    var district = districtOfPath();
    var polygons = here.code.length === 4 ? null : district ? [district.code] : [];
    var noPolygon = polygons !== null && !state.geojson.features.some(function (f) {
      return polygons.indexOf(String(f.properties.adcode)) >= 0;
    });
    $("no-polygon").hidden = !noPolygon;
    if (noPolygon) {
      // A development zone (or an area outside the polygons): listed, not drawn.
      cockpit.mapName = null;
      cockpit.chart.clear();
      return;
    }
    var mapName = registerMap(polygons);
    var data = mapSeriesData();
    var max = Math.max.apply(null, data.map(function (d) { return d.value || 0; }).concat([1]));
    cockpit.mapName = mapName;
    cockpit.chart.setOption({
      backgroundColor: "transparent",
      tooltip: {
        trigger: "item",
        formatter: function (p) {
          // ECharts tooltips are HTML: the name is escaped like any text from the API.
          return p.data ? escapeHtml(p.data.areaName) + "<br>" + fmt(p.data.value) : "";
        },
      },
      visualMap: {
        min: 0, max: max, calculable: true, left: 8, bottom: 8,
        text: [fmt(max), "0"], textStyle: { color: "#cfd8e3" },
        inRange: { color: ["#12345a", "#2f6fb0", "#f2c14e", "#e4572e", "#b3001b"] },
      },
      series: [{
        id: "districts",
        type: "map",
        map: mapName,
        nameProperty: "adcode",
        roam: false,
        // As large as the panel allows (ECharts keeps the aspect inside this box).
        left: 8, right: 8, top: 8, bottom: 8,
        selectedMode: false,
        label: {
          show: true, color: "#f5f7fa", fontSize: 12,
          formatter: function (p) { return p.data ? p.data.areaName + "\n" + fmt(p.data.value) : ""; },
        },
        itemStyle: { borderColor: "#0b1626", borderWidth: 1, areaColor: "#1c2a3d" },
        emphasis: { label: { color: "#fff" }, itemStyle: { areaColor: "#3d8bfd" } },
        data: data,
      }],
    }, { replaceMerge: ["series"] });
  }

  function drawZones() {
    var list = $("zone-list");
    list.replaceChildren();
    var zones = current().code.length === 4
      ? state.map.areas.filter(function (a) { return !a.has_polygon; }) : [];
    $("zones").hidden = zones.length === 0;
    zones.forEach(function (zone) {
      var item = el("li", { "data-code": zone.code, "data-testid": "zone-" + zone.code });
      var link = el("button", { type: "button" }, zone.name);
      link.addEventListener("click", function () { drill(zone); });
      item.appendChild(link);
      item.appendChild(el("b", {}, fmt(zone.value)));
      list.appendChild(item);
    });
  }

  function drawDrill() {
    var box = $("drill");
    var rows = $("drill-rows");
    rows.replaceChildren();
    var here = current();
    // The city is the map itself; below it the children are listed (no polygons there).
    box.hidden = here.code.length === 4;
    document.querySelector(".cp-map").classList.toggle("drilled", !box.hidden);
    if (box.hidden) return;
    var areas = state.map.areas.slice();
    var key = state.sort.key;
    var sign = state.sort.desc ? -1 : 1;
    areas.sort(function (a, b) {
      if (key === "name") return sign * a.name.localeCompare(b.name, "zh-CN");
      return sign * ((a.value || 0) - (b.value || 0)) || a.code.localeCompare(b.code);
    });
    areas.forEach(function (area) {
      var row = el("tr", { "data-code": area.code });
      var cell = el("td");
      if (area.code.length < 15) {
        var link = el("button", { type: "button", class: "cp-link" }, area.name);
        link.addEventListener("click", function () { drill(area); });
        cell.appendChild(link);
      } else {
        cell.textContent = area.name;
      }
      row.appendChild(cell);
      row.appendChild(el("td", { class: "num" }, fmt(area.value)));
      rows.appendChild(row);
    });
  }

  function drawCrumbs() {
    var nav = $("breadcrumb");
    nav.replaceChildren();
    state.path.forEach(function (area, index) {
      if (index > 0) nav.appendChild(el("span", { class: "sep", "aria-hidden": "true" }, "›"));
      var last = index === state.path.length - 1;
      var crumb = el(last ? "span" : "button", { "data-code": area.code }, area.name);
      if (!last) {
        crumb.setAttribute("type", "button");
        crumb.addEventListener("click", function () {
          state.path = state.path.slice(0, index + 1);
          refreshAll();
        });
      } else {
        crumb.setAttribute("aria-current", "page");
      }
      nav.appendChild(crumb);
    });
  }

  function drill(area) {
    state.path.push({ code: area.code, name: area.name, level: "" });
    refreshAll();
  }

  // ------------------------------------------------------------------------------ alerts, freshness

  function alertItem(alert) {
    var item = el("li", {
      "data-testid": "alert-item",
      "data-kind": alert.kind,
      "data-id": alert.id,
      "data-area": alert.area_code,
    });
    item.appendChild(el("time", {}, localTime(alert.at, true)));
    item.appendChild(el("span", { class: "kind kind-" + alert.kind }, KIND_WORDS[alert.kind] || alert.kind));
    item.appendChild(el("span", { class: "title" }, en ? alert.title_en : alert.title_zh));
    item.appendChild(el("small", {}, alert.area_name));
    return item;
  }

  function drawAlerts() {
    var feed = $("alerts");
    feed.replaceChildren();
    if (!state.alerts.length) {
      feed.appendChild(el("li", { class: "empty" }, words.no_alerts));
      return;
    }
    state.alerts.forEach(function (alert) { feed.appendChild(alertItem(alert)); });
  }

  function drawFreshness(rows) {
    var body = $("freshness");
    body.replaceChildren();
    rows.forEach(function (source) {
      var row = el("tr", {
        class: source.stale ? "stale" : "",
        "data-category": source.category,
        "data-stale": source.stale ? "1" : "0",
      });
      var name = el("td", {}, source.name_zh);
      if (source.stale) name.appendChild(el("span", { class: "badge-stale" }, words.stale));
      row.appendChild(name);
      row.appendChild(el("td", {}, localTime(source.last_received_at, true)));
      row.appendChild(el("td", { class: "num" }, fmt(source.records_today)));
      body.appendChild(row);
    });
  }

  // ------------------------------------------------------------------------------ loading

  function markUpdated() {
    $("updated").textContent = localTime(new Date().toISOString(), false);
  }

  function showError(failed) {
    var box = $("load-error");
    box.hidden = !failed;
    box.textContent = failed ? words.load_failed : "";
  }

  function loadGeo() {
    if (state.geojson) return Promise.resolve();
    return getJSON("/api/v1/geo/districts").then(function (body) { state.geojson = body.geojson; });
  }

  // Answers for an area the user has already left (a quick second click) are dropped.
  var figuresAsked = 0;
  var alertsAsked = 0;

  function loadFigures() {
    var asked = ++figuresAsked;
    return Promise.all([
      getJSON(withArea("overview")),
      getJSON(withArea("map", "measure=" + encodeURIComponent(state.measure))),
    ]).then(function (found) {
      if (asked !== figuresAsked) return;
      state.overview = found[0];
      state.map = found[1];
      drawOverview();
      drawMap();
      drawZones();
      drawDrill();
      cockpit.chart.resize();
    });
  }

  function loadAlerts() {
    var asked = ++alertsAsked;
    return getJSON(withArea("alerts", "limit=" + MAX_ALERTS)).then(function (rows) {
      if (asked !== alertsAsked) return;
      state.alerts = rows;
      drawAlerts();
    });
  }

  function loadFreshness() {
    return getJSON(API + "freshness").then(drawFreshness);
  }

  var retry = null;

  function refreshAll() {
    drawCrumbs();
    return loadGeo()
      .then(function () { return Promise.all([loadFigures(), loadAlerts(), loadFreshness()]); })
      .then(function () {
        showError(false);
        cockpit.renders += 1;
        markUpdated();
        if (!cockpit.ready) {
          cockpit.ready = true;
          document.body.dataset.ready = "1";
        }
      })
      .catch(function (error) {
        showError(true);
        if (window.console) console.error(error);
        clearTimeout(retry);
        retry = setTimeout(refreshAll, 10000);
      });
  }

  // Several events in a burst (a case, its contacts, their codes) make one re-fetch.
  var pending = null;

  function refreshFiguresSoon() {
    if (pending) return;
    pending = setTimeout(function () {
      pending = null;
      loadFigures().then(function () { cockpit.renders += 1; markUpdated(); showError(false); })
        .catch(function () { showError(true); });
    }, 250);
  }

  function inView(areaCode) {
    var code = current().code;
    return !areaCode || areaCode.indexOf(code) === 0 || code.length === 4;
  }

  function setLive(stateName) {
    var badge = $("live");
    badge.setAttribute("data-state", stateName);
    $("live-word").textContent = stateName === "live" ? words.live : words.offline;
  }

  function listen() {
    if (!window.EventSource) return;
    var source = new EventSource(API + "stream");
    var dropped = false;
    source.onopen = function () {
      setLive("live");
      // Events may have been missed while the connection was down: fetch everything again.
      if (dropped) { dropped = false; refreshAll(); }
    };
    source.onerror = function () {
      dropped = true;
      setLive("offline");
    };
    source.addEventListener("figures", function (event) {
      // The changed areas come with every prefix (city, district, ... leaf): re-fetch only
      // when something inside the area on screen changed.
      var changed = null;
      try { changed = JSON.parse(event.data).areas; } catch (ignored) { changed = null; }
      var code = current().code;
      if (!Array.isArray(changed) || changed.some(function (a) { return String(a).indexOf(code) === 0; })) {
        refreshFiguresSoon();
      }
    });
    source.addEventListener("alert", function (event) {
      var alert = JSON.parse(event.data);
      if (!inView(alert.area_code)) return;
      if (state.alerts.some(function (a) { return a.id === alert.id; })) return;
      state.alerts.unshift(alert);
      state.alerts = state.alerts.slice(0, MAX_ALERTS);
      drawAlerts();
      markUpdated();
    });
    cockpit.source = source;
  }

  // ------------------------------------------------------------------------------ demo clock

  // While `citybrain demo` replays a simulated city, its clock shows in the header with a
  // pause button and the speed; anywhere else the clock answers 404 and the bar stays hidden.
  var DEMO_CLOCK = "/api/v1/demo/clock";
  var demo = { state: null, timer: null };

  function drawDemo(clockState) {
    demo.state = clockState;
    var bar = $("demo-clock");
    bar.hidden = false;
    var day = words.demo_day
      .replace("{released}", clockState.released)
      .replace("{total}", clockState.total);
    if (clockState.day) day += " · " + clockState.day;
    if (clockState.finished) day += " · " + words.demo_finished;
    else if (clockState.paused) day += " · " + words.demo_paused;
    $("demo-day").textContent = day;
    var pause = $("demo-pause");
    pause.textContent = clockState.paused ? words.demo_resume : words.demo_pause;
    pause.setAttribute("aria-pressed", String(clockState.paused));
    pause.disabled = clockState.finished;
    var select = $("demo-speed");
    if (select.options.length !== clockState.speeds.length) {
      select.replaceChildren();
      clockState.speeds.forEach(function (speed) {
        select.appendChild(el("option", { value: String(speed) }, "×" + speed));
      });
    }
    select.value = String(clockState.speed);
  }

  function loadDemo() {
    return fetch(DEMO_CLOCK, { credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (response) {
        if (response.status === 404) return null; // no demo playing
        if (!response.ok) throw new Error(DEMO_CLOCK + " " + response.status);
        return response.json();
      })
      .then(function (clockState) {
        if (clockState) {
          drawDemo(clockState);
          if (!demo.timer) demo.timer = setInterval(loadDemo, 5000);
        } else {
          $("demo-clock").hidden = true;
        }
      })
      .catch(function () { /* the next poll tries again */ });
  }

  function changeDemo(change) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return fetch(DEMO_CLOCK, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        accept: "application/json",
        "content-type": "application/json",
        "x-csrf-token": meta ? meta.getAttribute("content") : "",
      },
      body: JSON.stringify(change),
    })
      .then(function (response) {
        if (!response.ok) throw new Error(DEMO_CLOCK + " " + response.status);
        return response.json();
      })
      .then(drawDemo)
      .catch(function () { showError(true); });
  }

  // ------------------------------------------------------------------------------ start

  function start() {
    cockpit.chart = window.echarts.init(document.getElementById("map"), null, { renderer: "canvas" });
    cockpit.chart.on("click", function (params) {
      if (params.data && current().code.length === 4) {
        drill({ code: params.data.name, name: params.data.areaName });
      }
    });
    // The map's box changes with the panels around it (lists filling in, a drill-down), not
    // only with the window: follow the box itself.
    if (window.ResizeObserver) {
      new ResizeObserver(function () { cockpit.chart.resize(); })
        .observe(document.getElementById("map"));
    } else {
      window.addEventListener("resize", function () { cockpit.chart.resize(); });
    }
    document.getElementById("measure").addEventListener("change", function (event) {
      state.measure = event.target.value;
      loadFigures().catch(function () { showError(true); });
    });
    document.querySelectorAll(".cp-toggle button").forEach(function (button) {
      button.addEventListener("click", function () {
        state.days = Number(button.getAttribute("data-days"));
        document.querySelectorAll(".cp-toggle button").forEach(function (b) {
          b.setAttribute("aria-pressed", String(b === button));
        });
        if (state.overview) drawFigures();
      });
    });
    document.querySelectorAll("[data-sort]").forEach(function (button) {
      button.addEventListener("click", function () {
        var key = button.getAttribute("data-sort");
        state.sort = { key: key, desc: state.sort.key === key ? !state.sort.desc : key === "value" };
        if (state.map) drawDrill();
      });
    });
    $("demo-pause").addEventListener("click", function () {
      if (demo.state) changeDemo({ paused: !demo.state.paused });
    });
    $("demo-speed").addEventListener("change", function (event) {
      changeDemo({ speed: Number(event.target.value) });
    });
    refreshAll();
    listen();
    loadDemo();
    // A source goes stale by the clock, with no event to say so: look again each minute.
    setInterval(function () { loadFreshness().catch(function () { showError(true); }); }, 60000);
  }

  start();
})();
