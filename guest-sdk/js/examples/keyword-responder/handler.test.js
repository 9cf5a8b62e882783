// The keyword responder against the SDK's fake host.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Event, HandlerError } from '@hookbox/sdk';
import { TestHost } from '@hookbox/sdk/testing';

import { onEvent } from './handler.js';

const manifest = JSON.parse(readFileSync(new URL('manifest.json', import.meta.url), 'utf8'));
const host = () => new TestHost({ config: manifest.config, capabilities: manifest.capabilities });
const message = (content) =>
  Event.fromZulip({ type: 'message', flags: [], message: { id: 5, sender_id: 10, content, type: 'stream', stream_id: 1, display_recipient: 'Denmark', subject: 'castle' } }, { tenant: 'acme' });

test('a keyword gets a reply and a reaction', () => {
  const h = host();
  h.run(onEvent, message('<p>can we Deploy today?</p>'));
  const [reply, reaction] = h.emitted;
  assert.deepEqual(reply.payload, { type: 'stream', to: 'Denmark', stream_id: 1, topic: 'castle', content: 'Noted: deploy (message 1 from you).' });
  assert.deepEqual(reaction.payload, { message_id: 5, emoji_name: 'eyes' });
  assert.equal(h.kvGetString('acme', 'messages:10'), '1');
});

test('other messages are counted only', () => {
  const h = host();
  h.run(onEvent, message('lunch?'));
  assert.deepEqual(h.emitted, []);
  assert.equal(h.kvGetString('acme', 'messages:10'), '1');
});

test('it needs no clock', () => assert.ok(!manifest.capabilities.includes('clock')));

test('a malformed message is a fatal error', () => {
  assert.throws(() => host().run(onEvent, Event.build('message', { type: 'message', message: { id: 'x' } })), (e) => e instanceof HandlerError && !e.retryable);
});
