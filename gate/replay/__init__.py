"""``gate replay``: re-decide the gated calls of past decision logs under another policy."""
