// The factory in the browser: the form that starts a job, the recent jobs, and a job's page:
// its plan and fee (paid from the chosen account into the escrow), the loss chart drawn live
// from the job's event stream (which replays every event from the start, so a reload loses
// nothing), the evaluation with base and tuned answers side by side, and publication.

import { currentAccount, postJson, say, send } from "/assets/wallet.js";

let job = null;

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

function element(tag, text, className) {
  const el = document.createElement(tag);
  if (text !== undefined && text !== null) el.textContent = String(text);
  if (className) el.className = className;
  return el;
}

function link(href, text) {
  const a = element("a", text);
  a.href = href;
  return a;
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString().replace(".000Z", "Z") : "";
}

// ---- the form and the list -----------------------------------------------------------------

const form = document.getElementById("new-job");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = form.querySelector("output.status");
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      if (!currentAccount()) throw new Error("choose who signs first (the “Sign as” menu at the top)");
      const f = form.elements;
      const number = (el) => Number(el.value);
      const hyperparameters = {
        n_epochs: number(f.n_epochs), learning_rate_multiplier: number(f.learning_rate_multiplier),
        batch_size: number(f.batch_size), lora_rank: number(f.lora_rank), lora_alpha: number(f.lora_alpha),
        eval_samples: number(f.eval_samples), compare_samples: number(f.compare_samples),
        eval_max_tokens: number(f.eval_max_tokens),
      };
      say(out, "Creating the job…");
      const job = await postJson("/v1/fine_tuning/jobs", {
        model: f.model.value.trim(), training_file: f.version.value, seed: number(f.seed),
        method: { type: "supervised", supervised: { hyperparameters } },
        metadata: { created_in: "web", account: currentAccount() },
      });
      location.href = `/factory/jobs/${job.id}`;
    } catch (e) {
      say(out, e.message, "error");
      button.disabled = false;
    }
  });
}

const jobs = document.getElementById("jobs");
if (jobs) {
  (async () => {
    try {
      const list = await (await fetch("/v1/fine_tuning/jobs?limit=20")).json();
      if (!list.data?.length) { jobs.replaceChildren(element("p", "No job yet.")); return; }
      const table = element("table");
      const head = element("tr");
      for (const h of ["Job", "State", "Training data", "Created", "Adapter"]) head.append(element("th", h));
      table.append(element("thead"), element("tbody"));
      table.tHead.append(head);
      for (const j of list.data) {
        const row = element("tr");
        const cells = [link(`/factory/jobs/${j.id}`, j.id), j.status, j.training_file, when(j.created_at), j.fine_tuned_model || ""];
        for (const c of cells) { const td = element("td"); td.append(c); row.append(td); }
        table.tBodies[0].append(row);
      }
      const region = element("div", undefined, "scroll");
      region.append(table);
      jobs.replaceChildren(region);
    } catch (e) {
      jobs.replaceChildren(element("p", `The jobs could not be read: ${e.message}`));
    }
  })();
}

// ---- a job's page --------------------------------------------------------------------------

