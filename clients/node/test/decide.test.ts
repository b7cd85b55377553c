// decide, decideForKeys, decideAll and forced decisions against an in-process grpc-js server on
// loopback that answers as trackd's Decide does and records what it was asked.
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { Decision, DecideOption, TrackdClient, TrackdError, VariableTypeError, loadTrackdProto, status } from '../src/index';
import type { DecideRequest__Output } from '../src/generated/trackd/v1/DecideRequest';

type Call = grpc.ServerUnaryCall<any, unknown>;
type Reply = grpc.sendUnaryData<unknown>;

const requests: DecideRequest__Output[] = [];
const forced = new Map<string, string>();
let server: grpc.Server;
let client: TrackdClient;

const VARIABLES = {
  fields: {
    on: { boolValue: true },
    count: { numberValue: 3 },
    ratio: { numberValue: 0.5 },
    label: { stringValue: 'blue' },
    config: {
      structValue: {
        fields: {
          size: { numberValue: 10 },
          tags: { listValue: { values: [{ stringValue: 'a' }, { stringValue: 'b' }] } },
          nested: { structValue: { fields: { x: { nullValue: 'NULL_VALUE' } } } },
        },
      },
    },
  },
};

function keyOf(r: { userId: string; flagKey: string; ruleKey: string }): string {
  return JSON.stringify([r.userId, r.flagKey, r.ruleKey]);
}

