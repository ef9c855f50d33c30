// The drift check: src/protocol.ts must be what the protocol's JSON Schemas give.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const script = fileURLToPath(new URL("../scripts/generate-types.mjs", import.meta.url));
const generated = fileURLToPath(new URL("../src/protocol.ts", import.meta.url));

function check(file) {
  return spawnSync(process.execPath, [script, "--check"], { env: { ...process.env, PROTOCOL_TS: file }, encoding: "utf8" });
}

test("the drift check passes on the generated types and fails on types the schemas do not give", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "attractio-types-"));
  try {
    const same = path.join(dir, "same.ts");
    copyFileSync(generated, same);
    assert.equal(check(same).status, 0);
    const drifted = path.join(dir, "drifted.ts");
    writeFileSync(drifted, readFileSync(generated, "utf8").replace('"duplicate_op"', '"duplicate_op"\n  | "made_up"'));
    const result = check(drifted);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /npm run generate/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
