// Hashes a file off the page's thread: a contribution may be a gigabyte, and hashing it where
// the page runs would freeze it. Posted a File, it reads it in chunks (never all of it in
// memory), reports progress, and answers its keccak-256.

import { Keccak256 } from "/assets/keccak.js";

const CHUNK = 4 << 20;

onmessage = async (event) => {
  const file = event.data;
  try {
    const hasher = new Keccak256();
    for (let at = 0; at < file.size; at += CHUNK) {
      hasher.update(new Uint8Array(await file.slice(at, at + CHUNK).arrayBuffer()));
      postMessage({ done: Math.min(at + CHUNK, file.size), size: file.size });
    }
    postMessage({ hash: hasher.digest() });
  } catch (e) {
    postMessage({ error: `the file could not be read: ${e.message}` });
  }
};
