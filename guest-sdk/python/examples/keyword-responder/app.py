"""Keyword responder, in Python: replies in the same conversation when a
Zulip message mentions one of the configured keywords, reacts to it, and
counts messages per sender in KV. Built with componentize-py (see
build.sh); tested natively with pytest (test_app.py)."""

import hookbox_sdk as hb
from hookbox_sdk import zulip


def handle(event: hb.Event) -> None:
    z = event.zulip()
    if not isinstance(z, zulip.MessageEvent):
        hb.log.debug("Ignored", type=event.type)
        return
    settings = hb.config()
    keywords = [k.lower() for k in settings.get("keywords", ["deploy"])]
    message = z.message
    seen = hb.kv.increment(f"messages:{message.sender_id}")
    words = message.content.lower().split()
    hit = next((k for k in keywords if any(k in w for w in words)), None)
    hb.log.info("Checked message", id=message.id, sender=message.sender_id, seen=seen, keyword=hit)
    if hit is None:
        return
    text = settings.get("reply", "Noted: {keyword}.").format(keyword=hit, seen=seen)
    if zulip.reply(message, text):
        zulip.add_reaction(message.id, settings.get("emoji", "eyes"))


WitWorld = hb.export(handle)
