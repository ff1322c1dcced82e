"""MCP as memshift reads it: JSON-RPC messages, tool outcomes, SSE events."""
