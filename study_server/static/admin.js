/* Researcher pages: the dashboard's live figures (polling a small JSON endpoint) and the study form's
   design-dependent fieldsets. Plain JS, no libraries; the pages work without it. */
(function () {
  "use strict";

  // ---- study form: show the fieldsets of the chosen design ----------------------------------
  var design = document.getElementById("study_type");
  if (design) {
    var sync = function () {
      document.querySelectorAll("[data-designs]").forEach(function (el) {
        el.hidden = el.getAttribute("data-designs").split(" ").indexOf(design.value) < 0;
      });
    };
    design.addEventListener("change", sync);
    sync();
  }
  // a study with a completion code is a paid one: entry without a recruiting id is off unless ticked
  var code = document.getElementById("completion_code"), anon = document.getElementById("allow_anonymous");
  if (code && anon) {
    var touched = false;
    anon.addEventListener("change", function () { touched = true; });
    code.addEventListener("input", function () { if (!touched) anon.checked = !code.value.trim(); });
  }

  // ---- dashboard: refresh the figures every few seconds ---------------------------------------
  var board = document.getElementById("dashboard");
  if (!board) return;
  var url = board.getAttribute("data-live-url");

  function get(obj, path) {
    return path.split(".").reduce(function (o, k) { return o == null ? o : o[k]; }, obj);
  }

  function show(el, value) {
    if (value === null || value === undefined) { el.textContent = "\u2013"; return; }
    if (el.getAttribute("data-format") === "duration") {
      var s = Math.round(value), m = Math.floor(s / 60);
      el.textContent = m ? m + " min " + (s % 60) + " s" : s + " s";
      return;
    }
    if (el.getAttribute("data-format") === "time") {
      var t = new Date(value);
      if (!isNaN(t)) { el.textContent = t.toLocaleTimeString(); el.title = value; return; }
    }
    el.textContent = String(value);
  }

  function cell(tag, text, cls) {
    var c = document.createElement(tag);
    c.textContent = text === null || text === undefined ? "\u2013" : String(text);
    if (cls) c.className = cls;
    if (tag === "th") c.scope = "row";
    return c;
  }

  function render(data) {
    board.querySelectorAll("[data-live]").forEach(function (el) { show(el, get(data, el.getAttribute("data-live"))); });
    var body = board.querySelector("#conditions tbody");
    if (body) {
      body.textContent = "";
      data.conditions.forEach(function (c) {
        var tr = document.createElement("tr");
        tr.appendChild(cell("th", c.condition));
        [c.trials, c.target, c.cells, c.min_per_cell, c.max_per_cell, c.target_per_cell].forEach(function (v) {
          tr.appendChild(cell("td", v, "num"));
        });
        body.appendChild(tr);
      });
    }
    var ex = board.querySelector("#exclusions");
    if (ex) {
      ex.textContent = "";
      if (!data.exclusions.length) ex.appendChild(cell("li", "None.", "muted"));
      data.exclusions.forEach(function (e) { ex.appendChild(cell("li", e.participants + " \u00d7 " + e.reason)); });
    }
  }

  async function poll() {
    try {
      var res = await fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" } });
      if (res.status === 401) { location.reload(); return; }
      if (res.ok) render(await res.json());
    } catch (err) { /* network: try again at the next tick */ }
    setTimeout(poll, Number(board.getAttribute("data-interval-ms")) || 5000);
  }
  board.querySelectorAll("[data-format=duration]").forEach(function (el) {
    var v = parseFloat(el.textContent);
    if (!isNaN(v)) show(el, v);
  });
  setTimeout(poll, Number(board.getAttribute("data-interval-ms")) || 5000);
})();
