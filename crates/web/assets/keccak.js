// Keccak-256 (Ethereum's hash: Keccak's 0x01 padding, not SHA-3's 0x06), for the upload
// signature a contributor gives over a file's bytes before sending them. Lanes are 64-bit,
// held as pairs of 32-bit halves: s[2i] the low half of lane i, s[2i+1] the high half.

// Round constants, low and high halves.
const RC = new Uint32Array([
  0x00000001, 0x00000000, 0x00008082, 0x00000000, 0x0000808a, 0x80000000, 0x80008000, 0x80000000,
  0x0000808b, 0x00000000, 0x80000001, 0x00000000, 0x80008081, 0x80000000, 0x00008009, 0x80000000,
  0x0000008a, 0x00000000, 0x00000088, 0x00000000, 0x80008009, 0x00000000, 0x8000000a, 0x00000000,
  0x8000808b, 0x00000000, 0x0000008b, 0x80000000, 0x00008089, 0x80000000, 0x00008003, 0x80000000,
  0x00008002, 0x80000000, 0x00000080, 0x80000000, 0x0000800a, 0x00000000, 0x8000000a, 0x80000000,
  0x80008081, 0x80000000, 0x00008080, 0x80000000, 0x80000001, 0x00000000, 0x80008008, 0x80000000,
]);
// Rotation of lane x + 5y.
const ROT = [0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14];
// Where rho-and-pi moves lane x + 5y: to y + 5((2x + 3y) mod 5).
const PI = ROT.map((_, i) => { const x = i % 5, y = (i / 5) | 0; return y + 5 * ((2 * x + 3 * y) % 5); });

const RATE = 136; // bytes absorbed per permutation (1088 bits for a 256-bit output)

function permute(s) {
  const c = new Uint32Array(10), b = new Uint32Array(50);
  for (let round = 0; round < 24; round++) {
    // theta
    for (let x = 0; x < 5; x++) {
      c[2 * x] = s[2 * x] ^ s[2 * x + 10] ^ s[2 * x + 20] ^ s[2 * x + 30] ^ s[2 * x + 40];
      c[2 * x + 1] = s[2 * x + 1] ^ s[2 * x + 11] ^ s[2 * x + 21] ^ s[2 * x + 31] ^ s[2 * x + 41];
    }
    for (let x = 0; x < 5; x++) {
      const p = (x + 4) % 5, n = (x + 1) % 5;
      // D = C[x-1] ^ rotl(C[x+1], 1)
      const lo = c[2 * p] ^ ((c[2 * n] << 1) | (c[2 * n + 1] >>> 31));
      const hi = c[2 * p + 1] ^ ((c[2 * n + 1] << 1) | (c[2 * n] >>> 31));
      for (let y = 0; y < 25; y += 5) {
        s[2 * (x + y)] ^= lo;
        s[2 * (x + y) + 1] ^= hi;
      }
    }
    // rho and pi
    for (let i = 0; i < 25; i++) {
      let lo = s[2 * i], hi = s[2 * i + 1], r = ROT[i];
      if (r >= 32) { const t = lo; lo = hi; hi = t; r -= 32; }
      const j = PI[i];
      if (r === 0) { b[2 * j] = lo; b[2 * j + 1] = hi; }
      else {
        b[2 * j] = (lo << r) | (hi >>> (32 - r));
        b[2 * j + 1] = (hi << r) | (lo >>> (32 - r));
      }
    }
    // chi
    for (let y = 0; y < 25; y += 5) {
      for (let x = 0; x < 5; x++) {
        const i = 2 * (x + y), n1 = 2 * (((x + 1) % 5) + y), n2 = 2 * (((x + 2) % 5) + y);
        s[i] = b[i] ^ (~b[n1] & b[n2]);
        s[i + 1] = b[i + 1] ^ (~b[n1 + 1] & b[n2 + 1]);
      }
    }
    // iota
    s[0] ^= RC[2 * round];
    s[1] ^= RC[2 * round + 1];
  }
}

function absorb(s, block, at) {
  for (let i = 0; i < RATE / 4; i++) {
    const k = at + 4 * i;
    s[i] ^= block[k] | (block[k + 1] << 8) | (block[k + 2] << 16) | (block[k + 3] << 24);
  }
  permute(s);
}

/** Keccak-256 over bytes given in pieces (a file read chunk by chunk): `update` as often as
 * needed, then `digest` once. */
export class Keccak256 {
  constructor() {
    this.s = new Uint32Array(50);
    this.pending = new Uint8Array(RATE); // a block's start, carried to the next piece
    this.held = 0;
  }

  update(bytes) {
    let at = 0;
    if (this.held > 0) {
      const take = Math.min(RATE - this.held, bytes.length);
      this.pending.set(bytes.subarray(0, take), this.held);
      this.held += take;
      at = take;
      if (this.held < RATE) return this;
      absorb(this.s, this.pending, 0);
      this.held = 0;
    }
    for (; at + RATE <= bytes.length; at += RATE) absorb(this.s, bytes, at);
    this.pending.set(bytes.subarray(at), 0);
    this.held = bytes.length - at;
    return this;
  }

  /** The hash as 0x-prefixed hex. */
  digest() {
    const last = new Uint8Array(RATE);
    last.set(this.pending.subarray(0, this.held));
    last[this.held] ^= 0x01;
    last[RATE - 1] ^= 0x80;
    absorb(this.s, last, 0);
    let hex = "0x";
    for (let i = 0; i < 32; i++) {
      const byte = (this.s[i >> 2] >>> (8 * (i & 3))) & 0xff;
      hex += byte.toString(16).padStart(2, "0");
    }
    return hex;
  }
}

/** keccak256 of `bytes` (a Uint8Array), as 0x-prefixed hex. */
export function keccak256(bytes) {
  return new Keccak256().update(bytes).digest();
}
