"""The intake: a stored inbound message becomes a ticket, a reply, or a recorded no-op."""
