// The wallet: who signs. Either a browser wallet (any EIP-1193 provider, MetaMask and others),
// asked to add or switch to this chain, or, on a --dev node, one of the dev accounts, which
// the node signs for (POST /wallet/dev) so that nothing needs installing.
//
import { keccak256 } from "/assets/keccak.js";

// Every state change goes through `send`: it shows the transaction, waits for its receipt and
// says why a refusal happened, with the contract's custom error in words.

const widget = document.getElementById("wallet");
const picker = document.getElementById("account");
const me = document.getElementById("me");
const walletStatus = document.getElementById("wallet-status");
const CHOSEN = "openledger.account";

/** The node's dev signer, with the EIP-1193 `request` shape. */
const devWallet = {
  async request({ method, params }) {
    const answer = await fetch("/wallet/dev", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params: params || [] }),
    });
    if (!answer.ok) throw new Error(await answer.text());
    const body = await answer.json();
    if (body.error) throw Object.assign(new Error(body.error.message), body.error);
    return body.result;
  },
};

let provider = null;
let account = null;

/** The node's JSON-RPC URL as this browser reaches it: a node bound to a loopback or
 * wildcard address is reached under the name this page was loaded from. */
function rpcUrl() {
  const url = new URL(widget.dataset.rpcUrl);
  if (["0.0.0.0", "127.0.0.1", "[::]", "[::1]", "localhost"].includes(url.hostname)) url.hostname = location.hostname;
  return url.toString().replace(/\/$/, "");
}

/** The chain as a wallet wants it for wallet_addEthereumChain. */
function chain() {
  const id = "0x" + Number(widget.dataset.chainId).toString(16);
  return {
    chainId: id,
    chainName: `OpenLedger (chain ${widget.dataset.chainId})`,
    nativeCurrency: { name: "OPEN", symbol: "OPEN", decimals: 18 },
    rpcUrls: [rpcUrl()],
  };
}

/** Connects the browser's wallet and puts it on this chain. */
async function connectBrowserWallet() {
  if (!window.ethereum) throw new Error("no browser wallet found: install one (MetaMask…) or pick a dev account");
  const [first] = await window.ethereum.request({ method: "eth_requestAccounts" });
  const wanted = chain();
  try {
    await window.ethereum.request({ method: "wallet_switchEthereumChain", params: [{ chainId: wanted.chainId }] });
  } catch (e) {
    // 4902: the wallet does not know the chain yet.
    if (e.code !== 4902 && e?.data?.originalError?.code !== 4902) throw e;
    await window.ethereum.request({ method: "wallet_addEthereumChain", params: [wanted] });
  }
  window.ethereum.on?.("accountsChanged", (accounts) => choose(accounts[0] || null, window.ethereum));
  return first;
}

function choose(address, using) {
  account = address ? address.toLowerCase() : null;
  provider = address ? using : null;
  if (me) {
    me.hidden = !account;
    if (account) me.href = `/explorer/address/${address}`;
  }
  document.dispatchEvent(new CustomEvent("openledger:account", { detail: account }));
}

async function pick(value, status) {
  localStorage.setItem(CHOSEN, value);
  if (value === "browser") {
    try {
      choose(await connectBrowserWallet(), window.ethereum);
    } catch (e) {
      picker.value = "";
      choose(null, null);
      if (status) say(status, `The wallet did not connect: ${await reason(e)}`, "error");
    }
  } else {
    choose(value || null, devWallet);
  }
}

/** The signing account (lower-case), or null when the app is read only. */
export function currentAccount() {
  return account;
}

/** The EIP-1193 provider signing now; throws, in words, when nobody is chosen. */
function signer() {
  if (!provider || !account) throw new Error("choose who signs first (the “Sign as” menu at the top)");
  return provider;
}

/** Writes `text` into the status element `out` (an aria-live region); `kind` styles it. */
export function say(out, text, kind = "") {
  out.textContent = text;
  out.className = `status ${kind}`;
}

/** Shows a transaction's hash as a link to its explorer page, after `text`. */
function sayTx(out, text, hash, kind = "") {
  say(out, text + " ", kind);
  const link = document.createElement("a");
  link.href = `/explorer/tx/${hash}`;
  link.className = "hash";
  link.textContent = hash;
  out.append(link);
}

/** Revert data hidden in a wallet's error, if any (wallets nest it differently). */
function revertData(e) {
  for (const d of [e?.data, e?.data?.data, e?.data?.originalError?.data, e?.error?.data]) {
    if (typeof d === "string" && /^0x[0-9a-fA-F]{8,}$/.test(d)) return d;
  }
  return null;
}

