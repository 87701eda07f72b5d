"""Headlines from live providers (Alpaca news, Perplexity), key rotation, and cross-source dedupe."""
