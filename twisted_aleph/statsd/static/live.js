// The statsd live page: one small SVG chart per series, fed over a WebSocket.
// Messages (JSON): {"type": "snapshot", "t": [times], "series": {name: [values or null]}, ...}
// once, then {"type": "flush", "t": time, "values": {name: value}, ...} per flush.
(function () {
  "use strict";
  var W = 240, H = 60, PAD = 4;
  var charts = document.getElementById("charts");
  var status = document.getElementById("status");
  var series = new Map();  // name -> {times: [], values: [], el: Element}
  var windowSeconds = 600;
  var latest = 0;

  function fmt(v) {
    if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
    return String(Number(v.toPrecision(6)));
  }

  function card(name) {
    var el = document.createElement("section");
    el.className = "metric";
    el.dataset.series = name;
    var title = document.createElement("h2");
    title.textContent = name;
    title.title = name;
    var value = document.createElement("div");
    value.className = "value";
    var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("preserveAspectRatio", "none");
    var line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    var dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    dot.setAttribute("r", "2.5");
    svg.appendChild(line);
    svg.appendChild(dot);
    var range = document.createElement("div");
    range.className = "range";
    el.append(title, value, svg, range);
    // keep the cards sorted by name
    var next = null;
    for (var i = 0; i < charts.children.length; i++) {
      if (charts.children[i].dataset.series > name) { next = charts.children[i]; break; }
    }
    charts.insertBefore(el, next);
    document.getElementById("empty").hidden = true;
    return {times: [], values: [], el: el, line: line, dot: dot, value: value, range: range};
  }

  function add(name, t, v) {
    var s = series.get(name);
    if (!s) { s = card(name); series.set(name, s); }
    s.times.push(t);
    s.values.push(v);
  }

  function prune() {
    var horizon = latest - windowSeconds;
    series.forEach(function (s, name) {
      var drop = 0;
      while (drop < s.times.length && s.times[drop] < horizon) drop++;
      if (drop) { s.times.splice(0, drop); s.values.splice(0, drop); }
      if (!s.times.length) { s.el.remove(); series.delete(name); }
    });
  }

  function render(s) {
    var lo = Math.min.apply(null, s.values), hi = Math.max.apply(null, s.values);
    var start = latest - windowSeconds;
    var points = s.times.map(function (t, i) {
      var x = PAD + (t - start) / windowSeconds * (W - 2 * PAD);
      var y = hi === lo ? H / 2 : H - PAD - (s.values[i] - lo) / (hi - lo) * (H - 2 * PAD);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    s.line.setAttribute("points", points.join(" "));
    var last = points[points.length - 1].split(",");
    s.dot.setAttribute("cx", last[0]);
    s.dot.setAttribute("cy", last[1]);
    var v = s.values[s.values.length - 1];
    s.value.textContent = fmt(v);
    s.range.textContent = "min " + fmt(lo) + " \u00b7 max " + fmt(hi) + " \u00b7 " +
      s.values.length + " flushes";
    s.el.dataset.last = String(v);
    s.el.dataset.points = String(s.values.length);
  }

  function done(message) {
    windowSeconds = message.window || windowSeconds;
    prune();
    series.forEach(render);
    document.getElementById("last-flush").textContent =
      latest ? "last flush " + new Date(latest * 1000).toLocaleTimeString() : "";
    document.getElementById("hidden").textContent =
      message.hidden ? message.hidden + " more metrics not charted" : "";
    document.body.dataset.flushes = String(Number(document.body.dataset.flushes) + 1);
  }

  function onSnapshot(message) {
    series.forEach(function (s) { s.el.remove(); });
    series.clear();
    Object.keys(message.series).forEach(function (name) {
      message.series[name].forEach(function (v, i) {
        if (v !== null) add(name, message.t[i], v);
      });
    });
    latest = message.t.length ? message.t[message.t.length - 1] : 0;
    done(message);
  }

  function onFlush(message) {
    latest = message.t;
    Object.keys(message.values).forEach(function (name) {
      add(name, message.t, message.values[name]);
    });
    done(message);
  }

  function connect() {
    var url = new URL("ws", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    var socket = new WebSocket(url.href);
    socket.onopen = function () {
      status.textContent = "connected";
      status.dataset.state = "connected";
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "snapshot") onSnapshot(message);
      else if (message.type === "flush") onFlush(message);
    };
    socket.onclose = function () {
      status.textContent = "disconnected, retrying";
      status.dataset.state = "disconnected";
      setTimeout(connect, 2000);
    };
  }

  connect();
})();