const page = document.getElementById("job");
if (page) {
  const id = page.dataset.job;
  const points = [];     // [step, train loss]
  const validation = []; // [step, validation loss]
  let total = 0;
  let shown = "";       // the job as last rendered: a poll that changes nothing redraws nothing
  let planned = null;   // the validation's summary: examples, tokens, steps, time
  let awaitingFee = false;
  let paidHere = false; // keeps the payment's own status in view once paid
  let publishedHere = false; // and the publication's

  const fact = (dl, label, value) => {
    const div = element("div");
    div.append(element("dt", label));
    const dd = element("dd");
    dd.append(value);
    div.append(dd);
    dl.append(div);
  };

  function drawChart() {
    const svg = document.getElementById("loss-chart");
    for (const old of svg.querySelectorAll("polyline, line, text")) old.remove();
    const caption = document.getElementById("loss-caption");
    if (!points.length) return;
    const all = points.concat(validation).map((p) => p[1]);
    const [lo, hi] = [Math.min(...all), Math.max(...all)];
    const last = Math.max(total, ...points.map((p) => p[0]), 1);
    // Plot area 60..620 × 20..200; y grows downwards.
    const x = (step) => 60 + (560 * step) / last;
    const y = (loss) => 200 - (180 * (loss - lo)) / Math.max(hi - lo, 1e-9);
    const ns = "http://www.w3.org/2000/svg";
    const add = (tag, attrs, text) => {
      const el = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      if (text !== undefined) el.textContent = text;
      svg.append(el);
    };
    add("line", { x1: 60, y1: 200, x2: 620, y2: 200, class: "axis" });
    add("line", { x1: 60, y1: 20, x2: 60, y2: 200, class: "axis" });
    add("text", { x: 4, y: 24 }, hi.toFixed(3));
    add("text", { x: 4, y: 204 }, lo.toFixed(3));
    add("text", { x: 60, y: 222 }, "step 0");
    add("text", { x: 560, y: 222 }, `step ${last}`);
    add("polyline", { class: "line", points: points.map(([s, l]) => `${x(s).toFixed(1)},${y(l).toFixed(1)}`).join(" ") });
    if (validation.length) {
      add("polyline", { class: "valid", points: validation.map(([s, l]) => `${x(s).toFixed(1)},${y(l).toFixed(1)}`).join(" ") });
    }
    const [step, loss] = points[points.length - 1];
    caption.textContent = `Step ${step} of ${total || "?"}: training loss ${loss.toFixed(4)}` +
      (validation.length ? `, validation loss ${validation[validation.length - 1][1].toFixed(4)} (dashed)` : "");
  }

  function renderJob() {
    const facts = document.getElementById("job-facts");
    facts.replaceChildren();
    fact(facts, "State", job.status + (job.error ? `: ${job.error.message}` : ""));
    fact(facts, "Base model", job.model);
    const data = element("span");
    for (const part of String(job.training_file).split(",")) {
      const m = part.match(/^datanet:(\d+)@(\d+)$/);
      data.append(m ? link(`/datanets/${m[1]}`, `datanet ${m[1]}, version ${m[2]}`) : part, " ");
    }
    fact(facts, "Training data", data);
    fact(facts, "Created", when(job.created_at));
    if (job.plan) fact(facts, "Plan", `${job.plan.train_examples} training examples, ${job.plan.eval_examples} held out, ${job.plan.total_steps} steps`);
    if (job.payment?.payer) fact(facts, "Paid by", link(`/explorer/address/${job.payment.payer}`, job.payment.payer));
    if (job.estimated_finish && !TERMINAL.has(job.status)) fact(facts, "Estimated finish", when(job.estimated_finish));
    if (job.fine_tuned_model) fact(facts, "Adapter", job.fine_tuned_model);
    total = job.plan?.total_steps || total;

    const pay = document.getElementById("job-pay");
    // The data is checked and the run planned before the fee is asked: the estimate comes first.
    const unpaid = job.status === "validating_files" && awaitingFee && job.payment && !job.payment.payer;
    pay.hidden = !unpaid && !paidHere;
    document.getElementById("pay").hidden = !unpaid;
    if (unpaid) {
      const fee = BigInt(job.payment.fee);
      const fraction = (fee % 10n ** 18n).toString().padStart(18, "0").replace(/0+$/, "");
      document.getElementById("job-plan").textContent =
        `${planned || "The data is checked."} The fee is ${fee / 10n ** 18n}${fraction ? "." + fraction : ""} OPEN,` +
        " held in the escrow until the job ends and refunded if it fails or is cancelled before it starts.";
    }
    const evaluation = job.evaluation;
    if (evaluation) {
      const dl = document.getElementById("evaluation-facts");
      dl.replaceChildren();
      const n = (v, digits = 4) => (v == null ? "not measured" : Number(v).toFixed(digits));
      fact(dl, "Held-out loss before → after", `${n(evaluation.eval_loss_before)} → ${n(evaluation.eval_loss)}`);
      fact(dl, "Perplexity", n(evaluation.perplexity, 2));
      fact(dl, "ROUGE-L", `${n(evaluation.rouge_l)} (${evaluation.rouge_l_samples} answers)`);
      const rows = document.getElementById("comparisons");
      rows.replaceChildren();
      for (const c of evaluation.comparisons) {
        const row = element("tr");
        for (const text of [c.prompt, c.reference, c.base, c.tuned]) row.append(element("td", text, "wrap"));
        rows.append(row);
      }
      document.getElementById("evaluation").hidden = false;
    }
    // Publishing registers the adapter to whoever signs: offered to the job's payer, once.
    const payer = job.payment?.payer?.toLowerCase();
    const offered = job.status === "succeeded" && !job.publication && payer && currentAccount() === payer;
    document.getElementById("job-publish").hidden = !offered && !publishedHere;
    document.getElementById("publish").hidden = !offered;
  }

  const state = document.getElementById("job-state");
  async function refresh() {
    try {
      const answer = await fetch(`/v1/fine_tuning/jobs/${id}`);
      const body = await answer.json();
      if (!answer.ok) {
        state.textContent = body?.error?.message || `the factory answered ${answer.status}`;
        return false;
      }
      const text = JSON.stringify(body) + (currentAccount() || "");
      if (text === shown) return true;
      if (job?.status !== body.status) state.textContent = `The job is ${body.status.replace("_", " ")}.`;
      shown = text;
      job = body;
      renderJob();
      drawChart();
      return true;
    } catch (e) {
      state.textContent = `The job could not be read: ${e.message}`;
      return false;
    }
  }

  const seen = new Set();
  function onEvent(e) {
    if (seen.has(e.id)) return; // a reconnect replays from the start
    seen.add(e.id);
    const item = element("li", `${when(e.created_at)} ${e.message}`);
    document.getElementById("events").prepend(item);
    const d = e.data || {};
    if (e.message.startsWith("Files validated")) planned = e.message.replace(/^Files validated: /, "Planned: ") + ".";
    if (d.payment) { awaitingFee = true; shown = ""; if (job) renderJob(); }
    if (e.type === "metrics") {
      if (d.total_steps) total = d.total_steps;
      if (d.train_loss != null) points.push([d.step, d.train_loss]);
      if (d.valid_loss != null) validation.push([d.step, d.valid_loss]);
      drawChart();
    }
  }

  (async () => {
    if (!(await refresh())) return;
    const events = new EventSource(`/v1/fine_tuning/jobs/${id}/events?stream=true`);
    events.onmessage = (m) => {
      if (m.data === "[DONE]") { events.close(); refresh(); return; }
      onEvent(JSON.parse(m.data));
    };
    // The job's own state (validation, payment, evaluation) between events.
    const timer = setInterval(async () => {
      await refresh();
      if (TERMINAL.has(job.status) && events.readyState === EventSource.CLOSED) clearInterval(timer);
    }, 2000);
  })();

  // Who signs decides what is offered (publication is the payer's).
  document.addEventListener("openledger:account", () => { if (job) renderJob(); });

  document.getElementById("pay").addEventListener("click", async (event) => {
    const out = event.target.parentElement.querySelector("output.status");
    event.target.disabled = true;
    try {
      const p = job.payment;
      await send(await postJson("/wallet/calls/fund", { operator: p.operator, job_key: p.job_key, fee: p.fee }), out);
      paidHere = true;
      shown = "";
      say(out, "Paid: the job starts once the factory sees the payment.", "ok");
      await refresh();
    } catch (e) {
      if (!out.classList.contains("error")) say(out, e.message, "error");
      event.target.disabled = false;
    }
  });

  document.getElementById("publish").addEventListener("click", async (event) => {
    const out = event.target.parentElement.querySelector("output.status");
    event.target.disabled = true;
    try {
      say(out, "Storing the adapter and its lineage…");
      const published = await postJson(`/v1/fine_tuning/jobs/${id}/publish`, {});
      await send({ ...published.call, what: "the adapter's registration" }, out);
      publishedHere = true;
      shown = "";
      out.append(" ", link("/models", "See it among the models."));
    } catch (e) {
      if (!out.classList.contains("error")) say(out, e.message, "error");
      event.target.disabled = false;
    }
  });
}
