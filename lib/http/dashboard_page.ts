/**
 * @module The dashboard: one self-contained page (HTML, CSS and JavaScript, no CDN, no build
 * step), embedded as a string so `bun build --compile` carries it inside the binary. It renders
 * the snapshots that `/v1/events` pushes every second (topics, rates and partition leaders,
 * groups and lag, every cluster node with its role and health, an edge's uplink, delayed
 * messages, recent errors) and has a browse view that pages through a partition with the fetch API
 * (by offset, from the first or the last messages, or from a time). An admin (every user of a
 * broker without users) also gets two forms: produce a test message to the partition being
 * browsed, and reset a consumer group's offsets (previewed as a dry run first). Others do not
 * see them, and the broker refuses the routes to them anyway.
 *
 * The script avoids template literals and `${`, so the whole page fits in one String.raw.
 */

export const DASHBOARD_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>metaq dashboard</title>
<link rel="icon" href="data:,">
<style>
:root {
  --bg: #f4f6fa; --panel: #ffffff; --text: #172033; --muted: #66728a; --line: #e2e7f0;
  --accent: #3d5afe; --accent-soft: rgba(61, 90, 254, .12); --out: #00a884;
  --out-soft: rgba(0, 168, 132, .14); --warn: #c77700; --bad: #d93a3a; --good: #17a673;
  --shadow: 0 1px 2px rgba(23, 32, 51, .06), 0 4px 16px rgba(23, 32, 51, .05);
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1420; --panel: #171e2d; --text: #e6eaf2; --muted: #8d98ad; --line: #263049;
    --accent: #7b8cff; --accent-soft: rgba(123, 140, 255, .16); --out: #2fd3a6;
    --out-soft: rgba(47, 211, 166, .15); --shadow: none;
  }
}
* { box-sizing: border-box; }
html, body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { position: sticky; top: 0; z-index: 2; background: var(--panel);
  border-bottom: 1px solid var(--line); }
.bar { max-width: 1240px; margin: 0 auto; padding: 10px 20px; display: flex; flex-wrap: wrap;
  align-items: center; gap: 10px 20px; }
.brand { font-weight: 700; font-size: 18px; letter-spacing: -.02em; display: flex;
  align-items: center; gap: 8px; }
.logo { width: 26px; height: 26px; border-radius: 7px; background: var(--accent); color: #fff;
  display: grid; place-items: center; font-size: 14px; }
.meta { color: var(--muted); font-size: 13px; display: flex; flex-wrap: wrap; gap: 4px 14px; }
nav { margin-left: auto; display: flex; gap: 4px; }
nav a { color: var(--muted); text-decoration: none; padding: 6px 12px; border-radius: 8px;
  font-weight: 600; }
nav a.active { background: var(--accent-soft); color: var(--accent); }
.live { display: inline-flex; align-items: center; gap: 6px; }
.dot { width: 8px; height: 8px; border-radius: 50%; background: var(--muted);
  display: inline-block; }
.dot.on { background: var(--good); box-shadow: 0 0 0 3px rgba(23, 166, 115, .18); }
.dot.off { background: var(--bad); }
main { max-width: 1240px; margin: 0 auto; padding: 20px; display: grid; gap: 18px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.card, .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 12px;
  box-shadow: var(--shadow); }
.card { padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .05em; }
.card .value { font-size: 24px; font-weight: 700; letter-spacing: -.02em; margin-top: 2px;
  font-variant-numeric: tabular-nums; }
