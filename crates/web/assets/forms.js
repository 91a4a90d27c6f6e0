// The forms that change state. A `<form data-prepare="/wallet/calls/…">` posts its fields to
// the node, which answers the transaction (or says in words what is wrong with a field); the
// chosen wallet signs and sends it; the page reloads once it is mined and the node's indexes
// have seen it. The contribution form checks the file on the node first and shows the report
// before anything is signed on chain.

import { currentAccount, postJson, reason, say, send, signTyped } from "/assets/wallet.js";

/** Reloads the page once the node's datanet index has followed the chain (asking for the
 * datanets makes the node catch its index up first). */
async function reloadFresh() {
  await fetch("/api/datanets").catch(() => {});
  location.reload();
}

function statusOf(form) {
  let out = form.querySelector("output.status");
  if (!out) {
    out = document.createElement("output");
    out.className = "status";
    out.setAttribute("aria-live", "polite");
    form.append(out);
  }
  return out;
}

async function submitPrepared(form, submitter) {
  const out = statusOf(form);
  const fields = Object.fromEntries(new FormData(form, submitter));
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    if (!currentAccount()) throw new Error("choose who signs first (the “Sign as” menu at the top)");
    say(out, "Preparing the transaction…");
    const call = await postJson(form.dataset.prepare, fields);
    await send(call, out);
    await reloadFresh();
  } catch (e) {
    if (!out.classList.contains("error")) say(out, e.message, "error");
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

/** Shows the elements meant for one account (`data-owner`) or for anyone signed in. */
function showFor(account) {
  for (const el of document.querySelectorAll("[data-owner]")) {
    el.hidden = !account || el.dataset.owner.toLowerCase() !== account;
  }
  for (const el of document.querySelectorAll("[data-signed-in]")) el.hidden = !account;
  // For anyone signed in but the accounts listed (a datanet's owner, and those already
  // granted or waiting, need not ask for access).
  for (const el of document.querySelectorAll("[data-not-owner]")) {
    const listed = el.dataset.notOwner.toLowerCase().split(",");
    el.hidden = !account || listed.includes(account);
  }
  for (const el of document.querySelectorAll("[data-signed-out]")) el.hidden = !!account;
  // An empty account field (the rewards page's) starts at the signer's own address.
  for (const el of document.querySelectorAll("input[data-fill-account]")) {
    if (account && !el.value) el.value = account;
  }
}

// ---- contributing a file ----------------------------------------------------------------

const FORMATS = { jsonl: "jsonl", ndjson: "jsonl", csv: "csv", parquet: "parquet", txt: "text", text: "text", md: "markdown", markdown: "markdown" };

/** The upload's EIP-712 typed data, as the node's datanets domain defines it. */
function typed(info, primaryType, fields, message) {
  return {
    domain: { name: "OpenLedger Datanets", version: "1", chainId: info.chain_id, verifyingContract: info.registry },
    types: {
      EIP712Domain: [
        { name: "name", type: "string" }, { name: "version", type: "string" },
        { name: "chainId", type: "uint256" }, { name: "verifyingContract", type: "address" },
      ],
      [primaryType]: fields,
    },
    primaryType,
    message,
  };
}

const UPLOAD_FIELDS = [
  { name: "datanetId", type: "uint256" }, { name: "contributor", type: "address" },
  { name: "fileHash", type: "bytes32" }, { name: "size", type: "uint64" }, { name: "deadline", type: "uint64" },
];
const METADATA_FIELDS = [
  { name: "datanetId", type: "uint256" }, { name: "contentHash", type: "bytes32" },
  { name: "size", type: "uint64" }, { name: "records", type: "uint64" }, { name: "licence", type: "string" },
  { name: "tags", type: "string[]" }, { name: "time", type: "uint64" },
];

function row(list, label, value) {
  const item = document.createElement("li");
  item.textContent = `${label}: ${value}`;
  list.append(item);
}

/** The validation report, one line per finding, in `box`. */
function showReport(box, uploaded) {
  const r = uploaded.report;
  box.replaceChildren();
  const heading = document.createElement("h3");
  heading.textContent = "The node's report on this file";
  const list = document.createElement("ul");
  row(list, "Format", r.format);
  row(list, "Records", r.records);
  row(list, "Bytes", r.bytes);
  row(list, "Near-duplicates of accepted data", r.near_duplicates);
  row(list, "Secrets found", r.secrets);
  row(list, "Personal data found", r.personal_data);
  row(list, "Short records", r.quality.short_records);
  row(list, "Repeated records", r.quality.repeated_records);
  for (const f of r.flags) row(list, `Flag at ${JSON.stringify(f.place)}`, JSON.stringify(f.kind));
  for (const d of r.near_duplicate_examples) {
    row(list, `Near-duplicate at ${JSON.stringify(d.place)}`, `of contribution ${d.contribution} (${Math.round(d.similarity * 100)}% similar)`);
  }
  box.append(heading, list);
}

/** The file's keccak-256, computed by a worker off this thread, with progress in `out`. */
function hashFile(file, out) {
  return new Promise((resolve, reject) => {
    const worker = new Worker("/assets/hash-worker.js", { type: "module" });
    worker.onmessage = ({ data }) => {
      if (data.hash || data.error) worker.terminate();
      if (data.hash) resolve(data.hash);
      else if (data.error) reject(new Error(data.error));
      else say(out, `Hashing the file… ${Math.floor((100 * data.done) / data.size)}%`);
    };
    const failed = (why) => { worker.terminate(); reject(new Error(`hashing failed: ${why}`)); };
    worker.onerror = (e) => failed(e.message || "the hashing worker did not load");
    worker.onmessageerror = () => failed("the hashing worker's answer could not be read");
    worker.postMessage(file);
  });
}

async function checkFile(form, out, box) {
  const file = form.elements.file.files[0];
  if (!file) throw new Error("choose a file first");
  const account = currentAccount();
  if (!account) throw new Error("choose who signs first (the “Sign as” menu at the top)");
  const extension = file.name.split(".").pop().toLowerCase();
  const format = form.elements.format.value || FORMATS[extension];
  if (!format) throw new Error(`${file.name}: pick its format (the name does not say)`);
  const datanet = form.dataset.datanet;
  const info = await (await fetch("/api/info")).json();
  // Refused here rather than after reading (and hashing) a file the node would refuse anyway.
  const limit = info.policy?.max_bytes;
  if (limit && file.size > limit) throw new Error(`${file.name} is ${file.size} bytes; this node takes at most ${limit}`);
  if (file.size === 0) throw new Error(`${file.name} is empty`);
  say(out, "Hashing the file…");
  const request = {
    datanetId: datanet, contributor: account, fileHash: await hashFile(file, out),
    size: file.size, deadline: Math.floor(Date.now() / 1000) + 600,
  };
  say(out, "Asking the wallet to sign the upload (no transaction yet)…");
  const signature = await signTyped(typed(info, "UploadRequest", UPLOAD_FIELDS, request));
  say(out, "Uploading; the node checks every record…");
  const answer = await fetch(`/api/datanets/${datanet}/uploads?contributor=${account}&format=${format}`, {
    method: "PUT",
    headers: { "x-upload-signature": signature, "x-upload-deadline": String(request.deadline) },
    body: file, // the browser streams it from disk
  });
  const uploaded = await answer.json().catch(() => ({ error: `the node answered ${answer.status}` }));
  if (!answer.ok) throw new Error(`The node refused the file: ${uploaded.error}`);
  showReport(box, uploaded);
  return { info, uploaded };
}

function wireContribution(form) {
  const out = statusOf(form);
  const box = form.querySelector(".report");
  const confirm = form.querySelector("button[data-step=confirm]");
  let checked = null;
  form.elements.file.addEventListener("change", () => { checked = null; confirm.hidden = true; box.replaceChildren(); });
  const check = form.querySelector("button[type=submit]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (check.disabled) return;
    check.disabled = true;
    confirm.hidden = true;
    try {
      checked = await checkFile(form, out, box);
      if (checked.uploaded.existing != null) {
        say(out, `This file already is your contribution ${checked.uploaded.existing}.`, "ok");
        return;
      }
      say(out, "Read the report; if it is right, sign and submit the contribution.", "ok");
      confirm.hidden = false;
      confirm.focus();
    } catch (e) {
      checked = null;
      say(out, await reason(e), "error");
    } finally {
      check.disabled = false;
    }
  });
  confirm.addEventListener("click", async () => {
    if (!checked) return;
    confirm.disabled = true;
    try {
      const { info, uploaded } = checked;
      const tags = form.elements.tags.value.split(",").map((t) => t.trim()).filter(Boolean);
      const metadata = {
        datanetId: String(uploaded.datanet), contentHash: uploaded.content_hash, size: uploaded.size,
        records: uploaded.report.records, licence: form.elements.licence.value.trim(), tags,
        time: Math.floor(Date.now() / 1000),
      };
      say(out, "Asking the wallet to sign the contribution's metadata…");
      const signature = await signTyped(typed(info, "ContributionMetadata", METADATA_FIELDS, metadata));
      const call = await postJson(`/api/datanets/${uploaded.datanet}/uploads/${uploaded.content_hash}/metadata`,
        { metadata: { ...metadata, datanetId: "0x" + BigInt(metadata.datanetId).toString(16) }, signature });
      await send({ ...call, what: "the contribution" }, out);
      await reloadFresh();
    } catch (e) {
      if (!out.classList.contains("error")) say(out, await reason(e), "error");
    } finally {
      confirm.disabled = false;
    }
  });
}

for (const form of document.querySelectorAll("form[data-prepare]")) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitPrepared(form, event.submitter);
  });
}
const contribution = document.getElementById("contribute");
if (contribution) wireContribution(contribution);
document.addEventListener("openledger:account", (e) => showFor(e.detail));
showFor(currentAccount());
