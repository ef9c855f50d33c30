// Generates src/protocol.ts from the JSON Schemas the protocol crate checks
// in (protocol/schema/), so the client's message types are the server's.
// With --check it writes nothing and fails when the checked-in file is not
// what the schemas give now (run by `npm test` and `cargo xtask test`).
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { compile } from "json-schema-to-typescript";

const root = new URL("../../../protocol/schema/", import.meta.url);
// PROTOCOL_TS: another file to write or check (the drift check's own test).
const out = process.env.PROTOCOL_TS ?? fileURLToPath(new URL("../src/protocol.ts", import.meta.url));
const check = process.argv.includes("--check");

const header = `/* Generated from protocol/schema/*.schema.json by scripts/generate-types.mjs
 * (json-schema-to-typescript). Do not edit: run \`npm run generate\`. */
`;

async function schema(file) {
  return JSON.parse(await readFile(new URL(file, root), "utf8"));
}

// One schema holding both directions, so the types both use (Board, Member,
// …) are declared once: the two roots become definitions beside them.
const client = await schema("client.schema.json");
const server = await schema("server.schema.json");
const root$defs = { ...client.$defs, ...server.$defs };
for (const frame of [client, server]) {
  const { $defs, $schema, ...rest } = frame;
  root$defs[frame.title] = rest;
}
const both = {
  title: "AnyFrame",
  description: "Any frame, in either direction.",
  anyOf: [{ $ref: "#/$defs/ClientFrame" }, { $ref: "#/$defs/ServerFrame" }],
  $defs: root$defs,
};
const text =
  header +
  (await compile(both, "AnyFrame", {
    bannerComment: "",
    additionalProperties: false,
    format: true,
    unreachableDefinitions: true,
  }));

if (check) {
  const current = await readFile(out, "utf8").catch(() => "");
  if (current !== text) {
    console.error(
      "src/protocol.ts does not match protocol/schema/*.schema.json: run `npm run generate` in clients/js",
    );
    process.exit(1);
  }
  console.log("src/protocol.ts matches the schemas");
} else {
  await writeFile(out, text);
  console.log(`wrote ${out}`);
}
