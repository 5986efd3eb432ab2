// eco web UI: a little progressive enhancement. Every page works without it.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Namespace selectors submit on change.
  for (const form of document.querySelectorAll("form[data-autosubmit]")) {
    for (const sel of form.querySelectorAll("select")) {
      sel.addEventListener("change", () => form.submit());
    }
  }

  // Copy buttons copy the text of the element named by data-copy.
  for (const btn of document.querySelectorAll("button[data-copy]")) {
    btn.addEventListener("click", async () => {
      const el = document.getElementById(btn.dataset.copy);
      const status = document.getElementById("copy-status");
      const text = el.textContent;
      let ok = false;
      try {
        if (navigator.clipboard && window.isSecureContext) {
          await navigator.clipboard.writeText(text);
          ok = true;
        }
      } catch (e) { /* fall back below */ }
      if (!ok) {
        const range = document.createRange();
        range.selectNodeContents(el);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        ok = document.execCommand("copy");
      }
      const msg = ok ? "Copied to the clipboard." : "Copy failed: select the text and copy it.";
      if (status) status.textContent = msg;
      btn.dataset.copied = ok ? "true" : "false";
    });
  }

  // The action bar needs a selected cluster; clicking a row selects it.
  const form = document.getElementById("clusters-form");
  if (form) {
    const buttons = form.querySelectorAll("[data-needs-selection]");
    const update = () => {
      const any = form.querySelector("input[name=cluster]:checked") !== null;
      for (const b of buttons) b.disabled = !any;
    };
    form.addEventListener("change", update);
    for (const tr of form.querySelectorAll("tbody tr[data-id]")) {
      tr.addEventListener("click", (ev) => {
        if (ev.target.closest("a, input, button")) return;
        const radio = tr.querySelector("input[type=radio]");
        radio.checked = true;
        update();
      });
    }
    update();
  }

  // The clusters table refreshes its statuses without a reload.
  const table = document.getElementById("clusters");
  if (table && table.dataset.statusUrl) {
    const every = Math.max(500, parseInt(table.dataset.pollMs, 10) || 3000);
    const poll = async () => {
      if (document.hidden) return;
      try {
        const resp = await fetch(table.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (!resp.ok) return;
        const data = await resp.json();
        for (const row of data.rows) {
          const tr = table.querySelector(`tr[data-id="${row.id}"]`);
          if (!tr) continue;
          const set = (field, text) => {
            const el = tr.querySelector(`[data-field="${field}"]`);
            if (el && el.textContent !== text) el.textContent = text;
          };
          set("state", row.state);
          tr.querySelector('[data-field="state"]').title = row.reason;
          set("reason", row.reason);
          set("lastSeen", row.lastSeen);
          set("kubernetes", row.kubernetes);
          set("agent", row.agent);
          set("cloudHealth", row.cloudHealth);
          const health = tr.querySelector('[data-field="cloudHealth"]');
          if (health) health.className = "health " + row.cloudHealthClass;
          const state = tr.querySelector('[data-field="state"]');
          state.classList.toggle("bad", row.bad);
          state.classList.toggle("ok", !row.bad);
          tr.classList.toggle("badrow", row.bad);
          tr.querySelector('[data-field="reason"]').hidden = !row.bad;
          tr.querySelector('[data-field="install"]').hidden = !row.bad;
        }
      } catch (e) { /* try again next time */ }
    };
    setInterval(poll, every);
    document.addEventListener("visibilitychange", poll);
  }

  // Apps: a form with data-confirm asks first (uninstall); a page with a
  // running Helm operation (data-reload-after ms) reloads to show its
  // progress and Helm's log.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }
  const reload = document.querySelector("[data-reload-after]");
  if (reload) {
    setTimeout(() => window.location.reload(), Number(reload.dataset.reloadAfter) || 2000);
  }
});
