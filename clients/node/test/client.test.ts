// The wrapper against an in-process grpc-js server on loopback: requests carry converted values,
// responses are unwrapped, errors keep their status code.
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { TrackdClient, TrackdError, loadTrackdProto, status } from '../src/index';
import type { ActivateRequest__Output } from '../src/generated/trackd/v1/ActivateRequest';
import type { TrackRequest__Output } from '../src/generated/trackd/v1/TrackRequest';

const seen: { activate?: ActivateRequest__Output; track?: TrackRequest__Output } = {};
let server: grpc.Server;
let client: TrackdClient;

before(async () => {
  server = new grpc.Server();
  server.addService(loadTrackdProto().trackd.v1.TrackingService.service, {
    Activate: (call: grpc.ServerUnaryCall<ActivateRequest__Output, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      seen.activate = call.request;
      if (call.request.experimentKey === 'missing') {
        callback({ code: status.NOT_FOUND, details: 'unknown experiment "missing"' });
        return;
      }
      const inVariation = call.request.userId !== 'outsider';
      callback(null, {
        variationKey: inVariation ? 'treatment' : '',
        experimentKey: call.request.experimentKey,
        attributionDegraded: call.request.userId === 'redis-down',
      });
    },
    Track: (call: grpc.ServerUnaryCall<TrackRequest__Output, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      seen.track = call.request;
      if (call.request.eventKey === 'no_such_event') {
        callback({ code: status.NOT_FOUND, details: 'unknown event "no_such_event"' });
        return;
      }
      if (call.request.userId === 'redis-down') {
        callback(null, { attributions: [], uuid: 'u-2', attributionUnknown: true });
        return;
      }
      callback(null, {
        attributions: [{ experimentKey: 'ab_running', variationKey: 'treatment', experimentId: '1', variationId: '2' }],
        uuid: 'u-1',
      });
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

test('activate sends converted attributes and returns the variation key', async () => {
  assert.equal(await client.activate('ab_running', 'user123', { device: 'iPhone', age: 31 }), 'treatment');
  assert.equal(seen.activate?.experimentKey, 'ab_running');
  assert.equal(seen.activate?.userId, 'user123');
  assert.equal(seen.activate?.attributes.device.stringValue, 'iPhone');
  assert.equal(seen.activate?.attributes.age.numberValue, 31);
});

test('activate returns null when the user is in no variation', async () => {
  assert.equal(await client.activate('ab_running', 'outsider'), null);
});

test('track sends tags and returns the attributions', async () => {
  const attributions = await client.track('my_conversion', 'user123', { device: 'iPhone' }, { revenue: 4200 });
  assert.deepEqual(attributions, [
    { experimentKey: 'ab_running', variationKey: 'treatment', experimentId: '1', variationId: '2' },
  ]);
  assert.equal(seen.track?.tags.revenue.numberValue, 4200);
});

test('a NOT_FOUND status rejects with a TrackdError carrying the code', async () => {
  await assert.rejects(client.track('no_such_event', 'u'), (error: unknown) => {
    assert.ok(error instanceof TrackdError);
    assert.equal(error.code, status.NOT_FOUND);
    assert.match(error.details, /no_such_event/);
    return true;
  });
  await assert.rejects(client.activate('missing', 'u'), { code: status.NOT_FOUND });
});

test('bad attribute values reject with a TypeError before any call', async () => {
  seen.track = undefined;
  await assert.rejects(client.track('my_conversion', 'u', { when: new Date() as never }), TypeError);
  assert.equal(seen.track, undefined);
});

test('an unreachable trackd rejects with UNAVAILABLE or DEADLINE_EXCEEDED', async () => {
  const nowhere = new TrackdClient('127.0.0.1:1', { deadlineMs: 500 });
  try {
    await assert.rejects(nowhere.activate('ab_running', 'u'), (error: unknown) => {
      assert.ok(error instanceof TrackdError);
      assert.ok([status.UNAVAILABLE, status.DEADLINE_EXCEEDED].includes(error.code), String(error.code));
      return true;
    });
  } finally {
    nowhere.close();
  }
});

test('activateDetail carries attributionDegraded (trackd without its Redis)', async () => {
  assert.equal((await client.activateDetail('ab_running', 'redis-down')).attributionDegraded, true);
  assert.equal((await client.activateDetail('ab_running', 'user123')).attributionDegraded, false);
});

test('trackDetail carries attributionUnknown, so no attributions is not mistaken for none', async () => {
  const detail = await client.trackDetail('my_conversion', 'redis-down', null, { revenue: 1 });
  assert.equal(detail.attributionUnknown, true);
  assert.equal(detail.uuid, 'u-2');
  assert.deepEqual(detail.attributions, []);
  assert.equal((await client.trackDetail('my_conversion', 'user123')).attributionUnknown, false);
});
