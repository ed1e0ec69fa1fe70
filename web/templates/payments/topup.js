// The top-up return page: shows the payment and the credit command's handshake, polling until final.
(function () {
  const order = ["0:0", "0:1", "1:0", "1:1"];
  const ref = document.getElementById("steps").dataset.reference;
  const stateLine = document.getElementById("state");
  const texts = JSON.parse(document.getElementById("texts").textContent);  // in the page's language
  function show(s) {
    const paid = ["paid", "partially_refunded", "refunded", "disputed"].includes(s.payment_status);
    const reached = s.command_state ? order.indexOf(s.command_state) : -1;
    document.querySelectorAll("#steps li").forEach(function (li) {
      const step = li.dataset.step;
      const done = step === "paid" ? paid : (reached >= 0 && order.indexOf(step) <= reached);
      li.classList.toggle("list-group-item-success", done);
      li.setAttribute("aria-checked", done ? "true" : "false");
    });
    let text = texts.waiting;
    if (s.payment_status === "failed") text = texts.failed + (s.failure_reason ? " " + s.failure_reason : "");
    else if (s.command_state === "1:1") text = texts.done;
    else if (s.command_state && reached < 0) text = texts.problem + " (" + s.command_state + ")";
    else if (paid) text = texts.delivering;
    stateLine.textContent = text;
    stateLine.dataset.state = s.command_state || s.payment_status;
    return s.finished;
  }
  async function poll() {
    try {
      const r = await fetch("/api/topups/" + ref, {cache: "no-store"});
      if (r.ok && show(await r.json())) return;
    } catch (e) { /* network hiccup: keep polling */ }
    setTimeout(poll, 2000);
  }
  if (!show(JSON.parse(document.getElementById("initial").textContent))) setTimeout(poll, 1000);
})();
