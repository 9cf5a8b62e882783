// Keyword responder, in JavaScript: replies in the same conversation when a
// Zulip message mentions one of the configured keywords, reacts to it, and
// counts messages per sender in KV. Built with hookbox-build-js; tested
// natively with node's test runner (handler.test.js).
import { exportHandler, config, kv, log, zulip } from '@hookbox/sdk';

export function onEvent(event) {
  const z = event.zulip();
  if (z.kind !== 'message') {
    log.debug('Ignored', { type: event.type });
    return;
  }
  const settings = config();
  const keywords = (settings.keywords ?? ['deploy']).map((k) => k.toLowerCase());
  const { message } = z;
  const seen = kv.increment(`messages:${message.senderId}`);
  const words = message.content.toLowerCase().split(/\s+/);
  const hit = keywords.find((k) => words.some((w) => w.includes(k)));
  log.info('Checked message', { id: message.id, sender: message.senderId, seen, keyword: hit ?? 'None' });
  if (hit === undefined) return;
  const text = (settings.reply ?? 'Noted: {keyword}.').replace('{keyword}', hit).replace('{seen}', String(seen));
  if (zulip.reply(message, text)) zulip.addReaction(message.id, settings.emoji ?? 'eyes');
}

export const handle = exportHandler(onEvent);