before(async () => {
  server = new grpc.Server();
  server.addService(loadTrackdProto().trackd.v1.TrackingService.service, {
    Decide: (call: Call, callback: Reply) => {
      const request = call.request as DecideRequest__Output;
      requests.push(request);
      if (!request.userId) {
        callback({ code: status.INVALID_ARGUMENT, details: 'user_id must not be empty' });
        return;
      }
      const known: Record<string, object> = {
        checkout: {
          flagKey: 'checkout',
          enabled: true,
          variationKey: forced.get(keyOf({ userId: request.userId, flagKey: 'checkout', ruleKey: '' })) ?? 'treatment',
          ruleKey: 'checkout_test',
          ruleType: 'RULE_TYPE_FEATURE_TEST',
          variables: VARIABLES,
          reasons: ['in the test'],
          impressionRecorded: true,
        },
        banner: { flagKey: 'banner', variationKey: 'off', ruleKey: 'everyone_else', ruleType: 'RULE_TYPE_ROLLOUT' },
      };
      const keys = request.flagKeys.length ? request.flagKeys : ['checkout', 'banner'];
      let decisions = keys.map((k) => known[k] ?? { flagKey: k, error: `no flag ${k}` });
      // 'enabled-only-by-default' plays a daemon whose default options hold ENABLED_FLAGS_ONLY.
      if (request.options.includes('DECIDE_OPTION_ENABLED_FLAGS_ONLY' as never) || request.userId === 'enabled-only-by-default') {
        decisions = decisions.filter((d) => (d as { enabled?: boolean }).enabled);
      }
      callback(null, { decisions, revision: '7' });
    },
    SetForcedDecision: (call: Call, callback: Reply) => {
      forced.set(keyOf(call.request), call.request.variationKey);
      callback(null, {});
    },
    GetForcedDecision: (call: Call, callback: Reply) => {
      callback(null, { variationKey: forced.get(keyOf(call.request)) ?? '' });
    },
    RemoveForcedDecision: (call: Call, callback: Reply) => {
      callback(null, { removed: forced.delete(keyOf(call.request)) });
    },
    RemoveAllForcedDecisions: (call: Call, callback: Reply) => {
      const mine = [...forced.keys()].filter((k) => JSON.parse(k)[0] === call.request.userId);
      mine.forEach((k) => forced.delete(k));
      callback(null, { removed: mine.length });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  client = new TrackdClient(`127.0.0.1:${port}`, { deadlineMs: 2000 });
});

after(() => {
  client.close();
  server.forceShutdown();
});

test('decide returns the decision with plain variables and sends options and attributes', async () => {
  requests.length = 0;
  const decision = await client.decide('u1', 'checkout', { device: 'iPhone', age: 30 }, [
    DecideOption.INCLUDE_REASONS,
    DecideOption.DISABLE_DECISION_EVENT,
  ]);
  assert.ok(decision instanceof Decision);
  assert.deepEqual({ ...decision }, {
    flagKey: 'checkout',
    enabled: true,
    variationKey: 'treatment',
    ruleKey: 'checkout_test',
    ruleType: 'feature-test',
    variables: { on: true, count: 3, ratio: 0.5, label: 'blue', config: { size: 10, tags: ['a', 'b'], nested: { x: null } } },
    reasons: ['in the test'],
    impressionRecorded: true,
    error: null,
  });
  const [request] = requests;
  assert.deepEqual(request.flagKeys, ['checkout']);
  assert.deepEqual(request.options, ['DECIDE_OPTION_INCLUDE_REASONS', 'DECIDE_OPTION_DISABLE_DECISION_EVENT']);
  assert.equal(request.attributes.age.numberValue, 30);
  assert.equal(request.attributes.device.stringValue, 'iPhone');
});

test('typed getters return JavaScript types and refuse other types', async () => {
  const d = await client.decide('u1', 'checkout');
  assert.equal(d.getBoolean('on'), true);
  assert.equal(d.getInteger('count'), 3);
  assert.equal(d.getDouble('ratio'), 0.5);
  assert.equal(d.getString('label'), 'blue');
  assert.deepEqual(d.getJson('config'), { size: 10, tags: ['a', 'b'], nested: { x: null } });
  assert.throws(() => d.getInteger('label'), (e: unknown) => {
    assert.ok(e instanceof VariableTypeError && e instanceof TypeError);
    assert.equal(e.message, 'flag "checkout": variable "label" is "blue", not integer');
    return true;
  });
  assert.throws(() => d.getInteger('ratio'), VariableTypeError);
  assert.throws(() => d.getBoolean('count'), VariableTypeError);
  assert.throws(() => d.getJson('label'), VariableTypeError);
  assert.throws(() => d.getString('missing'), /no variable "missing"/);
});

test('decideAll and decideForKeys keep trackd order, and unknown keys carry an error', async () => {
  requests.length = 0;
  assert.deepEqual(Object.keys(await client.decideAll('u1')), ['checkout', 'banner']);
  const some = await client.decideForKeys('u1', ['banner', 'nope', 'checkout']);
  assert.deepEqual(Object.keys(some), ['banner', 'nope', 'checkout']);
  assert.equal(some.banner.ruleType, 'rollout');
  assert.equal(some.nope.error, 'no flag nope');
  assert.equal(some.nope.enabled, false);
  assert.equal(some.nope.variationKey, null);
  assert.deepEqual(Object.keys(await client.decideAll('u1', null, [DecideOption.ENABLED_FLAGS_ONLY])), ['checkout']);
  // As the SDK's decide: one flag always answers, ENABLED_FLAGS_ONLY is not sent.
  const banner = await client.decide('u1', 'banner', null, [DecideOption.ENABLED_FLAGS_ONLY]);
  assert.deepEqual([banner.enabled, banner.variationKey, banner.ruleKey], [false, 'off', 'everyone_else']);
  assert.deepEqual(await client.decide('enabled-only-by-default', 'banner'), Decision.dropped('banner'));
  assert.deepEqual(await client.decideForKeys('u1', []), {});
  assert.deepEqual(
    requests.map((r) => [r.flagKeys, r.options]),
    [[[], []], [['banner', 'nope', 'checkout'], []], [[], ['DECIDE_OPTION_ENABLED_FLAGS_ONLY']], [['banner'], []], [['banner'], []]],
  );
});

test('errors: status codes from trackd, TypeErrors before any call', async () => {
  requests.length = 0;
  await assert.rejects(client.decide('', 'checkout'), (e: unknown) => e instanceof TrackdError && e.code === status.INVALID_ARGUMENT);
  await assert.rejects(client.decide('u1', 'checkout', { when: new Date() as never }), TypeError);
  await assert.rejects(client.decide('u1', 'checkout', null, ['NOT_AN_OPTION' as never]), /unknown decide option/);
  assert.equal(requests.length, 1);
});

test('forced decisions: set, get, remove, remove all', async () => {
  assert.equal(await client.getForcedDecision('u1', { flagKey: 'checkout' }), null);
  await client.setForcedDecision('u1', { flagKey: 'checkout' }, { variationKey: 'control' });
  await client.setForcedDecision('u1', { flagKey: 'checkout', ruleKey: 'checkout_test' }, { variationKey: 'treatment' });
  await client.setForcedDecision('u2', { flagKey: 'checkout' }, { variationKey: 'control' });
  assert.equal(await client.getForcedDecision('u1', { flagKey: 'checkout', ruleKey: 'checkout_test' }), 'treatment');
  assert.equal((await client.decide('u1', 'checkout')).variationKey, 'control');
  assert.equal(await client.removeForcedDecision('u1', { flagKey: 'checkout' }), true);
  assert.equal(await client.removeForcedDecision('u1', { flagKey: 'checkout' }), false);
  assert.equal(await client.removeAllForcedDecisions('u1'), 1);
  assert.equal(await client.getForcedDecision('u2', { flagKey: 'checkout' }), 'control');
});
