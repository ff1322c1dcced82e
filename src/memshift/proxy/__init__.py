"""The aiohttp proxy: classify each request, route it, forward it, answer the client."""
