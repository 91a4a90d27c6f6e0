// The agent playground: credit for paid answers, a sign-in with Ethereum for an API key, a
// chat streamed from the OpenAI-compatible API, each answer's cost from its receipt, and the
// attribution panel: the answer's passages found in the training data, and the contributions
// (with their shares) behind each.

import { checksummed, currentAccount, postJson, reason, say, send, signMessage } from "/assets/wallet.js";

const playground = document.getElementById("playground");
const model = playground.dataset.model;
const host = playground.dataset.host;
const history = [];
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** Wei (a decimal string) as OPEN, with up to 6 decimals; a smaller amount in wei. */
function open(wei) {
  const n = BigInt(wei);
  const unit = 10n ** 18n;
  if (n > 0n && n < 10n ** 12n) return `${n} wei of`;
  const micro = (n % unit) / 10n ** 12n;
  const fraction = micro === 0n ? "" : "." + micro.toString().padStart(6, "0").replace(/0+$/, "");
  return (n / unit).toString() + fraction;
}

function element(tag, text, className) {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = text;
  if (className) el.className = className;
  return el;
}

// ---- credit --------------------------------------------------------------------------------

document.getElementById("credit").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const out = form.querySelector("output.status");
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const amount = form.elements.amount.value;
    await send(await postJson("/wallet/calls/deposit", { amount }), out);
    // The host's allowance is replaced, not added to: the node adds the deposit to what is left.
    await send(await postJson("/wallet/calls/authorize", { amount, host, account: currentAccount() }), out);
    say(out, `${amount} OPEN deposited; this agent's host may spend it on your answers.`, "ok");
  } catch (e) {
    if (!out.classList.contains("error")) say(out, e.message, "error");
  } finally {
    button.disabled = false;
  }
});

// ---- the API key ---------------------------------------------------------------------------

const keyName = (account) => `openledger.key.${account}`;

/** This account's API key in this browser ({id, key}), signing in with Ethereum for one when
 * there is none. Kept across tabs and reloads: the node holds at most 64 keys per account, so a
 * key per visit would lock the account out. It is limited (a rate), so it cannot make or
 * revoke the account's other keys. */
async function apiKey(out) {
  const account = currentAccount();
  const kept = localStorage.getItem(keyName(account));
  if (kept) return JSON.parse(kept);
  const nonce = await postJson("/v1/auth/nonce", {});
  if (nonce.domain !== location.host) {
    throw new Error(`sign-in names ${nonce.domain}: open this page at ${location.protocol}//${nonce.domain}/ to sign in`);
  }
  const issued = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const message =
    `${nonce.domain} wants you to sign in with your Ethereum account:\n${checksummed(account)}\n\n` +
    `Get an OpenLedger API key.\n\nURI: ${location.protocol}//${nonce.domain}\nVersion: 1\nChain ID: ${nonce.chain_id}\n` +
    `Nonce: ${nonce.nonce}\nIssued At: ${issued}`;
  say(out, "Asking the wallet to sign you in (no transaction)…");
  const signature = await signMessage(message);
  const login = await postJson("/v1/auth/login", { message, signature, label: "web playground", rate_per_minute: 600 });
  const key = { id: login.id, key: login.key };
  localStorage.setItem(keyName(account), JSON.stringify(key));
  return key;
}

// ---- the chat ------------------------------------------------------------------------------

