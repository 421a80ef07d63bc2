"""Command handlers, the message bus, read-side queries and the ports adapters implement."""
