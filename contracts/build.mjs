// Compiles every contract under src/ with solc's standard JSON (optimizer on, Prague EVM) and
// writes one artifact per contract to out/<Name>.json: ABI, creation bytecode and deployed
// bytecode. With --check it compiles in memory and fails if out/ differs, so CI notices
// artifacts that were not rebuilt after a source change.
//
//   node build.mjs [--check]
import { createRequire } from "node:module";
import { readFileSync, readdirSync, writeFileSync, mkdirSync, existsSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");
const root = dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes("--check");

const sources = {};
for (const file of readdirSync(join(root, "src")).sort()) {
  if (file.endsWith(".sol")) {
    sources[`src/${file}`] = { content: readFileSync(join(root, "src", file), "utf8") };
  }
}

// Imports resolve against this folder (src/...) and node_modules (@openzeppelin/...).
function findImports(path) {
  for (const base of [root, join(root, "node_modules")]) {
    const full = join(base, path);
    if (existsSync(full)) return { contents: readFileSync(full, "utf8") };
  }
  return { error: `import not found: ${path}` };
}

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "prague",
    outputSelection: {
      "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
    },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
// Warnings in our own sources fail the build too; those in imported libraries do not.
const errors = (output.errors || []).filter(
  (e) => e.severity === "error" || (e.sourceLocation?.file ?? "").startsWith("src/"),
);
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) {
  console.error(`build-contracts: ${errors.length} compile error(s) or warning(s) in src/`);
  process.exit(1);
}

const artifacts = {};
for (const [sourceName, contracts] of Object.entries(output.contracts || {})) {
  // Only our own contracts become artifacts, not the libraries they import.
  if (!sourceName.startsWith("src/")) continue;
  for (const [name, c] of Object.entries(contracts)) {
    artifacts[`${name}.json`] =
      JSON.stringify(
        {
          contractName: name,
          sourceName,
          compiler: solc.version(),
          abi: c.abi,
          bytecode: "0x" + c.evm.bytecode.object,
          deployedBytecode: "0x" + c.evm.deployedBytecode.object,
        },
        null,
        2,
      ) + "\n";
  }
}

const out = join(root, "out");
if (check) {
  const stale = [];
  const present = existsSync(out) ? readdirSync(out).filter((f) => f.endsWith(".json")) : [];
  for (const [file, text] of Object.entries(artifacts)) {
    const path = join(out, file);
    if (!existsSync(path) || readFileSync(path, "utf8") !== text) stale.push(file);
  }
  for (const file of present) if (!(file in artifacts)) stale.push(`${file} (no longer built)`);
  if (stale.length > 0) {
    console.error(`build-contracts: contracts/out is stale; run scripts/build-contracts:\n  ${stale.join("\n  ")}`);
    process.exit(1);
  }
  console.error(`build-contracts: ${Object.keys(artifacts).length} artifacts match their sources`);
} else {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  for (const [file, text] of Object.entries(artifacts)) writeFileSync(join(out, file), text);
  console.error(`build-contracts: wrote ${Object.keys(artifacts).length} artifacts to contracts/out`);
}
