// smsmeter: the little JavaScript the pages use. Everything works without it, only less live.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // The language switcher submits itself.
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }

  // Forms that need a confirmation (relay off/on) ask before they go.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  }

  // Live command states: poll a small JSON endpoint and update the badges in place.
  for (const table of document.querySelectorAll("[data-live-states]")) {
    const url = table.dataset.liveStates;
    const styles = { "0:0": "secondary", "0:1": "info", "1:0": "primary", "1:1": "success" };
    const finals = new Set(["1:1", "rejected_smsc", "undeliverable", "expired", "rejected_meter", "timed_out", "failed", "cancelled"]);
    const tick = async () => {
      let pending = false;
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (response.ok) {
          const body = await response.json();
          for (const item of body.items) {
            const badge = table.querySelector(`[data-command-id="${item.id}"]`);
            if (badge && badge.dataset.state !== item.state) {
              badge.dataset.state = item.state;
              badge.textContent = item.label || item.state;
              badge.className = `badge state text-bg-${styles[item.state] || "danger"}`;
            }
            if (!finals.has(item.state)) pending = true;
          }
        }
      } catch (error) {
        pending = true;
      }
      window.setTimeout(tick, pending ? 1000 : 5000);
    };
    window.setTimeout(tick, 500);
  }

  // The outcome of the command just sent: its state in words until it is final, and why it failed if it did.
  for (const box of document.querySelectorAll("[data-live-command]")) {
    const url = box.dataset.liveCommand;
    const styles = { "0:0": "secondary", "0:1": "info", "1:0": "primary", "1:1": "success" };
    const show = (selector, text) => {
      const node = box.querySelector(selector);
      if (!node) return;
      node.textContent = text || "";
      node.hidden = !text;
    };
    const tick = async () => {
      let again = true;
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (response.ok) {
          const body = await response.json();
          const badge = box.querySelector("[data-outcome-state]");
          badge.textContent = body.state_words || body.state;
          badge.className = `badge state text-bg-${styles[body.state] || "danger"}`;
          box.querySelector("[data-outcome-kind]").textContent = body.kind_words || body.kind;
          box.querySelector("[data-outcome-words]").textContent = body.words;
          show("[data-outcome-reason]", body.reason);
          show("[data-outcome-advice]", body.advice);
          box.dataset.state = body.state;
          box.dataset.final = body.final ? "true" : "false";
          box.classList.remove("alert-info", "alert-success", "alert-danger");
          box.classList.add(body.final ? (body.failed ? "alert-danger" : "alert-success") : "alert-info");
          again = !body.final;
        } else if (response.status === 404 || response.status === 403) {
          again = false;
        }
      } catch (error) {
        again = true;
      }
      if (again) window.setTimeout(tick, 700);
    };
    tick();
  }

  // Live status of something the subscriber waits for (an online top-up).
  for (const box of document.querySelectorAll("[data-live-status]")) {
    const url = box.dataset.liveStatus;
    const tick = async () => {
      let again = true;
      try {
        const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (response.ok) {
          const body = await response.json();
          const label = box.querySelector("[data-status-label]");
          if (label) label.textContent = body.label || body.state;
          const badge = box.querySelector(".badge");
          if (badge) {
            const styles = { "0:0": "secondary", "0:1": "info", "1:0": "primary", "1:1": "success", held: "warning" };
            badge.textContent = body.state;
            badge.className = `badge state text-bg-${styles[body.state] || "danger"}`;
          }
          box.dataset.state = body.state;
          again = !body.final;
        }
      } catch (error) {
        again = true;
      }
      if (again) window.setTimeout(tick, 1000);
    };
    if (box.querySelector(".badge") && ["1:1", "held", "reversed", "failed"].includes(box.querySelector(".badge").textContent)) continue;
    tick();
  }
});