/** Streams the answer to `history` into `into`; the usage the stream ends with. */
async function stream(key, into) {
  const answer = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key.key}` },
    body: JSON.stringify({
      model, messages: history, stream: true, stream_options: { include_usage: true }, max_tokens: 96,
    }),
  });
  if (!answer.ok) {
    const body = await answer.json().catch(() => null);
    throw Object.assign(new Error(body?.error?.message || `the API answered ${answer.status}`), { status: answer.status });
  }
  const reader = answer.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", text = "", usage = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message || "the answer failed");
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) { text += delta; into.textContent = text; }
      }
    }
  }
  return { text, usage };
}

/** This key's newest receipt for this agent past `after`, waiting for it to be recorded
 * (`tries` times); receipts of the account's other keys and agents are not this answer's. */
async function newestReceipt(key, after, tries = 40) {
  for (let i = 0; i < tries; i++) {
    const list = await (await fetch("/v1/receipts?limit=20", { headers: { authorization: `Bearer ${key.key}` } })).json();
    const mine = (list.data || []).find((r) => r.key_id === key.id && r.agent === model);
    if (mine && mine.id > after) return mine;
    if (i + 1 < tries) await sleep(250);
  }
  return null;
}

let lastReceipt = -1;

document.getElementById("chat").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const out = form.querySelector("output.status");
  const button = form.querySelector("button");
  const prompt = form.elements.prompt.value.trim();
  if (!prompt) return;
  button.disabled = true;
  try {
    let key = await apiKey(out);
    if (lastReceipt < 0) lastReceipt = (await newestReceipt(key, -Infinity, 1))?.id ?? 0;
    document.getElementById("attribution").hidden = true; // the last answer's, until this one's
    const turn = element("div", undefined, "turn");
    const said = element("p");
    said.append(element("span", "You: ", "who"), element("span", prompt));
    const reply = element("p", undefined, "answer");
    const text = element("span");
    reply.append(element("span", `${model}: `, "who"), text);
    const cost = element("p", "", "cost");
    turn.append(said, reply, cost);
    turn.setAttribute("aria-busy", "true"); // announced once answered, not token by token
    document.getElementById("transcript").append(turn);
    history.push({ role: "user", content: prompt });
    say(out, "The agent is answering…");
    let answered;
    try {
      try {
        answered = await stream(key, text);
      } catch (e) {
        if (e.status !== 401) throw e;
        // A key revoked or expired: sign in again, once.
        localStorage.removeItem(keyName(currentAccount()));
        key = await apiKey(out);
        answered = await stream(key, text);
      }
    } catch (e) {
      history.pop(); // the question was not answered: it is not part of the conversation
      turn.remove();
      throw e;
    } finally {
      turn.removeAttribute("aria-busy");
    }
    history.push({ role: "assistant", content: answered.text });
    form.elements.prompt.value = "";
    const receipt = await newestReceipt(key, lastReceipt);
    if (receipt) {
      lastReceipt = receipt.id;
      cost.textContent = `${receipt.input_tokens} tokens in, ${receipt.output_tokens} out: ${open(receipt.fee)} OPEN (receipt ${receipt.id})`;
      say(out, "Answered; its attribution follows.", "ok");
      await showAttribution(key, receipt.id, out);
    } else {
      say(out, "Answered, but its receipt has not been recorded yet.", "error");
    }
  } catch (e) {
    say(out, e.status === 402 || e.status === 403 ? `${e.message} (add credit above)` : await reason(e), "error");
  } finally {
    button.disabled = false;
  }
});

// ---- the attribution panel -----------------------------------------------------------------

async function showAttribution(key, id, out) {
  let attribution = null;
  for (let i = 0; i < 90; i++) {
    const answer = await fetch(`/v1/receipts/${id}`, { headers: { authorization: `Bearer ${key.key}` } });
    if (answer.ok) {
      attribution = (await answer.json()).attribution;
      if (attribution && attribution.status !== "pending") break;
    }
    await sleep(1000);
  }
  if (!attribution || attribution.status === "pending") {
    say(out, "The answer's attribution is still being computed; ask again later.", "error");
    return;
  }
  if (!attribution.receipt) {
    say(out, `Nothing in the training data was credited for this answer${attribution.reason ? `: ${attribution.reason}` : ""}.`, "ok");
    return;
  }
  const explained = await postJson("/api/attribution/receipts/explain", { receipt: attribution.receipt });
  render(explained);
  say(out, "Answered and attributed.", "ok");
}

function render(explained) {
  const panel = document.getElementById("attribution");
  const answer = document.getElementById("attributed-answer");
  const detail = document.getElementById("span-detail");
  answer.replaceChildren();
  detail.replaceChildren();
  for (const segment of explained.segments) {
    if (segment.span == null) {
      answer.append(document.createTextNode(segment.text));
      continue;
    }
    const span = explained.spans[segment.span];
    const button = element("button", segment.text, "span");
    button.type = "button";
    button.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-label", `${segment.text}: found ${span.count} times in the training data; show where`);
    button.addEventListener("click", () => {
      for (const b of answer.querySelectorAll("button.span")) b.setAttribute("aria-pressed", "false");
      button.setAttribute("aria-pressed", "true");
      showSpan(detail, span);
    });
    answer.append(button);
  }
  const rows = document.getElementById("credited");
  rows.replaceChildren();
  for (const c of explained.contributions) {
    const row = document.createElement("tr");
    const link = (href, text) => { const a = element("a", text); a.href = href; return a; };
    const cells = [
      String(c.contribution),
      c.datanet != null ? link(`/datanets/${c.datanet}`, `datanet ${c.datanet}`) : "",
      c.contributor ? link(`/explorer/address/${c.contributor}`, c.contributor) : "",
      `${(c.share * 100).toFixed(1)}%`,
      `${open(c.payout)} OPEN`,
      c.snippet,
    ];
    for (const value of cells) {
      const cell = element("td");
      cell.append(value);
      row.append(cell);
    }
    rows.append(row);
  }
  panel.hidden = false;
}

function showSpan(detail, span) {
  detail.replaceChildren();
  const times = span.count === 1 ? "once" : `${span.count} times`;
  detail.append(element("h4", `“${span.text}” occurs ${times} in the training data`));
  const list = element("ul");
  for (const d of span.documents) {
    const item = element("li");
    item.append(element("strong", d.contribution != null ? `contribution ${d.contribution}: ` : "base data: "));
    item.append(element("span", d.snippet));
    list.append(item);
  }
  detail.append(list);
}
