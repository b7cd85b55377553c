// The browser client's decisions are the Node client's Decision (clients/node/src/decide.ts),
// bundled from it rather than copied: the same typed getters. Run with node --test.
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { Decision, VariableTypeError } from "../src/index.js";

const decision = new Decision({
  flagKey: "checkout",
  enabled: true,
  variationKey: "treatment",
  ruleKey: "checkout_test",
  ruleType: "feature-test",
  variables: { max_items: 7, discount: 1.25, title: "Fast", show_banner: true, layout: { columns: 2 } },
  reasons: [],
  impressionRecorded: true,
  error: null,
});

test("a decision's getters read each variable as its own type", () => {
  assert.equal(decision.getInteger("max_items"), 7);
  assert.equal(decision.getDouble("discount"), 1.25);
  assert.equal(decision.getString("title"), "Fast");
  assert.equal(decision.getBoolean("show_banner"), true);
  assert.deepEqual(decision.getJson("layout"), { columns: 2 });
});

test("a getter of another type, or of a missing variable, throws", () => {
  assert.throws(() => decision.getString("max_items"), VariableTypeError);
  assert.throws(() => decision.getInteger("discount"), VariableTypeError);
  assert.throws(() => decision.getBoolean("nope"), RangeError);
});

test("a decision trackd left out is a bare disabled one", () => {
  const dropped = Decision.dropped("banner");
  assert.equal(dropped.enabled, false);
  assert.equal(dropped.variationKey, null);
  assert.deepEqual(dropped.variables, {});
});
