"""Small fake third-party services on 127.0.0.1 that check the real request shapes."""