/** Why `e` happened, in words: a contract's custom error decoded by the node. */
export async function reason(e) {
  if (e?.code === 4001) return "you declined in the wallet";
  const data = revertData(e);
  if (data && e?.code !== 3) {
    try {
      const answer = await fetch("/wallet/explain", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ data }),
      });
      if (answer.ok) return `the contract refused: ${(await answer.json()).reason}`;
    } catch (_) { /* fall through to the wallet's own words */ }
  }
  return e?.message || String(e);
}

/** POSTs `body` as JSON to `url`; the answer's JSON, or an Error with the node's words. */
export async function postJson(url, body, headers = {}) {
  const answer = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const text = await answer.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { /* not JSON: use the text */ }
  if (!answer.ok) {
    // The datanets API says {"error": "…"}, the OpenAI-shaped one {"error": {"message": "…"}}.
    const said = json?.error?.message || json?.error || text;
    throw Object.assign(new Error(said || `the node answered ${answer.status}`), { status: answer.status });
  }
  return json;
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/**
 * Sends `call` ({to, data, value, what}) from the chosen account, showing each step in `out`,
 * and resolves with the receipt once mined; throws (having said why) when refused or failed.
 */
export async function send(call, out) {
  const wallet = signer();
  say(out, `Asking the wallet to sign ${call.what || "the transaction"}…`);
  let hash;
  try {
    hash = await wallet.request({
      method: "eth_sendTransaction",
      params: [{ from: account, to: call.to, data: call.data, value: call.value || "0x0" }],
    });
  } catch (e) {
    const why = await reason(e);
    say(out, `Not sent: ${why}`, "error");
    throw new Error(why);
  }
  sayTx(out, "Sent; waiting for it to be mined:", hash);
  for (let i = 0; ; i++) {
    const receipt = await wallet.request({ method: "eth_getTransactionReceipt", params: [hash] });
    if (receipt) {
      if (receipt.status === "0x1") {
        sayTx(out, `Done in block ${Number(receipt.blockNumber)}:`, hash, "ok");
        return receipt;
      }
      sayTx(out, "The transaction was mined but failed; its page says why:", hash, "error");
      throw new Error("the transaction failed");
    }
    if (i > 240) {
      sayTx(out, "Not mined after two minutes; it may still be:", hash, "error");
      throw new Error("not mined yet");
    }
    await sleep(500);
  }
}

/** `address` with EIP-55's mixed-case checksum, as sign-in messages must write it. */
export function checksummed(address) {
  const hex = address.toLowerCase().replace(/^0x/, "");
  const hash = keccak256(new TextEncoder().encode(hex)).slice(2);
  let out = "0x";
  for (let i = 0; i < 40; i++) out += parseInt(hash[i], 16) >= 8 ? hex[i].toUpperCase() : hex[i];
  return out;
}

/** Asks the chosen account to sign `text` (EIP-191 personal_sign); the signature as hex. */
export async function signMessage(text) {
  const bytes = new TextEncoder().encode(text);
  const hex = "0x" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return signer().request({ method: "personal_sign", params: [hex, account] });
}

/** Asks the chosen account to sign EIP-712 typed data; the 65-byte signature as hex. */
export async function signTyped(typed) {
  return signer().request({ method: "eth_signTypedData_v4", params: [account, JSON.stringify(typed)] });
}

/** On a page load, the browser wallet picked before, if it still grants this page an
 * account on this chain: asked with eth_accounts, which never opens a pop-up. */
async function restoreBrowserWallet() {
  try {
    const [first] = (await window.ethereum?.request({ method: "eth_accounts" })) || [];
    if (!first) throw new Error("the browser wallet no longer grants this page an account; pick it again");
    const on = await window.ethereum.request({ method: "eth_chainId" });
    if (Number(on) !== Number(widget.dataset.chainId)) throw new Error("the browser wallet is on another chain; pick it again to switch");
    window.ethereum.on?.("accountsChanged", (accounts) => choose(accounts[0] || null, window.ethereum));
    choose(first, window.ethereum);
  } catch (e) {
    picker.value = "";
    choose(null, null);
    say(walletStatus, e.message, "error");
  }
}

if (widget && picker) {
  if (!window.ethereum) picker.querySelector('option[value="browser"]').textContent = "a browser wallet (none found)";
  const remembered = localStorage.getItem(CHOSEN) || "";
  if ([...picker.options].some((o) => o.value === remembered)) picker.value = remembered;
  if (picker.value === "browser") restoreBrowserWallet();
  else if (picker.value) pick(picker.value);
  picker.addEventListener("change", () => {
    say(walletStatus, "");
    pick(picker.value, walletStatus);
  });
}
