"""MCP Streamable HTTP as memshift speaks it: messages, store links, client sessions."""
