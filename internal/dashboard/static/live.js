// The dashboard's live updates: every 2 seconds, while the tab is visible,
// the element marked data-live is replaced by a fresh rendering from the URL
// it names. No update interrupts an open confirmation or a focused control;
// a failed fetch marks the page stale until one succeeds.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  document.querySelectorAll("form[data-autosubmit] select").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });

  var el = document.querySelector("[data-live]");
  if (!el) return;
  var every = 2000, timer = null, last = null;

  function busy() {
    var a = document.activeElement;
    return el.querySelector("details[open]") !== null ||
      (a !== null && a !== document.body && el.contains(a) && a.matches("input, select, textarea"));
  }

  function tick() {
    timer = null;
    if (document.hidden) return; // visibilitychange starts it again
    if (busy()) { schedule(); return; }
    fetch(el.getAttribute("data-live"), { cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (res) {
        // A redirect is the admin HTTP asking for a login: show it.
        if (res.redirected) { location.reload(); throw new Error("redirected"); }
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.text();
      })
      .then(function (html) {
        document.body.classList.remove("stale");
        if (html !== last && !busy()) {
          el.innerHTML = html;
          last = html;
        }
      })
      .catch(function () { document.body.classList.add("stale"); })
      .then(schedule);
  }

  function schedule() {
    document.body.classList.toggle("paused-live", document.hidden);
    if (timer === null && !document.hidden) timer = setTimeout(tick, every);
  }

  document.addEventListener("visibilitychange", schedule);
  schedule();
})();
