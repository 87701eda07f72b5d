"""Small fake HTTP services on 127.0.0.1 for the live-data tests (one module per service)."""