.card .sub { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
.panel { padding: 14px 16px; min-width: 0; }
.panel h2 { font-size: 15px; margin: 0 0 10px; display: flex; align-items: baseline; gap: 10px; }
.panel h2 small { color: var(--muted); font-weight: 500; font-size: 12px; }
.lateness { display: flex; align-items: flex-end; gap: 4px; height: 64px; margin-top: 12px; }
.lateness div { flex: 1; display: flex; flex-direction: column; justify-content: flex-end;
  align-items: center; height: 100%; font-size: 10px; color: var(--muted); }
.lateness span { display: block; width: 100%; background: var(--accent);
  border-radius: 3px 3px 0 0; min-height: 1px; }
.grid2 { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 18px; }
@media (max-width: 900px) { .grid2 { grid-template-columns: minmax(0, 1fr); } }
.legend { display: flex; gap: 16px; font-size: 12px; color: var(--muted); margin-bottom: 6px;
  flex-wrap: wrap; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 3px;
  margin-right: 6px; vertical-align: -1px; }
.chart { position: relative; height: 170px; }
.chart svg { width: 100%; height: 100%; display: block; }
.chart .ymax { position: absolute; top: 0; left: 4px; font-size: 11px; color: var(--muted); }
.table-wrap { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th { text-align: left; color: var(--muted); font-weight: 600; font-size: 12px;
  text-transform: uppercase; letter-spacing: .04em; padding: 6px 10px;
  border-bottom: 1px solid var(--line); white-space: nowrap; }
td { padding: 7px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; }
tr.topic { cursor: pointer; }
tr.topic:hover td { background: var(--accent-soft); }
tr.part td { color: var(--muted); font-size: 13px; background: rgba(127, 127, 127, .04); }
tr.part td:first-child { padding-left: 30px; }
.caret { display: inline-block; width: 14px; color: var(--muted); transition: transform .15s; }
.open .caret { transform: rotate(90deg); }
.name { font-weight: 600; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 99px; font-size: 11px;
  font-weight: 700; background: var(--line); color: var(--muted); text-transform: uppercase;
  letter-spacing: .04em; }
.badge.leader { background: var(--accent-soft); color: var(--accent); }
.badge.warn { background: rgba(199, 119, 0, .14); color: var(--warn); }
.badge.error { background: rgba(217, 58, 58, .14); color: var(--bad); }
.badge.closed { background: rgba(217, 58, 58, .14); color: var(--bad); }
.lagbar { height: 6px; border-radius: 3px; background: var(--line); min-width: 60px;
  overflow: hidden; }
.lagbar span { display: block; height: 100%; background: var(--warn); }
.group { border-top: 1px solid var(--line); padding-top: 10px; margin-top: 10px; }
.group:first-of-type { border-top: 0; margin-top: 0; padding-top: 0; }
.group-head { display: flex; justify-content: space-between; gap: 10px; flex-wrap: wrap;
  margin-bottom: 4px; }
.nodes { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 10px; }
.node { border: 1px solid var(--line); border-radius: 10px; padding: 10px 12px; }
.node .addr { font-family: var(--mono); font-size: 12px; color: var(--muted); }
.empty { color: var(--muted); padding: 8px 0; }
.errors { list-style: none; margin: 0; padding: 0; max-height: 260px; overflow: auto; }
.errors li { display: grid; grid-template-columns: auto auto 1fr; gap: 4px 10px;
  padding: 7px 0; border-bottom: 1px solid var(--line); align-items: baseline; }
.errors li:last-child { border-bottom: 0; }
.errors time { color: var(--muted); font-size: 12px; font-family: var(--mono); }
.errors .fields { grid-column: 3; color: var(--muted); font-family: var(--mono);
  font-size: 12px; overflow-wrap: anywhere; }
.controls { display: flex; flex-wrap: wrap; gap: 10px; align-items: end; margin-bottom: 12px; }
.controls label { display: grid; gap: 3px; font-size: 12px; color: var(--muted); }
select, input, button { font: inherit; color: var(--text); background: var(--panel);
  border: 1px solid var(--line); border-radius: 8px; padding: 6px 10px; }
input { width: 130px; }
input.wide { width: min(420px, 80vw); }
.admin-tag { color: var(--warn); }
button { cursor: pointer; font-weight: 600; }
button.primary { background: var(--accent); color: #fff; border-color: var(--accent); }
button:disabled { opacity: .45; cursor: default; }
.payload { font-family: var(--mono); font-size: 12px; max-width: 520px; overflow: hidden;
  text-overflow: ellipsis; }
.mono { font-family: var(--mono); font-size: 12px; }
.status { color: var(--muted); font-size: 13px; margin-top: 10px; }
.error-text { color: var(--bad); }
[hidden] { display: none !important; }
@media (max-width: 600px) {
  .bar { padding: 10px 14px; }
  main { padding: 14px; gap: 14px; }
  nav { margin-left: 0; }
  .card .value { font-size: 20px; }
  .panel { padding: 12px; }
  th, td { padding: 6px 5px; }
  th { font-size: 11px; letter-spacing: .02em; white-space: normal; }
  tr.part td:first-child { padding-left: 18px; }
  .hide-sm { display: none; }
}
  .login { margin: 14px; }
</style>
</head>
<body>
<header>
  <div class="bar">
    <div class="brand"><span class="logo">M</span>metaq</div>
    <div class="meta" id="meta"><span>connecting...</span></div>
    <nav>
      <a href="#/" id="nav-overview" class="active">Overview</a>
      <a href="#/browse" id="nav-browse">Browse</a>
    </nav>
    <span class="live" title="live updates"><span class="dot" id="live-dot"></span>
      <span id="live-text" class="meta">offline</span></span>
  </div>
</header>

<form id="login" class="panel login" hidden>
  <h2>Sign in <small>this broker asks for a token (kept in this browser)</small></h2>
  <div class="controls">
    <label>Token <input id="login-token" type="password" autocomplete="current-password"></label>
    <button class="primary" type="submit" id="login-go">Use token</button>
    <span id="login-status" class="meta"></span>
  </div>
</form>

<main id="overview">
  <section class="cards" id="cards"></section>
  <section class="panel">
    <h2>Throughput <small>bytes per second, last minute</small></h2>
    <div class="legend"><span><i style="background:var(--accent)"></i>produced
      <b id="legend-in">0 B/s</b></span><span><i style="background:var(--out)"></i>consumed
      <b id="legend-out">0 B/s</b></span></div>
    <div class="chart"><svg id="chart" viewBox="0 0 600 170" preserveAspectRatio="none"
      aria-label="throughput chart"></svg><span class="ymax" id="chart-max"></span></div>
  </section>
  <section class="panel">
    <h2>Topics <small id="topics-note"></small></h2>
    <div class="table-wrap"><table id="topics">
      <thead><tr><th>Topic</th><th class="num hide-sm">Partitions</th>
        <th class="num">Messages</th><th class="num hide-sm">Size</th><th class="num">In msg/s</th>
        <th class="num hide-sm">In B/s</th><th class="num">Out B/s</th></tr></thead>
      <tbody></tbody>
    </table></div>
  </section>
  <div class="grid2">
    <section class="panel"><h2>Consumer groups <small id="groups-note"></small></h2>
      <div id="groups"></div></section>
    <section class="panel"><h2>Cluster <small id="cluster-note"></small></h2>
      <div id="cluster"></div></section>
  </div>
  <section class="panel" id="reset-panel" hidden>
    <h2>Reset a group's offsets <small class="admin-tag">admin</small>
      <small>the group's consumers must be stopped</small></h2>
    <form id="r-form" class="controls">
      <label>Group <select id="r-group"></select></label>
      <label>Topic <select id="r-topic"></select></label>
      <label>Partition <select id="r-partition"><option value="">all</option></select></label>
      <label>To <select id="r-to"><option value="earliest">earliest</option>
        <option value="latest">latest</option><option value="offset">offset</option>
        <option value="time">time</option></select></label>
      <label>Offset or time <input id="r-value" placeholder="2026-12-06T10:00:00Z"></label>
      <button type="button" id="r-preview">Preview</button>
      <button class="primary" type="submit" id="r-apply">Reset offsets</button>
    </form>
    <div class="status" id="r-status">Preview shows where each partition would move; nothing
      changes until you reset.</div>
  </section>
  <section class="panel" id="delayed-panel" hidden><h2>Delayed messages
    <small id="delayed-note"></small></h2><div class="cards" id="delayed"></div>
    <div class="lateness" id="delayed-lateness"></div></section>
  <section class="panel" id="uplink-panel" hidden><h2>Uplink <small id="uplink-note"></small></h2>
    <div id="uplink"></div></section>
  <section class="panel"><h2>Recent warnings and errors <small id="errors-note"></small></h2>
    <ul class="errors" id="errors"></ul></section>
</main>

<main id="browse" hidden>
  <section class="panel">
    <h2>Browse messages <small id="browse-range"></small></h2>
    <div class="controls">
      <label>Topic <select id="b-topic"></select></label>
      <label>Partition <select id="b-partition"></select></label>
      <label>Offset <input id="b-offset" inputmode="numeric" placeholder="start"></label>
      <label>Page <select id="b-max"><option>10</option><option selected>25</option>
        <option>50</option><option>100</option></select></label>
      <button id="b-go" class="primary">Load</button>
      <button id="b-first">First</button>
      <button id="b-prev">Prev</button>
      <button id="b-next">Next</button>
      <button id="b-last">Last</button>
      <label>Time <input id="b-time" placeholder="2026-12-06T10:00:00Z"
        title="ISO 8601 (without a zone: this browser's), a date, or ms since 1970"></label>
      <button id="b-jump">Jump to time</button>
    </div>
    <div class="table-wrap"><table id="messages">
      <thead><tr><th class="num">Offset</th><th>Time</th><th class="hide-sm">Id</th>
        <th class="num">Flag</th>
        <th>Attribute</th><th>Payload</th><th class="num hide-sm">Bytes</th></tr></thead>
      <tbody></tbody>
    </table></div>
    <div class="status" id="b-status">Pick a topic and a partition.</div>
  </section>
  <section class="panel" id="produce-panel" hidden>
    <h2>Produce a test message <small class="admin-tag">admin</small>
      <small id="p-target"></small></h2>
    <form id="p-form" class="controls">
      <label>Payload <input id="p-payload" class="wide" placeholder="hello"></label>
      <label>Key <input id="p-key" placeholder="optional"></label>
      <button class="primary" type="submit" id="p-send">Send</button>
    </form>
    <div class="status" id="p-status"></div>
  </section>
</main>

<script>
(function () {
  'use strict';
  var state = { snapshot: null, open: {}, browse: { page: null }, admin: false };
  function $(id) { return document.getElementById(id); }
  // A broker with users wants 'Authorization: Bearer <token>' on every request but the page.
  var token = '';
  try { token = localStorage.getItem('metaq.token') || ''; } catch (e) { token = ''; }
  function authHeaders() { return token ? { authorization: 'Bearer ' + token } : {}; }
  function askToken() {
    $('login').hidden = false;
    $('login-status').textContent = token ? 'That token was refused.' : '';
    setLive(false);
  }
  function api(url) {
    return fetch(url, { headers: authHeaders() }).then(function (response) {
      if (response.status === 401) askToken();
      return response;
    });
  }
  /** A JSON request with the token; resolves with { ok, status, body } (body parsed). */
  function send(method, url, body) {
    var headers = authHeaders();
    headers['content-type'] = 'application/json';
    return fetch(url, { method: method, headers: headers, body: JSON.stringify(body) })
      .then(function (response) {
        if (response.status === 401) askToken();
        return response.json().then(function (json) {
          return { ok: response.ok, status: response.status, body: json };
        });
      });
  }
  function failure(result) {
    return result.body && result.body.error ? result.body.error.message : 'HTTP ' + result.status;
  }
  /** A time typed in the page: without a zone it is this browser's local time. */
  function timeText(text) {
    if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text)) {
      var local = new Date(text.replace(' ', 'T'));
      if (!isNaN(local.getTime())) return local.toISOString();
    }
    return text;
  }
  function esc(value) {
    return String(value).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function num(n) { return Number(n || 0).toLocaleString('en-US'); }
  function bytes(n) {
    n = Number(n || 0);
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
  }
  function rate(n) {
    n = Number(n || 0);
    if (n === 0) return '0';
    return n >= 100 ? num(Math.round(n)) : String(Math.round(n * 10) / 10);
  }
  function duration(seconds) {
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
    var m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + s + 's';
    return s + 's';
  }
  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }
  function clock(ms) { return new Date(ms).toLocaleTimeString('en-GB', { hour12: false }); }

  function renderMeta(s) {
    var b = s.broker;
    $('meta').innerHTML = '<span>broker <b>' + esc(b.brokerId) + '</b></span>' +
      (s.cluster ? '<span>node <b>' + esc(s.cluster.nodeId) + '</b></span>' : '') + '<span>' +
      esc(b.url.replace('meta://', '')) + '</span><span>' + esc(b.version) + '</span><span>up ' +
      duration(b.uptimeSeconds) + '</span>';
    document.title = 'metaq ' + b.brokerId + ' - dashboard';
  }

  function card(label, value, sub, id) {
    return '<div class="card" data-card="' + id + '"><div class="label">' + label +
      '</div><div class="value">' + value + '</div><div class="sub">' + (sub || '&nbsp;') +
      '</div></div>';
  }

  function renderCards(s) {
    var t = s.totals;
    $('cards').innerHTML =
      card('Produce', rate(t.produceMessagesPerSecond) + '<small> msg/s</small>',
        bytes(t.produceBytesPerSecond) + '/s', 'produce') +
      card('Consume', bytes(t.consumeBytesPerSecond) + '<small>/s</small>',
        num(t.cmdGet) + ' fetches', 'consume') +
      card('Messages', num(t.messages), num(t.cmdPut) + ' puts, ' + num(t.putFailed) +
        ' failed', 'messages') +
      card('Stored', bytes(t.bytes), plural(s.topics.length, 'topic'), 'stored') +
      card('Connections', num(s.broker.connections), plural(s.broker.streams, 'HTTP stream'),
        'connections');
  }

  function renderChart(s) {
    // Points are placed by time over the last minute, so gaps between samples stay visible.
    var now = s.timeMs, w = 600, h = 170;
    var points = s.history.filter(function (p) { return now - p.timeMs <= 60000; });
    var max = 1;
    points.forEach(function (p) {
      max = Math.max(max, p.produceBytesPerSecond, p.consumeBytesPerSecond);
    });
    max = max * 1.15;
    function x(p) { return Math.max(0, w - (now - p.timeMs) / 60000 * w); }
    function path(key, close) {
      if (points.length === 0) return '';
      var d = points.map(function (p, i) {
        var y = h - 4 - (p[key] / max) * (h - 14);
        return (i ? 'L' : 'M') + x(p).toFixed(1) + ' ' + y.toFixed(1);
      }).join(' ');
      if (!close) return d;
      return d + ' L' + x(points[points.length - 1]).toFixed(1) + ' ' + h + ' L' +
        x(points[0]).toFixed(1) + ' ' + h + ' Z';
    }
    var grid = '';
    for (var i = 1; i < 4; i++) {
      grid += '<line x1="0" x2="600" y1="' + (h * i / 4) + '" y2="' + (h * i / 4) +
        '" stroke="var(--line)" stroke-width="1" vector-effect="non-scaling-stroke"/>';
    }
    $('chart').innerHTML = grid +
      '<path d="' + path('produceBytesPerSecond', true) + '" fill="var(--accent-soft)"/>' +
      '<path d="' + path('consumeBytesPerSecond', true) + '" fill="var(--out-soft)"/>' +
      '<path d="' + path('produceBytesPerSecond', false) + '" fill="none" ' +
      'stroke="var(--accent)" stroke-width="2" vector-effect="non-scaling-stroke"/>' +
      '<path d="' + path('consumeBytesPerSecond', false) + '" fill="none" ' +
      'stroke="var(--out)" stroke-width="2" vector-effect="non-scaling-stroke"/>';
    $('chart-max').textContent = bytes(max) + '/s';
    $('legend-in').textContent = bytes(s.totals.produceBytesPerSecond) + '/s';
    $('legend-out').textContent = bytes(s.totals.consumeBytesPerSecond) + '/s';
  }

  function renderTopics(s) {
    var rows = '';
    s.topics.forEach(function (t) {
      var open = state.open[t.name];
      rows += '<tr class="topic' + (open ? ' open' : '') + '" data-topic="' + esc(t.name) +
        '"><td><span class="caret">&#9656;</span><span class="name">' + esc(t.name) +
        '</span></td><td class="num hide-sm">' + t.partitions.length + ' / ' + t.numPartitions +
        '</td><td class="num" data-cell="messages" data-value="' + t.messages + '">' +
        num(t.messages) + '</td>' +
        '<td class="num hide-sm">' + bytes(t.bytes) + '</td><td class="num">' +
        rate(t.produceMessagesPerSecond) + '</td><td class="num hide-sm">' +
        bytes(t.produceBytesPerSecond) + '</td><td class="num">' +
        bytes(t.consumeBytesPerSecond) + '</td></tr>';
      if (!open) return;
      if (t.partitions.length === 0) {
        rows += '<tr class="part"><td colspan="7">No partition has data yet.</td></tr>';
      }
      t.partitions.forEach(function (p) {
        rows += '<tr class="part" data-partition="' + esc(t.name) + '/' + p.partition +
          '"><td>partition ' + p.partition + (p.closed ? ' <span class="badge closed">closed' +
          '</span>' : '') + (p.leader === null || p.leader === undefined ? '' :
          ' <span class="badge leader" data-leader="' + esc(t.name) + '/' + p.partition +
          '" data-value="' + esc(p.leader) + '">node ' + esc(p.leader) + '</span>') +
          '<span class="mono hide-sm"> &middot; offsets ' +
          num(p.startOffset) + ' &ndash; ' + num(p.endOffset) + '</span></td>' +
          '<td class="num hide-sm">' + p.segments + ' seg</td>' +
          '<td class="num">' + num(p.messages) + '</td><td class="num hide-sm">' + bytes(p.bytes) +
          '</td><td class="num">' + rate(p.produceMessagesPerSecond) +
          '</td><td class="num hide-sm">' + bytes(p.produceBytesPerSecond) + '</td><td class="num">' +
          bytes(p.consumeBytesPerSecond) + '</td></tr>';
      });
    });
    if (!rows) rows = '<tr><td colspan="7" class="empty">No topics yet. Produce a message ' +
      'to create one.</td></tr>';
    $('topics').tBodies[0].innerHTML = rows;
    $('topics-note').textContent = plural(s.topics.length, 'topic') +
      ', click one for its partitions';
  }

  function renderGroups(s) {
    if (s.groups === null) {
      $('groups').innerHTML = '<div class="empty">' + (s.groupsError ? 'Cannot read groups: ' +
        esc(s.groupsError) : 'Consumer groups are not enabled on this broker.') + '</div>';
      $('groups-note').textContent = '';
      return;
    }
    if (s.groups.length === 0) {
      $('groups').innerHTML = '<div class="empty">No consumer group has committed an offset.</div>';
    } else {
      $('groups').innerHTML = s.groups.map(function (g) {
        var worst = 1;
        g.partitions.forEach(function (p) { worst = Math.max(worst, p.lagBytes); });
        var rows = g.partitions.map(function (p) {
          var key = g.group + '/' + p.topic + '/' + p.partition;
          return '<tr><td>' + esc(p.topic) + '</td><td class="num">' + p.partition + '</td>' +
            '<td class="num hide-sm">' + num(p.committedOffset) + '</td><td class="num">' +
            num(p.endOffset) + '</td><td class="num" data-lag="' + esc(key) + '" data-value="' +
            p.lagBytes + '">' +
            bytes(p.lagBytes) + '</td><td><div class="lagbar"><span style="width:' +
            Math.round(p.lagBytes / worst * 100) + '%"></span></div></td></tr>';
        }).join('');
        return '<div class="group" data-group="' + esc(g.group) + '"><div class="group-head">' +
          '<span class="name">' + esc(g.group) + '</span><span class="meta">' +
          plural(g.members.length, 'member') + ', lag <b data-group-lag="' + esc(g.group) + '">' +
          bytes(g.lagBytes) + '</b></span></div><div class="table-wrap"><table><thead><tr>' +
          '<th>Topic</th><th class="num">Part</th><th class="num hide-sm">Committed</th>' +
          '<th class="num">End</th><th class="num">Lag</th><th></th></tr></thead><tbody>' +
          rows + '</tbody></table></div></div>';
      }).join('');
    }
    var total = 0;
    s.groups.forEach(function (g) { total += g.lagBytes; });
    $('groups-note').textContent = plural(s.groups.length, 'group') + ', total lag ' +
      bytes(total);
  }

  function renderCluster(s) {
    var c = s.cluster;
    if (!c) {
      $('cluster').innerHTML = '<div class="empty">Single broker: no cluster is configured.</div>';
      $('cluster-note').textContent = '';
      return;
    }
    $('cluster-note').textContent = plural(c.nodes.length, 'node') + ', term ' + c.term +
      ', commit index ' + num(c.commitIndex) + (c.ready === false ? ', not ready' : '');
    $('cluster').innerHTML = '<div class="nodes">' + c.nodes.map(function (n) {
      return '<div class="node" data-node="' + esc(n.id) + '" data-role="' + esc(n.role) +
        '" data-healthy="' + (n.healthy ? 'true' : 'false') + '"><div><span class="dot ' +
        (n.healthy ? 'on' : 'off') + '"></span> <span class="name">node ' + esc(n.id) +
        '</span> <span class="badge ' + (n.role === 'leader' ? 'leader' : '') + '" title="' +
        'role in the group that coordinates consumer groups">' +
        esc(n.role) + '</span>' + (n.id === c.nodeId ? ' <small class="meta">this node' +
        '</small>' : '') + '</div><div class="addr">' + esc(n.address) + '</div>' +
        '<div class="meta">' + (n.healthy ? 'healthy' : 'unreachable') +
        (n.leads !== undefined ? ', leads ' + plural(n.leads, 'partition') : '') +
        (n.matchIndex !== undefined ? ', match ' + num(n.matchIndex) : '') +
        (n.lastContactMs !== undefined ? ', seen ' + num(n.lastContactMs) + ' ms ago' : '') +
        '</div></div>';
    }).join('') + '</div>';
  }

  // An edge broker's uplink to its hub: the link, then each forwarded partition's progress.
  function renderUplink(s) {
    var u = s.uplink;
    $('uplink-panel').hidden = !u;
    if (!u) return;
    var up = u.state === 'up';
    $('uplink-note').innerHTML = '<span class="dot ' + (up ? 'on' : 'off') + '"></span> ' +
      esc(up ? 'connected to ' + u.hub : u.state) + ', site ' + esc(u.site) +
      (!up && u.lastError ? ': ' + esc(u.lastError) : '');
    if (u.partitions.length === 0) {
      $('uplink').innerHTML = '<div class="empty">No partition to forward yet.</div>';
      return;
    }
    var rows = u.partitions.map(function (p) {
      var ack = p.lastAckWallMs ? num(Math.max(0, Math.round((s.timeMs - p.lastAckWallMs) /
        1000))) + ' s ago' : '-';
      var badge = p.state === 'blocked' ? 'error' : p.state === 'waiting' ? 'warn' : '';
      return '<tr data-uplink="' + esc(p.topic + '-' + p.partition) + '" data-state="' +
        esc(p.state) + '"><td>' + esc(p.topic) +
        '-' + p.partition + '</td><td class="hide-sm">' + (p.hubTopic === undefined ? '-' :
        esc(p.hubTopic + '-' + p.hubPartition)) + '</td><td><span class="badge ' + badge +
        '" title="' + esc(p.reason || '') + '">' + esc(p.state) + '</span></td><td class="num">' +
        num(p.lagMessages) + '</td><td class="num">' + bytes(p.lagBytes) + '</td>' +
        '<td class="num hide-sm">' + ack + '</td><td class="num">' + num(p.droppedMessages) +
        '</td></tr>';
    }).join('');
    $('uplink').innerHTML = '<div class="table-wrap"><table><thead><tr><th>Partition</th>' +
      '<th class="hide-sm">At the hub</th><th>State</th><th class="num">Lag msgs</th>' +
      '<th class="num">Lag</th><th class="num hide-sm">Last ack</th><th class="num">Dropped</th>' +
      '</tr></thead><tbody>' + rows + '</tbody></table></div>';
  }

  // A time ahead in the largest unit that keeps it readable: 45 s, 12 min, 5 h, 3 d.
  function span(seconds) {
    if (seconds < 120) return num(Math.ceil(seconds)) + ' s';
    if (seconds < 7200) return num(Math.round(seconds / 60)) + ' min';
    if (seconds < 172800) return num(Math.round(seconds / 3600)) + ' h';
    return num(Math.round(seconds / 86400)) + ' d';
  }

  // Delayed messages: what waits and when the next falls due, then how late deliveries were.
  function renderDelayed(s) {
    var d = s.delayed;
    var active = d && (d.pending || d.firing || d.accepted || d.delivered || d.cancelled);
    $('delayed-panel').hidden = !active;
    if (!active) return;
    var l = d.lateness;
    var next = d.nextDueMs === null ? '-' : d.nextDueMs <= s.timeMs ? 'now' :
      'in ' + span((d.nextDueMs - s.timeMs) / 1000);
    $('delayed-note').textContent = d.writing ? 'delivered from this node' :
      'delivered by another node';
    $('delayed').innerHTML =
      card('Pending', num(d.pending), bytes(d.heldBytes) + ' held', 'delayed-pending') +
      card('Next due', next, d.nextDueMs === null ? '&nbsp;' : clock(d.nextDueMs),
        'delayed-next') +
      card('Delivered', num(d.delivered), num(d.firing) + ' on their way, ' +
        num(d.cancelled) + ' cancelled', 'delayed-delivered') +
      card('Lateness p99', num(l.p99Ms) + '<small> ms</small>', 'p50 ' + num(l.p50Ms) +
        ' ms, max ' + num(l.maxMs) + ' ms', 'delayed-lateness');
    // Deliveries per lateness bucket (the counts are cumulative: each bar is the difference).
    var bounds = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 60000];
    var counts = l.buckets.map(function (c, i) { return c - (i ? l.buckets[i - 1] : 0); });
    counts.push(l.count - (l.buckets.length ? l.buckets[l.buckets.length - 1] : 0));
    var max = Math.max.apply(null, counts.concat([1]));
    $('delayed-lateness').innerHTML = counts.map(function (c, i) {
      var label = i < bounds.length ? (bounds[i] >= 1000 ? bounds[i] / 1000 + 's' : bounds[i] + 'ms') :
        '>60s';
      return '<div title="' + num(c) + ' delivered within ' + label + '"><span style="height:' +
        Math.round(c / max * 100) + '%"></span>' + label + '</div>';
    }).join('');
  }

  function renderErrors(s) {
    var list = s.recentErrors;
    $('errors-note').textContent = s.recentErrorsTotal ? s.recentErrorsTotal + ' since start' : '';
    if (list.length === 0) {
      $('errors').innerHTML = '<li class="empty" style="display:block">Nothing to report.</li>';
      return;
    }
    $('errors').innerHTML = list.map(function (e) {
      var fields = Object.keys(e.fields).map(function (k) {
        return esc(k) + '=' + esc(e.fields[k]);
      }).join(' ');
      return '<li><time>' + clock(e.timeMs) + '</time><span class="badge ' + esc(e.level) +
        '">' + esc(e.level) + '</span><span>' + esc(e.message) + '</span>' +
        (fields ? '<span class="fields">' + fields + '</span>' : '') + '</li>';
    }).join('');
  }

  function render() {
    var s = state.snapshot;
    if (!s) return;
    renderMeta(s);
    renderCards(s);
    renderChart(s);
    renderTopics(s);
    renderGroups(s);
    renderCluster(s);
    renderUplink(s);
    renderDelayed(s);
    renderErrors(s);
    fillTopicChoices(s);
    fillResetChoices(s);
  }

  function setLive(on) {
    $('live-dot').className = 'dot ' + (on ? 'on' : 'off');
    $('live-text').textContent = on ? 'live' : 'reconnecting';
  }

  // The event stream is read with fetch (EventSource cannot send a token).
  var stream = null;
  function connect() {
    if (stream) stream.abort();
    var controller = new AbortController();
    stream = controller;
    fetch('/v1/events', { headers: authHeaders(), signal: controller.signal })
      .then(function (response) {
        if (response.status === 401) { askToken(); return; }
        if (!response.ok || !response.body) throw new Error('HTTP ' + response.status);
        setLive(true);
        var reader = response.body.getReader(), decoder = new TextDecoder(), buffer = '';
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) throw new Error('the stream ended');
            buffer += decoder.decode(chunk.value, { stream: true });
            var events = buffer.split('\n\n');
            buffer = events.pop();
            events.forEach(handleEvent);
            return pump();
          });
        }
        return pump();
      }).catch(function () {
        if (controller.signal.aborted) return;
        setLive(false);
        setTimeout(function () { if (stream === controller) connect(); }, 2000);
      });
  }

  function handleEvent(text) {
    var name = 'message', data = [];
    text.split('\n').forEach(function (line) {
      if (line.indexOf('event:') === 0) name = line.slice(6).trim();
      else if (line.indexOf('data:') === 0) data.push(line.slice(5).replace(/^ /, ''));
    });
    if (name !== 'snapshot' || data.length === 0) return;
    state.snapshot = JSON.parse(data.join('\n'));
    setLive(true);
    render();
  }

  $('topics').addEventListener('click', function (event) {
    var row = event.target.closest('tr.topic');
    if (!row) return;
    var name = row.getAttribute('data-topic');
    state.open[name] = !state.open[name];
    render();
  });

  // Browse view
  function fillTopicChoices(s) {
    if (fillSelect($('b-topic'), s.topics.map(function (t) { return t.name; }))) {
      fillPartitions();
    }
  }

  function fillPartitions() {
    fillSelect($('b-partition'), partitionsOf($('b-topic').value));
  }

  /** The partition numbers (as text) of a topic in the snapshot; none for one it lacks. */
  function partitionsOf(name) {
    var s = state.snapshot;
    var topic = s && s.topics.filter(function (t) { return t.name === name; })[0];
    var count = topic ? Math.max(topic.numPartitions, topic.partitions.length) : 0;
    var list = [];
    for (var i = 0; i < count; i++) list.push(String(i));
    return list;
  }

  /** Loads a page: where is '' (the first messages), 'offset=N', 'last=N...' or 'fromTime=T'. */
  function load(where) {
    var topic = $('b-topic').value, partition = $('b-partition').value;
    if (!topic || partition === '') return;
    var url = '/v1/topics/' + encodeURIComponent(topic) + '/partitions/' + partition +
      '/messages?max=' + $('b-max').value + (where ? '&' + where : '');
    $('b-status').textContent = 'Loading...';
    api(url).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (result) {
      if (!result.ok) throw new Error(result.body.error ? result.body.error.message : 'failed');
      var page = result.body;
      state.browse.page = page;
      $('b-offset').value = page.offset;
      renderPage(page);
      location.hash = '#/browse?topic=' + encodeURIComponent(topic) + '&partition=' +
        partition + '&offset=' + page.offset;
    }).catch(function (error) {
      $('b-status').innerHTML = '<span class="error-text">' + esc(error.message) + '</span>';
    });
  }
  function atOffset(offset) {
    return offset === '' || offset === null || offset === undefined ? '' :
      'offset=' + encodeURIComponent(offset);
  }
  function lastPage() { return 'last=' + $('b-max').value; }

  /** A message's time, from its id: local date and time to the millisecond. */
  function stamp(iso) {
    if (!iso) return '<span class="meta">-</span>';
    var d = new Date(iso);
    function two(n) { return (n < 10 ? '0' : '') + n; }
    var ms = String(d.getMilliseconds());
    while (ms.length < 3) ms = '0' + ms;
    return d.getFullYear() + '-' + two(d.getMonth() + 1) + '-' + two(d.getDate()) + ' ' +
      two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds()) + '.' + ms;
  }

  function renderPage(page) {
    $('messages').tBodies[0].innerHTML = page.messages.map(function (m) {
      var preview = m.payload.length > 300 ? m.payload.slice(0, 300) + '...' : m.payload;
      var attribute = (m.key === null ? '' : 'key=' + m.key + (m.attribute === null ? '' : ' ')) +
        (m.attribute === null ? '' : m.attribute);
      return '<tr data-offset="' + m.offset + '"><td class="num mono">' + num(m.offset) +
        '</td><td class="mono" data-time="' + esc(m.timestamp || '') + '" title="' +
        esc(m.timestamp || 'no time: forwarded by an uplink') + '">' + stamp(m.timestamp) +
        '</td><td class="mono hide-sm">' + esc(m.id) + '</td><td class="num">' + m.flag +
        '</td><td>' + (attribute === '' ? '<span class="meta">-</span>' : esc(attribute)) +
        '</td><td class="payload" title="' + esc(m.payload.slice(0, 2000)) + '">' +
        (m.encoding === 'base64' ? '<span class="badge">base64</span> ' : '') + esc(preview) +
        '</td><td class="num hide-sm">' + num(m.bytes) + '</td></tr>';
    }).join('') || '<tr><td colspan="7" class="empty">No messages at this offset: the ' +
      'partition ends here.</td></tr>';
    $('browse-range').textContent = 'offsets ' + num(page.startOffset) + ' .. ' +
      num(page.endOffset);
    $('b-status').textContent = page.messages.length + ' messages from offset ' +
      num(page.offset) + ', next ' + num(page.nextOffset);
    $('b-first').disabled = page.offset <= page.startOffset;
    $('b-prev').disabled = page.offset <= page.startOffset;
    $('b-next').disabled = page.nextOffset >= page.endOffset;
    $('b-last').disabled = page.nextOffset >= page.endOffset;
    $('p-target').textContent = 'to ' + page.topic + ' partition ' + page.partition +
      ' (with a key: the partition the key picks)';
  }

  $('b-topic').addEventListener('change', function () {
    fillPartitions();
    state.browse = { page: null };
    load('');
  });
  $('b-partition').addEventListener('change', function () {
    state.browse = { page: null };
    load('');
  });
  $('b-max').addEventListener('change', function () {
    load(state.browse.page ? atOffset(state.browse.page.offset) : '');
  });
  $('b-go').addEventListener('click', function () {
    load(atOffset($('b-offset').value.trim()));
  });
  $('b-first').addEventListener('click', function () { load(''); });
  $('b-next').addEventListener('click', function () {
    if (state.browse.page) load(atOffset(state.browse.page.nextOffset));
  });
  // The page before this one: the last page's worth of messages before its first offset.
  $('b-prev').addEventListener('click', function () {
    if (state.browse.page) load(lastPage() + '&before=' + state.browse.page.offset);
  });
  $('b-last').addEventListener('click', function () { load(lastPage()); });
  $('b-jump').addEventListener('click', function () {
    var text = $('b-time').value.trim();
    if (text) load('fromTime=' + encodeURIComponent(timeText(text)));
  });
  $('b-time').addEventListener('keydown', function (event) {
    if (event.key === 'Enter') $('b-jump').click();
  });

  // Admin: produce a test message to the partition being browsed, then show the last page.
  $('p-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var topic = $('b-topic').value, partition = Number($('b-partition').value);
    if (!topic || $('b-partition').value === '') return;
    // A key picks its partition (as every producer's does); without one, the browsed one.
    var message = { payload: $('p-payload').value };
    if ($('p-key').value) message.key = $('p-key').value;
    else message.partition = partition;
    $('p-status').textContent = 'Sending...';
    send('POST', '/v1/topics/' + encodeURIComponent(topic) + '/messages',
      { messages: [message] }).then(function (result) {
      if (!result.ok) throw new Error(failure(result));
      var stored = result.body.results[0];
      $('p-status').innerHTML = 'Stored in ' + esc(topic) + '-<b id="p-partition">' +
        stored.partition + '</b> at offset <b id="p-offset">' + stored.offset + '</b>.';
      $('b-partition').value = String(stored.partition);
      load(lastPage());
    }).catch(function (error) {
      $('p-status').innerHTML = '<span class="error-text">' + esc(error.message) + '</span>';
    });
  });

  // Admin: reset a group's offsets, previewed first as a dry run.
  function fillResetChoices(s) {
    if (!state.admin || s.groups === null) return;
    fillSelect($('r-group'), s.groups.map(function (g) { return g.group; }));
    fillSelect($('r-topic'), s.topics.map(function (t) { return t.name; }));
    fillSelect($('r-partition'), [''].concat(partitionsOf($('r-topic').value)), function (v) {
      return v === '' ? 'all' : v;
    });
  }
  /** Replaces a select's options only when they changed, keeping the choice; true if changed. */
  function fillSelect(select, values, label) {
    var existing = Array.prototype.map.call(select.options, function (o) { return o.value; });
    if (existing.join('\n') === values.join('\n')) return false;
    var current = select.value;
    select.innerHTML = values.map(function (v) {
      return '<option value="' + esc(v) + '">' + esc(label ? label(v) : v) + '</option>';
    }).join('');
    if (values.indexOf(current) >= 0) select.value = current;
    return true;
  }
  function resetRequest(dryRun) {
    var body = { topic: $('r-topic').value };
    if ($('r-partition').value !== '') body.partition = Number($('r-partition').value);
    var to = $('r-to').value, value = $('r-value').value.trim();
    if (to === 'offset') body.to = /^\d+$/.test(value) ? Number(value) : value;
    else if (to === 'time') body.toTime = timeText(value);
    else body.to = to;
    if (dryRun) body.dryRun = true;
    return send('POST', '/v1/groups/' + encodeURIComponent($('r-group').value) + '/reset', body);
  }
  function committedOf(group, topic, partition) {
    var g = (state.snapshot.groups || []).filter(function (x) { return x.group === group; })[0];
    var p = g && g.partitions.filter(function (x) {
      return x.topic === topic && x.partition === partition;
    })[0];
    return p ? num(p.committedOffset) : 'none';
  }
  function showReset(result, dryRun) {
    if (!result.ok) throw new Error(failure(result));
    var group = result.body.group;
    $('r-status').innerHTML = (dryRun ? 'Would move ' : 'Moved ') + esc(group) + ': ' +
      result.body.reset.map(function (r) {
        return '<span data-reset="' + esc(r.topic + '/' + r.partition) + '" data-value="' +
          r.offset + '">' + esc(r.topic) + '-' + r.partition + ' ' +
          (dryRun ? committedOf(group, r.topic, r.partition) + ' &rarr; ' : 'to ') +
          num(r.offset) + '</span>';
      }).join(', ') + (dryRun ? '. Reset to apply.' : '.');
  }
  function resetFailed(error) {
    $('r-status').innerHTML = '<span class="error-text">' + esc(error.message) + '</span>';
  }
  $('r-topic').addEventListener('change', function () {
    if (state.snapshot) fillResetChoices(state.snapshot);
  });
  $('r-preview').addEventListener('click', function () {
    resetRequest(true).then(function (r) { showReset(r, true); }).catch(resetFailed);
  });
  $('r-form').addEventListener('submit', function (event) {
    event.preventDefault();
    resetRequest(false).then(function (r) { showReset(r, false); }).catch(resetFailed);
  });

  /** Shows the admin forms when this token (or a broker without users) may use them. */
  function checkAdmin() {
    api('/v1/whoami').then(function (r) { return r.ok ? r.json() : null; }).then(function (me) {
      state.admin = !!(me && me.admin);
      document.body.setAttribute('data-role', state.admin ? 'admin' : 'user');
      $('produce-panel').hidden = !state.admin;
      $('reset-panel').hidden = !state.admin;
      if (state.snapshot) fillResetChoices(state.snapshot);
    }).catch(function () {});
  }

  function route() {
    var hash = location.hash || '#/';
    var browse = hash.indexOf('#/browse') === 0;
    $('overview').hidden = browse;
    $('browse').hidden = !browse;
    $('nav-overview').className = browse ? '' : 'active';
    $('nav-browse').className = browse ? 'active' : '';
    if (!browse) return;
    var query = new URLSearchParams(hash.split('?')[1] || '');
    if (query.get('topic') && state.snapshot) {
      if ($('b-topic').value !== query.get('topic')) {
        $('b-topic').value = query.get('topic');
        fillPartitions();
      }
      if (query.get('partition')) $('b-partition').value = query.get('partition');
      if (!state.browse.page || String(state.browse.page.offset) !== query.get('offset')) {
        load(atOffset(query.get('offset')));
      }
    } else if (!state.browse.page && $('b-topic').value) {
      load('');
    }
  }
  window.addEventListener('hashchange', route);

  function start() {
    api('/v1/overview').then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    }).then(function (s) {
      if (!state.snapshot) state.snapshot = s;
      render();
      route();
    }).catch(function () {});
    route();
    connect();
    checkAdmin();
  }
  $('login').addEventListener('submit', function (event) {
    event.preventDefault();
    token = $('login-token').value.trim();
    try { localStorage.setItem('metaq.token', token); } catch (e) { /* private mode */ }
    $('login').hidden = true;
    start();
  });
  start();
})();
</script>
</body>
</html>
`;
