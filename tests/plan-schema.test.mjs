// The plan's JSON Schema (pkg-config/plan.schema.json, for editors and other tools) checked with
// a real JSON Schema validator (Ajv, draft 2020-12) against the same plans the SDK's validator
// is tested on (tests/plans.rs): every example plan must pass, and every broken golden plan
// must fail — except those whose fault only the SDK's validator can see (cross-references,
// cycles, selector syntax, window order), listed here with why.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const read = (...p) => readFileSync(join(ROOT, ...p), "utf8");
const jsonFiles = (...dir) => readdirSync(join(ROOT, ...dir)).filter((f) => f.endsWith(".json")).sort();

// strictRequired off: the schema's if/then/else branches name required properties defined in
// the enclosing object, which is valid JSON Schema that Ajv's extra lint flags.
const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
const validate = ajv.compile(JSON.parse(read("pkg-config", "plan.schema.json")));

/** Broken plans whose fault JSON Schema cannot express; the SDK's validator refuses them. */
const BEYOND_SCHEMA = {
  "account-milestone-unknown.json": "a reference to a milestone id that does not exist",
  "after-cycle.json": "a cycle through `after` references",
  "after-unknown.json": "a reference to a milestone id that does not exist",
  "duplicate-id.json": "ids unique across array items by value",
  "duplicate-tip.json": "ids unique across array items by value",
  "lifecycle-dormant-before-at-risk.json": "one duration compared with another",
  "not-json.json": "not JSON at all, so there is nothing to validate",
  "selector-unbalanced.json": "CSS selector syntax",
  "tip-unknown-milestone.json": "a reference to a milestone id that does not exist",
  "tip-unknown-account-milestone.json": "a reference to an account milestone id that does not exist",
  "window-backwards.json": "one duration compared with another",
};

test("every example plan is valid against the schema", () => {
  const examples = jsonFiles("pkg-config", "plans");
  assert.ok(examples.length >= 3, "the documented examples are there");
  for (const f of examples) {
    const ok = validate(JSON.parse(read("pkg-config", "plans", f)));
    assert.ok(ok, f + ": " + JSON.stringify(validate.errors));
  }
});

test("every broken golden plan is refused by the schema, or its fault is beyond JSON Schema", () => {
  const broken = jsonFiles("tests", "plans", "broken");
  assert.ok(broken.length >= 20);
  const acceptedBySchema = [];
  for (const f of broken) {
    let doc;
    try {
      doc = JSON.parse(read("tests", "plans", "broken", f));
    } catch {
      acceptedBySchema.push(f); // not JSON: nothing for a schema to say
      continue;
    }
    if (validate(doc)) acceptedBySchema.push(f);
  }
  assert.deepEqual(acceptedBySchema, Object.keys(BEYOND_SCHEMA).sort(),
    "the schema must refuse every broken plan it can describe; list the others in BEYOND_SCHEMA with why");
});

test("the schema refuses a plan that breaks it in a way the golden files do not", () => {
  const plan = JSON.parse(read("pkg-config", "plans", "trackly.json"));
  plan.milestones[0].unknownField = true;
  assert.equal(validate(plan), false, "unknown milestone fields are refused");
});
