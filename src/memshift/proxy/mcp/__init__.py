"""The MCP codec of the proxy: client sessions, the relay of answers, tool calls, dispatch."""
