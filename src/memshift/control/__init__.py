"""The control plane: ramp, primary, failback latch, health windows, shared state, audit.

Nothing here imports aiohttp; the proxy reads the current state from memory on the
request path and changes it through these modules.
"""
